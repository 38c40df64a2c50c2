//! Executions in PostgreSQL: start, finish, read, and failing those left running.

use tokio_postgres::Row;

use super::PgStore;
use super::columns;
use super::histories::history_id;
use crate::{Execution, ExecutionEnd, ExecutionStatus, NewExecution, StoreError, time};

const SELECT: &str = "SELECT e.id, h.namespace, h.name, e.revision, e.trigger, e.status, e.exit_code, \
     e.reason, e.started_at, e.ended_at, e.start, e.worker, e.agent_uid, \
     NOT EXISTS (SELECT 1 FROM agents a WHERE a.uid = e.agent_uid) \
     FROM executions e JOIN histories h ON h.id = e.history_id";

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
        agent_uid: row.try_get(12)?,
        agent_deleted: row.try_get(13)?,
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
        // Even without a limit the agent's row is held (`FOR KEY SHARE`) until the insert
        // commits: a delete of the agent waits, then finds the execution in its history.
        let lock = if max_concurrent > 0 {
            "FOR UPDATE"
        } else {
            "FOR KEY SHARE"
        };
        let (agent, uid): (i64, String) = tx
            .query_opt(
                &format!("SELECT id, uid FROM agents WHERE namespace = $1 AND name = $2 {lock}"),
                &[&e.namespace, &e.agent],
            )
            .await?
            .map(|row| Ok::<_, StoreError>((row.try_get(0)?, row.try_get(1)?)))
            .transpose()?
            .ok_or_else(|| StoreError::AgentNotFound {
                namespace: e.namespace.clone(),
                name: e.agent.clone(),
            })?;
        let history = history_id(&tx, &e.namespace, &e.agent).await?;
        if tx
            .query_opt(
                "SELECT 1 FROM revisions WHERE agent_id = $1 AND name = $2",
                &[&agent, &e.revision],
            )
            .await?
            .is_none()
        {
            return Err(StoreError::RevisionNotFound {
                namespace: e.namespace.clone(),
                revision: e.revision.clone(),
            });
        }
        if max_concurrent > 0 {
            let running: i64 = tx
                .query_one(
                    "SELECT count(*) FROM executions \
                     WHERE history_id = $1 AND agent_uid = $2 AND status = $3",
                    &[&history, &uid, &ExecutionStatus::Running.as_str()],
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
                "INSERT INTO executions \
                 (id, history_id, agent_uid, revision, trigger, status, started_at, start, worker) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (id) DO NOTHING",
                &[
                    &e.id,
                    &history,
                    &uid,
                    &e.revision,
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
        if crate::prunes_at(&e.id) {
            prune(&tx, history, crate::EXECUTIONS_PER_NAME).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn prune_executions(
        &self,
        namespace: &str,
        name: &str,
        keep: usize,
    ) -> Result<usize, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let pruned = match history_id(&tx, namespace, name).await {
            Ok(history) => prune(&tx, history, keep).await?,
            Err(StoreError::AgentNotFound { .. }) => 0,
            Err(e) => return Err(e),
        };
        tx.commit().await?;
        Ok(pruned)
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
        let history = history_id(&client, namespace, name).await?;
        let sql = format!(
            "{SELECT} WHERE e.history_id = $1 ORDER BY e.started_at DESC, e.ord DESC LIMIT $2"
        );
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        client
            .query(&sql, &[&history, &limit])
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

/// Removes the finished executions of history `history` past its newest `keep`, with their
/// log lines (their spans go by the foreign key); returns how many went.
async fn prune(
    tx: &deadpool_postgres::Transaction<'_>,
    history: i64,
    keep: usize,
) -> Result<usize, StoreError> {
    let offset = i64::try_from(keep).unwrap_or(i64::MAX);
    let Some(cut) = tx
        .query_opt(
            "SELECT started_at, id FROM executions WHERE history_id = $1 \
             ORDER BY started_at DESC, id DESC LIMIT 1 OFFSET $2",
            &[&history, &offset],
        )
        .await?
    else {
        return Ok(0);
    };
    let (at, id): (i64, String) = (cut.try_get(0)?, cut.try_get(1)?);
    let old = "SELECT id FROM executions WHERE history_id = $1 AND status <> $4 \
               AND (started_at < $2 OR (started_at = $2 AND id <= $3))";
    let running = ExecutionStatus::Running.as_str();
    let args: [&(dyn tokio_postgres::types::ToSql + Sync); 4] = [&history, &at, &id, &running];
    tx.execute(
        &format!("DELETE FROM logs WHERE history_id = $1 AND execution_id IN ({old})"),
        &args,
    )
    .await?;
    tx.execute(
        &format!("DELETE FROM log_sizes WHERE history_id = $1 AND execution_id IN ({old})"),
        &args,
    )
    .await?;
    let gone = tx
        .execute(
            &format!("DELETE FROM executions WHERE id IN ({old})"),
            &args,
        )
        .await?;
    Ok(usize::try_from(gone).unwrap_or(usize::MAX))
}
