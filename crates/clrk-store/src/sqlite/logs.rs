//! Log lines in SQLite: appended with a store-wide AUTOINCREMENT `seq`, with the bytes each
//! execution keeps in `log_sizes` so an agent's total can be held under a cap without
//! scanning lines.

use std::collections::HashMap;

use rusqlite::{OptionalExtension as _, params};

use super::SqliteStore;
use super::columns;
use super::histories::history_id;
use crate::integer;
use crate::{
    LOG_ROW_COST, LogLine, LogPage, LogQuery, NewLogLine, StoreError, log_line_cost, time,
};

fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<LogLine> {
    Ok(LogLine {
        seq: row.get(0)?,
        execution_id: row.get(1)?,
        stream: row.get(2)?,
        time: columns::time(row, 3)?,
        line: row.get(4)?,
    })
}

/// What one batch adds to an execution's entry in `log_sizes`.
struct Added {
    first_seq: i64,
    last_seq: i64,
    bytes: i64,
}

impl SqliteStore {
    pub(crate) fn append_logs(&self, lines: &[NewLogLine]) -> Result<(), StoreError> {
        if lines.is_empty() {
            return Ok(());
        }
        self.write(|tx| insert_logs(tx, lines))?;
        Ok(())
    }

    pub(crate) fn append_log(&self, line: &NewLogLine) -> Result<i64, StoreError> {
        self.write(|tx| insert_logs(tx, std::slice::from_ref(line)))
    }

    pub(crate) fn logs(
        &self,
        namespace: &str,
        name: &str,
        q: &LogQuery,
    ) -> Result<Vec<LogLine>, StoreError> {
        let conn = self.conn();
        let history = history_id(&conn, namespace, name)?;
        let after = q.after_seq.unwrap_or(i64::MIN);
        // Newest-first with a LIMIT takes the tail via the (history_id, seq) index; -1 is no limit.
        let limit = q.tail.map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX));
        let mut stmt = conn.prepare_cached(
            "SELECT seq, execution_id, stream, time, line FROM logs \
             WHERE history_id = ?1 AND seq > ?2 ORDER BY seq DESC LIMIT ?3",
        )?;
        let mut lines = stmt
            .query_map(params![history, after, limit], from_row)?
            .collect::<Result<Vec<_>, _>>()?;
        lines.reverse();
        Ok(lines)
    }

    pub(crate) fn log_page(
        &self,
        namespace: &str,
        name: &str,
        page: &LogPage,
    ) -> Result<Vec<LogLine>, StoreError> {
        let conn = self.conn();
        let history = history_id(&conn, namespace, name)?;
        let limit = i64::try_from(page.max_lines).unwrap_or(i64::MAX);
        let mut stmt = conn.prepare_cached(
            "SELECT seq, execution_id, stream, time, line FROM logs \
             WHERE history_id = ?1 AND seq > ?2 AND seq <= ?3 \
             AND (?5 IS NULL OR execution_id = ?5) ORDER BY seq LIMIT ?4",
        )?;
        let rows = stmt.query_map(
            params![
                history,
                page.after_seq.unwrap_or(i64::MIN),
                page.up_to_seq.unwrap_or(i64::MAX),
                limit,
                page.execution,
            ],
            from_row,
        )?;
        let mut lines = Vec::new();
        let mut bytes = 0usize;
        for line in rows {
            let line = line?;
            bytes = bytes.saturating_add(line.line.len());
            lines.push(line);
            if bytes >= page.max_bytes {
                break;
            }
        }
        Ok(lines)
    }

    pub(crate) fn log_tail_start(
        &self,
        namespace: &str,
        name: &str,
        tail: usize,
        execution: Option<&str>,
    ) -> Result<Option<i64>, StoreError> {
        let conn = self.conn();
        let history = history_id(&conn, namespace, name)?;
        let offset = i64::try_from(tail).unwrap_or(i64::MAX);
        let mut stmt = conn.prepare_cached(
            "SELECT seq FROM logs WHERE history_id = ?1 AND (?3 IS NULL OR execution_id = ?3) \
             ORDER BY seq DESC LIMIT 1 OFFSET ?2",
        )?;
        Ok(stmt
            .query_map(params![history, offset, execution], |row| row.get(0))?
            .next()
            .transpose()?)
    }

    pub(crate) fn log_bytes(&self, namespace: &str, name: &str) -> Result<u64, StoreError> {
        let conn = self.conn();
        let history = history_id(&conn, namespace, name)?;
        let bytes: i64 = conn.query_row(
            "SELECT COALESCE(SUM(bytes), 0) FROM log_sizes WHERE history_id = ?1",
            params![history],
            |row| row.get(0),
        )?;
        Ok(u64::try_from(bytes).unwrap_or(0))
    }

    pub(crate) fn expire_logs(
        &self,
        namespace: &str,
        name: &str,
        max_bytes: u64,
    ) -> Result<u64, StoreError> {
        let deleted = self.write(|tx| {
            let history = history_id(tx, namespace, name)?;
            let mut executions = tx
                .prepare_cached(
                    "SELECT execution_id, first_seq, last_seq, bytes FROM log_sizes \
                     WHERE history_id = ?1 ORDER BY first_seq",
                )?
                .query_map(params![history], |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        row.get::<_, i64>(1)?,
                        row.get::<_, i64>(2)?,
                        row.get::<_, i64>(3)?,
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            // Never the newest: it may still be writing, and it is within its own limit.
            executions.pop();
            let max = i64::try_from(max_bytes).unwrap_or(i64::MAX);
            let mut total: i64 = tx.query_row(
                "SELECT COALESCE(SUM(bytes), 0) FROM log_sizes WHERE history_id = ?1",
                params![history],
                |row| row.get(0),
            )?;
            let mut deleted = 0i64;
            let mut lines = tx.prepare_cached(
                "DELETE FROM logs WHERE history_id = ?1 AND seq BETWEEN ?2 AND ?3 AND execution_id = ?4",
            )?;
            let mut size = tx.prepare_cached(
                "DELETE FROM log_sizes WHERE history_id = ?1 AND execution_id = ?2",
            )?;
            for (execution, first, last, bytes) in executions {
                if total <= max {
                    break;
                }
                lines.execute(params![history, first, last, execution])?;
                size.execute(params![history, execution])?;
                total -= bytes;
                deleted += bytes;
            }
            Ok(deleted)
        })?;
        Ok(u64::try_from(deleted).unwrap_or(0))
    }

    pub(crate) fn trim_execution_logs(
        &self,
        namespace: &str,
        name: &str,
        execution_id: &str,
        max_bytes: u64,
        keep: Option<i64>,
    ) -> Result<u64, StoreError> {
        let max = i64::try_from(max_bytes).unwrap_or(i64::MAX);
        // seq starts at 1: -1 keeps nothing.
        let keep = keep.unwrap_or(-1);
        let row_cost = i64::try_from(LOG_ROW_COST).expect("a small constant");
        let deleted = self.write(|tx| {
            let history = history_id(tx, namespace, name)?;
            let Some((first, last)) = tx
                .query_row(
                    "SELECT first_seq, last_seq FROM log_sizes \
                     WHERE history_id = ?1 AND execution_id = ?2",
                    params![history, execution_id],
                    |row| Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?)),
                )
                .optional()?
            else {
                return Ok(0);
            };
            // The newest line that no longer fits, counting back from the newest.
            let Some(oldest_gone) = tx
                .query_row(
                    "SELECT seq FROM (SELECT seq, SUM(length(CAST(line AS BLOB)) + ?1) \
                     OVER (ORDER BY seq DESC) AS total FROM logs \
                     WHERE history_id = ?2 AND execution_id = ?3 AND seq BETWEEN ?4 AND ?5 \
                     AND seq != ?6) WHERE total > ?7 ORDER BY seq DESC LIMIT 1",
                    params![row_cost, history, execution_id, first, last, keep, max],
                    |row| row.get::<_, i64>(0),
                )
                .optional()?
            else {
                return Ok(0);
            };
            let deleted: i64 = tx.query_row(
                "SELECT COALESCE(SUM(length(CAST(line AS BLOB)) + ?1), 0) FROM logs \
                 WHERE history_id = ?2 AND execution_id = ?3 AND seq BETWEEN ?4 AND ?5 \
                 AND seq != ?6",
                params![row_cost, history, execution_id, first, oldest_gone, keep],
                |row| row.get(0),
            )?;
            tx.execute(
                "DELETE FROM logs WHERE history_id = ?1 AND execution_id = ?2 \
                 AND seq BETWEEN ?3 AND ?4 AND seq != ?5",
                params![history, execution_id, first, oldest_gone, keep],
            )?;
            // The newest line always stays unless it alone is over: then nothing does.
            let left: Option<i64> = tx.query_row(
                "SELECT MIN(seq) FROM logs WHERE history_id = ?1 AND execution_id = ?2 \
                 AND seq BETWEEN ?3 AND ?4",
                params![history, execution_id, first, last],
                |row| row.get(0),
            )?;
            match left {
                Some(first) => tx.execute(
                    "UPDATE log_sizes SET first_seq = ?3, bytes = bytes - ?4 \
                     WHERE history_id = ?1 AND execution_id = ?2",
                    params![history, execution_id, first, deleted],
                )?,
                None => tx.execute(
                    "DELETE FROM log_sizes WHERE history_id = ?1 AND execution_id = ?2",
                    params![history, execution_id],
                )?,
            };
            Ok(deleted)
        })?;
        Ok(u64::try_from(deleted).unwrap_or(0))
    }
}

/// Inserts the lines and adds them to their executions' sizes; returns the last one's `seq`.
fn insert_logs(tx: &rusqlite::Transaction<'_>, lines: &[NewLogLine]) -> Result<i64, StoreError> {
    let mut histories: HashMap<(&str, &str), i64> = HashMap::new();
    let mut sizes: HashMap<(i64, &str), Added> = HashMap::new();
    let mut last = 0;
    let mut insert = tx.prepare_cached(
        "INSERT INTO logs (history_id, execution_id, stream, time, line) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    for l in lines {
        let key = (l.namespace.as_str(), l.agent.as_str());
        let history = match histories.get(&key) {
            Some(id) => *id,
            None => {
                let id = history_id(tx, key.0, key.1)?;
                histories.insert(key, id);
                id
            }
        };
        insert.execute(params![
            history,
            l.execution_id,
            l.stream,
            time::to_millis(l.time),
            l.line
        ])?;
        let seq = tx.last_insert_rowid();
        last = seq;
        let bytes = integer::saturating_i64(log_line_cost(&l.line));
        sizes
            .entry((history, l.execution_id.as_str()))
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
    let mut size = tx.prepare_cached(
        "INSERT INTO log_sizes (history_id, execution_id, first_seq, last_seq, bytes) \
         VALUES (?1, ?2, ?3, ?4, ?5) \
         ON CONFLICT (history_id, execution_id) DO UPDATE SET \
         last_seq = excluded.last_seq, bytes = bytes + excluded.bytes",
    )?;
    for ((history, execution), a) in &sizes {
        size.execute(params![
            history,
            execution,
            a.first_seq,
            a.last_seq,
            a.bytes
        ])?;
    }
    Ok(last)
}
