//! `GET /v1/pools`: worker pools and how much of them is in use.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A worker pool; the implicit `default` pool is listed even when never applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Pool {
    pub name: String,
    /// `runsc` or `runc`.
    pub runtime: String,
    /// Executions one worker runs at once; 0 for no limit.
    #[serde(default)]
    pub max_executions_per_worker: u64,
    /// Workers in the pool.
    #[serde(default)]
    pub workers: u64,
    /// Executions the pool runs at once in all; 0 for no limit.
    #[serde(default)]
    pub capacity: u64,
    /// Executions holding a slot of `maxExecutionsPerWorker`.
    #[serde(default)]
    pub running: u64,
    /// Invocations waiting for a slot.
    #[serde(default)]
    pub queued: u64,
}
