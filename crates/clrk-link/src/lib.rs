//! clrk-link: the authenticated connection between a clrk server and its workers.
//!
//! A server reaches a worker over TCP with TLS 1.3 and HTTP/2, requests and responses streamed
//! both ways. Neither side needs a certificate authority: each holds the cluster secret, and on
//! every connection each proves it knows that secret with an HMAC of a value exported from that
//! very TLS session (RFC 8446 §7.5, bound to the session's keys). A peer without the secret
//! gets nothing but `401`; a proof recorded on one connection is worthless on another, so a
//! replayed request is refused; a machine in the middle terminates two different sessions and
//! cannot forge either side's proof. See [`secret`] for the secret file and [`proof`] for the
//! construction.
//!
//! It carries any [`axum::Router`] and knows nothing of executions, sandboxes or the store.

pub mod client;
mod error;
pub mod proof;
pub mod secret;
pub mod server;
pub mod tls;

pub use client::LinkClient;
pub use error::LinkError;
pub use secret::ClusterSecret;
pub use server::{LinkLimits, LinkServer};

/// The header each side's proof travels in: the server's proof on requests, the worker's on
/// responses.
pub const PROOF_HEADER: &str = "clrk-link-proof";
