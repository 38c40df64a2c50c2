//! clrk-server: wires the parts into a running server: the control API, manifest apply,
//! crash recovery at start, cron, the daemon supervisor, the registry of workers (registration,
//! heartbeats, the lost-worker sweep), `/metrics`, the web console under `/ui/`, and
//! `clrk dev` (API + ingress + embedded worker in one process).
//!
//! It must not run sandboxes or build envelopes itself (that is clrk-dispatch) and must not
//! print for humans beyond `clrk dev`'s terminal (that is the CLI).

pub mod api;
pub mod apply;
mod apply_outcome;
mod apply_preview;
pub mod cluster;
mod conditions;
pub mod console;
pub mod cron;
pub mod daemons;
pub mod dev;
pub mod error;
pub mod fd_limit;
pub mod host;
pub mod leadership;
pub mod listener;
pub mod metadata_listener;
pub mod metrics;
pub mod recovery;
mod references;
pub mod registry;
mod runtime_check;
pub mod state;
pub mod terminal;
pub mod views;

pub use error::ServerError;
