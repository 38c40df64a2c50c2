//! What can go wrong on a link, worded for the operator who has to fix it.

use std::net::SocketAddr;
use std::path::PathBuf;

/// An error of the link.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("cannot read the cluster secret file {path}: {source}")]
    ReadSecret {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot create the cluster secret file {path}: {source}")]
    CreateSecret {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the cluster secret file {path} does not exist: copy the file every server and worker \
         of this cluster uses (a server creates it with `--cluster-secret-file` on first start)"
    )]
    MissingSecret { path: PathBuf },
    #[error(
        "the cluster secret file {path} is readable by group or others (mode {mode:o}): \
         run `chmod 600 {path}`"
    )]
    SecretPermissions { path: PathBuf, mode: u32 },
    #[error(
        "the cluster secret in {path} is {len} bytes long; it must hold at least {min} bytes \
         (a server writes 64 hex characters when it creates one)"
    )]
    SecretTooShort {
        path: PathBuf,
        len: usize,
        min: usize,
    },
    #[error("cannot make the link's TLS configuration: {0}")]
    Tls(String),
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("TLS handshake with {addr} failed: {source}")]
    Handshake {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("TLS handshake with {addr} did not finish within {seconds} s")]
    HandshakeTimeout { addr: SocketAddr, seconds: u64 },
    #[error("HTTP/2 with {addr} failed: {source}")]
    Http {
        addr: SocketAddr,
        source: hyper::Error,
    },
    #[error(
        "{addr} answered without proving it holds the cluster secret: it is not a worker of \
         this cluster, or its cluster secret file differs from this server's"
    )]
    PeerNotAuthenticated { addr: SocketAddr },
    #[error(
        "{addr} refused this server's proof (401): its cluster secret file differs from this \
         server's"
    )]
    Refused { addr: SocketAddr },
}
