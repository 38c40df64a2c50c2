//! Cron times of scheduled TaskAgents (SPECIFICATION §8): when the last tick fired and when the next
//! one is due.

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};

use crate::agent::agent_id;
use crate::{Store, StoreError, time};

/// The persisted cron times of one agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ScheduleTimes {
    /// The tick that last started an execution.
    pub last_schedule_time: Option<DateTime<Utc>>,
    /// The tick due next; `None` when the agent has no schedule (any more).
    pub next_schedule_time: Option<DateTime<Utc>>,
}

impl Store {
    /// Replaces the agent's cron times. The agent must exist.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = clrk_store::Store::open(&dir.path().join("clrk.db")).unwrap();
    /// let times = clrk_store::ScheduleTimes::default();
    /// assert!(store.set_schedule_times("default", "nightly", &times).is_err());
    /// ```
    pub fn set_schedule_times(
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

    /// The agent's cron times; all `None` when it never had a schedule or does not exist.
    pub fn schedule_times(&self, namespace: &str, name: &str) -> Result<ScheduleTimes, StoreError> {
        let times = self
            .conn()
            .query_row(
                "SELECT s.last_schedule_time, s.next_schedule_time \
                 FROM schedules s JOIN agents a ON a.id = s.agent_id \
                 WHERE a.namespace = ?1 AND a.name = ?2",
                params![namespace, name],
                |row| {
                    Ok(ScheduleTimes {
                        last_schedule_time: time::optional_column(row, 0)?,
                        next_schedule_time: time::optional_column(row, 1)?,
                    })
                },
            )
            .optional()?;
        Ok(times.unwrap_or_default())
    }
}
