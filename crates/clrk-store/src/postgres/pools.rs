//! Worker pools in PostgreSQL.

use serde_json::Value;
use tokio_postgres::Row;

use super::columns;
use super::{PgStore, locks};
use crate::{ApplyOutcome, Pool, StoreError, json, time};

const SELECT: &str = "SELECT name, namespace, spec, created_at, updated_at FROM pools";

fn from_row(row: &Row) -> Result<Pool, StoreError> {
    Ok(Pool {
        name: row.try_get(0)?,
        namespace: row.try_get(1)?,
        spec: columns::json(row, 2)?,
        created_at: columns::time(row, 3)?,
        updated_at: columns::time(row, 4)?,
    })
}

impl PgStore {
    pub(crate) async fn apply_pool(
        &self,
        namespace: &str,
        name: &str,
        spec: &Value,
    ) -> Result<ApplyOutcome, StoreError> {
        let now = time::to_millis(time::now());
        let text = json::to_text(spec, "pool spec")?;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        locks::lock(&tx, &format!("pool:{name}")).await?;
        let stored = tx
            .query_opt(
                "SELECT namespace, spec FROM pools WHERE name = $1",
                &[&name],
            )
            .await?;
        let outcome = match stored {
            None => {
                tx.execute(
                    "INSERT INTO pools (name, namespace, spec, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)",
                    &[&name, &namespace, &text, &now],
                )
                .await?;
                ApplyOutcome::Created { revision: None }
            }
            Some(row)
                if row.try_get::<_, &str>(0)? == namespace && columns::json(&row, 1)? == *spec =>
            {
                return Ok(ApplyOutcome::Unchanged);
            }
            Some(_) => {
                tx.execute(
                    "UPDATE pools SET namespace = $2, spec = $3, updated_at = $4 WHERE name = $1",
                    &[&name, &namespace, &text, &now],
                )
                .await?;
                ApplyOutcome::Configured { revision: None }
            }
        };
        tx.commit().await?;
        Ok(outcome)
    }

    pub(crate) async fn get_pool(&self, name: &str) -> Result<Option<Pool>, StoreError> {
        let sql = format!("{SELECT} WHERE name = $1");
        let client = self.client().await?;
        client
            .query_opt(&sql, &[&name])
            .await?
            .as_ref()
            .map(from_row)
            .transpose()
    }

    pub(crate) async fn list_pools(&self) -> Result<Vec<Pool>, StoreError> {
        let client = self.client().await?;
        client
            .query(&format!("{SELECT} ORDER BY name"), &[])
            .await?
            .iter()
            .map(from_row)
            .collect()
    }

    pub(crate) async fn delete_pool(&self, name: &str) -> Result<bool, StoreError> {
        let client = self.client().await?;
        Ok(client
            .execute("DELETE FROM pools WHERE name = $1", &[&name])
            .await?
            > 0)
    }
}
