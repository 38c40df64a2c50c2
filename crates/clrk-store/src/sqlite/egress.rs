//! The egress gateway's tables in SQLite: configuration objects, transaction records (capped
//! per agent) and daily token counts.

use chrono::NaiveDate;
use rusqlite::{OptionalExtension, params};
use serde_json::Value;

use super::SqliteStore;
use super::columns;
use crate::{ApplyOutcome, EgressObject, EgressRecord, StoreError, integer, json, time};

impl SqliteStore {
    pub(crate) fn apply_egress_object(
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
                    |row| columns::json(row, 0),
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

    pub(crate) fn egress_objects(
        &self,
        namespace: Option<&str>,
    ) -> Result<Vec<EgressObject>, StoreError> {
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
                spec: columns::json(row, 3)?,
                created_at: columns::time(row, 4)?,
                updated_at: columns::time(row, 5)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub(crate) fn delete_egress_object(
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

impl SqliteStore {
    pub(crate) fn insert_egress_record_keeping(
        &self,
        r: &EgressRecord,
        keep: usize,
    ) -> Result<i64, StoreError> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO egress_records (namespace, agent, revision, execution_id, started_at, \
                 duration_ms, protocol, destination_name, destination_addr, method, path, status, \
                 request_bytes, response_bytes, allowed, reason, injected_header, provider, model, \
                 input_tokens, output_tokens) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, \
                 ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21)",
                params![
                    r.namespace,
                    r.agent,
                    r.revision,
                    r.execution_id,
                    time::to_millis(r.started_at),
                    integer::saturating_i64(r.duration_ms),
                    r.protocol,
                    r.destination_name,
                    r.destination_addr,
                    r.method,
                    r.path,
                    r.status,
                    integer::saturating_i64(r.request_bytes),
                    integer::saturating_i64(r.response_bytes),
                    r.allowed,
                    r.reason,
                    r.injected_header,
                    r.provider,
                    r.model,
                    r.input_tokens.map(integer::saturating_i64),
                    r.output_tokens.map(integer::saturating_i64),
                ],
            )?;
            let id = tx.last_insert_rowid();
            tx.execute(
                "DELETE FROM egress_records WHERE namespace = ?1 AND agent = ?2 AND id < \
                 (SELECT id FROM egress_records WHERE namespace = ?1 AND agent = ?2 \
                  ORDER BY id DESC LIMIT 1 OFFSET ?3)",
                params![
                    r.namespace,
                    r.agent,
                    integer::saturating_i64(keep.saturating_sub(1) as u64)
                ],
            )?;
            Ok(id)
        })
    }

    pub(crate) fn egress_records(
        &self,
        namespace: &str,
        agent: &str,
        limit: usize,
    ) -> Result<Vec<EgressRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT namespace, agent, revision, execution_id, started_at, duration_ms, protocol, \
             destination_name, destination_addr, method, path, status, request_bytes, \
             response_bytes, allowed, reason, injected_header, provider, model, input_tokens, \
             output_tokens FROM egress_records WHERE namespace = ?1 AND agent = ?2 \
             ORDER BY id DESC LIMIT ?3",
        )?;
        let rows = stmt.query_map(
            params![namespace, agent, integer::saturating_i64(limit as u64)],
            |row| {
                Ok(EgressRecord {
                    namespace: row.get(0)?,
                    agent: row.get(1)?,
                    revision: row.get(2)?,
                    execution_id: row.get(3)?,
                    started_at: columns::time(row, 4)?,
                    duration_ms: columns::read_count(row, 5)?,
                    protocol: row.get(6)?,
                    destination_name: row.get(7)?,
                    destination_addr: row.get(8)?,
                    method: row.get(9)?,
                    path: row.get(10)?,
                    status: row.get(11)?,
                    request_bytes: columns::read_count(row, 12)?,
                    response_bytes: columns::read_count(row, 13)?,
                    allowed: row.get(14)?,
                    reason: row.get(15)?,
                    injected_header: row.get(16)?,
                    provider: row.get(17)?,
                    model: row.get(18)?,
                    input_tokens: columns::optional_count(row, 19)?,
                    output_tokens: columns::optional_count(row, 20)?,
                })
            },
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub(crate) fn execution_tokens(&self, execution_id: &str) -> Result<u64, StoreError> {
        let conn = self.conn();
        let total: i64 = conn.query_row(
            "SELECT COALESCE(SUM(COALESCE(input_tokens, 0) + COALESCE(output_tokens, 0)), 0) \
             FROM egress_records WHERE execution_id = ?1",
            [execution_id],
            |row| row.get(0),
        )?;
        Ok(u64::try_from(total).unwrap_or(0))
    }

    pub(crate) fn add_tokens(
        &self,
        namespace: &str,
        agent: &str,
        day: NaiveDate,
        tokens: u64,
    ) -> Result<u64, StoreError> {
        self.write(|tx| {
            let total: i64 = tx.query_row(
                "INSERT INTO token_usage (namespace, agent, day, tokens) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (namespace, agent, day) DO UPDATE SET tokens = tokens + ?4 \
                 RETURNING tokens",
                params![
                    namespace,
                    agent,
                    day.to_string(),
                    integer::saturating_i64(tokens)
                ],
                |row| row.get(0),
            )?;
            Ok(u64::try_from(total).unwrap_or(0))
        })
    }

    pub(crate) fn tokens_on(
        &self,
        namespace: &str,
        agent: &str,
        day: NaiveDate,
    ) -> Result<u64, StoreError> {
        let conn = self.conn();
        let total: Option<i64> = conn
            .query_row(
                "SELECT tokens FROM token_usage WHERE namespace = ?1 AND agent = ?2 AND day = ?3",
                params![namespace, agent, day.to_string()],
                |row| row.get(0),
            )
            .optional()?;
        Ok(total.map_or(0, |t| u64::try_from(t).unwrap_or(0)))
    }
}
