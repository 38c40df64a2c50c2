//! The server's end of the link: one HTTP/2 connection per worker address, reused by every
//! request to it, each request carrying this session's proof and each response believed only
//! with the worker's.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use http::{HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::proof::{EXPORTER_LABEL, SessionProofs, Side};
use crate::{ClusterSecret, LinkError, PROOF_HEADER, tls};

/// Time to open the TCP connection and then to finish the TLS handshake.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// An idle connection is pinged this often, and dropped when a ping goes unanswered as long.
const KEEPALIVE: Duration = Duration::from_secs(10);

/// Dials workers. Cheap to clone; clones share connections.
#[derive(Clone)]
pub struct LinkClient {
    inner: Arc<Inner>,
}

struct Inner {
    secret: ClusterSecret,
    connector: TlsConnector,
    connections: Mutex<HashMap<SocketAddr, Link>>,
}

/// An open connection to one worker.
#[derive(Clone)]
struct Link {
    send: SendRequest<Body>,
    proofs: SessionProofs,
}

impl LinkClient {
    /// A client proving `secret`.
    pub fn new(secret: ClusterSecret) -> Result<LinkClient, LinkError> {
        Ok(LinkClient {
            inner: Arc::new(Inner {
                secret,
                connector: TlsConnector::from(tls::client_config()?),
                connections: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// Sends `request` to the worker at `addr` (its URI needs only a path) and returns its
    /// response once the worker has proven itself; the body streams as the worker writes it.
    pub async fn request(
        &self,
        addr: SocketAddr,
        mut request: Request<Body>,
    ) -> Result<Response<Incoming>, LinkError> {
        let mut link = self.link(addr).await?;
        // The connection's own readiness: a closed one is replaced before the request is sent,
        // so a request is never lost to a connection the worker closed while idle.
        if link.send.ready().await.is_err() {
            self.forget(addr);
            link = self.link(addr).await?;
            link.send
                .ready()
                .await
                .map_err(|source| LinkError::Http { addr, source })?;
        }
        let proof = HeaderValue::from_str(&link.proofs.proof(Side::Dialer))
            .expect("a hex proof is a valid header value");
        request.headers_mut().insert(PROOF_HEADER, proof);
        let response = link.send.send_request(request).await.map_err(|source| {
            self.forget(addr);
            LinkError::Http { addr, source }
        })?;
        let proven = response
            .headers()
            .get(PROOF_HEADER)
            .is_some_and(|proof| link.proofs.verify(Side::Listener, proof.as_bytes()));
        if proven {
            return Ok(response);
        }
        self.forget(addr);
        if response.status() == StatusCode::UNAUTHORIZED {
            Err(LinkError::Refused { addr })
        } else {
            Err(LinkError::PeerNotAuthenticated { addr })
        }
    }

    fn forget(&self, addr: SocketAddr) {
        self.inner
            .connections
            .lock()
            .expect("link connections")
            .remove(&addr);
    }

    async fn link(&self, addr: SocketAddr) -> Result<Link, LinkError> {
        let existing = self
            .inner
            .connections
            .lock()
            .expect("link connections")
            .get(&addr)
            .filter(|link| !link.send.is_closed())
            .cloned();
        if let Some(link) = existing {
            return Ok(link);
        }
        let link = self.connect(addr).await?;
        self.inner
            .connections
            .lock()
            .expect("link connections")
            .insert(addr, link.clone());
        Ok(link)
    }

    async fn connect(&self, addr: SocketAddr) -> Result<Link, LinkError> {
        let timed_out = || LinkError::HandshakeTimeout {
            addr,
            seconds: CONNECT_TIMEOUT.as_secs(),
        };
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| timed_out())?
            .map_err(|source| LinkError::Connect { addr, source })?;
        let _ = tcp.set_nodelay(true);
        let name = ServerName::try_from(tls::SERVER_NAME).expect("a valid DNS name");
        let tls = tokio::time::timeout(CONNECT_TIMEOUT, self.inner.connector.connect(name, tcp))
            .await
            .map_err(|_| timed_out())?
            .map_err(|source| LinkError::Handshake { addr, source })?;
        let exported = tls
            .get_ref()
            .1
            .export_keying_material([0u8; 32], EXPORTER_LABEL, None)
            .map_err(|e| LinkError::Tls(e.to_string()))?;
        let (send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .keep_alive_interval(KEEPALIVE)
            .keep_alive_timeout(KEEPALIVE)
            .keep_alive_while_idle(true)
            .handshake(TokioIo::new(tls))
            .await
            .map_err(|source| LinkError::Http { addr, source })?;
        tokio::spawn(async move {
            if let Err(error) = conn.await {
                tracing::debug!(%addr, %error, "link connection to worker ended");
            }
        });
        Ok(Link {
            send,
            proofs: SessionProofs::new(&self.inner.secret, exported),
        })
    }
}
