//! Log lines of executions, numbered by a store-wide, ever-increasing `seq`, with the bytes
//! each execution keeps so an agent's total can be held under a cap without scanning lines.
//! A line costs its text plus [`LOG_ROW_COST`], so empty and short lines count too.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension as _, params};

use crate::agent::agent_id;
use crate::{Store, StoreError, time};

/// What a stored line costs besides its text: it approximates a row's overhead in the store
/// (seq, ids, stream, time, index entry). Without it an empty line would cost nothing, and an
/// agent printing empty lines would fill the store without ever reaching a log limit.
pub const LOG_ROW_COST: u64 = 64;

/// Bytes a line counts for against log limits: its text plus [`LOG_ROW_COST`].
///
/// ```
/// assert_eq!(clrk_store::log_line_cost(""), clrk_store::LOG_ROW_COST);
/// assert_eq!(clrk_store::log_line_cost("abc"), 3 + clrk_store::LOG_ROW_COST);
/// ```
pub fn log_line_cost(line: &str) -> u64 {
    (line.len() as u64).saturating_add(LOG_ROW_COST)
}

/// A line to append.
#[derive(Debug, Clone, PartialEq)]
pub struct NewLogLine {
    /// Execution that wrote it.
    pub execution_id: String,
    /// Agent namespace.
    pub namespace: String,
    /// Agent name.
    pub agent: String,
    /// `stdout` or `stderr`.
    pub stream: String,
    /// When it was read.
    pub time: DateTime<Utc>,
    /// The text, without its newline.
    pub line: String,
}

/// A stored line.
#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    /// Increases with every line stored; use it as `after_seq` to follow.
    pub seq: i64,
    /// Execution that wrote it.
    pub execution_id: String,
    /// `stdout` or `stderr`.
    pub stream: String,
    /// When it was read.
    pub time: DateTime<Utc>,
    /// The text.
    pub line: String,
}

/// Which lines `logs` returns; the default is all of them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogQuery {
    /// Only the last N lines (after `after_seq` filtering).
    pub tail: Option<usize>,
    /// Only lines with `seq` greater than this.
    pub after_seq: Option<i64>,
}

/// One page of an agent's log in ascending `seq`, for readers that must bound their memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogPage {
    /// Only lines with `seq` greater than this; `None` from the first line.
    pub after_seq: Option<i64>,
    /// Only lines with `seq` up to this; `None` up to the newest.
    pub up_to_seq: Option<i64>,
    /// At most this many lines.
    pub max_lines: usize,
    /// Stop after the line that reaches this many bytes of text.
    pub max_bytes: usize,
}

fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<LogLine> {
    Ok(LogLine {
        seq: row.get(0)?,
        execution_id: row.get(1)?,
        stream: row.get(2)?,
        time: time::column(row, 3)?,
        line: row.get(4)?,
    })
}

/// What one batch adds to an execution's entry in `log_sizes`.
struct Added {
    first_seq: i64,
    last_seq: i64,
    bytes: i64,
}

impl Store {
    /// Appends lines in one transaction; all are stored or none. Each line's agent must exist.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = clrk_store::Store::open(&dir.path().join("clrk.db")).unwrap();
    /// store.append_logs(&[]).unwrap();
    /// ```
    pub fn append_logs(&self, lines: &[NewLogLine]) -> Result<(), StoreError> {
        if lines.is_empty() {
            return Ok(());
        }
        self.write(|tx| insert_logs(tx, lines))?;
        tracing::trace!(lines = lines.len(), "log lines appended");
        Ok(())
    }

    /// Appends one line and returns its `seq`.
    pub fn append_log(&self, line: &NewLogLine) -> Result<i64, StoreError> {
        self.write(|tx| insert_logs(tx, std::slice::from_ref(line)))
    }

    /// The agent's log lines in ascending `seq`, filtered by `q`. Loads them all: readers of
    /// logs an agent wrote use [`Store::log_page`].
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = clrk_store::Store::open(&dir.path().join("clrk.db")).unwrap();
    /// let q = clrk_store::LogQuery { tail: Some(10), after_seq: None };
    /// assert!(store.logs("default", "missing", &q).is_err());
    /// ```
    pub fn logs(
        &self,
        namespace: &str,
        name: &str,
        q: &LogQuery,
    ) -> Result<Vec<LogLine>, StoreError> {
        let conn = self.conn();
        let agent = agent_id(&conn, namespace, name)?;
        let after = q.after_seq.unwrap_or(i64::MIN);
        // Newest-first with a LIMIT takes the tail via the (agent_id, seq) index; -1 is no limit.
        let limit = q.tail.map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX));
        let mut stmt = conn.prepare_cached(
            "SELECT seq, execution_id, stream, time, line FROM logs \
             WHERE agent_id = ?1 AND seq > ?2 ORDER BY seq DESC LIMIT ?3",
        )?;
        let mut lines = stmt
            .query_map(params![agent, after, limit], from_row)?
            .collect::<Result<Vec<_>, _>>()?;
        lines.reverse();
        Ok(lines)
    }

    /// One page of the agent's log in ascending `seq`: at most `max_lines` lines, ending with
    /// the line that reaches `max_bytes`. An empty page means there is nothing more (now).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = clrk_store::Store::open(&dir.path().join("clrk.db")).unwrap();
    /// let page = clrk_store::LogPage { after_seq: None, up_to_seq: None, max_lines: 1000, max_bytes: 1 << 20 };
    /// assert!(store.log_page("default", "missing", &page).is_err());
    /// ```
    pub fn log_page(
        &self,
        namespace: &str,
        name: &str,
        page: &LogPage,
    ) -> Result<Vec<LogLine>, StoreError> {
        let conn = self.conn();
        let agent = agent_id(&conn, namespace, name)?;
        let limit = i64::try_from(page.max_lines).unwrap_or(i64::MAX);
        let mut stmt = conn.prepare_cached(
            "SELECT seq, execution_id, stream, time, line FROM logs \
             WHERE agent_id = ?1 AND seq > ?2 AND seq <= ?3 ORDER BY seq LIMIT ?4",
        )?;
        let rows = stmt.query_map(
            params![
                agent,
                page.after_seq.unwrap_or(i64::MIN),
                page.up_to_seq.unwrap_or(i64::MAX),
                limit
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

    /// The `after_seq` from which only the agent's last `tail` lines follow; `None` when it
    /// has no more than `tail` lines.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = clrk_store::Store::open(&dir.path().join("clrk.db")).unwrap();
    /// assert!(store.log_tail_start("default", "missing", 10).is_err());
    /// ```
    pub fn log_tail_start(
        &self,
        namespace: &str,
        name: &str,
        tail: usize,
    ) -> Result<Option<i64>, StoreError> {
        let conn = self.conn();
        let agent = agent_id(&conn, namespace, name)?;
        let offset = i64::try_from(tail).unwrap_or(i64::MAX);
        let mut stmt = conn.prepare_cached(
            "SELECT seq FROM logs WHERE agent_id = ?1 ORDER BY seq DESC LIMIT 1 OFFSET ?2",
        )?;
        Ok(stmt
            .query_map(params![agent, offset], |row| row.get(0))?
            .next()
            .transpose()?)
    }

    /// The `seq` of the agent's newest line; `None` when it has none.
    pub fn log_last_seq(&self, namespace: &str, name: &str) -> Result<Option<i64>, StoreError> {
        self.log_tail_start(namespace, name, 0)
    }

    /// Bytes of log the agent keeps over all its executions, each line costing
    /// [`log_line_cost`].
    pub fn log_bytes(&self, namespace: &str, name: &str) -> Result<u64, StoreError> {
        let conn = self.conn();
        let agent = agent_id(&conn, namespace, name)?;
        let bytes: i64 = conn.query_row(
            "SELECT COALESCE(SUM(bytes), 0) FROM log_sizes WHERE agent_id = ?1",
            params![agent],
            |row| row.get(0),
        )?;
        Ok(u64::try_from(bytes).unwrap_or(0))
    }

    /// Deletes the lines of the agent's oldest executions, whole executions at a time, until
    /// it keeps at most `max_bytes` of log (as [`log_line_cost`] counts); its newest execution is always kept. Returns
    /// the bytes deleted. Reads one row per execution, never the lines themselves.
    pub fn expire_logs(
        &self,
        namespace: &str,
        name: &str,
        max_bytes: u64,
    ) -> Result<u64, StoreError> {
        let deleted = self.write(|tx| {
            let agent = agent_id(tx, namespace, name)?;
            let mut executions = tx
                .prepare_cached(
                    "SELECT execution_id, first_seq, last_seq, bytes FROM log_sizes \
                     WHERE agent_id = ?1 ORDER BY first_seq",
                )?
                .query_map(params![agent], |row| {
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
                "SELECT COALESCE(SUM(bytes), 0) FROM log_sizes WHERE agent_id = ?1",
                params![agent],
                |row| row.get(0),
            )?;
            let mut deleted = 0i64;
            let mut lines = tx.prepare_cached(
                "DELETE FROM logs WHERE agent_id = ?1 AND seq BETWEEN ?2 AND ?3 AND execution_id = ?4",
            )?;
            let mut size = tx.prepare_cached(
                "DELETE FROM log_sizes WHERE agent_id = ?1 AND execution_id = ?2",
            )?;
            for (execution, first, last, bytes) in executions {
                if total <= max {
                    break;
                }
                lines.execute(params![agent, first, last, execution])?;
                size.execute(params![agent, execution])?;
                total -= bytes;
                deleted += bytes;
            }
            Ok(deleted)
        })?;
        if deleted > 0 {
            tracing::debug!(
                namespace,
                agent = name,
                bytes = deleted,
                "oldest log lines expired"
            );
        }
        Ok(u64::try_from(deleted).unwrap_or(0))
    }

    /// Deletes the oldest lines of one execution until the others than `keep` (a line that
    /// must stay, like a marker) cost at most `max_bytes` as [`log_line_cost`] counts; for a
    /// run that keeps its newest lines. Returns the bytes deleted. Reads the execution's lines
    /// once and deletes with one statement, so callers trim every so many bytes, not per line.
    pub fn trim_execution_logs(
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
        let row_cost = LOG_ROW_COST as i64;
        let deleted = self.write(|tx| {
            let agent = agent_id(tx, namespace, name)?;
            let Some((first, last)) = tx
                .query_row(
                    "SELECT first_seq, last_seq FROM log_sizes \
                     WHERE agent_id = ?1 AND execution_id = ?2",
                    params![agent, execution_id],
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
                     WHERE agent_id = ?2 AND execution_id = ?3 AND seq BETWEEN ?4 AND ?5 \
                     AND seq != ?6) WHERE total > ?7 ORDER BY seq DESC LIMIT 1",
                    params![row_cost, agent, execution_id, first, last, keep, max],
                    |row| row.get::<_, i64>(0),
                )
                .optional()?
            else {
                return Ok(0);
            };
            let deleted: i64 = tx.query_row(
                "SELECT COALESCE(SUM(length(CAST(line AS BLOB)) + ?1), 0) FROM logs \
                 WHERE agent_id = ?2 AND execution_id = ?3 AND seq BETWEEN ?4 AND ?5 \
                 AND seq != ?6",
                params![row_cost, agent, execution_id, first, oldest_gone, keep],
                |row| row.get(0),
            )?;
            tx.execute(
                "DELETE FROM logs WHERE agent_id = ?1 AND execution_id = ?2 \
                 AND seq BETWEEN ?3 AND ?4 AND seq != ?5",
                params![agent, execution_id, first, oldest_gone, keep],
            )?;
            // The newest line always stays unless it alone is over: then nothing does.
            let left: Option<i64> = tx.query_row(
                "SELECT MIN(seq) FROM logs WHERE agent_id = ?1 AND execution_id = ?2 \
                 AND seq BETWEEN ?3 AND ?4",
                params![agent, execution_id, first, last],
                |row| row.get(0),
            )?;
            match left {
                Some(first) => tx.execute(
                    "UPDATE log_sizes SET first_seq = ?3, bytes = bytes - ?4 \
                     WHERE agent_id = ?1 AND execution_id = ?2",
                    params![agent, execution_id, first, deleted],
                )?,
                None => tx.execute(
                    "DELETE FROM log_sizes WHERE agent_id = ?1 AND execution_id = ?2",
                    params![agent, execution_id],
                )?,
            };
            Ok(deleted)
        })?;
        tracing::trace!(
            namespace,
            agent = name,
            execution = execution_id,
            bytes = deleted,
            "oldest lines of a run expired"
        );
        Ok(u64::try_from(deleted).unwrap_or(0))
    }
}

/// Inserts the lines and adds them to their executions' sizes; returns the last one's `seq`.
fn insert_logs(tx: &rusqlite::Transaction<'_>, lines: &[NewLogLine]) -> Result<i64, StoreError> {
    let mut agents: HashMap<(&str, &str), i64> = HashMap::new();
    let mut sizes: HashMap<(i64, &str), Added> = HashMap::new();
    let mut last = 0;
    let mut insert = tx.prepare_cached(
        "INSERT INTO logs (agent_id, execution_id, stream, time, line) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    for l in lines {
        let key = (l.namespace.as_str(), l.agent.as_str());
        let agent = match agents.get(&key) {
            Some(id) => *id,
            None => {
                let id = agent_id(tx, key.0, key.1)?;
                agents.insert(key, id);
                id
            }
        };
        insert.execute(params![
            agent,
            l.execution_id,
            l.stream,
            time::to_millis(l.time),
            l.line
        ])?;
        let seq = tx.last_insert_rowid();
        last = seq;
        let bytes = i64::try_from(log_line_cost(&l.line)).unwrap_or(i64::MAX);
        sizes
            .entry((agent, l.execution_id.as_str()))
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
        "INSERT INTO log_sizes (agent_id, execution_id, first_seq, last_seq, bytes) \
         VALUES (?1, ?2, ?3, ?4, ?5) \
         ON CONFLICT (agent_id, execution_id) DO UPDATE SET \
         last_seq = excluded.last_seq, bytes = bytes + excluded.bytes",
    )?;
    for ((agent, execution), a) in &sizes {
        size.execute(params![agent, execution, a.first_seq, a.last_seq, a.bytes])?;
    }
    Ok(last)
}
