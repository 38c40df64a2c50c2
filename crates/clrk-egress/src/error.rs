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
    /// A certificate or key of the gateway's CA could not be made, read or used.
    #[error("{what}: {message}")]
    Certificate {
        /// The certificate or key at fault, e.g. "leaf certificate for api.example.test".
        what: String,
        /// What is wrong and what to do about it.
        message: String,
    },
    /// The CA's private key file can be read by users other than its owner.
    #[error(
        "{path} has mode {mode:04o}, so other users may read the gateway CA's private key; \
         run `chmod 600 {path}` if it was never exposed, otherwise delete it and ca.crt to \
         generate a new CA"
    )]
    CaKeyExposed {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The certificates the proxy trusts for upstream connections are unusable.
    #[error("upstream trust bundle: {message}")]
    TrustBundle {
        /// What is wrong and what to do about it.
        message: String,
    },
    /// A DNS packet was not a usable query (or, from the resolver, not a usable answer).
    #[error("DNS packet rejected: {reason}")]
    DnsPacket {
        /// What is wrong with it.
        reason: String,
    },
    /// The host's resolver could not be reached or sent something unusable.
    #[error(
        "DNS resolver {upstream}: {source}; check the worker's resolver configuration \
         (/etc/resolv.conf) and that the resolver is running"
    )]
    DnsUpstream {
        /// The resolver's address.
        upstream: std::net::SocketAddr,
        /// What the OS said, or what was wrong with the answer.
        source: std::io::Error,
    },
    /// The host's resolver did not answer in time.
    #[error(
        "DNS resolver {upstream} did not answer within {timeout:?}; check that it is up and \
         reachable from the worker"
    )]
    DnsTimeout {
        /// The resolver's address.
        upstream: std::net::SocketAddr,
        /// How long it was given.
        timeout: std::time::Duration,
    },
    /// The OTLP endpoint spans are exported to is not a usable URL.
    #[error(
        "OTLP endpoint {endpoint:?}: {reason}; give the collector's base URL, such as \
         http://127.0.0.1:4318"
    )]
    OtlpEndpoint {
        /// The endpoint as configured.
        endpoint: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A header configured for OTLP export is not a valid HTTP header.
    #[error("OTLP export header {name:?} {reason}; fix or remove it in the telemetry settings")]
    OtlpHeader {
        /// The header's name as configured.
        name: String,
        /// What is wrong with it (never the value, which is usually a credential).
        reason: String,
    },
    /// The OTLP span exporter could not start.
    #[error("cannot start the OTLP span exporter: {reason}")]
    OtlpExporter {
        /// Why.
        reason: String,
    },
    /// The store could not be read or written.
    #[error("the egress gateway could not use the store: {0}")]
    Store(String),
}
