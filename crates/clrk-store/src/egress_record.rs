//! What went through the egress gateway: one record per transaction (an HTTP request, a TLS
//! or TCP connection, a refused DNS question), and the tokens agents spent per day.

use chrono::{DateTime, Utc};

/// Transactions kept per agent: the oldest go as new ones are recorded.
pub const EGRESS_RECORDS_PER_AGENT: usize = 10_000;

/// One transaction through the egress gateway.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EgressRecord {
    pub namespace: String,
    pub agent: String,
    pub revision: String,
    /// The execution (TaskAgent) or run (DaemonAgent) it belongs to.
    pub execution_id: Option<String>,
    pub started_at: DateTime<Utc>,
    pub duration_ms: u64,
    /// `http`, `https`, `tls`, `tcp` or `dns`.
    pub protocol: String,
    /// The name the agent asked for (Host, SNI or DNS question), when known.
    pub destination_name: Option<String>,
    /// `address:port` it was going to.
    pub destination_addr: String,
    pub method: Option<String>,
    pub path: Option<String>,
    /// The HTTP status the agent got.
    pub status: Option<u16>,
    pub request_bytes: u64,
    pub response_bytes: u64,
    pub allowed: bool,
    /// Which rule allowed it, or why it was refused or failed.
    pub reason: String,
    /// The header the proxy set from a secret (never its value).
    pub injected_header: Option<String>,
    pub provider: Option<String>,
    pub model: Option<String>,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
}
