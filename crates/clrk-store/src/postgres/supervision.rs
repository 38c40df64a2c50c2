//! Cron times and daemon supervision state in PostgreSQL: one row per agent, replaced on
//! write; and the cron ticks claimed before they fire, one row per agent and tick.

use super::PgStore;
use super::agents::agent_id;
use super::columns;
use crate::schedule::CRON_CLAIMS_KEPT;
use crate::{DaemonState, ScheduleTimes, StoreError, integer, time};
use chrono::{DateTime, Utc};

impl PgStore {
    pub(crate) async fn set_daemon_state(
        &self,
        namespace: &str,
        name: &str,
        state: &DaemonState,
    ) -> Result<(), StoreError> {
        let client = self.client().await?;
        let agent = agent_id(&client, namespace, name).await?;
        client
            .execute(
                "INSERT INTO daemons (agent_id, revision, phase, restart_count, up_since, run_id, \
                   last_exit_code, reason, restart_delay_ms, next_restart_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
                 ON CONFLICT (agent_id) DO UPDATE SET revision = EXCLUDED.revision, \
                   phase = EXCLUDED.phase, restart_count = EXCLUDED.restart_count, \
                   up_since = EXCLUDED.up_since, run_id = EXCLUDED.run_id, \
                   last_exit_code = EXCLUDED.last_exit_code, reason = EXCLUDED.reason, \
                   restart_delay_ms = EXCLUDED.restart_delay_ms, \
                   next_restart_at = EXCLUDED.next_restart_at, updated_at = EXCLUDED.updated_at",
                &[
                    &agent,
                    &state.revision,
                    &state.phase.as_str(),
                    &i64::from(state.restart_count),
                    &state.up_since.map(time::to_millis),
                    &state.run_id,
                    &state.last_exit_code,
                    &state.reason,
                    &state.restart_delay_ms.map(integer::saturating_i64),
                    &state.next_restart_at.map(time::to_millis),
                    &time::to_millis(time::now()),
                ],
            )
            .await?;
        Ok(())
    }

    pub(crate) async fn daemon_state(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<DaemonState>, StoreError> {
        let client = self.client().await?;
        let Some(row) = client
            .query_opt(
                "SELECT d.revision, d.phase, d.restart_count, d.up_since, d.run_id, \
                   d.last_exit_code, d.reason, d.restart_delay_ms, d.next_restart_at \
                 FROM daemons d JOIN agents a ON a.id = d.agent_id \
                 WHERE a.namespace = $1 AND a.name = $2",
                &[&namespace, &name],
            )
            .await?
        else {
            return Ok(None);
        };
        Ok(Some(DaemonState {
            revision: row.try_get(0)?,
            phase: columns::enum_text(&row, 1)?,
            restart_count: u32::try_from(row.try_get::<_, i64>(2)?).unwrap_or(u32::MAX),
            up_since: columns::optional_time(&row, 3)?,
            run_id: row.try_get(4)?,
            last_exit_code: row.try_get(5)?,
            reason: row.try_get(6)?,
            restart_delay_ms: row
                .try_get::<_, Option<i64>>(7)?
                .map(|ms| u64::try_from(ms).unwrap_or(0)),
            next_restart_at: columns::optional_time(&row, 8)?,
        }))
    }

    pub(crate) async fn set_schedule_times(
        &self,
        namespace: &str,
        name: &str,
        times: &ScheduleTimes,
    ) -> Result<(), StoreError> {
        let client = self.client().await?;
        let agent = agent_id(&client, namespace, name).await?;
        client
            .execute(
                "INSERT INTO schedules (agent_id, last_schedule_time, next_schedule_time) \
                 VALUES ($1, $2, $3) \
                 ON CONFLICT (agent_id) DO UPDATE SET \
                   last_schedule_time = EXCLUDED.last_schedule_time, \
                   next_schedule_time = EXCLUDED.next_schedule_time",
                &[
                    &agent,
                    &times.last_schedule_time.map(time::to_millis),
                    &times.next_schedule_time.map(time::to_millis),
                ],
            )
            .await?;
        Ok(())
    }

    pub(crate) async fn schedule_times(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<ScheduleTimes, StoreError> {
        let client = self.client().await?;
        let Some(row) = client
            .query_opt(
                "SELECT s.last_schedule_time, s.next_schedule_time \
                 FROM schedules s JOIN agents a ON a.id = s.agent_id \
                 WHERE a.namespace = $1 AND a.name = $2",
                &[&namespace, &name],
            )
            .await?
        else {
            return Ok(ScheduleTimes::default());
        };
        Ok(ScheduleTimes {
            last_schedule_time: columns::optional_time(&row, 0)?,
            next_schedule_time: columns::optional_time(&row, 1)?,
        })
    }

    /// One transaction: the trim and the claim commit together. Of two servers claiming the
    /// same tick at once, the second's insert waits for the first's commit on the primary
    /// key, then does nothing.
    pub(crate) async fn claim_cron_tick(
        &self,
        namespace: &str,
        name: &str,
        tick: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let agent = agent_id(&tx, namespace, name).await?;
        let tick = time::to_millis(tick);
        tx.execute(
            "DELETE FROM cron_fires WHERE agent_id = $1 AND tick < $2",
            &[
                &agent,
                &tick.saturating_sub(CRON_CLAIMS_KEPT.num_milliseconds()),
            ],
        )
        .await?;
        let claimed = tx
            .execute(
                "INSERT INTO cron_fires (agent_id, tick) VALUES ($1, $2) \
                 ON CONFLICT (agent_id, tick) DO NOTHING",
                &[&agent, &tick],
            )
            .await?;
        tx.commit().await?;
        Ok(claimed == 1)
    }
}
