//! The control API's JSON shapes, as far as the CLI reads them.
//!
//! Fields the CLI does not show are left out; `-o json|yaml` prints the server's raw answer.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One manifest document sent to `POST /v1/apply`.
#[derive(Debug, Clone, Serialize)]
pub struct ApplyDocument {
    /// File the document came from, for the server's messages.
    pub source: String,
    /// 1-based position of the document in its file.
    pub index: usize,
    /// The resource as `clrk_api::Resource::to_stored` renders it.
    pub manifest: Value,
}

/// Body of `POST /v1/apply`.
#[derive(Debug, Clone, Serialize)]
pub struct ApplyRequest {
    /// Documents, applied in order.
    pub documents: Vec<ApplyDocument>,
}

/// What applying one document did.
#[derive(Debug, Clone, Deserialize)]
pub struct ApplyResult {
    /// `TaskAgent`, `DaemonAgent`, ...
    pub kind: String,
    /// `metadata.name`.
    pub name: String,
    /// `created`, `configured` or `unchanged`.
    pub outcome: String,
    /// The revision the apply made, if it made one.
    pub revision: Option<String>,
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// One line of a streamed apply (`Accept: application/x-ndjson`): a pull's progress, the
/// results, or the error that stopped it.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ApplyEvent {
    Progress { progress: PullProgress },
    Done { results: Vec<ApplyResult> },
    Failed { error: String, status: u16 },
}

/// How far one layer of an image being pulled has come.
#[derive(Debug, Clone, Deserialize)]
pub struct PullProgress {
    /// The image as the manifest names it.
    pub image: String,
    /// The layer's digest.
    pub layer: String,
    pub done: u64,
    pub total: u64,
    /// Already in the server's cache.
    pub cached: bool,
}

/// Answer of the delete endpoints.
#[derive(Debug, Clone, Deserialize)]
pub struct DeleteResponse {
    pub deleted: ObjectRef,
}

/// Kind, namespace and name of a stored object.
#[derive(Debug, Clone, Deserialize)]
pub struct ObjectRef {
    /// `TaskAgent`, `DaemonAgent`, `WorkerPool`, ...
    pub kind: String,
    /// `metadata.name`.
    pub name: String,
}

/// A list answer: `{"items": [...]}`.
#[derive(Debug, Clone, Deserialize)]
pub struct List<T> {
    pub items: Vec<T>,
}

/// An agent with its status and revisions.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Agent {
    pub kind: String,
    pub namespace: String,
    pub name: String,
    #[serde(default)]
    pub spec: Value,
    pub created_at: Option<String>,
    #[serde(default)]
    pub status: AgentStatus,
    #[serde(default)]
    pub revisions: Vec<Revision>,
    /// Tokens spent through the egress gateway today; absent from older servers.
    pub token_usage: Option<TokenUsage>,
}

/// An agent's LLM tokens (input plus output) on one UTC day.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenUsage {
    pub today: u64,
    /// `YYYY-MM-DD`, UTC.
    pub day: String,
}

/// Live state of an agent.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentStatus {
    pub latest_revision: Option<String>,
    pub ready_revision: Option<String>,
    #[serde(default)]
    pub warm: u64,
    #[serde(default)]
    pub active: u64,
    pub last_run: Option<Execution>,
    /// DaemonAgent phase, when the server reports one.
    pub phase: Option<String>,
    pub restart_count: Option<u64>,
    /// When the daemon's current process started.
    pub up_since: Option<String>,
    /// Why the daemon is stopped or backing off.
    pub reason: Option<String>,
    /// The back-off before the daemon's pending restart.
    pub restart_delay_seconds: Option<f64>,
    pub last_schedule_time: Option<String>,
    pub next_schedule_time: Option<String>,
}

/// One immutable revision of an agent.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Revision {
    pub name: String,
    pub image_digest: Option<String>,
    pub state: Option<String>,
    pub reason: Option<String>,
    pub created_at: Option<String>,
}

/// One execution of an agent.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Execution {
    pub id: String,
    pub trigger: Option<String>,
    pub status: String,
    pub exit_code: Option<i64>,
    pub started_at: Option<String>,
    pub ended_at: Option<String>,
    pub duration_ms: Option<u64>,
    /// `cold` or `warm`.
    pub start: Option<String>,
}

/// One line of `GET .../logs`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogLine {
    pub execution_id: Option<String>,
    pub stream: Option<String>,
    pub line: String,
}

/// A worker pool.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pool {
    pub name: String,
    pub runtime: String,
    pub max_executions_per_worker: Option<u64>,
    /// A count, or the list of workers; the CLI shows how many.
    #[serde(default)]
    pub workers: Value,
    /// Executions holding a slot of `maxExecutionsPerWorker`.
    #[serde(default)]
    pub running: u64,
    /// Invocations waiting for a slot.
    #[serde(default)]
    pub queued: u64,
}

impl Pool {
    /// How many workers the pool has.
    pub fn worker_count(&self) -> u64 {
        match &self.workers {
            Value::Number(n) => n.as_u64().unwrap_or(0),
            Value::Array(items) => items.len() as u64,
            _ => 0,
        }
    }
}

/// An image the server holds.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LocalImage {
    pub reference: String,
    pub digest: String,
    pub size: u64,
    pub imported: bool,
    #[serde(default)]
    pub used_by: Vec<String>,
}

/// An egress gateway, route or policy, its manifest with secrets redacted.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EgressObject {
    /// `EgressGateway`, `EgressL4Route`, `CredentialInjectionPolicy` or `AIProviderRoute`.
    pub kind: String,
    pub namespace: String,
    pub name: String,
    /// The manifest as applied, defaults filled in.
    pub manifest: Value,
    pub created_at: Option<String>,
}

/// One transaction through an agent's egress gateway.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EgressRecord {
    pub execution_id: Option<String>,
    pub started_at: Option<String>,
    /// `http`, `https`, `tls`, `tcp` or `dns`.
    pub protocol: String,
    /// The name the agent asked for (Host, SNI or DNS question).
    pub destination_name: Option<String>,
    /// `address:port`.
    pub destination_addr: String,
    pub method: Option<String>,
    pub path: Option<String>,
    pub status: Option<u16>,
    #[serde(default)]
    pub request_bytes: u64,
    #[serde(default)]
    pub response_bytes: u64,
    pub allowed: bool,
    /// Which rule allowed it, or why it was refused.
    #[serde(default)]
    pub reason: String,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
}
