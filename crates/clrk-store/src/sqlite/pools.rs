//! Worker pools in SQLite.

use rusqlite::{OptionalExtension, params};
use serde_json::Value;

use super::SqliteStore;
use super::columns;
use crate::{ApplyOutcome, Pool, StoreError, json, time};

const SELECT: &str = "SELECT name, namespace, spec, created_at, updated_at FROM pools";

fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Pool> {
    Ok(Pool {
        name: row.get(0)?,
        namespace: row.get(1)?,
        spec: columns::json(row, 2)?,
        created_at: columns::time(row, 3)?,
        updated_at: columns::time(row, 4)?,
    })
}

impl SqliteStore {
    pub(crate) fn apply_pool(
        &self,
        namespace: &str,
        name: &str,
        spec: &Value,
    ) -> Result<ApplyOutcome, StoreError> {
        self.write(|tx| {
            let now = time::to_millis(time::now());
            let text = json::to_text(spec, "pool spec")?;
            let stored = tx
                .query_row(
                    "SELECT namespace, spec FROM pools WHERE name = ?1",
                    [name],
                    |row| Ok((row.get::<_, String>(0)?, columns::json(row, 1)?)),
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
        })
    }

    pub(crate) fn get_pool(&self, name: &str) -> Result<Option<Pool>, StoreError> {
        let sql = format!("{SELECT} WHERE name = ?1");
        Ok(self.conn().query_row(&sql, [name], from_row).optional()?)
    }

    pub(crate) fn list_pools(&self) -> Result<Vec<Pool>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!("{SELECT} ORDER BY name"))?;
        let rows = stmt.query_map([], from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub(crate) fn delete_pool(&self, name: &str) -> Result<bool, StoreError> {
        Ok(self.write(|tx| Ok(tx.execute("DELETE FROM pools WHERE name = ?1", [name])?))? > 0)
    }
}
