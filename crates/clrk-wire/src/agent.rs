//! `GET /v1/agents` and `GET /v1/agents/{namespace}/{name}`: an agent with its status and
//! revisions.
//!
//! Times are RFC 3339 text as the server writes them. Fields the server always sends but an
//! older server may not have sent default when missing, so the CLI reads both.

use clrk_api::ObjectKey;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::execution::Execution;

/// An agent with its status and revisions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Agent {
    /// `TaskAgent` or `DaemonAgent`.
    pub kind: String,
    #[serde(flatten)]
    pub key: ObjectKey,
    /// The `metadata` of the manifest last applied: name, namespace, labels, annotations.
    #[serde(default)]
    pub metadata: Value,
    /// The `spec` of the manifest last applied, defaults filled in.
    #[serde(default)]
    pub spec: Value,
    /// First apply.
    #[serde(default)]
    pub created_at: String,
    /// Last apply that changed something.
    #[serde(default)]
    pub updated_at: String,
    #[serde(default)]
    pub status: AgentStatus,
    /// Tokens spent through the egress gateway today.
    pub token_usage: Option<TokenUsage>,
    /// Every revision, oldest first.
    #[serde(default)]
    pub revisions: Vec<Revision>,
}

/// Live state of an agent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentStatus {
    /// Highest-numbered revision, whatever its state.
    pub latest_revision: Option<String>,
    /// Newest revision that can take executions.
    pub ready_revision: Option<String>,
    /// Warm sandboxes waiting for an invocation.
    #[serde(default)]
    pub warm: u32,
    /// Executions running now.
    #[serde(default)]
    pub active: u32,
    /// The latest execution.
    pub last_run: Option<Execution>,
    /// Present when the agent has a `spec.schedule`.
    #[serde(flatten)]
    pub schedule: Option<ScheduleStatus>,
    /// Present for a DaemonAgent.
    #[serde(flatten)]
    pub daemon: Option<DaemonStatus>,
    /// What in the manifest cannot work as things stand, computed when the agent is read:
    /// absent when nothing is wrong, so a condition clears by itself once, say, the missing
    /// WorkerPool is applied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// A condition in the Kubernetes style. clrk reports only those that are `"False"`:
/// `ReferencesResolved` (a WorkerPool or EgressGateway the agent names does not exist, or its
/// pool cannot run its image) and `SpecHonoured` (a field is ignored, such as `warmPoolSize`
/// on a Metadata-mode agent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Condition {
    /// `ReferencesResolved` or `SpecHonoured`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `"False"`.
    pub status: String,
    /// `Unresolved` or `FieldsIgnored`.
    pub reason: String,
    /// The warnings `clrk apply` printed that still hold, each naming its field, joined by
    /// `"; "`.
    pub message: String,
}

/// Cron times of a scheduled TaskAgent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleStatus {
    /// The tick that last started an execution.
    pub last_schedule_time: Option<String>,
    /// The tick due next.
    pub next_schedule_time: Option<String>,
}

/// A DaemonAgent's supervision: `Pending` with no restarts and no run before the supervisor
/// got to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DaemonStatus {
    /// `Pending`, `Running`, `CrashLoopBackOff`, `Failed` or `Stopped`. Always there for a
    /// DaemonAgent; not required in the schema because a TaskAgent's status has none of
    /// these fields.
    #[schema(required = false)]
    pub phase: String,
    /// Restarts since this revision started.
    #[serde(default)]
    pub restart_count: u32,
    /// Absent until the supervisor has recorded the daemon.
    #[serde(flatten)]
    pub run: Option<DaemonRun>,
}

/// What the supervisor recorded about a daemon's current or last process.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DaemonRun {
    /// When the running process started; null unless `Running`.
    pub up_since: Option<String>,
    /// Execution id of the current or last process.
    pub run_id: Option<String>,
    /// Exit code of the last process that ended.
    pub last_exit_code: Option<i32>,
    /// Why it is stopped or backing off.
    pub reason: Option<String>,
    /// The back-off before the pending restart.
    pub restart_delay_seconds: Option<f64>,
    /// When the pending restart is due.
    pub next_restart_time: Option<String>,
}

/// An agent's LLM tokens (input plus output) on one UTC day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TokenUsage {
    /// Tokens spent so far on `day`.
    pub today: u64,
    /// `YYYY-MM-DD`, UTC.
    pub day: String,
}

/// One immutable revision of an agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Revision {
    /// `<agent>-00001`.
    pub name: String,
    /// The image reference as the manifest wrote it.
    #[serde(default)]
    pub image: String,
    /// The digest the reference resolved to.
    #[serde(default)]
    pub image_digest: String,
    /// `Pending`, `Ready` or `Failed`.
    pub state: String,
    /// Why it failed.
    pub reason: Option<String>,
    #[serde(default)]
    pub created_at: String,
}
