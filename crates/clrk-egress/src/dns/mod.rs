//! DNS for sandboxes: the messages (a sandbox's query, clrk's own answers, the addresses in an
//! upstream's answer), forwarding a permitted question to the host's resolver, the names each
//! sandbox resolved, and the resolver socket that puts them together with the policy.
//!
//! Which names a sandbox may resolve is the policy's; [`server`] asks it and records refusals.

mod forward;
mod message;
mod names;
pub(crate) mod server;
#[cfg(test)]
mod testing;

pub use forward::{forward, nameserver_from_resolv_conf};
pub use message::{DnsQuestion, addresses, parse_query, refuse, server_failure};
pub use names::NameCache;
