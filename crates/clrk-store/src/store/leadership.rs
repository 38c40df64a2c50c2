//! Leader election for cluster-wide jobs, so that exactly one process does each.

use super::{Backend, Store};
use crate::{Leadership, StoreError};

impl Store {
    /// Tries to become the leader called `name`, without waiting: `Some` when this process
    /// now leads, `None` when another does. Call it again every so often to take over when
    /// the leader goes.
    ///
    /// On PostgreSQL the leadership is a session advisory lock held on a dedicated connection
    /// (not one of the pool's), released when the [`Leadership`] is dropped or when that
    /// connection dies, which [`Leadership::lost`] reports. A try while another session holds
    /// the lock asks on a pooled connection and opens none. On SQLite there is only one process
    /// (the data dir is locked), so it always leads.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = clrk_store::Store::open(&dir.path().join("clrk.db")).unwrap();
    /// let leadership = store.try_lead("clrk-sweep").await.unwrap();
    /// assert!(leadership.is_some());
    /// # }
    /// ```
    pub async fn try_lead(&self, name: &str) -> Result<Option<Leadership>, StoreError> {
        let held = match &self.backend {
            Backend::Sqlite(_) => Some(Leadership::sqlite()),
            Backend::Postgres(db) => db.try_lead(name).await?.map(Leadership::postgres),
        };
        if held.is_some() {
            tracing::debug!(leadership = name, "leading");
        }
        Ok(held)
    }
}
