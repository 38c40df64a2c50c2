//! Start-up after a crash: nothing is left running and no record claims otherwise.
//!
//! Before the server serves, the store is made consistent (executions in flight marked
//! `Failed`), every sandbox the previous run left is listed and its processes are killed.
//! Deleting the sandboxes (runtime state, networks, bundles) takes much longer and runs
//! afterwards, while the server serves: new sandboxes cannot collide with the leftovers (see
//! [`clrk_sandbox::Leftovers`]).

use clrk_sandbox::{Leftovers, Runtime};
use clrk_store::Store;

use crate::error::ServerError;

/// Reason recorded on executions that were in flight when the server died.
pub const SERVER_RESTARTED: &str = "server restarted";
/// Reason recorded on a worker's executions that were in flight when it died.
pub const WORKER_RESTARTED: &str = "worker restarted";

/// Which executions still `Running` in the store a starting host fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recovery {
    /// Every one: the store is this process's alone (`clrk dev`).
    Everything,
    /// Those of this worker (`clrk worker`): other workers' executions share the store.
    Worker(String),
}

/// The sandboxes a previous run left, killed but not yet deleted.
#[must_use = "the leftovers are only deleted by `Cleanup::run`"]
pub struct Cleanup {
    leftovers: Vec<Leftovers>,
}

/// Marks the executions in flight at the last stop `Failed`, then finds and kills every
/// sandbox left behind. Call it before any of `runtimes` starts a sandbox.
pub async fn recover(
    store: &Store,
    recovery: &Recovery,
    runtimes: &[&Runtime],
) -> Result<Cleanup, ServerError> {
    let failed = match recovery {
        Recovery::Everything => store.fail_running_executions(SERVER_RESTARTED).await?,
        Recovery::Worker(name) => store.fail_worker_executions(name, WORKER_RESTARTED).await?,
    };
    if !failed.is_empty() {
        tracing::warn!(count = failed.len(), executions = ?failed, "executions in flight at the last stop marked Failed");
    }
    let mut leftovers = Vec::with_capacity(runtimes.len());
    for runtime in runtimes {
        leftovers.push(runtime.leftovers().await?);
    }
    // Killed now, so that no agent of the previous run still works when daemons and warm
    // pools start theirs again.
    futures::future::join_all(leftovers.iter().map(Leftovers::kill)).await;
    Ok(Cleanup { leftovers })
}

impl Cleanup {
    /// Deletes every leftover, the runtimes' at the same time. What cannot be deleted is
    /// logged; the next start finds it again.
    pub async fn run(self) {
        let started = std::time::Instant::now();
        let removals = self.leftovers.into_iter().map(|leftovers| async move {
            if leftovers.is_empty() {
                return;
            }
            match leftovers.remove().await {
                Ok(removed) => {
                    tracing::warn!(count = removed.len(), sandboxes = ?removed, elapsed_ms = started.elapsed().as_millis() as u64, "deleted sandboxes left by a previous run");
                }
                Err(error) => {
                    tracing::error!(%error, "could not delete every sandbox left by a previous run; the next start tries again");
                }
            }
        });
        futures::future::join_all(removals).await;
    }
}
