//! Secrets: set, list without values, read one value, delete.

use std::collections::BTreeMap;

use super::{Store, dispatch};
use crate::{SecretInfo, StoreError};

impl Store {
    /// Creates or replaces the secret `namespace/name` with exactly `data`; returns whether
    /// it was created.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = clrk_store::Store::open(&dir.path().join("clrk.db")).unwrap();
    /// let data = [("token".to_string(), b"s3cret".to_vec())].into();
    /// assert!(store.set_secret("default", "llm", &data).await.unwrap());
    /// assert_eq!(store.secret_value("default", "llm", "token").await.unwrap(), Some(b"s3cret".to_vec()));
    /// # }
    /// ```
    pub async fn set_secret(
        &self,
        namespace: &str,
        name: &str,
        data: &BTreeMap<String, Vec<u8>>,
    ) -> Result<bool, StoreError> {
        let created = dispatch!(self.set_secret(namespace, name, data))?;
        // Never the values, not even their sizes.
        tracing::info!(namespace, name, keys = data.len(), created, "secret set");
        Ok(created)
    }

    /// The secrets of `namespace` (all namespaces when `None`), without values.
    pub async fn list_secrets(
        &self,
        namespace: Option<&str>,
    ) -> Result<Vec<SecretInfo>, StoreError> {
        dispatch!(self.list_secrets(namespace))
    }

    /// One value of a secret; `None` when the secret or the key does not exist.
    pub async fn secret_value(
        &self,
        namespace: &str,
        name: &str,
        key: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        dispatch!(self.secret_value(namespace, name, key))
    }

    /// Deletes a secret with its values; returns whether it existed.
    pub async fn delete_secret(&self, namespace: &str, name: &str) -> Result<bool, StoreError> {
        let deleted = dispatch!(self.delete_secret(namespace, name))?;
        tracing::info!(namespace, name, deleted, "secret deleted");
        Ok(deleted)
    }
}
