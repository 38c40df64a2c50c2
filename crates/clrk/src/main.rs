//! The `clrk` binary: parse arguments, run the command, turn errors into one line and an exit code.

use std::process::ExitCode;

use clap::Parser;
use clrk::cli::{Cli, Command};
use clrk::{commands, discovery, error};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(&cli);
    match commands::run(cli, discovery::clrk_dir()).await {
        Ok(()) => ExitCode::SUCCESS,
        // Whoever read our output stopped listening (`| head`): nothing left to say.
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        // The differences are the output; the exit code says there were some.
        Err(err) if matches!(err.downcast_ref(), Some(error::CliError::Differs { .. })) => {
            ExitCode::from(error::EXIT_FAILED)
        }
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(error::exit_code_for(&err))
        }
    }
}

/// `RUST_LOG` wins; otherwise `clrk dev` logs at info and other commands only warnings.
fn init_tracing(cli: &Cli) {
    let default = match (&cli.command, cli.global.verbose) {
        (_, true) => "warn,clrk=debug,clrk_server=debug",
        (Command::Dev(_) | Command::Server(_) | Command::Worker(_), false) => "info",
        _ => "warn",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain()
        .filter_map(|e| e.downcast_ref::<std::io::Error>())
        .any(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
}
