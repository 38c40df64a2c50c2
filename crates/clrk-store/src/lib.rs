//! clrk-store: durable state for clrk (agents, revisions, executions, logs, worker pools,
//! cron times, daemon state, secrets, egress configuration, records and token counts, the
//! registry of workers and leadership of cluster-wide jobs),
//! with versioned migrations (SPECIFICATION §3 Revisions, §11), behind one async API with two
//! backends: a SQLite file in WAL mode for `clrk dev` ([`Store::open`]) and a PostgreSQL
//! database for the cluster ([`Store::connect`]).
//!
//! Why two drivers rather than one that speaks both: SQLite stays `rusqlite` with
//! `rusqlite_migration`, an in-process synchronous call made inline with no thread hop on the
//! single-machine warm path, and the proven schema and queries stay as they are; PostgreSQL
//! gets `tokio-postgres`, a native async client, with `deadpool-postgres`, a maintained pool
//! for it. (sqlx would have meant rewriting the SQLite layer for no gain on either side.)
//!
//! Layout: the record types live in their own modules (`execution`, `agent`, ...) and know
//! nothing of either database; `sqlite/` and `postgres/` implement the tables, one file per
//! table group with its own `migrations.rs`; `store/` holds the [`Store`] handle and sends
//! each call to its backend.
//!
//! It must not interpret manifests: specs and sandbox shapes arrive as `serde_json::Value`
//! and are compared, never parsed. It must not depend on other clrk crates, spawn tasks of
//! its own (the PostgreSQL client runs one per pooled connection and one for a leader's
//! connection) or do anything slow: every call is one short transaction. Timestamps are kept to the
//! millisecond, so a `DateTime` read back may lack the sub-millisecond part written.

mod agent;
mod daemon;
mod egress_object;
mod egress_record;
mod error;
mod execution;
mod integer;
mod json;
mod leadership;
mod logs;
mod pool;
mod postgres;
mod revision;
mod schedule;
mod secret;
mod span;
mod sqlite;
mod store;
#[cfg(feature = "testing")]
pub mod testing;
mod time;
mod worker;

pub use agent::{Agent, AgentApply, ApplyOutcome};
pub use daemon::{DaemonPhase, DaemonState};
pub use egress_object::EgressObject;
pub use egress_record::{EGRESS_RECORDS_PER_AGENT, EgressRecord};
pub use error::StoreError;
pub use execution::{
    EXECUTIONS_PER_NAME, Execution, ExecutionEnd, ExecutionStatus, NewExecution, Start, prunes_at,
};
pub use leadership::Leadership;
pub use logs::{LOG_ROW_COST, LogLine, LogPage, LogQuery, NewLogLine, log_line_cost};
pub use pool::Pool;
pub use revision::{Revision, RevisionState, revision_name};
pub use schedule::{CRON_CLAIMS_KEPT, ScheduleTimes};
pub use secret::SecretInfo;
pub use span::{ATTRIBUTES_PER_SPAN, SPAN_TEXT_BYTES, SPANS_PER_EXECUTION, SpanRecord};
pub use store::{Store, WORKER_LOST};
pub use worker::{EVERY_POOL, Heartbeat, WarmCount, WorkerRecord, WorkerRegistration, WorkerState};
