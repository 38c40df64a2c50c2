//! clrk-dispatch: from a trigger to an answer. Builds the CloudEvents envelope, serves the
//! HTTP ingress, runs each execution in its own sandbox, streams stdout back and records the
//! execution and its logs.
//!
//! It must not parse manifests or talk to the control API: it reads agents and revisions
//! from the store that the server fills.

mod agent_cache;
pub mod body;
pub mod dispatcher;
pub mod envelope;
pub mod error;
pub mod ingress;
pub mod ingress_headers;
pub mod launch;
pub mod logs;
pub mod metadata;
pub mod revision;
mod warm_pool;
mod warm_reconciler;
mod worker_capacity;

pub use dispatcher::{
    Admission, Dispatcher, DispatcherConfig, ExecEvent, Invocation, Outcome, Route, STOP_GRACE,
    execution_span,
};
pub use error::DispatchError;
pub use logs::{ExecutionLog, LogBus, LogEvent, LogLimit};
pub use revision::RevisionShape;
