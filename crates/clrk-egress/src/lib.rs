//! clrk's egress gateway: the transparent proxy every sandbox's outbound TCP is redirected to,
//! the DNS resolver on the metadata address, the allowlist, credential injection, token
//! budgets and the telemetry of each transaction.
//!
//! It decides and forwards; it does not create networks (clrk-sandbox does the redirects) and
//! never lets a secret or the gateway CA's key reach a sandbox: secrets are read from the
//! store per request and only ever written into upstream request headers.

mod body;
mod ca;
mod config;
mod destination;
pub mod dns;
mod dns_server;
mod error;
mod http_proxy;
mod ledger;
mod limits;
mod otlp;
mod policy;
mod proxy;
mod registry;
mod relay;
mod service;
mod trace_context;
mod transaction;
mod upstream;
mod upstream_tls;
mod usage;

pub use ca::GatewayCa;
pub use error::EgressError;
pub use otlp::{AttributeValue, ExportStats, OtlpExporter, Span};
pub use registry::{Registration, SandboxIdentity, SandboxRegistry};
pub use service::{Egress, EgressListeners, EgressSettings, TRUST_BUNDLE_PATHS};
pub use trace_context::TraceContext;
pub use upstream_tls::client_config;
pub use usage::{Provider, TokenUsage, UsageMeter, request_model};
