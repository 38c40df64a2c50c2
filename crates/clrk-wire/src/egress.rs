//! `GET /v1/egress...` and `GET /v1/agents/{namespace}/{name}/egress`: egress objects and the
//! transactions recorded through an agent's gateway.

use clrk_api::ObjectKey;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// An egress gateway, route or policy, its manifest with secrets redacted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EgressObject {
    /// `EgressGateway`, `EgressL4Route`, `CredentialInjectionPolicy` or `AIProviderRoute`.
    pub kind: String,
    #[serde(flatten)]
    pub key: ObjectKey,
    /// The manifest as applied, defaults filled in; `spec.otlp.headers` values redacted.
    pub manifest: Value,
    #[serde(default)]
    pub created_at: String,
    #[serde(default)]
    pub updated_at: String,
    /// What keeps a route or policy from working now (a parent gateway that does not exist),
    /// as for agents; empty when nothing does.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<crate::Condition>,
}

/// One transaction through an agent's egress gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EgressRecord {
    #[serde(default)]
    pub namespace: String,
    #[serde(default)]
    pub agent: String,
    #[serde(default)]
    pub revision: String,
    /// The execution (TaskAgent) or run (DaemonAgent) it belongs to.
    pub execution_id: Option<String>,
    #[serde(default)]
    pub started_at: String,
    #[serde(default)]
    pub duration_ms: u64,
    /// `http`, `https`, `tls`, `tcp` or `dns`.
    pub protocol: String,
    /// The name the agent asked for (Host, SNI or DNS question), when known.
    pub destination_name: Option<String>,
    /// `address:port`.
    pub destination_addr: String,
    pub method: Option<String>,
    pub path: Option<String>,
    /// The HTTP status the agent got.
    pub status: Option<u16>,
    #[serde(default)]
    pub request_bytes: u64,
    #[serde(default)]
    pub response_bytes: u64,
    pub allowed: bool,
    /// Which rule allowed it, or why it was refused or failed.
    #[serde(default)]
    pub reason: String,
    /// The header the proxy set from a secret (never its value).
    #[serde(default)]
    pub injected_header: Option<String>,
    #[serde(default)]
    pub provider: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
}
