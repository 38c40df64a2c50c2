//! The egress gateway's tables in PostgreSQL: configuration objects, transaction records
//! (capped per agent) and daily token counts.

use chrono::NaiveDate;
use serde_json::Value;

use super::columns;
use super::{PgStore, locks};
use crate::{ApplyOutcome, EgressObject, EgressRecord, StoreError, integer, json, time};

impl PgStore {
    pub(crate) async fn apply_egress_object(
        &self,
        namespace: &str,
        kind: &str,
        name: &str,
        spec: &Value,
    ) -> Result<ApplyOutcome, StoreError> {
        let now = time::to_millis(time::now());
        let text = json::to_text(spec, "egress object")?;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        locks::lock(&tx, &format!("egress:{namespace}/{kind}/{name}")).await?;
        let stored = tx
            .query_opt(
                "SELECT spec FROM egress_objects WHERE namespace = $1 AND kind = $2 AND name = $3",
                &[&namespace, &kind, &name],
            )
            .await?;
        let outcome = match stored {
            None => {
                tx.execute(
                    "INSERT INTO egress_objects (namespace, kind, name, spec, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $5)",
                    &[&namespace, &kind, &name, &text, &now],
                )
                .await?;
                ApplyOutcome::Created { revision: None }
            }
            Some(row) if columns::json(&row, 0)? == *spec => return Ok(ApplyOutcome::Unchanged),
            Some(_) => {
                tx.execute(
                    "UPDATE egress_objects SET spec = $4, updated_at = $5 \
                     WHERE namespace = $1 AND kind = $2 AND name = $3",
                    &[&namespace, &kind, &name, &text, &now],
                )
                .await?;
                ApplyOutcome::Configured { revision: None }
            }
        };
        tx.commit().await?;
        Ok(outcome)
    }

    pub(crate) async fn egress_objects(
        &self,
        namespace: Option<&str>,
    ) -> Result<Vec<EgressObject>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT namespace, kind, name, spec, created_at, updated_at FROM egress_objects \
                 WHERE $1::text IS NULL OR namespace = $1 ORDER BY namespace, kind, name",
                &[&namespace],
            )
            .await?;
        rows.iter()
            .map(|row| {
                Ok(EgressObject {
                    namespace: row.try_get(0)?,
                    kind: row.try_get(1)?,
                    name: row.try_get(2)?,
                    spec: columns::json(row, 3)?,
                    created_at: columns::time(row, 4)?,
                    updated_at: columns::time(row, 5)?,
                })
            })
            .collect()
    }

    pub(crate) async fn delete_egress_object(
        &self,
        namespace: &str,
        kind: &str,
        name: &str,
    ) -> Result<bool, StoreError> {
        let client = self.client().await?;
        Ok(client
            .execute(
                "DELETE FROM egress_objects WHERE namespace = $1 AND kind = $2 AND name = $3",
                &[&namespace, &kind, &name],
            )
            .await?
            > 0)
    }

    pub(crate) async fn insert_egress_record_keeping(
        &self,
        r: &EgressRecord,
        keep: usize,
    ) -> Result<i64, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let id: i64 = tx
            .query_one(
                "INSERT INTO egress_records (namespace, agent, revision, execution_id, started_at, \
                 duration_ms, protocol, destination_name, destination_addr, method, path, status, \
                 request_bytes, response_bytes, allowed, reason, injected_header, provider, model, \
                 input_tokens, output_tokens) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, \
                 $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21) RETURNING id",
                &[
                    &r.namespace,
                    &r.agent,
                    &r.revision,
                    &r.execution_id,
                    &time::to_millis(r.started_at),
                    &integer::saturating_i64(r.duration_ms),
                    &r.protocol,
                    &r.destination_name,
                    &r.destination_addr,
                    &r.method,
                    &r.path,
                    &r.status.map(i32::from),
                    &integer::saturating_i64(r.request_bytes),
                    &integer::saturating_i64(r.response_bytes),
                    &r.allowed,
                    &r.reason,
                    &r.injected_header,
                    &r.provider,
                    &r.model,
                    &r.input_tokens.map(integer::saturating_i64),
                    &r.output_tokens.map(integer::saturating_i64),
                ],
            )
            .await?
            .try_get(0)?;
        tx.execute(
            "DELETE FROM egress_records WHERE namespace = $1 AND agent = $2 AND id < \
             (SELECT id FROM egress_records WHERE namespace = $1 AND agent = $2 \
              ORDER BY id DESC LIMIT 1 OFFSET $3)",
            &[
                &r.namespace,
                &r.agent,
                &integer::saturating_i64(keep.saturating_sub(1) as u64),
            ],
        )
        .await?;
        tx.commit().await?;
        Ok(id)
    }

    pub(crate) async fn egress_records(
        &self,
        namespace: &str,
        agent: &str,
        limit: usize,
    ) -> Result<Vec<EgressRecord>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT namespace, agent, revision, execution_id, started_at, duration_ms, protocol, \
                 destination_name, destination_addr, method, path, status, request_bytes, \
                 response_bytes, allowed, reason, injected_header, provider, model, input_tokens, \
                 output_tokens FROM egress_records WHERE namespace = $1 AND agent = $2 \
                 ORDER BY id DESC LIMIT $3",
                &[&namespace, &agent, &integer::saturating_i64(limit as u64)],
            )
            .await?;
        rows.iter()
            .map(|row| {
                let count = |idx| -> Result<Option<u64>, StoreError> {
                    Ok(row
                        .try_get::<_, Option<i64>>(idx)?
                        .map(|t| u64::try_from(t).unwrap_or(0)))
                };
                Ok(EgressRecord {
                    namespace: row.try_get(0)?,
                    agent: row.try_get(1)?,
                    revision: row.try_get(2)?,
                    execution_id: row.try_get(3)?,
                    started_at: columns::time(row, 4)?,
                    duration_ms: columns::count(row, 5)?,
                    protocol: row.try_get(6)?,
                    destination_name: row.try_get(7)?,
                    destination_addr: row.try_get(8)?,
                    method: row.try_get(9)?,
                    path: row.try_get(10)?,
                    status: row
                        .try_get::<_, Option<i32>>(11)?
                        .map(|s| u16::try_from(s).unwrap_or(0)),
                    request_bytes: columns::count(row, 12)?,
                    response_bytes: columns::count(row, 13)?,
                    allowed: row.try_get(14)?,
                    reason: row.try_get(15)?,
                    injected_header: row.try_get(16)?,
                    provider: row.try_get(17)?,
                    model: row.try_get(18)?,
                    input_tokens: count(19)?,
                    output_tokens: count(20)?,
                })
            })
            .collect()
    }

    pub(crate) async fn execution_tokens(&self, execution_id: &str) -> Result<u64, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_one(
                "SELECT COALESCE(SUM(COALESCE(input_tokens, 0) + COALESCE(output_tokens, 0)), 0)::bigint \
                 FROM egress_records WHERE execution_id = $1",
                &[&execution_id],
            )
            .await?;
        columns::count(&row, 0)
    }

    pub(crate) async fn add_tokens(
        &self,
        namespace: &str,
        agent: &str,
        day: NaiveDate,
        tokens: u64,
    ) -> Result<u64, StoreError> {
        let client = self.client().await?;
        // One statement: concurrent adds from several processes each see the other's tokens.
        let row = client
            .query_one(
                "INSERT INTO token_usage (namespace, agent, day, tokens) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (namespace, agent, day) DO UPDATE SET \
                 tokens = token_usage.tokens + EXCLUDED.tokens RETURNING tokens",
                &[
                    &namespace,
                    &agent,
                    &day.to_string(),
                    &integer::saturating_i64(tokens),
                ],
            )
            .await?;
        columns::count(&row, 0)
    }

    pub(crate) async fn tokens_on(
        &self,
        namespace: &str,
        agent: &str,
        day: NaiveDate,
    ) -> Result<u64, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT tokens FROM token_usage WHERE namespace = $1 AND agent = $2 AND day = $3",
                &[&namespace, &agent, &day.to_string()],
            )
            .await?;
        match row {
            Some(row) => columns::count(&row, 0),
            None => Ok(0),
        }
    }
}
