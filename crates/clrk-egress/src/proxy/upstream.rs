//! The gateway's connections to upstream servers, kept alive and reused: an agent's next
//! request to the same server (same address, same verified name, same trust) skips the TCP
//! and TLS handshakes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::body::ProxyBody;

/// Longest wait for an upstream TCP connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// An idle connection older than this is closed rather than reused (servers drop idle
/// connections after a while; reusing one they are closing would fail the request).
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Idle connections kept per server.
const MAX_IDLE: usize = 8;

/// One upstream server as a request sees it.
pub(crate) struct Target {
    pub(crate) address: SocketAddr,
    /// With TLS: the client config (its trust) and the name the server must prove.
    pub(crate) tls: Option<(Arc<ClientConfig>, ServerName<'static>)>,
}

impl Target {
    fn key(&self) -> Key {
        Key {
            address: self.address,
            tls: self
                .tls
                .as_ref()
                .map(|(config, name)| (Arc::as_ptr(config) as usize, name.to_str().into_owned())),
        }
    }

    /// What a failure message calls the server.
    fn shown(&self) -> String {
        match &self.tls {
            Some((_, name)) => name.to_str().into_owned(),
            None => self.address.to_string(),
        }
    }
}

/// Connections are shared only between requests with the same address, server name and
/// trust (the client config, cached per trust bundle).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    address: SocketAddr,
    tls: Option<(usize, String)>,
}

/// A kept connection and when it was last handed back.
type Idle = (SendRequest<ProxyBody>, Instant);

/// Idle upstream connections by server.
#[derive(Default)]
pub(crate) struct UpstreamPool {
    idle: Mutex<HashMap<Key, Vec<Idle>>>,
}

impl UpstreamPool {
    /// Sends `request` on an idle connection to `target` if one is ready, else on a new one;
    /// the connection is kept for reuse. A request that a reused connection could not take
    /// (it closed meanwhile) goes on a new connection: it was never sent.
    pub(crate) async fn send(
        &self,
        target: &Target,
        mut request: Request<ProxyBody>,
    ) -> Result<Response<Incoming>, String> {
        let key = target.key();
        while let Some(mut sender) = self.take(&key) {
            match sender.try_send_request(request).await {
                Ok(response) => {
                    self.keep(key, sender);
                    return Ok(response);
                }
                Err(mut error) => match error.take_message() {
                    Some(unsent) => request = unsent,
                    None => return Err(format!("upstream HTTP failed: {}", error.into_error())),
                },
            }
        }
        let mut sender = connect(target).await?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("upstream HTTP failed: {e}"))?;
        self.keep(key, sender);
        Ok(response)
    }

    /// A ready, open, recently used connection to `key`, if any.
    fn take(&self, key: &Key) -> Option<SendRequest<ProxyBody>> {
        let mut idle = self.idle.lock().expect("upstream pool");
        let senders = idle.get_mut(key)?;
        senders.retain(|(s, since)| !s.is_closed() && since.elapsed() < IDLE_TIMEOUT);
        let ready = senders.iter().position(|(s, _)| s.is_ready());
        let taken = ready.map(|i| senders.swap_remove(i).0);
        if senders.is_empty() {
            idle.remove(key);
        }
        taken
    }

    /// Keeps `sender` for reuse; it becomes ready once its response body is read.
    fn keep(&self, key: Key, sender: SendRequest<ProxyBody>) {
        let mut idle = self.idle.lock().expect("upstream pool");
        let senders = idle.entry(key).or_default();
        senders.retain(|(s, since)| !s.is_closed() && since.elapsed() < IDLE_TIMEOUT);
        if senders.len() < MAX_IDLE {
            senders.push((sender, Instant::now()));
        }
    }
}

/// Sends a protocol switch request to `target` on a connection of its own, never pooled:
/// once switched it belongs to the relay.
pub(crate) async fn send_upgrade(
    target: &Target,
    request: Request<ProxyBody>,
) -> Result<Response<Incoming>, String> {
    let mut sender = connect_with(target, true).await?;
    sender
        .send_request(request)
        .await
        .map_err(|e| format!("upstream HTTP failed: {e}"))
}

/// A new connection to `target`, TLS verified as its name.
async fn connect(target: &Target) -> Result<SendRequest<ProxyBody>, String> {
    connect_with(target, false).await
}

async fn connect_with(target: &Target, upgrades: bool) -> Result<SendRequest<ProxyBody>, String> {
    let address = target.address;
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address))
        .await
        .map_err(|_| format!("connecting to {address} timed out"))?
        .map_err(|e| format!("connecting to {address} failed: {e}"))?;
    let _ = tcp.set_nodelay(true);
    match &target.tls {
        None => handshake(tcp, upgrades).await,
        Some((config, name)) => {
            let tls = tokio_rustls::TlsConnector::from(Arc::clone(config))
                .connect(name.clone(), tcp)
                .await
                .map_err(|e| format!("upstream TLS with {} failed: {e}", target.shown()))?;
            handshake(tls, upgrades).await
        }
    }
}

async fn handshake<S>(io: S, upgrades: bool) -> Result<SendRequest<ProxyBody>, String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| format!("upstream HTTP failed: {e}"))?;
    tokio::spawn(async move {
        let ended = if upgrades {
            connection.with_upgrades().await
        } else {
            connection.await
        };
        if let Err(error) = ended {
            tracing::debug!(%error, "upstream connection ended with an error");
        }
    });
    Ok(sender)
}
