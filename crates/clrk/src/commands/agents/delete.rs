//! `clrk agents delete NAME`.

use crate::cli::AgentDeleteArgs;
use crate::commands::{self, Session};

/// Deletes one agent and prints `kind/NAME deleted`.
pub async fn run(args: AgentDeleteArgs, session: &Session) -> anyhow::Result<()> {
    let api = session.api()?;
    let path = [
        "v1",
        "agents",
        args.namespace.namespace.as_str(),
        args.name.as_str(),
    ];
    commands::delete::delete(&api, &path, &args.missing).await
}
