//! The spans of executions' traces.

use super::{Store, dispatch};
use crate::{SPANS_PER_EXECUTION, SpanRecord, StoreError};

impl Store {
    /// Stores spans of execution `execution_id` in one transaction, each held to its caps,
    /// until the execution has [`SPANS_PER_EXECUTION`]; the rest are dropped. Spans of an
    /// execution that is not recorded are dropped too.
    /// Returns how many were stored.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = clrk_store::Store::open(&dir.path().join("clrk.db")).unwrap();
    /// let span = clrk_store::SpanRecord { name: "run".into(), ..Default::default() };
    /// // No execution `ev-1` is recorded.
    /// assert_eq!(store.insert_spans("ev-1", &[span]).await.unwrap(), 0);
    /// assert!(store.execution_spans("ev-1").await.unwrap().is_empty());
    /// # }
    /// ```
    pub async fn insert_spans(
        &self,
        execution_id: &str,
        spans: &[SpanRecord],
    ) -> Result<usize, StoreError> {
        if spans.is_empty() {
            return Ok(0);
        }
        let spans: Vec<SpanRecord> = spans.iter().cloned().map(SpanRecord::capped).collect();
        dispatch!(self.insert_spans(execution_id, &spans, SPANS_PER_EXECUTION))
    }

    /// The stored spans of an execution, by start time.
    pub async fn execution_spans(&self, execution_id: &str) -> Result<Vec<SpanRecord>, StoreError> {
        dispatch!(self.execution_spans(execution_id))
    }
}
