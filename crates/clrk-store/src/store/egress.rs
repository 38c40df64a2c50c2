//! The egress gateway's data: configuration objects, transaction records and token counts.

use chrono::NaiveDate;
use serde_json::Value;

use super::{Store, dispatch};
use crate::{ApplyOutcome, EGRESS_RECORDS_PER_AGENT, EgressObject, EgressRecord, StoreError};

impl Store {
    /// Creates or updates an egress object: `Created`, `Configured { revision: None }`, or
    /// `Unchanged` (nothing written) when the manifest equals what is stored.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = clrk_store::Store::open(&dir.path().join("clrk.db")).unwrap();
    /// use clrk_store::ApplyOutcome;
    /// let spec = serde_json::json!({"spec": {"defaultPolicy": "deny-all"}});
    /// assert_eq!(store.apply_egress_object("default", "EgressGateway", "main", &spec).await.unwrap(),
    ///            ApplyOutcome::Created { revision: None });
    /// assert_eq!(store.apply_egress_object("default", "EgressGateway", "main", &spec).await.unwrap(),
    ///            ApplyOutcome::Unchanged);
    /// assert_eq!(store.egress_objects(None).await.unwrap().len(), 1);
    /// # }
    /// ```
    pub async fn apply_egress_object(
        &self,
        namespace: &str,
        kind: &str,
        name: &str,
        spec: &Value,
    ) -> Result<ApplyOutcome, StoreError> {
        dispatch!(self.apply_egress_object(namespace, kind, name, spec))
    }

    /// The egress objects of `namespace` (all when `None`), by namespace, kind and name.
    pub async fn egress_objects(
        &self,
        namespace: Option<&str>,
    ) -> Result<Vec<EgressObject>, StoreError> {
        dispatch!(self.egress_objects(namespace))
    }

    /// Deletes an egress object; returns whether it existed.
    pub async fn delete_egress_object(
        &self,
        namespace: &str,
        kind: &str,
        name: &str,
    ) -> Result<bool, StoreError> {
        dispatch!(self.delete_egress_object(namespace, kind, name))
    }

    /// Stores a record, keeping the agent's newest [`EGRESS_RECORDS_PER_AGENT`]; returns its id.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = clrk_store::Store::open(&dir.path().join("clrk.db")).unwrap();
    /// let record = clrk_store::EgressRecord {
    ///     namespace: "default".into(), agent: "a".into(), execution_id: Some("e1".into()),
    ///     input_tokens: Some(3), output_tokens: Some(4), ..Default::default()
    /// };
    /// store.insert_egress_record(&record).await.unwrap();
    /// assert_eq!(store.egress_records("default", "a", 10).await.unwrap()[0].agent, "a");
    /// assert_eq!(store.execution_tokens("e1").await.unwrap(), 7);
    /// # }
    /// ```
    pub async fn insert_egress_record(&self, r: &EgressRecord) -> Result<i64, StoreError> {
        self.insert_egress_record_keeping(r, EGRESS_RECORDS_PER_AGENT)
            .await
    }

    /// [`Store::insert_egress_record`], keeping the newest `keep` records of the agent.
    async fn insert_egress_record_keeping(
        &self,
        r: &EgressRecord,
        keep: usize,
    ) -> Result<i64, StoreError> {
        dispatch!(self.insert_egress_record_keeping(r, keep))
    }

    /// The latest `limit` records of an agent, newest first.
    pub async fn egress_records(
        &self,
        namespace: &str,
        agent: &str,
        limit: usize,
    ) -> Result<Vec<EgressRecord>, StoreError> {
        dispatch!(self.egress_records(namespace, agent, limit))
    }

    /// Tokens (input plus output) recorded for one execution.
    pub async fn execution_tokens(&self, execution_id: &str) -> Result<u64, StoreError> {
        dispatch!(self.execution_tokens(execution_id))
    }

    /// Adds `tokens` to an agent's count for `day` (UTC); returns the new count.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = clrk_store::Store::open(&dir.path().join("clrk.db")).unwrap();
    /// let day = chrono::NaiveDate::from_ymd_opt(2026, 12, 1).unwrap();
    /// store.add_tokens("default", "a", day, 5).await.unwrap();
    /// assert_eq!(store.add_tokens("default", "a", day, 7).await.unwrap(), 12);
    /// assert_eq!(store.tokens_on("default", "a", day).await.unwrap(), 12);
    /// # }
    /// ```
    pub async fn add_tokens(
        &self,
        namespace: &str,
        agent: &str,
        day: NaiveDate,
        tokens: u64,
    ) -> Result<u64, StoreError> {
        dispatch!(self.add_tokens(namespace, agent, day, tokens))
    }

    /// An agent's token count for `day` (UTC).
    pub async fn tokens_on(
        &self,
        namespace: &str,
        agent: &str,
        day: NaiveDate,
    ) -> Result<u64, StoreError> {
        dispatch!(self.tokens_on(namespace, agent, day))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TempPostgres;

    async fn only_the_newest_records_of_an_agent_are_kept(store: Store) {
        let record = |agent: &str, path: &str| EgressRecord {
            namespace: "default".into(),
            agent: agent.into(),
            path: Some(path.into()),
            ..EgressRecord::default()
        };
        store
            .insert_egress_record_keeping(&record("other", "/x"), 3)
            .await
            .unwrap();
        for i in 0..5 {
            store
                .insert_egress_record_keeping(&record("a", &format!("/{i}")), 3)
                .await
                .unwrap();
        }
        let kept: Vec<String> = store
            .egress_records("default", "a", 10)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.path.unwrap())
            .collect();
        assert_eq!(kept, ["/4", "/3", "/2"]);
        assert_eq!(
            store
                .egress_records("default", "other", 10)
                .await
                .unwrap()
                .len(),
            1
        );
    }

    #[tokio::test]
    async fn sqlite_keeps_only_the_newest_records_of_an_agent() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("clrk.db")).unwrap();
        only_the_newest_records_of_an_agent_are_kept(store).await;
    }

    #[tokio::test]
    async fn postgres_keeps_only_the_newest_records_of_an_agent() {
        let db = TempPostgres::database().await;
        only_the_newest_records_of_an_agent_are_kept(db.connect().await).await;
    }
}
