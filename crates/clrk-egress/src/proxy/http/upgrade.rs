//! A protocol switch (a WebSocket, say): the request goes upstream on a connection of its own
//! with its `Connection`/`Upgrade` headers; once the server agrees (101), bytes are relayed
//! both ways until either side closes or the sandbox goes, and the transaction is recorded
//! then.
//!
//! The relay outlives the HTTP connection it came from (hyper hands the connection over and
//! returns), so it takes slots of its own against the sandbox's and the gateway's connection
//! caps: an agent switching protocols in a loop is held to the caps like any other.

use std::sync::Arc;

use http::header;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

use super::connection::Connection;
use super::forward::{strip_hop_by_hop, upstream_target};
use super::metering::{Counted, Metered};
use super::refusal::Refusal;
use crate::limits::{MAX_CONNECTIONS_PER_SANDBOX, MAX_CONNECTIONS_TOTAL, RELAY_IDLE_TIMEOUT, Slot};
use crate::peers::SandboxIdentity;
use crate::proxy::body::ProxyBody;
use crate::proxy::relay::Relayed;
use crate::telemetry::transaction::Transaction;

/// Whether the agent asks to switch protocols.
pub(super) fn is_upgrade(headers: &http::HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// Forwards the switch and, once the server agrees, relays in a task of its own.
pub(super) async fn upgrade(
    conn: &Connection,
    mut tx: Transaction,
    name: Option<&str>,
    request: Request<Incoming>,
) -> Response<ProxyBody> {
    let (slots, agent_side, mut response) = match switch(conn, name, request).await {
        Ok(switched) => switched,
        Err(refusal) => return refusal.respond(&mut tx),
    };
    tx.record.status = Some(response.status().as_u16());
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        let (parts, body) = response.into_parts();
        return Response::from_parts(parts, Metered::new(body, None, tx).boxed());
    }
    let upstream_side = hyper::upgrade::on(&mut response);
    let identity = Arc::clone(&conn.identity);
    tokio::spawn(async move {
        match tokio::try_join!(agent_side, upstream_side) {
            Ok((agent, upstream)) => {
                let relayed = relay_upgraded(
                    TokioIo::new(agent),
                    TokioIo::new(upstream),
                    &identity,
                    slots,
                )
                .await;
                match relayed {
                    Some(relayed) => {
                        tx.record.request_bytes = relayed.sent;
                        tx.record.response_bytes = relayed.received;
                    }
                    None => {
                        tx.record.reason =
                            format!("{}; closed: the sandbox is gone", tx.record.reason);
                    }
                }
            }
            Err(error) => {
                tx.record.reason = format!("{}; upgrade failed: {error}", tx.record.reason);
            }
        }
        tx.finish();
    });
    let (parts, _) = response.into_parts();
    Response::from_parts(
        parts,
        http_body_util::Empty::new()
            .map_err(|never| match never {})
            .boxed(),
    )
}

/// Takes the relay's slots and sends the switch upstream: the slots, the agent's side of the
/// switch, and the upstream's response.
async fn switch(
    conn: &Connection,
    name: Option<&str>,
    mut request: Request<Incoming>,
) -> Result<((Slot, Slot), OnUpgrade, Response<Incoming>), Refusal> {
    let slots = upgrade_slots(conn)
        .map_err(|reason| Refusal::denied(StatusCode::SERVICE_UNAVAILABLE, reason))?;
    let agent_side = hyper::upgrade::on(&mut request);
    let (mut parts, body) = request.into_parts();
    let (connection, upgrade_to) = (
        parts.headers.get(header::CONNECTION).cloned(),
        parts.headers.get(header::UPGRADE).cloned(),
    );
    strip_hop_by_hop(&mut parts.headers);
    parts.headers.extend(
        [
            (header::CONNECTION, connection),
            (header::UPGRADE, upgrade_to),
        ]
        .into_iter()
        .filter_map(|(k, v)| Some((k, v?))),
    );
    let upstream_request = Request::from_parts(parts, Counted::new(body, Arc::default()).boxed());
    let target = upstream_target(conn, name)?;
    let response = crate::proxy::upstream::send_upgrade(&target, upstream_request)
        .await
        .map_err(|reason| Refusal::failed(StatusCode::BAD_GATEWAY, reason))?;
    Ok((slots, agent_side, response))
}

/// A slot of the sandbox's and one of the gateway's, or why there is none.
fn upgrade_slots(conn: &Connection) -> Result<(Slot, Slot), String> {
    let mine = conn
        .identity
        .limits
        .connections
        .take(MAX_CONNECTIONS_PER_SANDBOX)
        .ok_or_else(|| format!(
            "connection limit {MAX_CONNECTIONS_PER_SANDBOX} reached: a protocol switch holds a connection of its own; close connections the agent no longer uses"
        ))?;
    let total = conn
        .ctx
        .connections
        .take(MAX_CONNECTIONS_TOTAL)
        .ok_or_else(|| format!(
            "gateway busy: {MAX_CONNECTIONS_TOTAL} connections open through it in all; try again later"
        ))?;
    Ok((mine, total))
}

/// Relays a switched protocol both ways until either side closes, it idles out, or the
/// sandbox is gone (`None`): a relay never outlives its sandbox. It holds `slots` until then.
async fn relay_upgraded<A, U>(
    agent: A,
    upstream: U,
    identity: &SandboxIdentity,
    slots: (Slot, Slot),
) -> Option<Relayed>
where
    A: AsyncRead + AsyncWrite,
    U: AsyncRead + AsyncWrite,
{
    let _slots = slots;
    tokio::select! {
        relayed = crate::proxy::relay::both(agent, upstream, RELAY_IDLE_TIMEOUT) => Some(relayed),
        // Dropping the relay closes both of its ends.
        () = identity.gone() => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A switched protocol's relay holds a slot of its sandbox's and of the gateway's, and
    /// ends, closing both ends and giving the slots back, when the sandbox goes.
    #[tokio::test]
    async fn an_upgraded_relay_holds_slots_and_ends_with_its_sandbox() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let registry = crate::peers::SandboxRegistry::default();
        let registration = registry.register(
            &["169.254.64.9".parse().unwrap()],
            SandboxIdentity::new("DaemonAgent", "default", "a", "a-00001", vec![], None),
        );
        let identity = Arc::clone(registration.identity());
        let total = crate::limits::Slots::default();
        let slots = (
            identity.limits.connections.take(1).unwrap(),
            total.take(1).unwrap(),
        );
        let (agent, mut agent_peer) = tokio::io::duplex(64);
        let (upstream, mut upstream_peer) = tokio::io::duplex(64);
        let relay = tokio::spawn({
            let identity = Arc::clone(&identity);
            async move { relay_upgraded(agent, upstream, &identity, slots).await }
        });
        agent_peer.write_all(b"ping").await.unwrap();
        let mut got = [0u8; 4];
        upstream_peer.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"ping");
        // At the cap while it runs: the relay's slots count.
        assert!(identity.limits.connections.take(1).is_none());
        assert!(total.take(1).is_none());
        drop(registration);
        let ended = tokio::time::timeout(std::time::Duration::from_secs(10), relay)
            .await
            .expect("the relay outlived its sandbox")
            .unwrap();
        assert_eq!(ended, None);
        assert_eq!(upstream_peer.read(&mut got).await.unwrap(), 0);
        assert_eq!(agent_peer.read(&mut got).await.unwrap(), 0);
        assert_eq!(identity.limits.connections.in_use(), 0);
        assert_eq!(total.in_use(), 0);
    }
}
