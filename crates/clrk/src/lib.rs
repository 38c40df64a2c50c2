//! The `clrk` command-line interface: argument parsing, finding the server, talking to its
//! control API and ingress over HTTP, and presenting the answers to a person.
//!
//! This crate must not hold product logic: manifests are parsed by `clrk-api`, and every
//! decision about agents, revisions and executions is made by the server (`clrk-server`).

pub mod cli;
pub mod client;
pub mod commands;
pub mod discovery;
pub mod duration;
pub mod error;
pub mod line_diff;
pub mod manifests;
pub mod output;
pub mod pull_progress;

pub use error::CliError;
