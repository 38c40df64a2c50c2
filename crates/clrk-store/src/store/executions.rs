//! Executions: start, finish, read, and failing those left running by a restart.

use chrono::{DateTime, Utc};

use super::{Store, dispatch};
use crate::{Execution, ExecutionEnd, NewExecution, StoreError};

impl Store {
    /// Removes the finished executions of the name past its newest `keep` (its deleted agents'
    /// included), with their log lines and spans; returns how many went. One start in
    /// about 64 does this with [`EXECUTIONS_PER_NAME`](crate::EXECUTIONS_PER_NAME).
    pub async fn prune_executions(
        &self,
        namespace: &str,
        name: &str,
        keep: usize,
    ) -> Result<usize, StoreError> {
        dispatch!(self.prune_executions(namespace, name, keep))
    }

    /// Records an execution as `Running`. Its agent and revision must exist; a reused id is
    /// `StoreError::DuplicateExecution`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = clrk_store::Store::open(&dir.path().join("clrk.db")).unwrap();
    /// let e = clrk_store::NewExecution {
    ///     id: "ev-1".into(), namespace: "default".into(), agent: "echo".into(),
    ///     revision: "echo-00001".into(), trigger: "http".into(), started_at: chrono::Utc::now(),
    ///     start: clrk_store::Start::Cold, worker: None,
    /// };
    /// // No agent `echo` has been applied yet.
    /// assert!(store.start_execution(&e).await.is_err());
    /// # }
    /// ```
    pub async fn start_execution(&self, e: &NewExecution) -> Result<(), StoreError> {
        dispatch!(self.start_execution(e))?;
        tracing::debug!(execution = %e.id, namespace = %e.namespace, agent = %e.agent, revision = %e.revision, "execution started");
        Ok(())
    }

    /// Records an execution as `Running` unless its agent already runs `max_concurrent`
    /// (0: no limit), which is [`StoreError::TooManyExecutions`]. The count and the insert are
    /// one transaction holding the agent's row (on PostgreSQL `SELECT … FOR UPDATE`), so the
    /// limit holds across every process sharing the database. Otherwise as
    /// [`Store::start_execution`].
    pub async fn start_execution_within(
        &self,
        e: &NewExecution,
        max_concurrent: u32,
    ) -> Result<(), StoreError> {
        dispatch!(self.start_execution_within(e, max_concurrent))?;
        tracing::debug!(execution = %e.id, namespace = %e.namespace, agent = %e.agent, revision = %e.revision, max_concurrent, "execution started");
        Ok(())
    }

    /// Finishes the execution `Failed` with `reason`, ended at `now`, only if it is still
    /// `Running`; returns whether it was. For a server that lost its link to the worker
    /// running it: if the worker recorded the end first, that end stands.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = clrk_store::Store::open(&dir.path().join("clrk.db")).unwrap();
    /// let now = chrono::Utc::now();
    /// assert!(!store.fail_execution_if_running("ev-1", "worker unreachable", now).await.unwrap());
    /// # }
    /// ```
    pub async fn fail_execution_if_running(
        &self,
        id: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let failed = dispatch!(self.fail_execution_if_running(id, reason, now))?;
        if failed {
            tracing::warn!(execution = id, reason, "running execution marked failed");
        }
        Ok(failed)
    }

    /// Records how an execution ended, also after its agent was deleted. Unknown ids are
    /// `StoreError::ExecutionNotFound`.
    pub async fn finish_execution(&self, id: &str, end: &ExecutionEnd) -> Result<(), StoreError> {
        if !dispatch!(self.finish_execution(id, end))? {
            return Err(StoreError::ExecutionNotFound(id.to_owned()));
        }
        tracing::debug!(execution = id, status = %end.status, exit_code = end.exit_code, "execution finished");
        Ok(())
    }

    /// One execution by id, or `None`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = clrk_store::Store::open(&dir.path().join("clrk.db")).unwrap();
    /// assert_eq!(store.get_execution("ev-1").await.unwrap(), None);
    /// # }
    /// ```
    pub async fn get_execution(&self, id: &str) -> Result<Option<Execution>, StoreError> {
        dispatch!(self.get_execution(id))
    }

    /// The latest `limit` executions of every agent that had the name, deleted ones marked,
    /// newest first; `AgentNotFound` when no agent of the name ever ran.
    pub async fn executions(
        &self,
        namespace: &str,
        name: &str,
        limit: usize,
    ) -> Result<Vec<Execution>, StoreError> {
        dispatch!(self.executions(namespace, name, limit))
    }

    /// Marks every `Running` execution `Failed` with `reason`, ended now, and returns their
    /// ids. Called at server start: nothing can still be running after a restart of the only
    /// server. (With several workers sharing a PostgreSQL database this would fail the other
    /// workers' executions too; the cluster must scope it to one worker's executions.)
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = clrk_store::Store::open(&dir.path().join("clrk.db")).unwrap();
    /// assert!(store.fail_running_executions("server restarted").await.unwrap().is_empty());
    /// # }
    /// ```
    pub async fn fail_running_executions(&self, reason: &str) -> Result<Vec<String>, StoreError> {
        let ids = dispatch!(self.fail_running_executions(reason))?;
        if !ids.is_empty() {
            tracing::warn!(
                count = ids.len(),
                reason,
                "executions left running were marked failed"
            );
        }
        Ok(ids)
    }
}
