//! Log lines in PostgreSQL: numbered by an identity `seq` under a lock so they become
//! visible in `seq` order, with the bytes each execution keeps in `log_sizes`.

use std::collections::HashMap;

use tokio_postgres::Row;

use super::columns;
use super::histories::history_id;
use super::{PgStore, locks};
use crate::integer;
use crate::{
    LOG_ROW_COST, LogLine, LogPage, LogQuery, NewLogLine, StoreError, log_line_cost, time,
};

fn from_row(row: &Row) -> Result<LogLine, StoreError> {
    let line: Vec<u8> = row.try_get(4)?;
    Ok(LogLine {
        seq: row.try_get(0)?,
        execution_id: row.try_get(1)?,
        stream: row.try_get(2)?,
        time: columns::time(row, 3)?,
        // Written from a `String`, so always UTF-8 unless changed by hand.
        line: String::from_utf8(line).map_err(|e| StoreError::Corrupt {
            what: "log line",
            reason: e.to_string(),
        })?,
    })
}

/// What one batch adds to an execution's entry in `log_sizes`.
struct Added {
    first_seq: i64,
    last_seq: i64,
    bytes: i64,
}

impl PgStore {
    pub(crate) async fn append_logs(&self, lines: &[NewLogLine]) -> Result<(), StoreError> {
        self.insert_logs(lines).await?;
        Ok(())
    }

    pub(crate) async fn append_log(&self, line: &NewLogLine) -> Result<i64, StoreError> {
        self.insert_logs(std::slice::from_ref(line)).await
    }

    /// Inserts the lines and adds them to their executions' sizes in one transaction;
    /// returns the last one's `seq`.
    async fn insert_logs(&self, lines: &[NewLogLine]) -> Result<i64, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let mut histories: HashMap<(&str, &str), i64> = HashMap::new();
        let mut ids = Vec::with_capacity(lines.len());
        for l in lines {
            let key = (l.namespace.as_str(), l.agent.as_str());
            let id = match histories.get(&key) {
                Some(id) => *id,
                None => {
                    let id = history_id(&tx, key.0, key.1).await?;
                    histories.insert(key, id);
                    id
                }
            };
            ids.push(id);
        }
        let executions: Vec<&str> = lines.iter().map(|l| l.execution_id.as_str()).collect();
        let streams: Vec<&str> = lines.iter().map(|l| l.stream.as_str()).collect();
        let times: Vec<i64> = lines.iter().map(|l| time::to_millis(l.time)).collect();
        let texts: Vec<&[u8]> = lines.iter().map(|l| l.line.as_bytes()).collect();
        // Numbering and commit happen under one lock: without it a transaction could take
        // seq 11, commit after another's seq 12, and a follower past 12 would never see 11.
        locks::lock(&tx, locks::LOG_APPEND).await?;
        let rows = tx
            .query(
                "INSERT INTO logs (history_id, execution_id, stream, time, line) \
                 SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::bigint[], $5::bytea[]) \
                 RETURNING seq",
                &[&ids, &executions, &streams, &times, &texts],
            )
            .await?;
        let mut sizes: HashMap<(i64, &str), Added> = HashMap::new();
        let mut last = 0;
        for ((l, history), row) in lines.iter().zip(&ids).zip(&rows) {
            let seq: i64 = row.try_get(0)?;
            last = seq;
            let bytes = integer::saturating_i64(log_line_cost(&l.line));
            sizes
                .entry((*history, l.execution_id.as_str()))
                .and_modify(|a| {
                    a.last_seq = seq;
                    a.bytes = a.bytes.saturating_add(bytes);
                })
                .or_insert(Added {
                    first_seq: seq,
                    last_seq: seq,
                    bytes,
                });
        }
        for ((history, execution), a) in &sizes {
            tx.execute(
                "INSERT INTO log_sizes (history_id, execution_id, first_seq, last_seq, bytes) \
                 VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (history_id, execution_id) DO UPDATE SET \
                 last_seq = EXCLUDED.last_seq, bytes = log_sizes.bytes + EXCLUDED.bytes",
                &[history, execution, &a.first_seq, &a.last_seq, &a.bytes],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(last)
    }

    pub(crate) async fn logs(
        &self,
        namespace: &str,
        name: &str,
        q: &LogQuery,
    ) -> Result<Vec<LogLine>, StoreError> {
        let client = self.client().await?;
        let history = history_id(&client, namespace, name).await?;
        let after = q.after_seq.unwrap_or(i64::MIN);
        // Newest-first with a LIMIT takes the tail via the (history_id, seq) index; NULL is no limit.
        let limit: Option<i64> = q.tail.map(|n| i64::try_from(n).unwrap_or(i64::MAX));
        let rows = client
            .query(
                "SELECT seq, execution_id, stream, time, line FROM logs \
                 WHERE history_id = $1 AND seq > $2 ORDER BY seq DESC LIMIT $3",
                &[&history, &after, &limit],
            )
            .await?;
        let mut lines = rows.iter().map(from_row).collect::<Result<Vec<_>, _>>()?;
        lines.reverse();
        Ok(lines)
    }

    pub(crate) async fn log_page(
        &self,
        namespace: &str,
        name: &str,
        page: &LogPage,
    ) -> Result<Vec<LogLine>, StoreError> {
        let client = self.client().await?;
        let history = history_id(&client, namespace, name).await?;
        let limit = i64::try_from(page.max_lines).unwrap_or(i64::MAX);
        let rows = client
            .query(
                "SELECT seq, execution_id, stream, time, line FROM logs \
                 WHERE history_id = $1 AND seq > $2 AND seq <= $3 \
                 AND ($5::text IS NULL OR execution_id = $5) ORDER BY seq LIMIT $4",
                &[
                    &history,
                    &page.after_seq.unwrap_or(i64::MIN),
                    &page.up_to_seq.unwrap_or(i64::MAX),
                    &limit,
                    &page.execution,
                ],
            )
            .await?;
        let mut lines = Vec::new();
        let mut bytes = 0usize;
        for row in &rows {
            let line = from_row(row)?;
            bytes = bytes.saturating_add(line.line.len());
            lines.push(line);
            if bytes >= page.max_bytes {
                break;
            }
        }
        Ok(lines)
    }

    pub(crate) async fn log_tail_start(
        &self,
        namespace: &str,
        name: &str,
        tail: usize,
        execution: Option<&str>,
    ) -> Result<Option<i64>, StoreError> {
        let client = self.client().await?;
        let history = history_id(&client, namespace, name).await?;
        let offset = i64::try_from(tail).unwrap_or(i64::MAX);
        let row = client
            .query_opt(
                "SELECT seq FROM logs WHERE history_id = $1 AND ($3::text IS NULL OR execution_id = $3) \
                 ORDER BY seq DESC LIMIT 1 OFFSET $2",
                &[&history, &offset, &execution],
            )
            .await?;
        Ok(row.map(|r| r.try_get(0)).transpose()?)
    }

    pub(crate) async fn log_bytes(&self, namespace: &str, name: &str) -> Result<u64, StoreError> {
        let client = self.client().await?;
        let history = history_id(&client, namespace, name).await?;
        let row = client
            .query_one(
                "SELECT COALESCE(SUM(bytes), 0)::bigint FROM log_sizes WHERE history_id = $1",
                &[&history],
            )
            .await?;
        columns::count(&row, 0)
    }

    pub(crate) async fn expire_logs(
        &self,
        namespace: &str,
        name: &str,
        max_bytes: u64,
    ) -> Result<u64, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let history = history_id(&tx, namespace, name).await?;
        let mut executions = Vec::new();
        for row in tx
            .query(
                "SELECT execution_id, first_seq, last_seq, bytes FROM log_sizes \
                 WHERE history_id = $1 ORDER BY first_seq",
                &[&history],
            )
            .await?
        {
            executions.push((
                row.try_get::<_, String>(0)?,
                row.try_get::<_, i64>(1)?,
                row.try_get::<_, i64>(2)?,
                row.try_get::<_, i64>(3)?,
            ));
        }
        // Never the newest: it may still be writing, and it is within its own limit.
        executions.pop();
        let max = integer::saturating_i64(max_bytes);
        let mut total: i64 = tx
            .query_one(
                "SELECT COALESCE(SUM(bytes), 0)::bigint FROM log_sizes WHERE history_id = $1",
                &[&history],
            )
            .await?
            .try_get(0)?;
        let mut deleted = 0i64;
        for (execution, first, last, bytes) in executions {
            if total <= max {
                break;
            }
            tx.execute(
                "DELETE FROM logs WHERE history_id = $1 AND seq BETWEEN $2 AND $3 AND execution_id = $4",
                &[&history, &first, &last, &execution],
            )
            .await?;
            tx.execute(
                "DELETE FROM log_sizes WHERE history_id = $1 AND execution_id = $2",
                &[&history, &execution],
            )
            .await?;
            total -= bytes;
            deleted += bytes;
        }
        tx.commit().await?;
        Ok(u64::try_from(deleted).unwrap_or(0))
    }

    pub(crate) async fn trim_execution_logs(
        &self,
        namespace: &str,
        name: &str,
        execution_id: &str,
        max_bytes: u64,
        keep: Option<i64>,
    ) -> Result<u64, StoreError> {
        let max = integer::saturating_i64(max_bytes);
        // seq starts at 1: -1 keeps nothing.
        let keep = keep.unwrap_or(-1);
        let row_cost = integer::saturating_i64(LOG_ROW_COST);
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let history = history_id(&tx, namespace, name).await?;
        let Some(range) = tx
            .query_opt(
                "SELECT first_seq, last_seq FROM log_sizes \
                 WHERE history_id = $1 AND execution_id = $2",
                &[&history, &execution_id],
            )
            .await?
        else {
            return Ok(0);
        };
        let (first, last): (i64, i64) = (range.try_get(0)?, range.try_get(1)?);
        // The newest line that no longer fits, counting back from the newest.
        let Some(gone) = tx
            .query_opt(
                "SELECT seq FROM (SELECT seq, (SUM(octet_length(line)::bigint + $1::bigint) \
                 OVER (ORDER BY seq DESC))::bigint AS total FROM logs \
                 WHERE history_id = $2 AND execution_id = $3 AND seq BETWEEN $4 AND $5 \
                 AND seq != $6) AS running WHERE total > $7::bigint ORDER BY seq DESC LIMIT 1",
                &[
                    &row_cost,
                    &history,
                    &execution_id,
                    &first,
                    &last,
                    &keep,
                    &max,
                ],
            )
            .await?
        else {
            return Ok(0);
        };
        let oldest_gone: i64 = gone.try_get(0)?;
        let deleted: i64 = tx
            .query_one(
                "SELECT COALESCE(SUM(octet_length(line)::bigint + $1::bigint), 0)::bigint FROM logs \
                 WHERE history_id = $2 AND execution_id = $3 AND seq BETWEEN $4 AND $5 \
                 AND seq != $6",
                &[&row_cost, &history, &execution_id, &first, &oldest_gone, &keep],
            )
            .await?
            .try_get(0)?;
        tx.execute(
            "DELETE FROM logs WHERE history_id = $1 AND execution_id = $2 \
             AND seq BETWEEN $3 AND $4 AND seq != $5",
            &[&history, &execution_id, &first, &oldest_gone, &keep],
        )
        .await?;
        // The newest line always stays unless it alone is over: then nothing does.
        let left: Option<i64> = tx
            .query_one(
                "SELECT MIN(seq) FROM logs WHERE history_id = $1 AND execution_id = $2 \
                 AND seq BETWEEN $3 AND $4",
                &[&history, &execution_id, &first, &last],
            )
            .await?
            .try_get(0)?;
        match left {
            Some(first) => {
                tx.execute(
                    "UPDATE log_sizes SET first_seq = $3, bytes = bytes - $4 \
                     WHERE history_id = $1 AND execution_id = $2",
                    &[&history, &execution_id, &first, &deleted],
                )
                .await?
            }
            None => {
                tx.execute(
                    "DELETE FROM log_sizes WHERE history_id = $1 AND execution_id = $2",
                    &[&history, &execution_id],
                )
                .await?
            }
        };
        tx.commit().await?;
        Ok(u64::try_from(deleted).unwrap_or(0))
    }
}
