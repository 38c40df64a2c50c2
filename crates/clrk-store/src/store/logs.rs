//! Log lines of executions: append, read in pages or from a tail, and expiry under caps.

use super::{Store, dispatch};
use crate::{LogLine, LogPage, LogQuery, NewLogLine, StoreError};

impl Store {
    /// Appends lines in one transaction; all are stored or none. Each line's agent must have
    /// been applied; lines of a deleted agent's runs still being stopped are kept.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = clrk_store::Store::open(&dir.path().join("clrk.db")).unwrap();
    /// store.append_logs(&[]).await.unwrap();
    /// # }
    /// ```
    pub async fn append_logs(&self, lines: &[NewLogLine]) -> Result<(), StoreError> {
        if lines.is_empty() {
            return Ok(());
        }
        dispatch!(self.append_logs(lines))?;
        tracing::trace!(lines = lines.len(), "log lines appended");
        Ok(())
    }

    /// Appends one line and returns its `seq`.
    pub async fn append_log(&self, line: &NewLogLine) -> Result<i64, StoreError> {
        dispatch!(self.append_log(line))
    }

    /// The agent's log lines in ascending `seq`, filtered by `q`. Loads them all: readers of
    /// logs an agent wrote use [`Store::log_page`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = clrk_store::Store::open(&dir.path().join("clrk.db")).unwrap();
    /// let q = clrk_store::LogQuery { tail: Some(10), after_seq: None };
    /// assert!(store.logs("default", "missing", &q).await.is_err());
    /// # }
    /// ```
    pub async fn logs(
        &self,
        namespace: &str,
        name: &str,
        q: &LogQuery,
    ) -> Result<Vec<LogLine>, StoreError> {
        dispatch!(self.logs(namespace, name, q))
    }

    /// One page of the agent's log in ascending `seq`: at most `max_lines` lines, ending with
    /// the line that reaches `max_bytes`. An empty page means there is nothing more (now).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = clrk_store::Store::open(&dir.path().join("clrk.db")).unwrap();
    /// let page = clrk_store::LogPage { execution: None, after_seq: None, up_to_seq: None, max_lines: 1000, max_bytes: 1 << 20 };
    /// assert!(store.log_page("default", "missing", &page).await.is_err());
    /// # }
    /// ```
    pub async fn log_page(
        &self,
        namespace: &str,
        name: &str,
        page: &LogPage,
    ) -> Result<Vec<LogLine>, StoreError> {
        dispatch!(self.log_page(namespace, name, page))
    }

    /// The `after_seq` from which only the agent's last `tail` lines follow; `None` when it
    /// has no more than `tail` lines.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = clrk_store::Store::open(&dir.path().join("clrk.db")).unwrap();
    /// assert!(store.log_tail_start("default", "missing", 10, None).await.is_err());
    /// # }
    /// ```
    pub async fn log_tail_start(
        &self,
        namespace: &str,
        name: &str,
        tail: usize,
        execution: Option<&str>,
    ) -> Result<Option<i64>, StoreError> {
        dispatch!(self.log_tail_start(namespace, name, tail, execution))
    }

    /// The `seq` of the agent's newest line; `None` when it has none.
    pub async fn log_last_seq(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<i64>, StoreError> {
        self.log_tail_start(namespace, name, 0, None).await
    }

    /// Bytes of log the agent keeps over all its executions, each line costing
    /// [`log_line_cost`](crate::log_line_cost).
    pub async fn log_bytes(&self, namespace: &str, name: &str) -> Result<u64, StoreError> {
        dispatch!(self.log_bytes(namespace, name))
    }

    /// Deletes the lines of the oldest executions of the name (of deleted agents of it too),
    /// whole executions at a time, until it keeps at most `max_bytes` of log (as [`log_line_cost`](crate::log_line_cost)
    /// counts); its newest execution is always kept. Returns the bytes deleted. Reads one row
    /// per execution, never the lines themselves.
    pub async fn expire_logs(
        &self,
        namespace: &str,
        name: &str,
        max_bytes: u64,
    ) -> Result<u64, StoreError> {
        let deleted = dispatch!(self.expire_logs(namespace, name, max_bytes))?;
        if deleted > 0 {
            tracing::debug!(
                namespace,
                agent = name,
                bytes = deleted,
                "oldest log lines expired"
            );
        }
        Ok(deleted)
    }

    /// Deletes the oldest lines of one execution until the others than `keep` (a line that
    /// must stay, like a marker) cost at most `max_bytes` as
    /// [`log_line_cost`](crate::log_line_cost) counts; for a run that keeps its newest lines.
    /// Returns the bytes deleted. Reads the execution's lines once and deletes with one
    /// statement, so callers trim every so many bytes, not per line.
    pub async fn trim_execution_logs(
        &self,
        namespace: &str,
        name: &str,
        execution_id: &str,
        max_bytes: u64,
        keep: Option<i64>,
    ) -> Result<u64, StoreError> {
        let deleted =
            dispatch!(self.trim_execution_logs(namespace, name, execution_id, max_bytes, keep))?;
        tracing::trace!(
            namespace,
            agent = name,
            execution = execution_id,
            bytes = deleted,
            "oldest lines of a run expired"
        );
        Ok(deleted)
    }
}
