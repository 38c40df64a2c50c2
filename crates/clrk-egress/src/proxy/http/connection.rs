//! What every stage of the HTTP pipeline is handed: the parts of the gateway HTTP uses
//! ([`HttpContext`], shared by all connections) and one agent connection with what was
//! decided about it when it arrived ([`Connection`]).

use std::net::SocketAddr;
use std::sync::Arc;

use clrk_store::Store;

use crate::config::EgressConfig;
use crate::destination::HostAddresses;
use crate::limits::Slots;
use crate::peers::SandboxIdentity;
use crate::proxy::body::BodyBudget;
use crate::proxy::tls::UpstreamTrust;
use crate::proxy::upstream::UpstreamPool;
use crate::telemetry::recorder::Recorder;

/// What the HTTP stages use of the gateway, shared by every connection.
pub(crate) struct HttpContext {
    /// Token counts (budgets) and secrets (credentials).
    pub(crate) store: Store,
    pub(crate) recorder: Recorder,
    pub(crate) host: Arc<HostAddresses>,
    pub(crate) upstream_pool: UpstreamPool,
    pub(crate) upstream_trust: UpstreamTrust,
    /// Bytes of provider request bodies held at once, all sandboxes together.
    pub(crate) body_budget: BodyBudget,
    /// Connections through the proxy, all sandboxes together (a protocol switch takes one).
    pub(crate) connections: Slots,
}

/// One agent connection and what was decided about it.
pub(crate) struct Connection {
    pub(super) ctx: Arc<HttpContext>,
    pub(super) identity: Arc<SandboxIdentity>,
    pub(super) config: EgressConfig,
    pub(super) destination: SocketAddr,
    /// Names the sandbox resolved to the destination through clrk.
    pub(super) names: Vec<String>,
    /// `Some` inside terminated TLS: the SNI the agent sent.
    pub(super) tls: Option<Option<String>>,
}

impl Connection {
    pub(crate) fn new(
        ctx: &Arc<HttpContext>,
        identity: &Arc<SandboxIdentity>,
        config: EgressConfig,
        destination: SocketAddr,
        names: Vec<String>,
        tls: Option<Option<String>>,
    ) -> Connection {
        Connection {
            ctx: Arc::clone(ctx),
            identity: Arc::clone(identity),
            config,
            destination,
            names,
            tls,
        }
    }
}
