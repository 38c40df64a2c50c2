//! Workers in SQLite: registration, heartbeats with their warm counts, drain, removal, and
//! marking silent workers lost together with the executions they were running.

use rusqlite::{OptionalExtension, Transaction, params};

use super::SqliteStore;
use super::columns;
use crate::worker::{Heartbeat, WarmCount, WorkerRecord, WorkerRegistration, WorkerState};
use crate::{ExecutionStatus, StoreError, time};

/// Workers with their load; `running` and `warm` are counted, not stored.
const SELECT: &str = "SELECT w.name, w.pool, w.address, w.capacity, w.state, w.incarnation, \
       w.started_at, w.heartbeat_at, \
       (SELECT count(*) FROM executions e WHERE e.worker = w.name AND e.status = 'Running'), \
       (SELECT COALESCE(SUM(k.ready), 0) FROM worker_warm k WHERE k.worker = w.name) \
     FROM workers w";

fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<WorkerRecord> {
    let small = |idx: usize| -> rusqlite::Result<u32> {
        Ok(u32::try_from(columns::read_count(row, idx)?).unwrap_or(u32::MAX))
    };
    Ok(WorkerRecord {
        name: row.get(0)?,
        pool: row.get(1)?,
        address: row.get(2)?,
        capacity: small(3)?,
        state: columns::enum_text(row, 4)?,
        incarnation: row.get(5)?,
        started_at: columns::time(row, 6)?,
        heartbeat_at: columns::time(row, 7)?,
        running: small(8)?,
        warm: small(9)?,
    })
}

/// Replaces the worker's warm counts; a revision listed twice counts the sum.
fn replace_warm(tx: &Transaction<'_>, worker: &str, warm: &[WarmCount]) -> Result<(), StoreError> {
    tx.execute("DELETE FROM worker_warm WHERE worker = ?1", [worker])?;
    let mut insert = tx.prepare(
        "INSERT INTO worker_warm (worker, namespace, agent, revision, ready) \
         VALUES (?1, ?2, ?3, ?4, ?5) \
         ON CONFLICT (worker, namespace, agent, revision) \
         DO UPDATE SET ready = ready + excluded.ready",
    )?;
    for w in warm {
        insert.execute(params![worker, w.namespace, w.agent, w.revision, w.ready])?;
    }
    Ok(())
}

impl SqliteStore {
    pub(crate) fn register_worker(
        &self,
        w: &WorkerRegistration,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), StoreError> {
        self.write(|tx| {
            let now = time::to_millis(now);
            tx.execute(
                "INSERT INTO workers (name, pool, address, capacity, state, incarnation, started_at, heartbeat_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7) \
                 ON CONFLICT (name) DO UPDATE SET pool = excluded.pool, address = excluded.address, \
                   capacity = excluded.capacity, state = excluded.state, \
                   incarnation = excluded.incarnation, started_at = excluded.started_at, \
                   heartbeat_at = excluded.heartbeat_at",
                params![
                    w.name,
                    w.pool,
                    w.address,
                    w.capacity,
                    WorkerState::Ready.as_str(),
                    w.incarnation,
                    now
                ],
            )?;
            replace_warm(tx, &w.name, &[])
        })
    }

    pub(crate) fn heartbeat_worker(
        &self,
        name: &str,
        incarnation: &str,
        warm: &[WarmCount],
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Heartbeat, StoreError> {
        self.write(|tx| {
            let row: Option<(WorkerState, String)> = tx
                .query_row(
                    "SELECT state, incarnation FROM workers WHERE name = ?1",
                    [name],
                    |row| Ok((columns::enum_text(row, 0)?, row.get(1)?)),
                )
                .optional()?;
            let answer = match row {
                None => return Ok(Heartbeat::Replaced),
                Some((_, registered)) if registered != incarnation => {
                    return Ok(Heartbeat::Replaced);
                }
                Some((WorkerState::Lost, _)) => return Ok(Heartbeat::Replaced),
                Some((WorkerState::Ready, _)) => Heartbeat::Ready,
                Some((WorkerState::Draining, _)) => Heartbeat::Draining,
            };
            tx.execute(
                "UPDATE workers SET heartbeat_at = ?2 WHERE name = ?1",
                params![name, time::to_millis(now)],
            )?;
            replace_warm(tx, name, warm)?;
            Ok(answer)
        })
    }

    pub(crate) fn list_workers(&self) -> Result<Vec<WorkerRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!("{SELECT} ORDER BY w.pool, w.name"))?;
        let rows = stmt.query_map([], from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub(crate) fn drain_worker(&self, name: &str) -> Result<bool, StoreError> {
        // A lost worker stays lost; the row is still matched, so the name is known.
        let changed = self.write(|tx| {
            Ok(tx.execute(
                "UPDATE workers SET state = CASE WHEN state = ?2 THEN state ELSE ?3 END \
                 WHERE name = ?1",
                params![
                    name,
                    WorkerState::Lost.as_str(),
                    WorkerState::Draining.as_str()
                ],
            )?)
        })?;
        Ok(changed > 0)
    }

    pub(crate) fn remove_worker(&self, name: &str, incarnation: &str) -> Result<bool, StoreError> {
        let deleted = self.write(|tx| {
            Ok(tx.execute(
                "DELETE FROM workers WHERE name = ?1 AND incarnation = ?2",
                params![name, incarnation],
            )?)
        })?;
        Ok(deleted > 0)
    }

    pub(crate) fn mark_lost_workers(
        &self,
        heartbeat_before: chrono::DateTime<chrono::Utc>,
        reason: &str,
    ) -> Result<Vec<String>, StoreError> {
        self.write(|tx| {
            let names: Vec<String> = tx
                .prepare(
                    "UPDATE workers SET state = ?1 WHERE state IN (?2, ?3) AND heartbeat_at < ?4 \
                     RETURNING name",
                )?
                .query_map(
                    params![
                        WorkerState::Lost.as_str(),
                        WorkerState::Ready.as_str(),
                        WorkerState::Draining.as_str(),
                        time::to_millis(heartbeat_before)
                    ],
                    |row| row.get(0),
                )?
                .collect::<Result<_, _>>()?;
            let ended_at = time::to_millis(time::now());
            for name in &names {
                tx.execute(
                    "UPDATE executions SET status = ?1, reason = ?2, ended_at = ?3 \
                     WHERE status = ?4 AND worker = ?5",
                    params![
                        ExecutionStatus::Failed.as_str(),
                        reason,
                        ended_at,
                        ExecutionStatus::Running.as_str(),
                        name
                    ],
                )?;
                // A lost worker's warm sandboxes are no longer anyone's to take.
                tx.execute("DELETE FROM worker_warm WHERE worker = ?1", [name])?;
            }
            Ok(names)
        })
    }

    pub(crate) fn warm_sandboxes(&self) -> Result<Vec<(String, WarmCount)>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT worker, namespace, agent, revision, ready FROM worker_warm \
             ORDER BY worker, namespace, agent, revision",
        )?;
        let rows = stmt.query_map([], |row| {
            Ok((
                row.get(0)?,
                WarmCount {
                    namespace: row.get(1)?,
                    agent: row.get(2)?,
                    revision: row.get(3)?,
                    ready: row.get(4)?,
                },
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub(crate) fn fail_worker_executions(
        &self,
        name: &str,
        reason: &str,
    ) -> Result<Vec<String>, StoreError> {
        self.write(|tx| {
            let ids: Vec<String> = tx
                .prepare("SELECT id FROM executions WHERE status = ?1 AND worker = ?2 ORDER BY id")?
                .query_map(params![ExecutionStatus::Running.as_str(), name], |row| {
                    row.get(0)
                })?
                .collect::<Result<_, _>>()?;
            tx.execute(
                "UPDATE executions SET status = ?1, reason = ?2, ended_at = ?3 \
                 WHERE status = ?4 AND worker = ?5",
                params![
                    ExecutionStatus::Failed.as_str(),
                    reason,
                    time::to_millis(time::now()),
                    ExecutionStatus::Running.as_str(),
                    name
                ],
            )?;
            Ok(ids)
        })
    }
}
