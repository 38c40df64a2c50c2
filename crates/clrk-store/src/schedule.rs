//! Cron times of scheduled TaskAgents (SPECIFICATION §8): when the last tick fired and when the next
//! one is due; and how long a claimed tick is remembered.

use chrono::{DateTime, Utc};

/// The persisted cron times of one agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ScheduleTimes {
    /// The tick that last started an execution.
    pub last_schedule_time: Option<DateTime<Utc>>,
    /// The tick due next; `None` when the agent has no schedule (any more).
    pub next_schedule_time: Option<DateTime<Utc>>,
}

/// How long a claimed cron tick is kept (see [`Store::claim_cron_tick`](crate::Store::claim_cron_tick)):
/// claims this much older than the tick being claimed are deleted then. A tick is claimed
/// when it is due, so a day leaves ample room for servers whose clocks or passes disagree.
pub const CRON_CLAIMS_KEPT: chrono::TimeDelta = chrono::TimeDelta::days(1);
