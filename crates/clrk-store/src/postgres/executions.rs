//! Executions in PostgreSQL: start, finish, read, and failing those left running.

use tokio_postgres::Row;

use super::PgStore;
use super::agents::{agent_id, agent_id_for_update};
use super::columns;
use crate::{Execution, ExecutionEnd, ExecutionStatus, NewExecution, StoreError, time};

const SELECT: &str = "SELECT e.id, a.namespace, a.name, r.name, e.trigger, e.status, e.exit_code, \
     e.reason, e.started_at, e.ended_at, e.start, e.worker \
     FROM executions e JOIN agents a ON a.id = e.agent_id JOIN revisions r ON r.id = e.revision_id";

fn from_row(row: &Row) -> Result<Execution, StoreError> {
    let started_at = columns::time(row, 8)?;
    let ended_at = columns::optional_time(row, 9)?;
    Ok(Execution {
        id: row.try_get(0)?,
        namespace: row.try_get(1)?,
        agent: row.try_get(2)?,
        revision: row.try_get(3)?,
        trigger: row.try_get(4)?,
        status: columns::enum_text(row, 5)?,
        exit_code: row.try_get(6)?,
        reason: row.try_get(7)?,
        started_at,
        ended_at,
        duration_ms: ended_at.map(|end| (end - started_at).num_milliseconds()),
        start: columns::enum_text(row, 10)?,
        worker: row.try_get(11)?,
    })
}

impl PgStore {
    pub(crate) async fn start_execution(&self, e: &NewExecution) -> Result<(), StoreError> {
        self.start_execution_within(e, 0).await
    }

    /// With `max_concurrent` > 0 the agent's row is locked (`FOR UPDATE`) before its running
    /// executions are counted: starts of one agent queue on that lock, whichever process
    /// makes them, so the count and the insert cannot interleave with another start's.
    pub(crate) async fn start_execution_within(
        &self,
        e: &NewExecution,
        max_concurrent: u32,
    ) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let agent = if max_concurrent > 0 {
            agent_id_for_update(&tx, &e.namespace, &e.agent).await?
        } else {
            agent_id(&tx, &e.namespace, &e.agent).await?
        };
        let revision: i64 = tx
            .query_opt(
                "SELECT id FROM revisions WHERE agent_id = $1 AND name = $2",
                &[&agent, &e.revision],
            )
            .await?
            .ok_or_else(|| StoreError::RevisionNotFound {
                namespace: e.namespace.clone(),
                revision: e.revision.clone(),
            })?
            .try_get(0)?;
        if max_concurrent > 0 {
            let running: i64 = tx
                .query_one(
                    "SELECT count(*) FROM executions WHERE agent_id = $1 AND status = $2",
                    &[&agent, &ExecutionStatus::Running.as_str()],
                )
                .await?
                .try_get(0)?;
            if running >= i64::from(max_concurrent) {
                return Err(StoreError::TooManyExecutions {
                    limit: max_concurrent,
                });
            }
        }
        // ON CONFLICT rather than a look first: two starts of one id at once cannot both pass.
        let inserted = tx
            .execute(
                "INSERT INTO executions (id, agent_id, revision_id, trigger, status, started_at, start, worker) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING",
                &[
                    &e.id,
                    &agent,
                    &revision,
                    &e.trigger,
                    &ExecutionStatus::Running.as_str(),
                    &time::to_millis(e.started_at),
                    &e.start.as_str(),
                    &e.worker,
                ],
            )
            .await?;
        if inserted == 0 {
            return Err(StoreError::DuplicateExecution(e.id.clone()));
        }
        tx.commit().await?;
        Ok(())
    }

    /// Returns whether the execution was still running (and is now failed).
    pub(crate) async fn fail_execution_if_running(
        &self,
        id: &str,
        reason: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<bool, StoreError> {
        let client = self.client().await?;
        let changed = client
            .execute(
                "UPDATE executions SET status = $2, reason = $3, ended_at = $4 \
                 WHERE id = $1 AND status = $5",
                &[
                    &id,
                    &ExecutionStatus::Failed.as_str(),
                    &reason,
                    &time::to_millis(now),
                    &ExecutionStatus::Running.as_str(),
                ],
            )
            .await?;
        Ok(changed > 0)
    }

    /// Returns whether the execution exists.
    pub(crate) async fn finish_execution(
        &self,
        id: &str,
        end: &ExecutionEnd,
    ) -> Result<bool, StoreError> {
        let client = self.client().await?;
        let changed = client
            .execute(
                "UPDATE executions SET status = $2, exit_code = $3, reason = $4, ended_at = $5 WHERE id = $1",
                &[
                    &id,
                    &end.status.as_str(),
                    &end.exit_code,
                    &end.reason,
                    &time::to_millis(end.ended_at),
                ],
            )
            .await?;
        Ok(changed > 0)
    }

    pub(crate) async fn get_execution(&self, id: &str) -> Result<Option<Execution>, StoreError> {
        let sql = format!("{SELECT} WHERE e.id = $1");
        let client = self.client().await?;
        client
            .query_opt(&sql, &[&id])
            .await?
            .as_ref()
            .map(from_row)
            .transpose()
    }

    pub(crate) async fn executions(
        &self,
        namespace: &str,
        name: &str,
        limit: usize,
    ) -> Result<Vec<Execution>, StoreError> {
        let client = self.client().await?;
        let agent = agent_id(&client, namespace, name).await?;
        let sql = format!(
            "{SELECT} WHERE e.agent_id = $1 ORDER BY e.started_at DESC, e.ord DESC LIMIT $2"
        );
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        client
            .query(&sql, &[&agent, &limit])
            .await?
            .iter()
            .map(from_row)
            .collect()
    }

    pub(crate) async fn fail_running_executions(
        &self,
        reason: &str,
    ) -> Result<Vec<String>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "UPDATE executions SET status = $1, reason = $2, ended_at = $3 \
                 WHERE status = $4 RETURNING id",
                &[
                    &ExecutionStatus::Failed.as_str(),
                    &reason,
                    &time::to_millis(time::now()),
                    &ExecutionStatus::Running.as_str(),
                ],
            )
            .await?;
        rows.iter().map(|row| Ok(row.try_get(0)?)).collect()
    }
}
