//! clrk's egress gateway: the transparent proxy every sandbox's outbound TCP is redirected to,
//! the DNS resolver on the metadata address, the allowlist, credential injection, token
//! budgets and the telemetry of each transaction.
//!
//! It decides and forwards; it does not create networks (clrk-sandbox does the redirects) and
//! never lets a secret or the gateway CA's key reach a sandbox: secrets are read from the
//! store per request and only ever written into upstream request headers or query parameters,
//! never into a record or span.
//!
//! Layout, top down: [`Egress`] (`gateway`) puts the parts together and hands each listener a
//! context of the parts it uses. `proxy/` serves TCP by its first bytes (`tcp`, `sniff`) and
//! HTTP as a pipeline of stages (`http/`: authorize, trace, budgets, credentials, forward),
//! reaching upstreams through `upstream` and `tls`. `dns/` holds the messages, forwarding, the
//! names each sandbox resolved, and the resolver socket. `telemetry/` records each exchange
//! (transaction, ledger, trace context, OTLP). Below them all: the policy (`policy`, `config`,
//! `destination`), who a connection is from (`peers`), the caps (`limits`), the gateway CA
//! (`ca`), token metering (`usage`) and where credentials go in a request
//! (`credential_place`). Modules import only downward.

mod ca;
mod config;
mod credential_place;
mod destination;
pub mod dns;
mod error;
mod gateway;
mod limits;
mod peers;
mod policy;
mod proxy;
mod telemetry;
mod usage;

pub use ca::GatewayCa;
pub use error::EgressError;
pub use gateway::{Egress, EgressListeners, EgressSettings, TRUST_BUNDLE_PATHS};
pub use peers::{Registration, SandboxIdentity, SandboxRegistry};
pub use proxy::tls::client_config;
pub use telemetry::otlp::{AttributeValue, ExportStats, OtlpExporter, Span};
pub use telemetry::trace_context::{TraceContext, hex_id};
pub use usage::{Provider, TokenUsage, UsageMeter, request_model};
