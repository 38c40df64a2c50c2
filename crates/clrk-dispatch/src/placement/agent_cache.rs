//! What an invocation needs of a TaskAgent (spec, ready revision, shape, worker pool), kept
//! between changes so that the request path reads no database and parses no JSON.
//!
//! The server calls [`Dispatcher::agents_changed`](crate::Dispatcher::agents_changed) after
//! every apply and delete; that clears the cache. A lookup that raced with a change does not
//! store its (possibly older) answer: entries carry the generation they were read in.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use clrk_api::{TaskAgentSpec, WorkerPoolSpec};
use clrk_store::Revision;

use crate::revision::RevisionShape;

/// One TaskAgent, ready to be invoked.
pub(crate) struct ResolvedAgent {
    pub(crate) spec: TaskAgentSpec,
    pub(crate) revision: Revision,
    pub(crate) shape: RevisionShape,
    pub(crate) pool: WorkerPoolSpec,
}

#[derive(Default)]
struct Entries {
    generation: u64,
    agents: HashMap<(String, String), Arc<ResolvedAgent>>,
}

#[derive(Default)]
pub(crate) struct AgentCache {
    entries: Mutex<Entries>,
}

impl AgentCache {
    /// The cached agent and, for a miss, the generation to store a fresh read under.
    pub(crate) fn get(&self, key: &(String, String)) -> Result<Arc<ResolvedAgent>, u64> {
        let entries = self.entries.lock().expect("agent cache");
        entries.agents.get(key).cloned().ok_or(entries.generation)
    }

    /// Stores `agent` if nothing changed since `generation` was handed out.
    pub(crate) fn put(&self, key: (String, String), generation: u64, agent: Arc<ResolvedAgent>) {
        let mut entries = self.entries.lock().expect("agent cache");
        if entries.generation == generation {
            entries.agents.insert(key, agent);
        }
    }

    /// Forgets everything: agents, revisions or pools changed.
    pub(crate) fn clear(&self) {
        let mut entries = self.entries.lock().expect("agent cache");
        entries.generation += 1;
        entries.agents.clear();
    }
}
