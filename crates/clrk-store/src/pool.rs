//! Worker pools: named runtime settings agents refer to with `spec.workerPoolRef`.

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};
use serde_json::Value;

use crate::{ApplyOutcome, Store, StoreError, json, time};

/// A stored worker pool. Pools are looked up by name alone.
#[derive(Debug, Clone, PartialEq)]
pub struct Pool {
    /// Name, unique across namespaces.
    pub name: String,
    /// Namespace its manifest was applied in.
    pub namespace: String,
    /// The spec last applied.
    pub spec: Value,
    /// First apply.
    pub created_at: DateTime<Utc>,
    /// Last apply that changed something.
    pub updated_at: DateTime<Utc>,
}

const SELECT: &str = "SELECT name, namespace, spec, created_at, updated_at FROM pools";

fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Pool> {
    Ok(Pool {
        name: row.get(0)?,
        namespace: row.get(1)?,
        spec: json::column(row, 2)?,
        created_at: time::column(row, 3)?,
        updated_at: time::column(row, 4)?,
    })
}

impl Store {
    /// Creates or updates a pool: `Created`, `Configured { revision: None }`, or `Unchanged`
    /// (nothing written) when namespace and spec equal what is stored.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = clrk_store::Store::open(&dir.path().join("clrk.db")).unwrap();
    /// use clrk_store::ApplyOutcome;
    /// let spec = serde_json::json!({"runtime": "runsc"});
    /// assert_eq!(store.apply_pool("default", "default", &spec).unwrap(),
    ///            ApplyOutcome::Created { revision: None });
    /// assert_eq!(store.apply_pool("default", "default", &spec).unwrap(), ApplyOutcome::Unchanged);
    /// ```
    pub fn apply_pool(
        &self,
        namespace: &str,
        name: &str,
        spec: &Value,
    ) -> Result<ApplyOutcome, StoreError> {
        let outcome = self.write(|tx| {
            let now = time::to_millis(time::now());
            let text = json::to_text(spec, "pool spec")?;
            let stored = tx
                .query_row(
                    "SELECT namespace, spec FROM pools WHERE name = ?1",
                    [name],
                    |row| Ok((row.get::<_, String>(0)?, json::column(row, 1)?)),
                )
                .optional()?;
            match stored {
                None => {
                    tx.execute(
                        "INSERT INTO pools (name, namespace, spec, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?4)",
                        params![name, namespace, text, now],
                    )?;
                    Ok(ApplyOutcome::Created { revision: None })
                }
                Some((ns, old)) if ns == namespace && old == *spec => Ok(ApplyOutcome::Unchanged),
                Some(_) => {
                    tx.execute(
                        "UPDATE pools SET namespace = ?2, spec = ?3, updated_at = ?4 WHERE name = ?1",
                        params![name, namespace, text, now],
                    )?;
                    Ok(ApplyOutcome::Configured { revision: None })
                }
            }
        })?;
        tracing::info!(namespace, pool = name, outcome = ?outcome, "pool applied");
        Ok(outcome)
    }

    /// The pool called `name`, or `None`.
    pub fn get_pool(&self, name: &str) -> Result<Option<Pool>, StoreError> {
        let sql = format!("{SELECT} WHERE name = ?1");
        Ok(self.conn().query_row(&sql, [name], from_row).optional()?)
    }

    /// All pools, ordered by name.
    pub fn list_pools(&self) -> Result<Vec<Pool>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!("{SELECT} ORDER BY name"))?;
        let rows = stmt.query_map([], from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Deletes a pool; `false` if it did not exist. Agents referring to it are untouched.
    pub fn delete_pool(&self, name: &str) -> Result<bool, StoreError> {
        let deleted =
            self.write(|tx| Ok(tx.execute("DELETE FROM pools WHERE name = ?1", [name])?))? > 0;
        if deleted {
            tracing::info!(pool = name, "pool deleted");
        }
        Ok(deleted)
    }
}
