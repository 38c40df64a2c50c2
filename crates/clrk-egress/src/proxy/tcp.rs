//! The transparent proxy: every TCP connection an egress sandbox opens arrives here, its
//! original destination read back from the redirect (`SO_ORIGINAL_DST`).
//!
//! The first bytes say what it is (`sniff`): a TLS ClientHello (its SNI is recorded; with
//! `tls.mode: Terminate` the proxy answers with a certificate from the gateway's CA and serves
//! the HTTP inside), plain HTTP (served as such), or anything else (relayed as bytes once
//! allowed). A refused HTTP or terminated-TLS request gets a 403 saying why; any other refused
//! connection is closed.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use clrk_api::TlsMode;
use clrk_store::Store;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::http::{self, Connection, HttpContext};
use super::sniff::{Sniffed, sniff};
use crate::ca::GatewayCas;
use crate::config::EgressConfig;
use crate::destination::HostAddresses;
use crate::dns::NameCache;
use crate::limits::{
    MAX_CONNECTIONS_PER_SANDBOX, MAX_CONNECTIONS_TOTAL, RELAY_IDLE_TIMEOUT, Slots,
    TLS_HANDSHAKE_TIMEOUT,
};
use crate::peers::{SandboxIdentity, SandboxRegistry};
use crate::policy::{self, Verdict};
use crate::telemetry::recorder::Recorder;
use crate::telemetry::transaction::Transaction;

/// Longest wait for an upstream TCP connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What the proxy's connection handling uses of the gateway, shared by every connection.
pub(crate) struct ProxyContext {
    pub(crate) peers: SandboxRegistry,
    /// Where each sandbox's egress configuration is read from.
    pub(crate) store: Store,
    /// Names each sandbox resolved, by the sandbox's IPv4 address.
    pub(crate) names: Arc<NameCache<IpAddr>>,
    pub(crate) host: Arc<HostAddresses>,
    pub(crate) recorder: Recorder,
    pub(crate) cas: Arc<GatewayCas>,
    /// Connections through the proxy, all sandboxes together.
    pub(crate) connections: Slots,
    /// What the HTTP served on a connection uses.
    pub(crate) http: Arc<HttpContext>,
}

/// Accepts the sandboxes' connections on `listener` until `shutdown`, each in a task of its own
/// holding a slot of its sandbox's and of the gateway's.
pub(crate) async fn serve(
    ctx: Arc<ProxyContext>,
    listener: TcpListener,
    shutdown: CancellationToken,
) {
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    tracing::warn!(%error, "egress proxy accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => return,
        };
        let Some(identity) = ctx.peers.lookup(peer.ip()) else {
            tracing::warn!(%peer, "egress connection from an unknown sandbox closed");
            continue;
        };
        // Beyond its cap a sandbox's connection is closed at once, before it costs anything
        // more than the moment its descriptor was open.
        let Some(slot) = identity
            .limits
            .connections
            .take(MAX_CONNECTIONS_PER_SANDBOX)
        else {
            refuse_over_limit(&ctx, &identity, stream, peer);
            continue;
        };
        let Some(total) = ctx.connections.take(MAX_CONNECTIONS_TOTAL) else {
            // Logged at most once a second per sandbox, like the sandbox's own cap.
            if let Some(refused) = identity.limits.refused.note() {
                tracing::warn!(%peer, refused, "egress proxy at its limit of {MAX_CONNECTIONS_TOTAL} connections in all: connections closed");
            }
            continue;
        };
        let ctx = Arc::clone(&ctx);
        tokio::spawn(async move {
            let _slots = (slot, total);
            tokio::select! {
                () = handle(&ctx, Arc::clone(&identity), stream, peer) => {}
                // Dropping the connection's future closes both of its sockets.
                () = identity.gone() => {}
            }
        });
    }
}

/// Closes a connection over the sandbox's cap; records the refusals at most once a second.
fn refuse_over_limit(
    ctx: &Arc<ProxyContext>,
    identity: &Arc<SandboxIdentity>,
    stream: TcpStream,
    peer: SocketAddr,
) {
    let destination = original_destination(&stream, peer).ok();
    drop(stream);
    let Some(refused) = identity.limits.refused.note() else {
        return;
    };
    tracing::warn!(
        namespace = %identity.namespace,
        agent = %identity.agent,
        refused,
        "egress connection limit reached"
    );
    let (ctx, identity) = (Arc::clone(ctx), Arc::clone(identity));
    tokio::spawn(async move {
        let config = EgressConfig::for_sandbox(&ctx.store, &identity).await;
        let shown = destination.map_or_else(|| "unknown".to_owned(), |d| d.to_string());
        let mut tx = ctx
            .recorder
            .begin(&identity, "tcp", shown, config.primary());
        tx.deny(format!(
            "connection limit {MAX_CONNECTIONS_PER_SANDBOX} reached: {refused} connection(s) of this sandbox closed at once since the last such record; close connections the agent no longer uses"
        ));
        tx.finish();
    });
}

/// Where the agent meant to go, read back from the redirect.
fn original_destination(stream: &TcpStream, peer: SocketAddr) -> std::io::Result<SocketAddr> {
    match peer {
        SocketAddr::V4(_) => rustix::net::sockopt::ip_original_dst(stream).map(SocketAddr::V4),
        SocketAddr::V6(_) => rustix::net::sockopt::ipv6_original_dst(stream).map(SocketAddr::V6),
    }
    .map_err(std::io::Error::from)
}

/// Serves one connection by what its first bytes say it is.
async fn handle(
    ctx: &ProxyContext,
    identity: Arc<SandboxIdentity>,
    stream: TcpStream,
    peer: SocketAddr,
) {
    let destination = match original_destination(&stream, peer) {
        Ok(d) => d,
        Err(error) => {
            tracing::warn!(%peer, %error, "egress connection without an original destination");
            return;
        }
    };
    let _ = stream.set_nodelay(true);
    let config = EgressConfig::for_sandbox(&ctx.store, &identity).await;
    let names = ctx
        .names
        .names_for(&identity.names_key(), destination.ip().to_canonical());
    let sniffed = sniff(&stream, destination.port()).await;
    let terminate = config
        .primary()
        .is_some_and(|g| g.spec.tls.mode == TlsMode::Terminate);
    match sniffed {
        Sniffed::Http => {
            let conn = Connection::new(&ctx.http, &identity, config, destination, names, None);
            http::serve(conn, stream).await;
        }
        Sniffed::Tls { sni, http: true } if terminate => {
            let gateway = config
                .primary()
                .cloned()
                .expect("terminate implies a gateway");
            let ca = match ctx.cas.of(&gateway) {
                Ok(ca) => ca,
                Err(error) => {
                    tracing::error!(%error, gateway = %gateway.metadata.name, "gateway CA unavailable");
                    return;
                }
            };
            let fallback = destination.ip().to_string();
            let acceptor = tokio_rustls::TlsAcceptor::from(ca.server_config_for(&fallback));
            let accepted =
                tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await;
            let failed = match accepted {
                Ok(Ok(tls)) => {
                    let conn = Connection::new(
                        &ctx.http,
                        &identity,
                        config,
                        destination,
                        names,
                        Some(sni),
                    );
                    http::serve(conn, tls).await;
                    return;
                }
                Ok(Err(error)) => {
                    format!("the agent's TLS handshake with the gateway failed: {error}")
                }
                Err(_) => format!(
                    "the agent's TLS handshake with the gateway did not finish within {}",
                    clrk_api::GoDuration(TLS_HANDSHAKE_TIMEOUT)
                ),
            };
            let mut tx =
                ctx.recorder
                    .begin(&identity, "tls", destination.to_string(), config.primary());
            tx.record.destination_name = sni;
            tx.deny(failed);
        }
        Sniffed::Tls { sni, .. } => {
            // The upstream serves whichever name the agent sends: that name must be allowed.
            let sni = sni.map(|n| clrk_api::normal_name(&n));
            let claimed = sni.as_deref().map(|name| policy::Claimed {
                carrier: "TLS name",
                name,
            });
            let verdict = policy::decide_claimed(&config, destination, &names, claimed, &ctx.host);
            let tx =
                ctx.recorder
                    .begin(&identity, "tls", destination.to_string(), config.primary());
            relay(
                tx,
                stream,
                destination,
                sni.or(names.into_iter().next()),
                verdict,
            )
            .await;
        }
        Sniffed::TlsUnreadableName => {
            let verdict = policy::decide_unreadable_name(&config, destination, &ctx.host);
            let tx =
                ctx.recorder
                    .begin(&identity, "tls", destination.to_string(), config.primary());
            relay(tx, stream, destination, None, verdict).await;
        }
        Sniffed::Other => {
            let verdict = policy::decide(&config, destination, &names, &ctx.host);
            let tx =
                ctx.recorder
                    .begin(&identity, "tcp", destination.to_string(), config.primary());
            relay(tx, stream, destination, names.into_iter().next(), verdict).await;
        }
    }
}

/// Relays bytes both ways once allowed; records the connection in `tx` as going to `name`.
async fn relay(
    mut tx: Transaction,
    stream: TcpStream,
    destination: SocketAddr,
    name: Option<String>,
    verdict: Verdict,
) {
    tx.record.destination_name = name;
    if !verdict.allowed {
        tx.deny(verdict.reason);
        return;
    }
    tx.allow(verdict.reason);
    let upstream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(destination))
        .await
    {
        Ok(Ok(s)) => s,
        Ok(Err(error)) => {
            tx.record.reason = format!("{}; connecting upstream failed: {error}", tx.record.reason);
            return;
        }
        Err(_) => {
            tx.record.reason = format!("{}; connecting upstream timed out", tx.record.reason);
            return;
        }
    };
    let _ = upstream.set_nodelay(true);
    let relayed = crate::proxy::relay::both(stream, upstream, RELAY_IDLE_TIMEOUT).await;
    tx.record.request_bytes = relayed.sent;
    tx.record.response_bytes = relayed.received;
    if relayed.idle {
        tx.record.reason = format!(
            "{}; closed after {} without a byte either way",
            tx.record.reason,
            clrk_api::GoDuration(RELAY_IDLE_TIMEOUT)
        );
    }
}
