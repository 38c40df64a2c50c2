//! clrk's egress gateway: the transparent proxy every sandbox's outbound TCP is redirected to,
//! the DNS resolver on the metadata address, the allowlist, credential injection, token
//! budgets and the telemetry of each transaction.
//!
//! It decides and forwards; it does not create networks (clrk-sandbox does) nor store
//! anything itself: records, budgets and secrets go through the traits its caller provides.

mod ca;
mod destination;
mod dns;
mod error;
mod otlp;
mod upstream_tls;
mod usage;

pub use error::EgressError;
