//! Secrets in PostgreSQL: values read by name and key only.

use std::collections::BTreeMap;

use super::columns;
use super::{PgStore, locks};
use crate::{SecretInfo, StoreError, time};

impl PgStore {
    pub(crate) async fn set_secret(
        &self,
        namespace: &str,
        name: &str,
        data: &BTreeMap<String, Vec<u8>>,
    ) -> Result<bool, StoreError> {
        let now = time::to_millis(time::now());
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        // Two sets at once would interleave their values; the second waits for the first.
        locks::lock(&tx, &format!("secret:{namespace}/{name}")).await?;
        let existed = tx
            .query_opt(
                "SELECT 1 FROM secrets WHERE namespace = $1 AND name = $2",
                &[&namespace, &name],
            )
            .await?
            .is_some();
        tx.execute(
            "INSERT INTO secrets (namespace, name, created_at, updated_at) VALUES ($1, $2, $3, $3) \
             ON CONFLICT (namespace, name) DO UPDATE SET updated_at = $3",
            &[&namespace, &name, &now],
        )
        .await?;
        tx.execute(
            "DELETE FROM secret_values WHERE namespace = $1 AND name = $2",
            &[&namespace, &name],
        )
        .await?;
        for (key, value) in data {
            tx.execute(
                "INSERT INTO secret_values (namespace, name, key, value) VALUES ($1, $2, $3, $4)",
                &[&namespace, &name, key, value],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(!existed)
    }

    pub(crate) async fn list_secrets(
        &self,
        namespace: Option<&str>,
    ) -> Result<Vec<SecretInfo>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT s.namespace, s.name, s.created_at, s.updated_at, \
                        (SELECT array_agg(key ORDER BY key) FROM secret_values v \
                         WHERE v.namespace = s.namespace AND v.name = s.name) \
                 FROM secrets s WHERE $1::text IS NULL OR s.namespace = $1 \
                 ORDER BY s.namespace, s.name",
                &[&namespace],
            )
            .await?;
        rows.iter()
            .map(|row| {
                Ok(SecretInfo {
                    namespace: row.try_get(0)?,
                    name: row.try_get(1)?,
                    created_at: columns::time(row, 2)?,
                    updated_at: columns::time(row, 3)?,
                    keys: row
                        .try_get::<_, Option<Vec<String>>>(4)?
                        .unwrap_or_default(),
                })
            })
            .collect()
    }

    pub(crate) async fn secret_value(
        &self,
        namespace: &str,
        name: &str,
        key: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT value FROM secret_values WHERE namespace = $1 AND name = $2 AND key = $3",
                &[&namespace, &name, &key],
            )
            .await?;
        Ok(row.map(|r| r.try_get(0)).transpose()?)
    }

    pub(crate) async fn delete_secret(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<bool, StoreError> {
        // Its values go with it (ON DELETE CASCADE).
        let client = self.client().await?;
        Ok(client
            .execute(
                "DELETE FROM secrets WHERE namespace = $1 AND name = $2",
                &[&namespace, &name],
            )
            .await?
            > 0)
    }
}
