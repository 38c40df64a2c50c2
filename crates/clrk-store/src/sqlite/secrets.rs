//! Secrets in SQLite: values read by name and key only.

use std::collections::BTreeMap;

use rusqlite::{OptionalExtension, params};

use super::SqliteStore;
use super::columns;
use crate::{SecretInfo, StoreError, time};

impl SqliteStore {
    pub(crate) fn set_secret(
        &self,
        namespace: &str,
        name: &str,
        data: &BTreeMap<String, Vec<u8>>,
    ) -> Result<bool, StoreError> {
        self.write(|tx| {
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
        })
    }

    pub(crate) fn list_secrets(
        &self,
        namespace: Option<&str>,
    ) -> Result<Vec<SecretInfo>, StoreError> {
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
                created_at: columns::time(row, 2)?,
                updated_at: columns::time(row, 3)?,
                keys: keys
                    .map(|k| k.split('\n').map(str::to_owned).collect())
                    .unwrap_or_default(),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub(crate) fn secret_value(
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

    pub(crate) fn delete_secret(&self, namespace: &str, name: &str) -> Result<bool, StoreError> {
        // Its values go with it (ON DELETE CASCADE).
        self.write(|tx| {
            Ok(tx.execute(
                "DELETE FROM secrets WHERE namespace = ?1 AND name = ?2",
                params![namespace, name],
            )? > 0)
        })
    }
}
