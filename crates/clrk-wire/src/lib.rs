//! What travels between the clrk CLI and a clrk server: the control API's request and answer
//! bodies, the ingress header names, and `dev.json`, the file `clrk dev` writes so other
//! commands find it. The server serialises these types and the CLI deserialises the same
//! ones, and the server's OpenAPI document is derived from them.
//!
//! This crate holds serde types and constants only: no I/O, no HTTP client or server, and no
//! conversion from store records (those live in the server, which owns the records). It sits
//! just above `clrk-api`, whose [`ObjectKey`] the answers carry.

mod agent;
mod apply;
mod common;
mod dev_file;
mod egress;
mod execution;
pub mod headers;
mod image;
mod pool;
mod secret;
mod trace;
mod worker;

pub use agent::{
    Agent, AgentStatus, Condition, DaemonRun, DaemonStatus, Revision, ScheduleStatus, TokenUsage,
};
pub use apply::{
    ApplyDocument, ApplyEvent, ApplyRequest, ApplyResponse, ApplyResult, PullProgress,
};
pub use clrk_api::ObjectKey;
pub use common::{Deleted, ErrorBody, List, ObjectRef};
pub use dev_file::DevFile;
pub use egress::{EgressObject, EgressRecord};
pub use execution::{Execution, LogLine};
pub use image::{Image, ImportResponse, LocalImage, PruneReport, PruneResponse};
pub use pool::Pool;
pub use secret::{Secret, SecretKeys, SetSecretRequest, SetSecretResponse};
pub use trace::{Trace, TraceSpan, in_tree_order};
pub use worker::{DrainAnswer, WorkerView};
