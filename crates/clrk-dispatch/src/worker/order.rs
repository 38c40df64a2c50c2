//! What placement asks of a worker — run this execution — and what comes back: stdout as it
//! is written, the answer of a Metadata-mode agent, and how it ended. The same types travel
//! in-process (`clrk dev`) and, encoded, over the cluster link.

use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use clrk_api::RuntimeName;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::logs::LogLimit;
use crate::revision::RevisionShape;
use crate::trace::ExecutionTrace;
use crate::worker::metadata::AgentResponse;

/// One execution for a worker to run: everything it needs, so it reads no agent from the
/// store.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionOrder {
    pub execution_id: String,
    pub namespace: String,
    pub agent: String,
    pub revision: String,
    /// Recorded as the execution's trigger (`http`, `cron`, a caller's `X-Clrk-Trigger`).
    pub trigger: String,
    pub started_at: DateTime<Utc>,
    pub shape: RevisionShape,
    /// The agent's worker pool's runtime, `pidsLimit` and runtime flags (`runtimeOptions`).
    pub runtime: RuntimeName,
    pub pids_limit: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runtime_flags: Vec<String>,
    /// The agent's `maxConcurrent` (0: none), held again by the store when the execution is
    /// recorded, so it holds across servers.
    pub max_concurrent: u32,
    #[serde(with = "millis")]
    pub timeout: Duration,
    pub log_limit: LogLimit,
    /// The CloudEvents envelope (SPECIFICATION §4).
    pub envelope: serde_json::Value,
    /// The execution's trace as placement started it; a worker given none starts one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<ExecutionTrace>,
}

/// What happens during an execution, in order: stdout chunks, then one `Finished`.
#[derive(Debug)]
pub enum ExecEvent {
    Stdout(Bytes),
    /// Metadata mode: what the agent posted to `/v1/response`.
    Response(AgentResponse),
    Finished(Outcome),
}

/// How an execution ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Outcome {
    Exited(i32),
    /// Stopped at its timeout; the duration is the timeout that applied.
    TimedOut(#[serde(with = "millis")] Duration),
    /// It never ran or was stopped by clrk (sandbox failure, shutdown, lost worker).
    Failed(String),
    /// It never ran because the worker cannot get its image now (the registry is out of
    /// reach): recorded as failed, and its caller gets a 503 to retry.
    Unavailable(String),
    /// Metadata mode: it exited 0 without posting a response.
    NoResponse,
    /// Killed from outside its program, not by clrk: `code` is the exit status the runtime
    /// reported and `reason` says what killed it (`killed: memory limit 128Mi exceeded`).
    Killed {
        code: i32,
        reason: String,
    },
}

/// An execution that has been accepted; its events arrive on `events`.
pub struct Started {
    pub execution_id: String,
    pub revision: String,
    pub source: String,
    pub events: mpsc::Receiver<ExecEvent>,
}

/// Durations as whole milliseconds.
mod millis {
    use std::time::Duration;

    use serde::{Deserialize as _, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}
