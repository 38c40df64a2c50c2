//! clrk-store: durable state for clrk (agents, revisions, executions, logs, worker pools,
//! cron times, daemon state, secrets, egress configuration, records and token counts)
//! in one SQLite file in WAL mode, with versioned migrations (SPECIFICATION §3 Revisions, §11).
//!
//! It must not interpret manifests: specs and sandbox shapes arrive as `serde_json::Value`
//! and are compared, never parsed. It must not depend on other clrk crates, spawn tasks or
//! do anything slow: every call is one short synchronous transaction. Timestamps are kept to
//! the millisecond, so a `DateTime` read back may lack the sub-millisecond part written.

mod agent;
mod daemon;
mod egress_object;
mod egress_record;
mod enum_column;
mod error;
mod execution;
mod json;
mod logs;
mod migrations;
mod pool;
mod revision;
mod schedule;
mod secret;
mod store;
mod time;

pub use agent::{Agent, AgentApply, ApplyOutcome};
pub use daemon::{DaemonPhase, DaemonState};
pub use egress_object::EgressObject;
pub use egress_record::{EGRESS_RECORDS_PER_AGENT, EgressRecord};
pub use error::StoreError;
pub use execution::{Execution, ExecutionEnd, ExecutionStatus, NewExecution, Start};
pub use logs::{LOG_ROW_COST, LogLine, LogPage, LogQuery, NewLogLine, log_line_cost};
pub use pool::Pool;
pub use revision::{Revision, RevisionState};
pub use schedule::ScheduleTimes;
pub use secret::SecretInfo;
pub use store::Store;
