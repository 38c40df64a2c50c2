//! `clrk registry login`: runs on the client, as `docker login` does, since the credentials
//! file it writes is the user's own.

use std::io::{IsTerminal as _, Read as _};

use anyhow::{Context as _, bail};

use crate::cli::LoginArgs;
use crate::output;

/// Checks the credentials against the registry and stores them in docker's config file.
pub async fn login(args: LoginArgs) -> anyhow::Result<()> {
    let password = if args.password_stdin {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read the password from stdin")?;
        text.trim_end_matches(['\n', '\r']).to_string()
    } else if std::io::stdin().is_terminal() {
        rpassword::prompt_password(format!(
            "Password for {}@{}: ",
            args.username, args.registry
        ))
        .context("cannot read the password from the terminal")?
    } else {
        bail!(
            "no password: pass --password-stdin and the password on stdin, or run on a terminal to be asked"
        );
    };
    if password.is_empty() {
        bail!("the password is empty: give the registry password or token");
    }
    let login = clrk_image::Login {
        registry: args.registry.clone(),
        username: args.username,
        password,
        insecure: args.insecure,
    };
    let path = tokio::task::spawn_blocking(move || login.check_and_store(None)).await??;
    output::print(&format!(
        "login succeeded: credentials for {} stored in {}\n",
        args.registry,
        path.display()
    ))?;
    Ok(())
}
