//! The resolver egress sandboxes use: their DNS questions (redirected from any address to
//! this socket) are answered only for names their gateways allow, by the host's resolver;
//! the answers are remembered so hostname rules apply to the addresses agents then dial.
//! Every other question gets NXDOMAIN and a denied record.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use clrk_store::Store;
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use super::forward::forward;
use super::message::{self, DnsQuestion};
use super::names::NameCache;
use crate::config::EgressConfig;
use crate::limits::MAX_DNS_IN_FLIGHT_PER_SANDBOX;
use crate::peers::{SandboxIdentity, SandboxRegistry};
use crate::policy;
use crate::telemetry::recorder::Recorder;

/// How long the host's resolver has to answer.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(4);
/// Largest DNS message over UDP.
const MAX_PACKET: usize = 4096;

/// What the resolver uses of the gateway.
pub(crate) struct ResolverContext {
    pub(crate) peers: SandboxRegistry,
    /// Where each sandbox's egress configuration is read from.
    pub(crate) store: Store,
    /// Names each sandbox resolved, by the sandbox's IPv4 address.
    pub(crate) names: Arc<NameCache<IpAddr>>,
    /// The resolver allowed questions are forwarded to; without one they get SERVFAIL.
    pub(crate) upstream: Option<SocketAddr>,
    pub(crate) recorder: Recorder,
}

/// Answers the sandboxes' questions on `socket` until `shutdown`, each in a task of its own.
pub(crate) async fn serve(
    ctx: Arc<ResolverContext>,
    socket: UdpSocket,
    shutdown: CancellationToken,
) {
    let socket = Arc::new(socket);
    let mut buf = vec![0u8; MAX_PACKET];
    loop {
        let (n, peer) = tokio::select! {
            received = socket.recv_from(&mut buf) => match received {
                Ok(pair) => pair,
                Err(error) => {
                    tracing::debug!(%error, "egress resolver receive failed");
                    continue;
                }
            },
            () = shutdown.cancelled() => return,
        };
        let Some(identity) = ctx.peers.lookup(peer.ip()) else {
            continue;
        };
        // A sandbox asking faster than answers come has its extra questions dropped; its
        // resolver asks again.
        let Some(slot) = identity
            .limits
            .dns_questions
            .take(MAX_DNS_IN_FLIGHT_PER_SANDBOX)
        else {
            tracing::debug!(%peer, "DNS question dropped: too many in flight");
            continue;
        };
        let query = buf[..n].to_vec();
        let (ctx, socket) = (Arc::clone(&ctx), Arc::clone(&socket));
        tokio::spawn(async move {
            let _slot = slot;
            if let Some(answer) = answer(&ctx, &identity, peer, &query).await
                && let Err(error) = socket.send_to(&answer, peer).await
            {
                tracing::debug!(%error, %peer, "egress resolver reply failed");
            }
        });
    }
}

async fn answer(
    ctx: &ResolverContext,
    identity: &Arc<SandboxIdentity>,
    peer: SocketAddr,
    query: &[u8],
) -> Option<Vec<u8>> {
    let question = match message::parse_query(query) {
        Ok(q) => q,
        Err(error) => {
            tracing::debug!(%error, %peer, "malformed DNS question ignored");
            return None;
        }
    };
    let config = EgressConfig::for_sandbox(&ctx.store, identity).await;
    let by_name = policy::name_allowed(&config, &question.name);
    let upstream = ctx.upstream;
    if by_name.is_none() {
        // Forwarding the question would carry whatever the agent wrote in the name to the
        // name's servers: only a gateway that opts in asks about names no route names.
        let why = if !policy::has_address_rules(&config) {
            Some("no route of the agent's egress gateways names it")
        } else if !policy::forwards_all_names(&config) {
            Some(
                "no route of the agent's egress gateways names it, and none sets dns.forwardAll to have such names resolved for their destinationCIDRs",
            )
        } else {
            None
        };
        if let Some(why) = why {
            deny(ctx, identity, &question, why);
            return message::refuse(query).ok();
        }
    }
    let Some(upstream) = upstream else {
        tracing::warn!(name = %question.name, "no DNS server to forward an agent's question to: start clrk with --dns-upstream");
        return message::server_failure(query).ok();
    };
    let response = match forward(upstream, query, UPSTREAM_TIMEOUT).await {
        Ok(r) => r,
        Err(error) => {
            tracing::warn!(%error, name = %question.name, "DNS upstream failed");
            return message::server_failure(query).ok();
        }
    };
    let addresses = message::addresses(&response);
    if by_name.is_none()
        && !addresses
            .iter()
            .any(|(ip, _)| policy::address_allowed(&config, *ip))
    {
        deny(
            ctx,
            identity,
            &question,
            "no route of the agent's egress gateways names it or its addresses",
        );
        return message::refuse(query).ok();
    }
    let key = identity.names_key();
    for (ip, ttl) in addresses {
        ctx.names.insert(&key, &question.name, ip, ttl);
    }
    Some(response)
}

fn deny(ctx: &ResolverContext, identity: &Arc<SandboxIdentity>, question: &DnsQuestion, why: &str) {
    let upstream = ctx.upstream;
    let mut tx = ctx.recorder.begin(
        identity,
        "dns",
        upstream.map_or_else(|| "clrk resolver".into(), |a| a.to_string()),
        None,
    );
    tx.record.destination_name = Some(question.name.clone());
    tx.record.method = Some(format!("{}", question.record_type));
    tx.deny(format!("DNS question for {} refused: {why}", question.name));
}
