//! Failures the CLI reports with a specific exit code or wording.
//!
//! Everything else travels as `anyhow::Error` with context and exits 1.

use std::path::PathBuf;

/// Exit code when an agent ran and failed, or any other error.
pub const EXIT_FAILED: u8 = 1;
/// Exit code when an execution hit its timeout (as `timeout(1)` does).
pub const EXIT_TIMED_OUT: u8 = 124;
/// Exit code when the ingress refused to start the execution.
pub const EXIT_REJECTED: u8 = 77;

/// An error whose message and exit code the CLI shows as is.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Neither flags, environment nor `dev.json` name a server.
    #[error("no clrk server found: start one with 'clrk dev', or set CLRK_SERVER and CLRK_TOKEN")]
    NoServer,

    /// `dev.json` exists but cannot be read or understood.
    #[error("cannot use {}: {reason}; restart 'clrk dev' to rewrite it, or set CLRK_SERVER and CLRK_TOKEN", path.display())]
    BadDevFile { path: PathBuf, reason: String },

    /// The server's URL is malformed.
    #[error("'{url}' is not a valid server URL: use the form http://HOST:PORT")]
    BadUrl { url: String },

    /// Nothing answers at the server's address.
    #[error(
        "cannot reach the clrk server at {url} ({reason}): start one with 'clrk dev', or point CLRK_SERVER at a running server"
    )]
    Unreachable { url: String, reason: String },

    /// The control API refused the token.
    #[error(
        "the clrk server at {url} rejected the API token: set CLRK_TOKEN to the token in $CLRK_DIR/dev.json, or restart 'clrk dev'"
    )]
    Unauthorized { url: String },

    /// The control API answered with an error status; `message` is the server's own sentence.
    #[error("{message}")]
    Api { status: u16, message: String },

    /// The agent ran and exited non-zero.
    #[error("agent exited with code {code}")]
    AgentExited { code: i32 },

    /// An execution failed (`failure`); `details` say which and where its logs are.
    #[error("{failure}\n{details}")]
    Execution {
        failure: Box<CliError>,
        details: String,
    },

    /// The execution hit its timeout; `message` is the ingress's sentence.
    #[error("{message}")]
    TimedOut { message: String },

    /// The ingress refused to start the execution (not found, busy, no ready revision, ...).
    #[error("{message}")]
    Rejected { status: u16, message: String },

    /// `clrk diff` found objects that applying would change; it printed them already, so
    /// the CLI only exits 1, as `kubectl diff` does.
    #[error("applying would change {objects} object(s)")]
    Differs { objects: usize },
}

impl CliError {
    /// The process exit code for this error.
    ///
    /// ```
    /// use clrk::CliError;
    /// assert_eq!(CliError::AgentExited { code: 3 }.exit_code(), 1);
    /// ```
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Execution { failure, .. } => failure.exit_code(),
            CliError::TimedOut { .. } => EXIT_TIMED_OUT,
            CliError::Rejected { .. } => EXIT_REJECTED,
            _ => EXIT_FAILED,
        }
    }
}

/// The exit code for any error a command returned.
///
/// ```
/// use clrk::error::exit_code_for;
/// assert_eq!(exit_code_for(&anyhow::anyhow!("boom")), 1);
/// ```
pub fn exit_code_for(err: &anyhow::Error) -> u8 {
    err.downcast_ref::<CliError>()
        .map_or(EXIT_FAILED, CliError::exit_code)
}

/// Whether the control API answered 404 Not Found.
///
/// ```
/// let gone = anyhow::Error::new(clrk::CliError::Api { status: 404, message: "gone".into() });
/// assert!(clrk::error::is_not_found(&gone));
/// assert!(!clrk::error::is_not_found(&anyhow::anyhow!("other")));
/// ```
pub fn is_not_found(err: &anyhow::Error) -> bool {
    matches!(
        err.downcast_ref::<CliError>(),
        Some(CliError::Api { status: 404, .. })
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_task_outcomes_map_to_documented_exit_codes() {
        let timed_out = anyhow::Error::new(CliError::TimedOut {
            message: "execution timed out after 1s".into(),
        });
        let rejected = anyhow::Error::new(CliError::Rejected {
            status: 429,
            message: "busy".into(),
        });
        let exited = anyhow::Error::new(CliError::AgentExited { code: 7 });
        assert_eq!(exit_code_for(&timed_out), 124);
        assert_eq!(exit_code_for(&rejected), 77);
        assert_eq!(exit_code_for(&exited), 1);
        assert_eq!(exit_code_for(&anyhow::Error::new(CliError::NoServer)), 1);
    }

    #[test]
    fn context_does_not_hide_the_exit_code() {
        let err = anyhow::Error::new(CliError::TimedOut {
            message: "late".into(),
        })
        .context("running word-count");
        assert_eq!(exit_code_for(&err), 124);
    }
}
