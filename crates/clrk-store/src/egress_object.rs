//! Egress gateway configuration: gateways, routes and policies, stored as their manifests.

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};
use serde_json::Value;

use crate::{ApplyOutcome, Store, StoreError, json, time};

/// One stored egress object.
#[derive(Debug, Clone, PartialEq)]
pub struct EgressObject {
    pub namespace: String,
    /// `EgressGateway`, `EgressL4Route`, `CredentialInjectionPolicy` or `AIProviderRoute`.
    pub kind: String,
    pub name: String,
    /// The manifest last applied, as stored.
    pub spec: Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Store {
    /// Creates or updates an egress object: `Created`, `Configured { revision: None }`, or
    /// `Unchanged` (nothing written) when the manifest equals what is stored.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = clrk_store::Store::open(&dir.path().join("clrk.db")).unwrap();
    /// use clrk_store::ApplyOutcome;
    /// let spec = serde_json::json!({"spec": {"defaultPolicy": "deny-all"}});
    /// assert_eq!(store.apply_egress_object("default", "EgressGateway", "main", &spec).unwrap(),
    ///            ApplyOutcome::Created { revision: None });
    /// assert_eq!(store.apply_egress_object("default", "EgressGateway", "main", &spec).unwrap(),
    ///            ApplyOutcome::Unchanged);
    /// assert_eq!(store.egress_objects(None).unwrap().len(), 1);
    /// ```
    pub fn apply_egress_object(
        &self,
        namespace: &str,
        kind: &str,
        name: &str,
        spec: &Value,
    ) -> Result<ApplyOutcome, StoreError> {
        self.write(|tx| {
            let now = time::to_millis(time::now());
            let text = json::to_text(spec, "egress object")?;
            let stored: Option<Value> = tx
                .query_row(
                    "SELECT spec FROM egress_objects WHERE namespace = ?1 AND kind = ?2 AND name = ?3",
                    params![namespace, kind, name],
                    |row| json::column(row, 0),
                )
                .optional()?;
            match stored {
                None => {
                    tx.execute(
                        "INSERT INTO egress_objects (namespace, kind, name, spec, created_at, updated_at) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
                        params![namespace, kind, name, text, now],
                    )?;
                    Ok(ApplyOutcome::Created { revision: None })
                }
                Some(old) if old == *spec => Ok(ApplyOutcome::Unchanged),
                Some(_) => {
                    tx.execute(
                        "UPDATE egress_objects SET spec = ?4, updated_at = ?5 \
                         WHERE namespace = ?1 AND kind = ?2 AND name = ?3",
                        params![namespace, kind, name, text, now],
                    )?;
                    Ok(ApplyOutcome::Configured { revision: None })
                }
            }
        })
    }

    /// The egress objects of `namespace` (all when `None`), by namespace, kind and name.
    pub fn egress_objects(&self, namespace: Option<&str>) -> Result<Vec<EgressObject>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT namespace, kind, name, spec, created_at, updated_at FROM egress_objects \
             WHERE ?1 IS NULL OR namespace = ?1 ORDER BY namespace, kind, name",
        )?;
        let rows = stmt.query_map([namespace], |row| {
            Ok(EgressObject {
                namespace: row.get(0)?,
                kind: row.get(1)?,
                name: row.get(2)?,
                spec: json::column(row, 3)?,
                created_at: time::column(row, 4)?,
                updated_at: time::column(row, 5)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Deletes an egress object; returns whether it existed.
    pub fn delete_egress_object(
        &self,
        namespace: &str,
        kind: &str,
        name: &str,
    ) -> Result<bool, StoreError> {
        self.write(|tx| {
            Ok(tx.execute(
                "DELETE FROM egress_objects WHERE namespace = ?1 AND kind = ?2 AND name = ?3",
                params![namespace, kind, name],
            )? > 0)
        })
    }
}
