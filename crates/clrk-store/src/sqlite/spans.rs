//! Executions' spans in SQLite, capped per execution and kept as long as it is.

use rusqlite::{OptionalExtension, params};

use super::SqliteStore;
use super::columns;
use crate::{SpanRecord, StoreError};

impl SqliteStore {
    pub(crate) fn insert_spans(
        &self,
        execution_id: &str,
        spans: &[SpanRecord],
        cap: usize,
    ) -> Result<usize, StoreError> {
        self.write(|tx| {
            let known: Option<i64> = tx
                .query_row(
                    "SELECT 1 FROM executions WHERE id = ?1",
                    [execution_id],
                    |row| row.get(0),
                )
                .optional()?;
            if known.is_none() {
                return Ok(0);
            }
            let held: i64 = tx.query_row(
                "SELECT count(*) FROM execution_spans WHERE execution_id = ?1",
                [execution_id],
                |row| row.get(0),
            )?;
            let room = cap.saturating_sub(usize::try_from(held).unwrap_or(usize::MAX));
            let mut insert = tx.prepare(
                "INSERT INTO execution_spans (execution_id, trace_id, span_id, parent_span_id, \
                 name, start_us, duration_us, attributes, error) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?;
            for s in spans.iter().take(room) {
                let attributes =
                    serde_json::to_string(&s.attributes).map_err(|source| StoreError::Json {
                        what: "span attributes",
                        source,
                    })?;
                insert.execute(params![
                    execution_id,
                    s.trace_id,
                    s.span_id,
                    s.parent_span_id,
                    s.name,
                    s.start_unix_us,
                    s.duration_us,
                    attributes,
                    s.error,
                ])?;
            }
            Ok(spans.len().min(room))
        })
    }

    pub(crate) fn execution_spans(
        &self,
        execution_id: &str,
    ) -> Result<Vec<SpanRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT trace_id, span_id, parent_span_id, name, start_us, duration_us, attributes, \
             error FROM execution_spans WHERE execution_id = ?1 ORDER BY start_us, seq",
        )?;
        let rows = stmt.query_map([execution_id], |row| {
            let attributes = match columns::json(row, 6)? {
                serde_json::Value::Object(map) => map,
                _ => serde_json::Map::new(),
            };
            Ok(SpanRecord {
                trace_id: row.get(0)?,
                span_id: row.get(1)?,
                parent_span_id: row.get(2)?,
                name: row.get(3)?,
                start_unix_us: row.get(4)?,
                duration_us: row.get(5)?,
                attributes,
                error: row.get(7)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
