//! Worker pools: named runtime settings agents refer to with `spec.workerPoolRef`.

use chrono::{DateTime, Utc};
use serde_json::Value;

/// A stored worker pool. Pools are looked up by name alone.
#[derive(Debug, Clone, PartialEq)]
pub struct Pool {
    /// Name, unique across namespaces.
    pub name: String,
    /// Namespace its manifest was applied in.
    pub namespace: String,
    /// The spec last applied.
    pub spec: Value,
    /// First apply.
    pub created_at: DateTime<Utc>,
    /// Last apply that changed something.
    pub updated_at: DateTime<Utc>,
}
