//! Executions' spans in PostgreSQL, capped per execution and kept as long as it is.

use super::PgStore;
use super::columns;
use crate::{SpanRecord, StoreError};

impl PgStore {
    /// The execution's row is locked while its spans are counted, so two writers (the
    /// worker's and the gateway's) cannot both fill the last places.
    pub(crate) async fn insert_spans(
        &self,
        execution_id: &str,
        spans: &[SpanRecord],
        cap: usize,
    ) -> Result<usize, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let known = tx
            .query_opt(
                "SELECT 1 FROM executions WHERE id = $1 FOR UPDATE",
                &[&execution_id],
            )
            .await?;
        if known.is_none() {
            return Ok(0);
        }
        let held: i64 = tx
            .query_one(
                "SELECT count(*) FROM execution_spans WHERE execution_id = $1",
                &[&execution_id],
            )
            .await?
            .get(0);
        let room = cap.saturating_sub(usize::try_from(held).unwrap_or(usize::MAX));
        let insert = tx
            .prepare(
                "INSERT INTO execution_spans (execution_id, trace_id, span_id, parent_span_id, \
                 name, start_us, duration_us, attributes, error) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .await?;
        for s in spans.iter().take(room) {
            let attributes =
                serde_json::to_string(&s.attributes).map_err(|source| StoreError::Json {
                    what: "span attributes",
                    source,
                })?;
            tx.execute(
                &insert,
                &[
                    &execution_id,
                    &s.trace_id,
                    &s.span_id,
                    &s.parent_span_id,
                    &s.name,
                    &s.start_unix_us,
                    &s.duration_us,
                    &attributes,
                    &s.error,
                ],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(spans.len().min(room))
    }

    pub(crate) async fn execution_spans(
        &self,
        execution_id: &str,
    ) -> Result<Vec<SpanRecord>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT trace_id, span_id, parent_span_id, name, start_us, duration_us, \
                 attributes, error FROM execution_spans WHERE execution_id = $1 \
                 ORDER BY start_us, seq",
                &[&execution_id],
            )
            .await?;
        rows.iter()
            .map(|row| {
                let attributes = match columns::json(row, 6)? {
                    serde_json::Value::Object(map) => map,
                    _ => serde_json::Map::new(),
                };
                Ok(SpanRecord {
                    trace_id: row.try_get(0)?,
                    span_id: row.try_get(1)?,
                    parent_span_id: row.try_get(2)?,
                    name: row.try_get(3)?,
                    start_unix_us: row.try_get(4)?,
                    duration_us: row.try_get(5)?,
                    attributes,
                    error: row.try_get(7)?,
                })
            })
            .collect()
    }
}
