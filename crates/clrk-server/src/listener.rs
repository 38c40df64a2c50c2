//! Serving an HTTP router on a listener with the bounds every clrk listener needs against
//! hostile clients: a cap on connections in all and per peer address, and a deadline for
//! each request's headers that also closes idle kept-alive connections.
//!
//! Sandboxes are peers too: on the metadata listener a peer address is one sandbox, so the
//! per-peer cap is the per-sandbox cap. A connection beyond a cap is answered at once with a
//! short 503 (no request is read) and closed; refusals are logged at most once per
//! [`WARN_EVERY`] per listener, with their count, so the refusals cannot flood the log.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceExt as _;

/// Longest quiet period between two refusal warnings of one listener.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// What a listener accepts.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    /// Named in logs and refusals: "ingress", "control API", "metrics", "metadata service".
    pub name: &'static str,
    /// Connections open at once, all peers together.
    pub max_connections: usize,
    /// Connections open at once from one peer address (one sandbox on the metadata listener).
    pub max_per_peer: usize,
    /// A request's headers must be complete within this time of the connection opening or
    /// of the previous response ending; otherwise the connection is closed. This is both the
    /// header read timeout and the idle timeout of kept-alive connections.
    pub header_timeout: Duration,
    /// Count IPv6 peers by their /64, which one client usually holds whole. Not on the
    /// metadata service, whose sandboxes share one /64 and are told apart by address.
    pub ipv6_by_prefix: bool,
}

impl ConnectionLimits {
    /// The ingress: open to anyone who can reach it.
    pub fn ingress(max_connections: usize, max_per_peer: usize) -> ConnectionLimits {
        ConnectionLimits {
            name: "ingress",
            max_connections,
            max_per_peer,
            header_timeout: Duration::from_secs(20),
            ipv6_by_prefix: true,
        }
    }

    /// The control API: a few CLI calls at a time; nobody without the token gets past auth,
    /// but anybody can connect.
    pub fn control_api() -> ConnectionLimits {
        ConnectionLimits {
            name: "control API",
            max_connections: 512,
            max_per_peer: 128,
            header_timeout: Duration::from_secs(20),
            ipv6_by_prefix: true,
        }
    }

    /// `--metrics`: a scraper or two, without a token; the control API's caps.
    pub fn metrics() -> ConnectionLimits {
        ConnectionLimits {
            name: "metrics",
            ..ConnectionLimits::control_api()
        }
    }

    /// The metadata service: an agent needs one or two connections; each sandbox is a peer.
    pub fn metadata() -> ConnectionLimits {
        ConnectionLimits {
            name: "metadata service",
            max_connections: usize::MAX,
            max_per_peer: 16,
            header_timeout: Duration::from_secs(10),
            ipv6_by_prefix: false,
        }
    }
}

/// Open connections of one listener, by peer address.
struct Counts {
    limits: ConnectionLimits,
    open: Mutex<(usize, HashMap<IpAddr, usize>)>,
    refused: AtomicU64,
    last_warning: Mutex<Option<Instant>>,
}

/// One open connection, counted until dropped.
struct Admitted {
    counts: Arc<Counts>,
    peer: IpAddr,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut open = self.counts.open.lock().expect("connection counts");
        open.0 -= 1;
        if let Some(n) = open.1.get_mut(&self.peer) {
            *n -= 1;
            if *n == 0 {
                open.1.remove(&self.peer);
            }
        }
    }
}

impl Counts {
    fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<Admitted, &'static str> {
        let mut open = self.open.lock().expect("connection counts");
        if open.0 >= self.limits.max_connections {
            return Err("too many connections");
        }
        let from_peer = open.1.entry(peer).or_insert(0);
        if *from_peer >= self.limits.max_per_peer {
            return Err("too many connections from this address");
        }
        *from_peer += 1;
        open.0 += 1;
        Ok(Admitted {
            counts: Arc::clone(self),
            peer,
        })
    }

    /// Counts a refusal and warns when the last warning is old enough.
    fn refused(&self, peer: IpAddr, why: &str) {
        let count = self.refused.fetch_add(1, Ordering::Relaxed) + 1;
        let mut last = self.last_warning.lock().expect("warning time");
        if last.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
            *last = Some(Instant::now());
            self.refused.store(0, Ordering::Relaxed);
            tracing::warn!(
                listener = self.limits.name,
                %peer,
                refused = count,
                max_connections = self.limits.max_connections,
                max_per_peer = self.limits.max_per_peer,
                "{why}: connections refused"
            );
        }
    }
}

/// Serves `app` on `listener` within `limits` until the task is dropped. Handlers can read
/// the peer as `ConnectInfo<SocketAddr>`.
pub async fn serve(listener: TcpListener, app: Router, limits: ConnectionLimits) {
    let counts = Arc::new(Counts {
        limits,
        open: Mutex::default(),
        refused: AtomicU64::new(0),
        last_warning: Mutex::new(None),
    });
    // HTTP/1 only: hyper's header read timeout then runs from the moment a connection is
    // accepted (detecting HTTP/2 would first wait, without a deadline, for its preface).
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(counts.limits.header_timeout);
    let builder = Arc::new(builder);
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(pair) => pair,
            Err(error) => {
                // Out of descriptors or memory: wait for some to be freed, then go on.
                tracing::warn!(listener = counts.limits.name, %error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        match counts.admit(peer_key(peer.ip(), counts.limits.ipv6_by_prefix)) {
            Ok(admitted) => {
                let builder = Arc::clone(&builder);
                let app = app.clone();
                tokio::spawn(async move {
                    serve_connection(&builder, stream, peer, app).await;
                    drop(admitted);
                });
            }
            Err(why) => {
                counts.refused(peer.ip(), why);
                refuse(stream, why);
            }
        }
    }
}

async fn serve_connection(
    builder: &http1::Builder,
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
) {
    // Output is streamed in small writes as the agent makes them: none may wait for an ACK.
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%error, "could not set TCP_NODELAY");
    }
    let service = hyper::service::service_fn(move |mut request: http::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        let app = app.clone();
        app.oneshot(request.map(axum::body::Body::new))
    });
    if let Err(error) = builder
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades()
        .await
    {
        tracing::debug!(%peer, %error, "connection ended with an error");
    }
}

/// Whose connection this is, for the per-peer cap.
fn peer_key(ip: IpAddr, ipv6_by_prefix: bool) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) if ipv6_by_prefix => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(prefix.into())
        }
        other => other,
    }
}

/// Answers a refused connection without reading from it, if the socket takes the bytes now.
fn refuse(stream: TcpStream, why: &str) {
    let body = format!("{why}; retry later\n");
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\nretry-after: 1\r\nconnection: close\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.try_write(response.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(total: usize, per_peer: usize) -> Arc<Counts> {
        Arc::new(Counts {
            limits: ConnectionLimits {
                name: "test",
                max_connections: total,
                max_per_peer: per_peer,
                header_timeout: Duration::from_secs(1),
                ipv6_by_prefix: true,
            },
            open: Mutex::default(),
            refused: AtomicU64::new(0),
            last_warning: Mutex::new(None),
        })
    }

    #[test]
    fn a_peer_at_its_cap_is_refused_while_others_are_admitted_and_closing_frees_a_place() {
        let counts = counts(10, 2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let first = counts.admit(a).unwrap();
        let _second = counts.admit(a).unwrap();
        assert!(counts.admit(a).is_err());
        let _other = counts.admit(b).unwrap();
        drop(first);
        let _again = counts.admit(a).unwrap();
        assert_eq!(counts.open.lock().unwrap().0, 3);
    }

    #[test]
    fn ipv6_clients_count_by_their_64_and_mapped_ipv4_as_ipv4() {
        let a = peer_key("2001:db8:1:2::5".parse().unwrap(), true);
        let b = peer_key("2001:db8:1:2:ffff::9".parse().unwrap(), true);
        assert_eq!(a, b);
        assert_ne!(a, peer_key("2001:db8:1:3::5".parse().unwrap(), true));
        assert_ne!(
            peer_key("fd00:ec2::1:2".parse().unwrap(), false),
            peer_key("fd00:ec2::1:3".parse().unwrap(), false)
        );
        assert_eq!(
            peer_key("::ffff:10.0.0.1".parse().unwrap(), true),
            "10.0.0.1".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn the_total_cap_holds_across_peers_and_empty_peers_are_forgotten() {
        let counts = counts(2, 5);
        let one = counts.admit("10.0.0.1".parse().unwrap()).unwrap();
        let _two = counts.admit("10.0.0.2".parse().unwrap()).unwrap();
        assert!(counts.admit("10.0.0.3".parse().unwrap()).is_err());
        drop(one);
        assert_eq!(counts.open.lock().unwrap().1.len(), 1);
    }
}
