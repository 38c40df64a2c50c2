//! `GET /v1/agents/{namespace}/{name}/invocations` and `.../logs`: executions and the lines
//! they wrote.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One execution of an agent (for a DaemonAgent, one run of its process).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Execution {
    /// Unique id; the ingress answers it in `x-clrk-execution-id`.
    pub id: String,
    /// The agent's namespace.
    #[serde(default)]
    pub namespace: String,
    /// The agent's name.
    #[serde(default)]
    pub agent: String,
    /// The revision it ran.
    #[serde(default)]
    pub revision: String,
    /// What started it: `cli`, `http`, `cron`, ...
    #[serde(default)]
    pub trigger: String,
    /// `Running`, `Succeeded`, `Failed`, `TimedOut`, or `Stopped` (a daemon run clrk ended on
    /// purpose: a new revision, a delete, a stop).
    pub status: String,
    /// The process's exit code, if it exited.
    pub exit_code: Option<i32>,
    /// Why it failed.
    pub reason: Option<String>,
    #[serde(default)]
    pub started_at: String,
    /// Null while it runs.
    pub ended_at: Option<String>,
    /// Null while it runs.
    pub duration_ms: Option<i64>,
    /// `cold` or `warm`.
    #[serde(default)]
    pub start: String,
    /// The uid of the agent that ran it: agents deleted and created again under one name
    /// have different uids.
    #[serde(default)]
    pub agent_uid: String,
    /// The agent that ran it is deleted: the execution is kept history of the name.
    #[serde(default)]
    pub agent_deleted: bool,
}

/// One line of `GET .../logs` (newline-delimited JSON, one of these per line).
///
/// ```
/// let line: clrk_wire::LogLine = serde_json::from_str(
///     r#"{"seq": 7, "time": "2026-01-01T12:00:00+00:00", "executionId": "e1", "stream": "stderr", "line": "hi"}"#,
/// ).unwrap();
/// assert_eq!((line.seq, line.line.as_str()), (7, "hi"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LogLine {
    /// Increases with every line stored.
    #[serde(default)]
    pub seq: i64,
    /// When it was read.
    #[serde(default)]
    pub time: String,
    /// The execution that wrote it.
    #[serde(default)]
    pub execution_id: String,
    /// `stdout` or `stderr`.
    #[serde(default)]
    pub stream: String,
    /// The text, without its newline.
    pub line: String,
}
