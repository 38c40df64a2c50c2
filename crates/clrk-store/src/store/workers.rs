//! The registry of workers: registration, heartbeats, drain, removal, and marking workers
//! that stopped heartbeating as lost.

use chrono::{DateTime, Utc};

use super::{Store, dispatch};
use crate::StoreError;
use crate::worker::{Heartbeat, WarmCount, WorkerRecord, WorkerRegistration};

/// The reason executions of a lost worker end with.
pub const WORKER_LOST: &str = "worker lost";

impl Store {
    /// Registers a worker, or registers it again: its row is created or replaced, `Ready`,
    /// with the registration's incarnation, started and heartbeating at `now`, and no warm
    /// sandboxes.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = clrk_store::Store::open(&dir.path().join("clrk.db")).unwrap();
    /// use clrk_store::{WorkerRegistration, WorkerState};
    /// let worker = WorkerRegistration {
    ///     name: "node-1".into(), pool: "default".into(), address: "10.0.0.5:7000".into(),
    ///     capacity: 8, incarnation: "a1".into(),
    /// };
    /// store.register_worker(&worker, chrono::Utc::now()).await.unwrap();
    /// let listed = store.list_workers().await.unwrap();
    /// assert_eq!((listed[0].name.as_str(), listed[0].state), ("node-1", WorkerState::Ready));
    /// # }
    /// ```
    pub async fn register_worker(
        &self,
        worker: &WorkerRegistration,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        dispatch!(self.register_worker(worker, now))?;
        tracing::info!(worker = %worker.name, pool = %worker.pool, address = %worker.address, capacity = worker.capacity, incarnation = %worker.incarnation, "worker registered");
        Ok(())
    }

    /// Records a heartbeat of the worker's `incarnation` with the warm sandboxes it holds (they
    /// replace the last heartbeat's, in the same transaction) and says what it should do.
    /// [`Heartbeat::Replaced`], when the row is gone, lost or another incarnation's, changes
    /// nothing: the worker must clean up and register again.
    pub async fn heartbeat_worker(
        &self,
        name: &str,
        incarnation: &str,
        warm: &[WarmCount],
        now: DateTime<Utc>,
    ) -> Result<Heartbeat, StoreError> {
        dispatch!(self.heartbeat_worker(name, incarnation, warm, now))
    }

    /// Every registered worker with what runs on it, by pool then name.
    pub async fn list_workers(&self) -> Result<Vec<WorkerRecord>, StoreError> {
        dispatch!(self.list_workers())
    }

    /// Marks the worker `Draining` (a lost one stays `Lost`); `false` when no worker has that
    /// name.
    pub async fn drain_worker(&self, name: &str) -> Result<bool, StoreError> {
        let known = dispatch!(self.drain_worker(name))?;
        if known {
            tracing::info!(worker = name, "worker draining");
        }
        Ok(known)
    }

    /// Deletes the worker's row when it is still `incarnation`'s (a clean exit); `false` when
    /// another start of the worker has registered since, or the row is gone.
    pub async fn remove_worker(&self, name: &str, incarnation: &str) -> Result<bool, StoreError> {
        let removed = dispatch!(self.remove_worker(name, incarnation))?;
        if removed {
            tracing::info!(worker = name, incarnation, "worker removed");
        }
        Ok(removed)
    }

    /// Marks `Lost` every `Ready` or `Draining` worker whose last heartbeat is older than
    /// `heartbeat_before`, and in the same transaction fails every execution `Running` on
    /// them with reason [`WORKER_LOST`] and forgets their warm sandboxes. Returns their names.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = clrk_store::Store::open(&dir.path().join("clrk.db")).unwrap();
    /// use clrk_store::WorkerRegistration;
    /// let worker = WorkerRegistration {
    ///     name: "node-1".into(), pool: "default".into(), address: "10.0.0.5:7000".into(),
    ///     capacity: 8, incarnation: "a1".into(),
    /// };
    /// let then = chrono::Utc::now() - chrono::Duration::seconds(60);
    /// store.register_worker(&worker, then).await.unwrap();
    /// let lost = store.mark_lost_workers(chrono::Utc::now()).await.unwrap();
    /// assert_eq!(lost, ["node-1"]);
    /// # }
    /// ```
    pub async fn mark_lost_workers(
        &self,
        heartbeat_before: DateTime<Utc>,
    ) -> Result<Vec<String>, StoreError> {
        dispatch!(self.mark_lost_workers(heartbeat_before, WORKER_LOST))
    }

    /// Every worker's warm sandboxes as it last reported them: (worker, agent, revision,
    /// ready). Placement sends an execution where a sandbox of its revision waits.
    pub async fn warm_sandboxes(&self) -> Result<Vec<(String, WarmCount)>, StoreError> {
        dispatch!(self.warm_sandboxes())
    }

    /// Marks `Failed` with `reason` every execution still `Running` on worker `name` and
    /// returns their ids: a worker starting again runs none of what its previous start ran.
    pub async fn fail_worker_executions(
        &self,
        name: &str,
        reason: &str,
    ) -> Result<Vec<String>, StoreError> {
        let ids = dispatch!(self.fail_worker_executions(name, reason))?;
        if !ids.is_empty() {
            tracing::warn!(
                worker = name,
                count = ids.len(),
                reason,
                "executions of a worker's previous start marked failed"
            );
        }
        Ok(ids)
    }
}
