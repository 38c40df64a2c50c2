//! `GET /v1/workers` and `POST /v1/workers/{name}/drain`: the registered workers, their load,
//! and draining one.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A registered worker as `GET /v1/workers` lists it.
///
/// ```
/// let w: clrk_wire::WorkerView = serde_json::from_str(
///     r#"{"name": "node-1", "pool": "*", "address": "in-process", "capacity": 8,
///         "state": "Ready", "startedAt": "2026-01-01T12:00:00+00:00",
///         "heartbeatAt": "2026-01-01T12:00:02+00:00", "running": 1, "warm": 2}"#,
/// ).unwrap();
/// assert_eq!((w.state.as_str(), w.running, w.warm), ("Ready", 1, 2));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkerView {
    /// Unique in the cluster; by default the worker's host name.
    pub name: String,
    /// The worker pool it serves; `*` serves every pool (`clrk dev`'s embedded worker).
    pub pool: String,
    /// Where servers reach it, or `in-process`.
    pub address: String,
    /// Executions it runs at once.
    #[serde(default)]
    pub capacity: u32,
    /// `Ready`, `Draining` (takes nothing new) or `Lost` (stopped heartbeating).
    pub state: String,
    /// When this start of the worker registered (RFC 3339).
    #[serde(default)]
    pub started_at: String,
    /// Its last heartbeat (RFC 3339).
    #[serde(default)]
    pub heartbeat_at: String,
    /// Executions running on it.
    #[serde(default)]
    pub running: u32,
    /// Warm sandboxes it holds ready, all revisions together.
    #[serde(default)]
    pub warm: u32,
}

/// Answer of `POST /v1/workers/{name}/drain`.
///
/// ```
/// let answer = clrk_wire::DrainAnswer { worker: "node-1".into(), state: "Draining".into() };
/// assert_eq!(
///     serde_json::to_string(&answer).unwrap(),
///     r#"{"worker":"node-1","state":"Draining"}"#
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DrainAnswer {
    /// The worker's name.
    pub worker: String,
    /// Its state now: `Draining`, or `Lost` when it had already stopped heartbeating.
    pub state: String,
}
