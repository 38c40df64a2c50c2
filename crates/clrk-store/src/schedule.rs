//! Cron times of scheduled TaskAgents (SPECIFICATION §8): when the last tick fired and when the next
//! one is due.

use chrono::{DateTime, Utc};

/// The persisted cron times of one agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ScheduleTimes {
    /// The tick that last started an execution.
    pub last_schedule_time: Option<DateTime<Utc>>,
    /// The tick due next; `None` when the agent has no schedule (any more).
    pub next_schedule_time: Option<DateTime<Utc>>,
}
