//! Executions in SQLite: start, finish, read, and failing those left running.

use rusqlite::{OptionalExtension, Transaction, params};

use super::SqliteStore;
use super::columns;
use super::histories::history_id;
use crate::{Execution, ExecutionEnd, ExecutionStatus, NewExecution, StoreError, time};

const SELECT: &str = "SELECT e.id, h.namespace, h.name, e.revision, e.trigger, e.status, e.exit_code, \
     e.reason, e.started_at, e.ended_at, e.start, e.worker, e.agent_uid, \
     NOT EXISTS (SELECT 1 FROM agents a WHERE a.uid = e.agent_uid) \
     FROM executions e JOIN histories h ON h.id = e.history_id";

fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Execution> {
    let started_at = columns::time(row, 8)?;
    let ended_at = columns::optional_time(row, 9)?;
    Ok(Execution {
        id: row.get(0)?,
        namespace: row.get(1)?,
        agent: row.get(2)?,
        revision: row.get(3)?,
        trigger: row.get(4)?,
        status: columns::enum_text(row, 5)?,
        exit_code: row.get(6)?,
        reason: row.get(7)?,
        started_at,
        ended_at,
        duration_ms: ended_at.map(|end| (end - started_at).num_milliseconds()),
        start: columns::enum_text(row, 10)?,
        worker: row.get(11)?,
        agent_uid: row.get(12)?,
        agent_deleted: row.get(13)?,
    })
}

/// Inserts `e` as `Running`, refusing it when `max_concurrent` (0 for no limit) of its
/// agent's executions already run. The caller's IMMEDIATE transaction holds the database's
/// write lock, so no other start can slip between the count and the insert. Its statements
/// are cached: every execution waits for this write before its agent has its input.
fn insert(tx: &Transaction<'_>, e: &NewExecution, max_concurrent: u32) -> Result<(), StoreError> {
    let (agent, uid): (i64, String) = tx
        .prepare_cached("SELECT id, uid FROM agents WHERE namespace = ?1 AND name = ?2")?
        .query_row(params![e.namespace, e.agent], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
        .optional()?
        .ok_or_else(|| StoreError::AgentNotFound {
            namespace: e.namespace.clone(),
            name: e.agent.clone(),
        })?;
    let history = history_id(tx, &e.namespace, &e.agent)?;
    let revision_exists = tx
        .prepare_cached("SELECT 1 FROM revisions WHERE agent_id = ?1 AND name = ?2")?
        .query_row(params![agent, e.revision], |_| Ok(()))
        .optional()?
        .is_some();
    if !revision_exists {
        return Err(StoreError::RevisionNotFound {
            namespace: e.namespace.clone(),
            revision: e.revision.clone(),
        });
    }
    let exists = tx
        .prepare_cached("SELECT 1 FROM executions WHERE id = ?1")?
        .query_row([&e.id], |_| Ok(()))
        .optional()?
        .is_some();
    if exists {
        return Err(StoreError::DuplicateExecution(e.id.clone()));
    }
    if max_concurrent > 0 {
        let running: i64 = tx
            .prepare_cached(
                "SELECT count(*) FROM executions \
                 WHERE history_id = ?1 AND agent_uid = ?2 AND status = ?3",
            )?
            .query_row(
                params![history, uid, ExecutionStatus::Running.as_str()],
                |row| row.get(0),
            )?;
        if running >= i64::from(max_concurrent) {
            return Err(StoreError::TooManyExecutions {
                limit: max_concurrent,
            });
        }
    }
    tx.prepare_cached(
        "INSERT INTO executions \
         (id, history_id, agent_uid, revision, trigger, status, started_at, start, worker) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        e.id,
        history,
        uid,
        e.revision,
        e.trigger,
        ExecutionStatus::Running.as_str(),
        time::to_millis(e.started_at),
        e.start.as_str(),
        e.worker
    ])?;
    if crate::prunes_at(&e.id) {
        prune(tx, history, crate::EXECUTIONS_PER_NAME)?;
    }
    Ok(())
}

/// Removes the finished executions of history `history` past its newest `keep`, with their
/// log lines (their spans go by the foreign key); returns how many went.
fn prune(tx: &Transaction<'_>, history: i64, keep: usize) -> Result<usize, StoreError> {
    let cut: Option<(i64, String)> = tx
        .query_row(
            "SELECT started_at, id FROM executions WHERE history_id = ?1 \
             ORDER BY started_at DESC, id DESC LIMIT 1 OFFSET ?2",
            params![history, i64::try_from(keep).unwrap_or(i64::MAX)],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()?;
    let Some((at, id)) = cut else {
        return Ok(0);
    };
    let old = "SELECT id FROM executions WHERE history_id = ?1 AND status != ?4 \
               AND (started_at < ?2 OR (started_at = ?2 AND id <= ?3))";
    let args = params![history, at, id, ExecutionStatus::Running.as_str()];
    tx.execute(
        &format!("DELETE FROM logs WHERE history_id = ?1 AND execution_id IN ({old})"),
        args,
    )?;
    tx.execute(
        &format!("DELETE FROM log_sizes WHERE history_id = ?1 AND execution_id IN ({old})"),
        args,
    )?;
    Ok(tx.execute(&format!("DELETE FROM executions WHERE id IN ({old})"), args)?)
}

impl SqliteStore {
    pub(crate) fn start_execution(&self, e: &NewExecution) -> Result<(), StoreError> {
        self.write(|tx| insert(tx, e, 0))
    }

    pub(crate) fn prune_executions(
        &self,
        namespace: &str,
        name: &str,
        keep: usize,
    ) -> Result<usize, StoreError> {
        self.write(|tx| match history_id(tx, namespace, name) {
            Ok(history) => prune(tx, history, keep),
            Err(StoreError::AgentNotFound { .. }) => Ok(0),
            Err(e) => Err(e),
        })
    }

    pub(crate) fn start_execution_within(
        &self,
        e: &NewExecution,
        max_concurrent: u32,
    ) -> Result<(), StoreError> {
        self.write(|tx| insert(tx, e, max_concurrent))
    }

    /// Returns whether the execution was still running (and is now failed).
    pub(crate) fn fail_execution_if_running(
        &self,
        id: &str,
        reason: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<bool, StoreError> {
        let changed = self.write(|tx| {
            Ok(tx.execute(
                "UPDATE executions SET status = ?2, reason = ?3, ended_at = ?4 \
                 WHERE id = ?1 AND status = ?5",
                params![
                    id,
                    ExecutionStatus::Failed.as_str(),
                    reason,
                    time::to_millis(now),
                    ExecutionStatus::Running.as_str()
                ],
            )?)
        })?;
        Ok(changed > 0)
    }

    /// Returns whether the execution exists.
    pub(crate) fn finish_execution(
        &self,
        id: &str,
        end: &ExecutionEnd,
    ) -> Result<bool, StoreError> {
        let changed = self.write(|tx| {
            Ok(tx
                .prepare_cached(
                    "UPDATE executions SET status = ?2, exit_code = ?3, reason = ?4, ended_at = ?5 WHERE id = ?1",
                )?
                .execute(params![id, end.status.as_str(), end.exit_code, end.reason, time::to_millis(end.ended_at)])?)
        })?;
        Ok(changed > 0)
    }

    pub(crate) fn get_execution(&self, id: &str) -> Result<Option<Execution>, StoreError> {
        let sql = format!("{SELECT} WHERE e.id = ?1");
        Ok(self.conn().query_row(&sql, [id], from_row).optional()?)
    }

    pub(crate) fn executions(
        &self,
        namespace: &str,
        name: &str,
        limit: usize,
    ) -> Result<Vec<Execution>, StoreError> {
        let conn = self.conn();
        let history = history_id(&conn, namespace, name)?;
        let sql = format!(
            "{SELECT} WHERE e.history_id = ?1 ORDER BY e.started_at DESC, e.rowid DESC LIMIT ?2"
        );
        let mut stmt = conn.prepare(&sql)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = stmt.query_map(params![history, limit], from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub(crate) fn fail_running_executions(&self, reason: &str) -> Result<Vec<String>, StoreError> {
        self.write(|tx| {
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
        })
    }
}
