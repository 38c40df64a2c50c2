//! Workers: the processes that run sandboxes, as they register and heartbeat through the
//! store, and what the store knows of each (state, load, warm sandboxes).

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};

/// What a worker says about itself when it (re)joins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerRegistration {
    /// Unique in the cluster; by default the host name.
    pub name: String,
    /// The worker pool it serves; `*` serves every pool (`clrk dev`'s embedded worker).
    pub pool: String,
    /// Where servers reach it (`host:port`), or `in-process` for `clrk dev`.
    pub address: String,
    /// Executions it runs at once.
    pub capacity: u32,
    /// Fresh for every start of the process, so a heartbeat from an older start of a worker
    /// of the same name is told apart from the current one's.
    pub incarnation: String,
}

/// Where a worker is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerState {
    /// Heartbeats and takes new executions.
    Ready,
    /// Heartbeats, finishes what it runs, takes nothing new.
    Draining,
    /// Stopped heartbeating; its running executions were failed.
    Lost,
}

impl WorkerState {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            WorkerState::Ready => "Ready",
            WorkerState::Draining => "Draining",
            WorkerState::Lost => "Lost",
        }
    }
}

impl fmt::Display for WorkerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for WorkerState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "Ready" => Ok(WorkerState::Ready),
            "Draining" => Ok(WorkerState::Draining),
            "Lost" => Ok(WorkerState::Lost),
            other => Err(format!(
                "unknown worker state {other:?}; expected Ready, Draining or Lost"
            )),
        }
    }
}

/// What a heartbeat tells the worker to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heartbeat {
    /// Carry on.
    Ready,
    /// Take nothing new (someone ran `clrk workers drain`).
    Draining,
    /// This start of the worker is no longer the registered one (its row is gone, it was
    /// marked lost, or another start registered the name): clean up and register again.
    Replaced,
}

/// The pool of a worker that serves every pool (`clrk dev`'s embedded worker).
pub const EVERY_POOL: &str = "*";

/// A registered worker as the store knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerRecord {
    /// Its name.
    pub name: String,
    /// The pool it serves; `*` for every pool.
    pub pool: String,
    /// Where servers reach it.
    pub address: String,
    /// Executions it runs at once.
    pub capacity: u32,
    /// Ready, Draining or Lost.
    pub state: WorkerState,
    /// Which start of the process registered last.
    pub incarnation: String,
    /// When that start registered.
    pub started_at: DateTime<Utc>,
    /// Its last heartbeat.
    pub heartbeat_at: DateTime<Utc>,
    /// Executions `Running` on it.
    pub running: u32,
    /// Warm sandboxes it holds ready, all revisions together.
    pub warm: u32,
}

/// Warm sandboxes a worker holds ready for one revision, sent with each heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WarmCount {
    /// Agent namespace.
    pub namespace: String,
    /// Agent name.
    pub agent: String,
    /// Revision name (`<agent>-00001`).
    pub revision: String,
    /// Sandboxes started and waiting.
    pub ready: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_text_round_trips() {
        for s in [WorkerState::Ready, WorkerState::Draining, WorkerState::Lost] {
            assert_eq!(s.to_string().parse::<WorkerState>(), Ok(s));
        }
        assert!("ready".parse::<WorkerState>().is_err());
    }
}
