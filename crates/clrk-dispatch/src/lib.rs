//! clrk-dispatch: from a trigger to an answer. Builds the CloudEvents envelope, serves the
//! HTTP ingress, places each execution on a worker, which runs it in its own sandbox, streams
//! stdout back and records the execution and its logs.
//!
//! Two sides, along the line a cluster draws between its processes: `placement` (the
//! server's: route, admission, queue) and `worker` (the host's: launch, warm pools, the
//! execution's life, the metadata service). `clrk dev` runs both in one process.
//!
//! It must not parse manifests or talk to the control API: it reads agents and revisions
//! from the store that the server fills.

pub mod body;
pub mod envelope;
pub mod error;
pub mod ingress;
pub mod ingress_headers;
pub mod link;
pub mod logs;
pub mod output;
pub mod placement;
mod pools;
pub mod revision;
pub mod trace;
pub mod worker;

pub use error::DispatchError;
pub use logs::{ExecutionLog, LogBus, LogEvent, LogLimit};
pub use placement::workers::Workers;
pub use placement::{Admission, Dispatcher, Invocation, Route, execution_span};
pub use revision::RevisionShape;
pub use worker::launch;
pub use worker::launch_error::LaunchError;
pub use worker::launcher::{Launcher, SandboxRequest};
pub use worker::metadata;
pub use worker::order::{ExecEvent, ExecutionOrder, Outcome, Started};
pub use worker::{NO_RESPONSE, STOP_GRACE, Worker};
