//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong in the egress gateway.
#[derive(Debug, thiserror::Error)]
pub enum EgressError {
    /// A file of the gateway's state could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
}
