//! Cron times and daemon supervision state in SQLite: one row per agent, replaced on write;
//! and the cron ticks claimed before they fire, one row per agent and tick.

use rusqlite::{OptionalExtension, params};

use super::SqliteStore;
use super::agents::agent_id;
use super::columns;
use crate::schedule::CRON_CLAIMS_KEPT;
use crate::{DaemonState, ScheduleTimes, StoreError, integer, time};
use chrono::{DateTime, Utc};

impl SqliteStore {
    pub(crate) fn set_daemon_state(
        &self,
        namespace: &str,
        name: &str,
        state: &DaemonState,
    ) -> Result<(), StoreError> {
        self.write(|tx| {
            let agent = agent_id(tx, namespace, name)?;
            tx.execute(
                "INSERT OR REPLACE INTO daemons (agent_id, revision, phase, restart_count, \
                   up_since, run_id, last_exit_code, reason, restart_delay_ms, next_restart_at, \
                   updated_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                params![
                    agent,
                    state.revision,
                    state.phase.as_str(),
                    state.restart_count,
                    state.up_since.map(time::to_millis),
                    state.run_id,
                    state.last_exit_code,
                    state.reason,
                    state.restart_delay_ms.map(integer::saturating_i64),
                    state.next_restart_at.map(time::to_millis),
                    time::to_millis(time::now()),
                ],
            )?;
            Ok(())
        })
    }

    pub(crate) fn daemon_state(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<DaemonState>, StoreError> {
        let state = self
            .conn()
            .query_row(
                "SELECT d.revision, d.phase, d.restart_count, d.up_since, d.run_id, \
                   d.last_exit_code, d.reason, d.restart_delay_ms, d.next_restart_at \
                 FROM daemons d JOIN agents a ON a.id = d.agent_id \
                 WHERE a.namespace = ?1 AND a.name = ?2",
                params![namespace, name],
                |row| {
                    Ok(DaemonState {
                        revision: row.get(0)?,
                        phase: columns::enum_text(row, 1)?,
                        restart_count: row.get(2)?,
                        up_since: columns::optional_time(row, 3)?,
                        run_id: row.get(4)?,
                        last_exit_code: row.get(5)?,
                        reason: row.get(6)?,
                        restart_delay_ms: row
                            .get::<_, Option<i64>>(7)?
                            .map(|ms| u64::try_from(ms).unwrap_or(0)),
                        next_restart_at: columns::optional_time(row, 8)?,
                    })
                },
            )
            .optional()?;
        Ok(state)
    }

    pub(crate) fn set_schedule_times(
        &self,
        namespace: &str,
        name: &str,
        times: &ScheduleTimes,
    ) -> Result<(), StoreError> {
        self.write(|tx| {
            let agent = agent_id(tx, namespace, name)?;
            tx.execute(
                "INSERT INTO schedules (agent_id, last_schedule_time, next_schedule_time) \
                 VALUES (?1, ?2, ?3) \
                 ON CONFLICT (agent_id) DO UPDATE SET \
                   last_schedule_time = excluded.last_schedule_time, \
                   next_schedule_time = excluded.next_schedule_time",
                params![
                    agent,
                    times.last_schedule_time.map(time::to_millis),
                    times.next_schedule_time.map(time::to_millis)
                ],
            )?;
            Ok(())
        })
    }

    pub(crate) fn schedule_times(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<ScheduleTimes, StoreError> {
        let times = self
            .conn()
            .query_row(
                "SELECT s.last_schedule_time, s.next_schedule_time \
                 FROM schedules s JOIN agents a ON a.id = s.agent_id \
                 WHERE a.namespace = ?1 AND a.name = ?2",
                params![namespace, name],
                |row| {
                    Ok(ScheduleTimes {
                        last_schedule_time: columns::optional_time(row, 0)?,
                        next_schedule_time: columns::optional_time(row, 1)?,
                    })
                },
            )
            .optional()?;
        Ok(times.unwrap_or_default())
    }

    pub(crate) fn claim_cron_tick(
        &self,
        namespace: &str,
        name: &str,
        tick: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.write(|tx| {
            let agent = agent_id(tx, namespace, name)?;
            let tick = time::to_millis(tick);
            tx.execute(
                "DELETE FROM cron_fires WHERE agent_id = ?1 AND tick < ?2",
                params![
                    agent,
                    tick.saturating_sub(CRON_CLAIMS_KEPT.num_milliseconds())
                ],
            )?;
            let claimed = tx.execute(
                "INSERT INTO cron_fires (agent_id, tick) VALUES (?1, ?2) \
                 ON CONFLICT (agent_id, tick) DO NOTHING",
                params![agent, tick],
            )?;
            Ok(claimed == 1)
        })
    }
}
