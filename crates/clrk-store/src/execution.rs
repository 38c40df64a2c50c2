//! Executions: one run of an agent's revision, from start to its recorded end.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};

use crate::agent::agent_id;
use crate::{Store, StoreError, enum_column, time};

/// Where an execution is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecutionStatus {
    /// Started, not finished.
    Running,
    /// Exited 0.
    Succeeded,
    /// Exited non-zero, could not start, or the server restarted under it.
    Failed,
    /// Killed at its timeout.
    TimedOut,
}

impl ExecutionStatus {
    fn as_str(self) -> &'static str {
        match self {
            ExecutionStatus::Running => "Running",
            ExecutionStatus::Succeeded => "Succeeded",
            ExecutionStatus::Failed => "Failed",
            ExecutionStatus::TimedOut => "TimedOut",
        }
    }
}

impl fmt::Display for ExecutionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ExecutionStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "Running" => Ok(ExecutionStatus::Running),
            "Succeeded" => Ok(ExecutionStatus::Succeeded),
            "Failed" => Ok(ExecutionStatus::Failed),
            "TimedOut" => Ok(ExecutionStatus::TimedOut),
            other => Err(format!(
                "unknown execution status {other:?}; expected Running, Succeeded, Failed or TimedOut"
            )),
        }
    }
}

/// How an execution's sandbox came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Start {
    /// Started for this execution.
    #[default]
    Cold,
    /// Taken ready from the agent's warm pool.
    Warm,
}

impl Start {
    fn as_str(self) -> &'static str {
        match self {
            Start::Cold => "cold",
            Start::Warm => "warm",
        }
    }
}

impl fmt::Display for Start {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Start {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "cold" => Ok(Start::Cold),
            "warm" => Ok(Start::Warm),
            other => Err(format!("unknown start {other:?}; expected cold or warm")),
        }
    }
}

/// An execution about to run.
#[derive(Debug, Clone, PartialEq)]
pub struct NewExecution {
    /// Unique id (the CloudEvent id is a good choice).
    pub id: String,
    /// Agent namespace.
    pub namespace: String,
    /// Agent name.
    pub agent: String,
    /// Revision name it runs on (`<agent>-00001`).
    pub revision: String,
    /// What started it, e.g. `http` or `cron`.
    pub trigger: String,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// Cold or warm.
    pub start: Start,
}

/// How an execution ended.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutionEnd {
    /// Final status (not `Running`).
    pub status: ExecutionStatus,
    /// Process exit code, if it exited.
    pub exit_code: Option<i32>,
    /// Why it failed, for users.
    pub reason: Option<String>,
    /// When it ended.
    pub ended_at: DateTime<Utc>,
}

/// A recorded execution.
#[derive(Debug, Clone, PartialEq)]
pub struct Execution {
    /// Unique id.
    pub id: String,
    /// Agent namespace.
    pub namespace: String,
    /// Agent name.
    pub agent: String,
    /// Revision name.
    pub revision: String,
    /// What started it.
    pub trigger: String,
    /// Current status.
    pub status: ExecutionStatus,
    /// Process exit code, if it exited.
    pub exit_code: Option<i32>,
    /// Why it failed.
    pub reason: Option<String>,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it ended; `None` while running.
    pub ended_at: Option<DateTime<Utc>>,
    /// `ended_at - started_at`; `None` while running.
    pub duration_ms: Option<i64>,
    /// Cold or warm.
    pub start: Start,
}

const SELECT: &str = "SELECT e.id, a.namespace, a.name, r.name, e.trigger, e.status, e.exit_code, \
     e.reason, e.started_at, e.ended_at, e.start \
     FROM executions e JOIN agents a ON a.id = e.agent_id JOIN revisions r ON r.id = e.revision_id";

fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Execution> {
    let started_at = time::column(row, 8)?;
    let ended_at = time::optional_column(row, 9)?;
    Ok(Execution {
        id: row.get(0)?,
        namespace: row.get(1)?,
        agent: row.get(2)?,
        revision: row.get(3)?,
        trigger: row.get(4)?,
        status: enum_column::column(row, 5)?,
        exit_code: row.get(6)?,
        reason: row.get(7)?,
        started_at,
        ended_at,
        duration_ms: ended_at.map(|end| (end - started_at).num_milliseconds()),
        start: enum_column::column(row, 10)?,
    })
}

impl Store {
    /// Records an execution as `Running`. Its agent and revision must exist; a reused id is
    /// `StoreError::DuplicateExecution`.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = clrk_store::Store::open(&dir.path().join("clrk.db")).unwrap();
    /// let e = clrk_store::NewExecution {
    ///     id: "ev-1".into(), namespace: "default".into(), agent: "echo".into(),
    ///     revision: "echo-00001".into(), trigger: "http".into(), started_at: chrono::Utc::now(),
    ///     start: clrk_store::Start::Cold,
    /// };
    /// // No agent `echo` has been applied yet.
    /// assert!(store.start_execution(&e).is_err());
    /// ```
    pub fn start_execution(&self, e: &NewExecution) -> Result<(), StoreError> {
        self.write(|tx| {
            let agent = agent_id(tx, &e.namespace, &e.agent)?;
            let revision: i64 = tx
                .query_row(
                    "SELECT id FROM revisions WHERE agent_id = ?1 AND name = ?2",
                    params![agent, e.revision],
                    |row| row.get(0),
                )
                .optional()?
                .ok_or_else(|| StoreError::RevisionNotFound {
                    namespace: e.namespace.clone(),
                    revision: e.revision.clone(),
                })?;
            let exists = tx
                .query_row(
                    "SELECT 1 FROM executions WHERE id = ?1",
                    [&e.id],
                    |_| Ok(()),
                )
                .optional()?
                .is_some();
            if exists {
                return Err(StoreError::DuplicateExecution(e.id.clone()));
            }
            tx.execute(
                "INSERT INTO executions (id, agent_id, revision_id, trigger, status, started_at, start) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    e.id,
                    agent,
                    revision,
                    e.trigger,
                    ExecutionStatus::Running.as_str(),
                    time::to_millis(e.started_at),
                    e.start.as_str()
                ],
            )?;
            Ok(())
        })?;
        tracing::debug!(execution = %e.id, namespace = %e.namespace, agent = %e.agent, revision = %e.revision, "execution started");
        Ok(())
    }

    /// Records how an execution ended. Unknown ids (never started, or agent deleted since)
    /// are `StoreError::ExecutionNotFound`.
    pub fn finish_execution(&self, id: &str, end: &ExecutionEnd) -> Result<(), StoreError> {
        let changed = self.write(|tx| {
            Ok(tx.execute(
                "UPDATE executions SET status = ?2, exit_code = ?3, reason = ?4, ended_at = ?5 WHERE id = ?1",
                params![id, end.status.as_str(), end.exit_code, end.reason, time::to_millis(end.ended_at)],
            )?)
        })?;
        if changed == 0 {
            return Err(StoreError::ExecutionNotFound(id.to_owned()));
        }
        tracing::debug!(execution = id, status = %end.status, exit_code = end.exit_code, "execution finished");
        Ok(())
    }

    /// One execution by id, or `None`.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = clrk_store::Store::open(&dir.path().join("clrk.db")).unwrap();
    /// assert_eq!(store.get_execution("ev-1").unwrap(), None);
    /// ```
    pub fn get_execution(&self, id: &str) -> Result<Option<Execution>, StoreError> {
        let sql = format!("{SELECT} WHERE e.id = ?1");
        Ok(self.conn().query_row(&sql, [id], from_row).optional()?)
    }

    /// The agent's latest `limit` executions, newest first.
    pub fn executions(
        &self,
        namespace: &str,
        name: &str,
        limit: usize,
    ) -> Result<Vec<Execution>, StoreError> {
        let conn = self.conn();
        let agent = agent_id(&conn, namespace, name)?;
        let sql = format!(
            "{SELECT} WHERE e.agent_id = ?1 ORDER BY e.started_at DESC, e.rowid DESC LIMIT ?2"
        );
        let mut stmt = conn.prepare(&sql)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = stmt.query_map(params![agent, limit], from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Marks every `Running` execution `Failed` with `reason`, ended now, and returns their
    /// ids. Called at server start: nothing can still be running after a restart.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = clrk_store::Store::open(&dir.path().join("clrk.db")).unwrap();
    /// assert!(store.fail_running_executions("server restarted").unwrap().is_empty());
    /// ```
    pub fn fail_running_executions(&self, reason: &str) -> Result<Vec<String>, StoreError> {
        let ids = self.write(|tx| {
            let mut stmt = tx.prepare(
                "UPDATE executions SET status = ?1, reason = ?2, ended_at = ?3 \
                 WHERE status = ?4 RETURNING id",
            )?;
            let rows = stmt.query_map(
                params![
                    ExecutionStatus::Failed.as_str(),
                    reason,
                    time::to_millis(time::now()),
                    ExecutionStatus::Running.as_str()
                ],
                |row| row.get(0),
            )?;
            Ok(rows.collect::<Result<Vec<String>, _>>()?)
        })?;
        if !ids.is_empty() {
            tracing::warn!(
                count = ids.len(),
                reason,
                "executions left running were marked failed"
            );
        }
        Ok(ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_text_round_trips() {
        for s in [
            ExecutionStatus::Running,
            ExecutionStatus::Succeeded,
            ExecutionStatus::Failed,
            ExecutionStatus::TimedOut,
        ] {
            assert_eq!(s.to_string().parse::<ExecutionStatus>(), Ok(s));
        }
        assert!("Timeout".parse::<ExecutionStatus>().is_err());
    }
}
