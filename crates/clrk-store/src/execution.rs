//! Executions: one run of an agent's revision, from start to its recorded end.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};

/// Executions kept per agent name, its deleted agents' included: past it the oldest finished
/// ones go, with their log lines and spans, as egress records do past theirs.
pub const EXECUTIONS_PER_NAME: usize = 10_000;
/// One start in this many (chosen by the execution id) also removes what is past
/// [`EXECUTIONS_PER_NAME`]: the search for the cut is not paid on every start, and a name holds
/// at most about this many more.
pub(crate) const PRUNE_EVERY: u32 = 64;

/// Whether starting execution `id` also prunes its name's oldest executions.
///
/// ```
/// let pruning = (0..6400).filter(|i| clrk_store::prunes_at(&format!("ev-{i}"))).count();
/// assert!((50..=150).contains(&pruning), "{pruning}");
/// ```
pub fn prunes_at(id: &str) -> bool {
    let hash = id.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    hash % PRUNE_EVERY == 0
}

/// Where an execution is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecutionStatus {
    /// Started, not finished.
    Running,
    /// Exited 0.
    Succeeded,
    /// Exited non-zero, could not start, or the server restarted under it.
    Failed,
    /// Killed at its timeout.
    TimedOut,
    /// Ended by clrk on purpose: a daemon run replaced by a new revision, or stopped because
    /// its agent was deleted or its worker stopped.
    Stopped,
}

impl ExecutionStatus {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ExecutionStatus::Running => "Running",
            ExecutionStatus::Succeeded => "Succeeded",
            ExecutionStatus::Failed => "Failed",
            ExecutionStatus::TimedOut => "TimedOut",
            ExecutionStatus::Stopped => "Stopped",
        }
    }
}

impl fmt::Display for ExecutionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ExecutionStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "Running" => Ok(ExecutionStatus::Running),
            "Succeeded" => Ok(ExecutionStatus::Succeeded),
            "Failed" => Ok(ExecutionStatus::Failed),
            "TimedOut" => Ok(ExecutionStatus::TimedOut),
            "Stopped" => Ok(ExecutionStatus::Stopped),
            other => Err(format!(
                "unknown execution status {other:?}; expected Running, Succeeded, Failed, \
                 TimedOut or Stopped"
            )),
        }
    }
}

/// How an execution's sandbox came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Start {
    /// Started for this execution.
    #[default]
    Cold,
    /// Taken ready from the agent's warm pool.
    Warm,
}

impl Start {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Start::Cold => "cold",
            Start::Warm => "warm",
        }
    }
}

impl fmt::Display for Start {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Start {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "cold" => Ok(Start::Cold),
            "warm" => Ok(Start::Warm),
            other => Err(format!("unknown start {other:?}; expected cold or warm")),
        }
    }
}

/// An execution about to run.
#[derive(Debug, Clone, PartialEq)]
pub struct NewExecution {
    /// Unique id (the CloudEvent id is a good choice).
    pub id: String,
    /// Agent namespace.
    pub namespace: String,
    /// Agent name.
    pub agent: String,
    /// Revision name it runs on (`<agent>-00001`).
    pub revision: String,
    /// What started it, e.g. `http` or `cron`.
    pub trigger: String,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// Cold or warm.
    pub start: Start,
    /// The registered worker that runs it, when it runs on one; `mark_lost_workers` fails it
    /// with that worker.
    pub worker: Option<String>,
}

/// How an execution ended.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutionEnd {
    /// Final status (not `Running`).
    pub status: ExecutionStatus,
    /// Process exit code, if it exited.
    pub exit_code: Option<i32>,
    /// Why it failed, for users.
    pub reason: Option<String>,
    /// When it ended.
    pub ended_at: DateTime<Utc>,
}

/// A recorded execution.
#[derive(Debug, Clone, PartialEq)]
pub struct Execution {
    /// Unique id.
    pub id: String,
    /// Agent namespace.
    pub namespace: String,
    /// Agent name.
    pub agent: String,
    /// Revision name.
    pub revision: String,
    /// What started it.
    pub trigger: String,
    /// Current status.
    pub status: ExecutionStatus,
    /// Process exit code, if it exited.
    pub exit_code: Option<i32>,
    /// Why it failed.
    pub reason: Option<String>,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it ended; `None` while running.
    pub ended_at: Option<DateTime<Utc>>,
    /// `ended_at - started_at`; `None` while running.
    pub duration_ms: Option<i64>,
    /// Cold or warm.
    pub start: Start,
    /// The worker that runs or ran it, if any.
    pub worker: Option<String>,
    /// The uid of the agent that ran it ([`Agent::uid`](crate::Agent::uid)).
    pub agent_uid: String,
    /// That agent is deleted: the execution is history of the name, kept after the delete,
    /// whether or not an agent of the same name was created since.
    pub agent_deleted: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_text_round_trips() {
        for s in [
            ExecutionStatus::Running,
            ExecutionStatus::Succeeded,
            ExecutionStatus::Failed,
            ExecutionStatus::TimedOut,
            ExecutionStatus::Stopped,
        ] {
            assert_eq!(s.to_string().parse::<ExecutionStatus>(), Ok(s));
        }
        assert!("Timeout".parse::<ExecutionStatus>().is_err());
    }
}
