//! Worker pools: apply, read, delete.

use serde_json::Value;

use super::{Store, dispatch};
use crate::{ApplyOutcome, Pool, StoreError};

impl Store {
    /// Creates or updates a pool: `Created`, `Configured { revision: None }`, or `Unchanged`
    /// (nothing written) when namespace and spec equal what is stored.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = clrk_store::Store::open(&dir.path().join("clrk.db")).unwrap();
    /// use clrk_store::ApplyOutcome;
    /// let spec = serde_json::json!({"runtime": "runsc"});
    /// assert_eq!(store.apply_pool("default", "default", &spec).await.unwrap(),
    ///            ApplyOutcome::Created { revision: None });
    /// assert_eq!(store.apply_pool("default", "default", &spec).await.unwrap(), ApplyOutcome::Unchanged);
    /// # }
    /// ```
    pub async fn apply_pool(
        &self,
        namespace: &str,
        name: &str,
        spec: &Value,
    ) -> Result<ApplyOutcome, StoreError> {
        let outcome = dispatch!(self.apply_pool(namespace, name, spec))?;
        tracing::info!(namespace, pool = name, outcome = ?outcome, "pool applied");
        Ok(outcome)
    }

    /// The pool called `name`, or `None`.
    pub async fn get_pool(&self, name: &str) -> Result<Option<Pool>, StoreError> {
        dispatch!(self.get_pool(name))
    }

    /// All pools, ordered by name.
    pub async fn list_pools(&self) -> Result<Vec<Pool>, StoreError> {
        dispatch!(self.list_pools())
    }

    /// Deletes a pool; `false` if it did not exist. Agents referring to it are untouched.
    pub async fn delete_pool(&self, name: &str) -> Result<bool, StoreError> {
        let deleted = dispatch!(self.delete_pool(name))?;
        if deleted {
            tracing::info!(pool = name, "pool deleted");
        }
        Ok(deleted)
    }
}
