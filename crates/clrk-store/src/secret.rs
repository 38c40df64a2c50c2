//! Secrets: named sets of keys and values that the egress proxy injects into agents' requests.
//! Values are only ever read by name and key, never listed; the database file is mode 0600.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};

use crate::{Store, StoreError, time};

/// A stored secret without its values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretInfo {
    pub namespace: String,
    pub name: String,
    /// Its keys, sorted.
    pub keys: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Store {
    /// Creates or replaces the secret `namespace/name` with exactly `data`; returns whether
    /// it was created.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = clrk_store::Store::open(&dir.path().join("clrk.db")).unwrap();
    /// let data = [("token".to_string(), b"s3cret".to_vec())].into();
    /// assert!(store.set_secret("default", "llm", &data).unwrap());
    /// assert_eq!(store.secret_value("default", "llm", "token").unwrap(), Some(b"s3cret".to_vec()));
    /// ```
    pub fn set_secret(
        &self,
        namespace: &str,
        name: &str,
        data: &BTreeMap<String, Vec<u8>>,
    ) -> Result<bool, StoreError> {
        let created = self.write(|tx| {
            let now = time::to_millis(time::now());
            let existed = tx
                .query_row(
                    "SELECT 1 FROM secrets WHERE namespace = ?1 AND name = ?2",
                    params![namespace, name],
                    |_| Ok(()),
                )
                .optional()?
                .is_some();
            tx.execute(
                "INSERT INTO secrets (namespace, name, created_at, updated_at) VALUES (?1, ?2, ?3, ?3) \
                 ON CONFLICT (namespace, name) DO UPDATE SET updated_at = ?3",
                params![namespace, name, now],
            )?;
            tx.execute(
                "DELETE FROM secret_values WHERE namespace = ?1 AND name = ?2",
                params![namespace, name],
            )?;
            for (key, value) in data {
                tx.execute(
                    "INSERT INTO secret_values (namespace, name, key, value) VALUES (?1, ?2, ?3, ?4)",
                    params![namespace, name, key, value],
                )?;
            }
            Ok(!existed)
        })?;
        // Never the values, not even their sizes.
        tracing::info!(namespace, name, keys = data.len(), created, "secret set");
        Ok(created)
    }

    /// The secrets of `namespace` (all namespaces when `None`), without values.
    pub fn list_secrets(&self, namespace: Option<&str>) -> Result<Vec<SecretInfo>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT s.namespace, s.name, s.created_at, s.updated_at, \
                    (SELECT group_concat(key, char(10)) FROM \
                        (SELECT key FROM secret_values v \
                         WHERE v.namespace = s.namespace AND v.name = s.name ORDER BY key)) \
             FROM secrets s WHERE ?1 IS NULL OR s.namespace = ?1 ORDER BY s.namespace, s.name",
        )?;
        let rows = stmt.query_map([namespace], |row| {
            let keys: Option<String> = row.get(4)?;
            Ok(SecretInfo {
                namespace: row.get(0)?,
                name: row.get(1)?,
                created_at: time::column(row, 2)?,
                updated_at: time::column(row, 3)?,
                keys: keys
                    .map(|k| k.split('\n').map(str::to_owned).collect())
                    .unwrap_or_default(),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// One value of a secret; `None` when the secret or the key does not exist.
    pub fn secret_value(
        &self,
        namespace: &str,
        name: &str,
        key: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let conn = self.conn();
        Ok(conn
            .query_row(
                "SELECT value FROM secret_values WHERE namespace = ?1 AND name = ?2 AND key = ?3",
                params![namespace, name, key],
                |row| row.get(0),
            )
            .optional()?)
    }

    /// Deletes a secret; returns whether it existed.
    pub fn delete_secret(&self, namespace: &str, name: &str) -> Result<bool, StoreError> {
        // Its values go with it (ON DELETE CASCADE).
        let deleted = self.write(|tx| {
            Ok(tx.execute(
                "DELETE FROM secrets WHERE namespace = ?1 AND name = ?2",
                params![namespace, name],
            )? > 0)
        })?;
        tracing::info!(namespace, name, deleted, "secret deleted");
        Ok(deleted)
    }
}
