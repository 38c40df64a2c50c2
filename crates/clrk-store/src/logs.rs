//! Log lines of executions, numbered by a store-wide, ever-increasing `seq`.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use rusqlite::params;

use crate::agent::agent_id;
use crate::{Store, StoreError, time};

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

fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<LogLine> {
    Ok(LogLine {
        seq: row.get(0)?,
        execution_id: row.get(1)?,
        stream: row.get(2)?,
        time: time::column(row, 3)?,
        line: row.get(4)?,
    })
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
        self.write(|tx| {
            let mut agents: HashMap<(&str, &str), i64> = HashMap::new();
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
                insert.execute(params![agent, l.execution_id, l.stream, time::to_millis(l.time), l.line])?;
            }
            Ok(())
        })?;
        tracing::trace!(lines = lines.len(), "log lines appended");
        Ok(())
    }

    /// The agent's log lines in ascending `seq`, filtered by `q`.
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
}
