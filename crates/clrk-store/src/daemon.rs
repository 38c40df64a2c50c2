//! Supervision state of DaemonAgents (SPECIFICATION §8): phase, restarts, uptime and back-off, kept
//! so `clrk agents get` can show them and a restarted server knows what should run.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};

use crate::agent::agent_id;
use crate::{Store, StoreError, enum_column, time};

/// Where a daemon is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DaemonPhase {
    /// Its sandbox is being started.
    Pending,
    /// Its process runs.
    Running,
    /// It exited soon after starting and waits out a restart back-off.
    CrashLoopBackOff,
    /// It exited and its restart policy (or `maxRestarts`) says it stays down.
    Stopped,
}

impl DaemonPhase {
    fn as_str(self) -> &'static str {
        match self {
            DaemonPhase::Pending => "Pending",
            DaemonPhase::Running => "Running",
            DaemonPhase::CrashLoopBackOff => "CrashLoopBackOff",
            DaemonPhase::Stopped => "Stopped",
        }
    }
}

impl fmt::Display for DaemonPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DaemonPhase {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "Pending" => Ok(DaemonPhase::Pending),
            "Running" => Ok(DaemonPhase::Running),
            "CrashLoopBackOff" => Ok(DaemonPhase::CrashLoopBackOff),
            "Stopped" => Ok(DaemonPhase::Stopped),
            other => Err(format!(
                "unknown daemon phase {other:?}; expected Pending, Running, CrashLoopBackOff or Stopped"
            )),
        }
    }
}

/// The supervision state of one daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonState {
    /// Revision the supervisor runs (`<agent>-00001`).
    pub revision: String,
    /// Current phase.
    pub phase: DaemonPhase,
    /// Restarts since this revision started.
    pub restart_count: u32,
    /// When the running process started; `None` unless `Running`.
    pub up_since: Option<DateTime<Utc>>,
    /// Execution id of the current or last process.
    pub run_id: Option<String>,
    /// Exit code of the last process that ended.
    pub last_exit_code: Option<i32>,
    /// Why it is stopped or backing off, for users.
    pub reason: Option<String>,
    /// The back-off before the pending restart, in milliseconds.
    pub restart_delay_ms: Option<u64>,
    /// When the pending restart is due.
    pub next_restart_at: Option<DateTime<Utc>>,
}

impl Store {
    /// Replaces the daemon's state. The agent must exist.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = clrk_store::Store::open(&dir.path().join("clrk.db")).unwrap();
    /// use clrk_store::{DaemonPhase, DaemonState};
    /// let state = DaemonState {
    ///     revision: "bot-00001".into(), phase: DaemonPhase::Pending, restart_count: 0,
    ///     up_since: None, run_id: None, last_exit_code: None, reason: None,
    ///     restart_delay_ms: None, next_restart_at: None,
    /// };
    /// // No agent `bot` has been applied yet.
    /// assert!(store.set_daemon_state("default", "bot", &state).is_err());
    /// assert_eq!(store.daemon_state("default", "bot").unwrap(), None);
    /// ```
    pub fn set_daemon_state(
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
                    state
                        .restart_delay_ms
                        .map(|ms| i64::try_from(ms).unwrap_or(i64::MAX)),
                    state.next_restart_at.map(time::to_millis),
                    time::to_millis(time::now()),
                ],
            )?;
            Ok(())
        })
    }

    /// The daemon's state, or `None` when the supervisor never ran it (or it does not exist).
    pub fn daemon_state(
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
                        phase: enum_column::column(row, 1)?,
                        restart_count: row.get(2)?,
                        up_since: time::optional_column(row, 3)?,
                        run_id: row.get(4)?,
                        last_exit_code: row.get(5)?,
                        reason: row.get(6)?,
                        restart_delay_ms: row
                            .get::<_, Option<i64>>(7)?
                            .map(|ms| u64::try_from(ms).unwrap_or(0)),
                        next_restart_at: time::optional_column(row, 8)?,
                    })
                },
            )
            .optional()?;
        Ok(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phase_text_round_trips() {
        for p in [
            DaemonPhase::Pending,
            DaemonPhase::Running,
            DaemonPhase::CrashLoopBackOff,
            DaemonPhase::Stopped,
        ] {
            assert_eq!(p.to_string().parse::<DaemonPhase>(), Ok(p));
        }
        assert!("Crashed".parse::<DaemonPhase>().is_err());
    }
}
