//! The cluster's two processes over one PostgreSQL database: `clrk server` (control API,
//! ingress, apply and placement; no sandboxes, no state of its own) and `clrk worker` (the
//! sandboxes of one host, reached over the authenticated link). See docs/operations.md.

pub mod health;
pub mod server;
pub mod token_file;
pub mod worker;
