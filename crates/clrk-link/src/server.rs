//! The worker's end of the link: accepts TLS connections, checks the dialer's proof on every
//! request before the router sees it, and signs every response with its own.
//!
//! Anyone who can reach the port can open a connection, so each is bounded: the TLS handshake
//! must finish within [`LinkLimits::handshake_timeout`], the first proven request must arrive
//! within the same time, a wrong proof gets `401` and the connection closed, and at most
//! [`LinkLimits::max_connections`] are open at once (beyond it new ones are closed unread).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use http::{HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

use crate::proof::{EXPORTER_LABEL, SessionProofs, Side};
use crate::{ClusterSecret, LinkError, PROOF_HEADER, tls};

/// Bounds on what one listener accepts.
#[derive(Debug, Clone)]
pub struct LinkLimits {
    /// Connections open at once, all peers together.
    pub max_connections: usize,
    /// Time to finish the TLS handshake, and then to send a first proven request.
    pub handshake_timeout: Duration,
    /// Requests in flight on one connection.
    pub max_streams: u32,
    /// A connection is pinged after this long without a frame and closed if the ping goes
    /// unanswered for as long again: a dead peer is noticed.
    pub keepalive: Duration,
}

impl Default for LinkLimits {
    fn default() -> Self {
        LinkLimits {
            max_connections: 256,
            handshake_timeout: Duration::from_secs(10),
            max_streams: 1024,
            keepalive: Duration::from_secs(10),
        }
    }
}

/// A worker's listener for its servers.
pub struct LinkServer {
    secret: ClusterSecret,
    acceptor: TlsAcceptor,
    limits: LinkLimits,
}

impl LinkServer {
    /// A listener that serves dialers holding `secret`.
    pub fn new(secret: ClusterSecret, limits: LinkLimits) -> Result<LinkServer, LinkError> {
        Ok(LinkServer {
            secret,
            acceptor: TlsAcceptor::from(tls::server_config()?),
            limits,
        })
    }

    /// Serves `router` on `listener` until `shutdown` is cancelled; then stops accepting and
    /// lets requests in flight finish.
    pub async fn serve(self, listener: TcpListener, router: Router, shutdown: CancellationToken) {
        let this = Arc::new(self);
        let slots = Arc::new(Semaphore::new(this.limits.max_connections));
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = shutdown.cancelled() => return,
            };
            let (tcp, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of descriptors or similar: back off instead of spinning.
                    tracing::warn!(%error, "link listener cannot accept");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                tracing::warn!(%peer, limit = this.limits.max_connections,
                    "link connection refused: too many open");
                continue;
            };
            let (this, router, shutdown) = (this.clone(), router.clone(), shutdown.clone());
            tokio::spawn(async move {
                this.connection(tcp, peer, router, shutdown).await;
                drop(slot);
            });
        }
    }

    async fn connection(
        &self,
        tcp: TcpStream,
        peer: SocketAddr,
        router: Router,
        shutdown: CancellationToken,
    ) {
        let _ = tcp.set_nodelay(true);
        let deadline = tokio::time::Instant::now() + self.limits.handshake_timeout;
        let tls = match tokio::time::timeout_at(deadline, self.acceptor.accept(tcp)).await {
            Ok(Ok(tls)) => tls,
            Ok(Err(error)) => {
                tracing::debug!(%peer, %error, "link TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "link TLS handshake timed out");
                return;
            }
        };
        let Ok(exported) = tls
            .get_ref()
            .1
            .export_keying_material([0u8; 32], EXPORTER_LABEL, None)
        else {
            return;
        };
        let session = Arc::new(Connection {
            proofs: SessionProofs::new(&self.secret, exported),
            peer,
            proven: AtomicBool::new(false),
            refused: Notify::new(),
        });
        let service = {
            let session = session.clone();
            hyper::service::service_fn(move |request: Request<Incoming>| {
                let (session, router) = (session.clone(), router.clone());
                async move { Ok::<_, std::convert::Infallible>(session.serve(request, router).await) }
            })
        };
        let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        builder
            .timer(TokioTimer::new())
            .max_concurrent_streams(self.limits.max_streams)
            .keep_alive_interval(self.limits.keepalive)
            .keep_alive_timeout(self.limits.keepalive);
        let conn = builder.serve_connection(TokioIo::new(tls), service);
        tokio::pin!(conn);
        let first_request = tokio::time::sleep_until(deadline);
        tokio::pin!(first_request);
        let mut closing = false;
        loop {
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(error) = result {
                        tracing::debug!(%peer, %error, "link connection ended");
                    }
                    return;
                }
                () = &mut first_request, if !closing && !session.proven.load(Ordering::Acquire) => {
                    tracing::debug!(%peer, "link connection sent no proven request in time");
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                }
                () = session.refused.notified(), if !closing => {
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                }
                () = shutdown.cancelled(), if !closing => {
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// One accepted connection: its session's proofs, and whether its dialer proved itself.
struct Connection {
    proofs: SessionProofs,
    peer: SocketAddr,
    proven: AtomicBool,
    refused: Notify,
}

impl Connection {
    async fn serve(&self, request: Request<Incoming>, router: Router) -> Response<Body> {
        let proven = request
            .headers()
            .get(PROOF_HEADER)
            .is_some_and(|proof| self.proofs.verify(Side::Dialer, proof.as_bytes()));
        if !proven {
            tracing::warn!(peer = %self.peer, path = %request.uri().path(),
                "link request without a valid cluster secret proof refused");
            self.refused.notify_one();
            let mut response = Response::new(Body::from(
                "refused: this request does not prove the cluster secret of this worker\n",
            ));
            *response.status_mut() = StatusCode::UNAUTHORIZED;
            return response;
        }
        self.proven.store(true, Ordering::Release);
        let mut response = match router.oneshot(request.map(Body::new)).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        let proof = HeaderValue::from_str(&self.proofs.proof(Side::Listener))
            .expect("a hex proof is a valid header value");
        response.headers_mut().insert(PROOF_HEADER, proof);
        response
    }
}
