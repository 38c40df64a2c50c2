//! Agents as callers see them: what an apply stores, what it did, and what is stored.

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::Revision;

/// What `apply_agent` is asked to store.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentApply {
    /// Namespace (`default` when the manifest has none).
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
    /// `TaskAgent` or `DaemonAgent`.
    pub kind: String,
    /// The whole validated spec, as shown back to users.
    pub spec: Value,
    /// The part of the spec that shapes the sandbox; a change makes a new revision.
    pub shape: Value,
    /// Image reference as written.
    pub image_ref: String,
    /// Digest it resolved to; a change makes a new revision.
    pub image_digest: String,
}

/// What an apply did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// It did not exist. Agents get their first revision (`Some`); pools have none.
    Created {
        /// Name of the revision made.
        revision: Option<String>,
    },
    /// It existed and something changed.
    Configured {
        /// `Some` when a new revision was made; `None` when only non-shaping fields changed.
        revision: Option<String>,
    },
    /// Identical to what was stored; nothing was written.
    Unchanged,
}

/// A stored agent.
#[derive(Debug, Clone, PartialEq)]
pub struct Agent {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// `TaskAgent` or `DaemonAgent`.
    pub kind: String,
    /// The spec last applied.
    pub spec: Value,
    /// First apply.
    pub created_at: DateTime<Utc>,
    /// Last apply that changed something.
    pub updated_at: DateTime<Utc>,
    /// Made at create, never reused: tells this agent's executions from those of a deleted
    /// agent that had the same name.
    pub uid: String,
    /// Highest-numbered revision, whatever its state.
    pub latest_revision: Option<Revision>,
}

/// A fresh agent uid.
pub(crate) fn new_uid() -> String {
    uuid::Uuid::new_v4().to_string()
}
