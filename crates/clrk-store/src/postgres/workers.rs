//! Workers in PostgreSQL: registration, heartbeats with their warm counts, drain, removal,
//! and marking silent workers lost together with the executions they were running.

use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

use super::PgStore;
use super::columns;
use crate::worker::{Heartbeat, WarmCount, WorkerRecord, WorkerRegistration, WorkerState};
use crate::{ExecutionStatus, StoreError, time};

/// Workers with their load; `running` and `warm` are counted, not stored.
const SELECT: &str = "SELECT w.name, w.pool, w.address, w.capacity, w.state, w.incarnation, \
       w.started_at, w.heartbeat_at, \
       (SELECT count(*) FROM executions e WHERE e.worker = w.name AND e.status = 'Running'), \
       (SELECT COALESCE(SUM(k.ready), 0)::BIGINT FROM worker_warm k WHERE k.worker = w.name) \
     FROM workers w";

fn from_row(row: &Row) -> Result<WorkerRecord, StoreError> {
    let small = |idx: usize| -> Result<u32, StoreError> {
        Ok(u32::try_from(columns::count(row, idx)?).unwrap_or(u32::MAX))
    };
    Ok(WorkerRecord {
        name: row.try_get(0)?,
        pool: row.try_get(1)?,
        address: row.try_get(2)?,
        capacity: small(3)?,
        state: columns::enum_text(row, 4)?,
        incarnation: row.try_get(5)?,
        started_at: columns::time(row, 6)?,
        heartbeat_at: columns::time(row, 7)?,
        running: small(8)?,
        warm: small(9)?,
    })
}

/// Replaces the worker's warm counts; a revision listed twice counts the sum.
async fn replace_warm(
    tx: &impl GenericClient,
    worker: &str,
    warm: &[WarmCount],
) -> Result<(), StoreError> {
    tx.execute("DELETE FROM worker_warm WHERE worker = $1", &[&worker])
        .await?;
    for w in warm {
        tx.execute(
            "INSERT INTO worker_warm (worker, namespace, agent, revision, ready) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (worker, namespace, agent, revision) \
             DO UPDATE SET ready = worker_warm.ready + EXCLUDED.ready",
            &[
                &worker,
                &w.namespace,
                &w.agent,
                &w.revision,
                &i64::from(w.ready),
            ],
        )
        .await?;
    }
    Ok(())
}

impl PgStore {
    pub(crate) async fn register_worker(
        &self,
        w: &WorkerRegistration,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let now = time::to_millis(now);
        tx.execute(
            "INSERT INTO workers (name, pool, address, capacity, state, incarnation, started_at, heartbeat_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7) \
             ON CONFLICT (name) DO UPDATE SET pool = EXCLUDED.pool, address = EXCLUDED.address, \
               capacity = EXCLUDED.capacity, state = EXCLUDED.state, \
               incarnation = EXCLUDED.incarnation, started_at = EXCLUDED.started_at, \
               heartbeat_at = EXCLUDED.heartbeat_at",
            &[
                &w.name,
                &w.pool,
                &w.address,
                &i64::from(w.capacity),
                &WorkerState::Ready.as_str(),
                &w.incarnation,
                &now,
            ],
        )
        .await?;
        replace_warm(&tx, &w.name, &[]).await?;
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn heartbeat_worker(
        &self,
        name: &str,
        incarnation: &str,
        warm: &[WarmCount],
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Heartbeat, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        // Locked so a drain or the lost sweep cannot slip between the look and the write.
        let Some(row) = tx
            .query_opt(
                "SELECT state, incarnation FROM workers WHERE name = $1 FOR UPDATE",
                &[&name],
            )
            .await?
        else {
            return Ok(Heartbeat::Replaced);
        };
        let state: WorkerState = columns::enum_text(&row, 0)?;
        let registered: &str = row.try_get(1)?;
        let answer = match state {
            _ if registered != incarnation => return Ok(Heartbeat::Replaced),
            WorkerState::Lost => return Ok(Heartbeat::Replaced),
            WorkerState::Ready => Heartbeat::Ready,
            WorkerState::Draining => Heartbeat::Draining,
        };
        tx.execute(
            "UPDATE workers SET heartbeat_at = $2 WHERE name = $1",
            &[&name, &time::to_millis(now)],
        )
        .await?;
        replace_warm(&tx, name, warm).await?;
        tx.commit().await?;
        Ok(answer)
    }

    pub(crate) async fn list_workers(&self) -> Result<Vec<WorkerRecord>, StoreError> {
        let client = self.client().await?;
        let sql = format!("{SELECT} ORDER BY w.pool, w.name");
        client
            .query(&sql, &[])
            .await?
            .iter()
            .map(from_row)
            .collect()
    }

    pub(crate) async fn drain_worker(&self, name: &str) -> Result<bool, StoreError> {
        let client = self.client().await?;
        // A lost worker stays lost; the row is still matched, so the name is known.
        let changed = client
            .execute(
                "UPDATE workers SET state = CASE WHEN state = $2 THEN state ELSE $3 END \
                 WHERE name = $1",
                &[
                    &name,
                    &WorkerState::Lost.as_str(),
                    &WorkerState::Draining.as_str(),
                ],
            )
            .await?;
        Ok(changed > 0)
    }

    pub(crate) async fn remove_worker(
        &self,
        name: &str,
        incarnation: &str,
    ) -> Result<bool, StoreError> {
        let client = self.client().await?;
        let deleted = client
            .execute(
                "DELETE FROM workers WHERE name = $1 AND incarnation = $2",
                &[&name, &incarnation],
            )
            .await?;
        Ok(deleted > 0)
    }

    pub(crate) async fn mark_lost_workers(
        &self,
        heartbeat_before: chrono::DateTime<chrono::Utc>,
        reason: &str,
    ) -> Result<Vec<String>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let names: Vec<String> = tx
            .query(
                "UPDATE workers SET state = $1 WHERE state IN ($2, $3) AND heartbeat_at < $4 \
                 RETURNING name",
                &[
                    &WorkerState::Lost.as_str(),
                    &WorkerState::Ready.as_str(),
                    &WorkerState::Draining.as_str(),
                    &time::to_millis(heartbeat_before),
                ],
            )
            .await?
            .iter()
            .map(|row| row.try_get(0))
            .collect::<Result<_, _>>()?;
        if !names.is_empty() {
            tx.execute(
                "UPDATE executions SET status = $1, reason = $2, ended_at = $3 \
                 WHERE status = $4 AND worker = ANY($5)",
                &[
                    &ExecutionStatus::Failed.as_str(),
                    &reason,
                    &time::to_millis(time::now()),
                    &ExecutionStatus::Running.as_str(),
                    &names,
                ],
            )
            .await?;
            // A lost worker's warm sandboxes are no longer anyone's to take.
            tx.execute("DELETE FROM worker_warm WHERE worker = ANY($1)", &[&names])
                .await?;
        }
        tx.commit().await?;
        Ok(names)
    }

    pub(crate) async fn warm_sandboxes(&self) -> Result<Vec<(String, WarmCount)>, StoreError> {
        let client = self.client().await?;
        client
            .query(
                "SELECT worker, namespace, agent, revision, ready FROM worker_warm \
                 ORDER BY worker, namespace, agent, revision",
                &[],
            )
            .await?
            .iter()
            .map(|row| {
                Ok((
                    row.try_get(0)?,
                    WarmCount {
                        namespace: row.try_get(1)?,
                        agent: row.try_get(2)?,
                        revision: row.try_get(3)?,
                        ready: u32::try_from(columns::count(row, 4)?).unwrap_or(u32::MAX),
                    },
                ))
            })
            .collect()
    }

    pub(crate) async fn fail_worker_executions(
        &self,
        name: &str,
        reason: &str,
    ) -> Result<Vec<String>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "UPDATE executions SET status = $1, reason = $2, ended_at = $3 \
                 WHERE status = $4 AND worker = $5 RETURNING id",
                &[
                    &ExecutionStatus::Failed.as_str(),
                    &reason,
                    &time::to_millis(time::now()),
                    &ExecutionStatus::Running.as_str(),
                    &name,
                ],
            )
            .await?;
        let mut ids: Vec<String> = rows
            .iter()
            .map(|row| row.try_get(0))
            .collect::<Result<_, _>>()?;
        ids.sort();
        Ok(ids)
    }
}
