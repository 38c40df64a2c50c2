use std::path::PathBuf;

/// Why the server could not start or an operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}; pick another address with --listen/--api")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("data dir {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "another clrk server is already using data dir {0}: stop it first or pass another --data-dir"
    )]
    DataDirBusy(PathBuf),
    #[error("writing {path}: {source}")]
    Endpoints {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] clrk_store::StoreError),
    #[error(transparent)]
    Image(#[from] clrk_image::ImageError),
    #[error(transparent)]
    Sandbox(#[from] clrk_sandbox::SandboxError),
    #[error("{0}")]
    Apply(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Internal(String),
}
