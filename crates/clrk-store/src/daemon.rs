//! Supervision state of DaemonAgents (SPECIFICATION §8): phase, restarts, uptime and back-off, kept
//! so `clrk agents get` can show them and a restarted server knows what should run.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};

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
    pub(crate) fn as_str(self) -> &'static str {
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
