//! HTTP through the gateway: each request an agent sends (in the clear or inside terminated
//! TLS) is checked, gets its credentials and trace context, and is forwarded to the original
//! destination on a fresh upstream connection; the response streams back metered.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::body::IdleBody;
use crate::config::EgressConfig;
use crate::limits::{
    BODY_IDLE_TIMEOUT, HEADER_READ_TIMEOUT, MAX_CONNECTIONS_PER_SANDBOX, MAX_CONNECTIONS_TOTAL,
    RELAY_IDLE_TIMEOUT, Slot,
};
use crate::policy::{self, Verdict};
use crate::registry::SandboxIdentity;
use crate::relay::Relayed;
use crate::service::Egress;
use crate::trace_context::TraceContext;
use crate::transaction::Transaction;
use crate::upstream::Target;
use crate::usage::{Provider, UsageMeter, request_model};

const TRACEPARENT: &str = "traceparent";

/// Why a body failed: hyper's error, or the gateway's own (a body arriving too slowly).
pub(crate) type BodyError = Box<dyn std::error::Error + Send + Sync>;

pub(crate) type ProxyBody = BoxBody<Bytes, BodyError>;

/// One agent connection and what was decided about it.
pub(crate) struct Connection {
    egress: Egress,
    identity: Arc<SandboxIdentity>,
    config: EgressConfig,
    destination: SocketAddr,
    /// Names the sandbox resolved to the destination through clrk.
    names: Vec<String>,
    /// `Some` inside terminated TLS: the SNI the agent sent.
    tls: Option<Option<String>>,
}

impl Connection {
    pub(crate) fn new(
        egress: &Egress,
        identity: &Arc<SandboxIdentity>,
        config: EgressConfig,
        destination: SocketAddr,
        names: Vec<String>,
        tls: Option<Option<String>>,
    ) -> Connection {
        Connection {
            egress: egress.clone(),
            identity: Arc::clone(identity),
            config,
            destination,
            names,
            tls,
        }
    }
}

/// Serves HTTP/1.1 requests on `io` until the agent closes it.
pub(crate) async fn serve<S>(conn: Connection, io: S)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let conn = Arc::new(conn);
    let service = hyper::service::service_fn(move |request| {
        let conn = Arc::clone(&conn);
        async move { Ok::<_, std::convert::Infallible>(handle(&conn, request).await) }
    });
    if let Err(error) = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades()
        .await
    {
        tracing::debug!(%error, "egress HTTP connection ended with an error");
    }
}

async fn handle(conn: &Connection, mut request: Request<Incoming>) -> Response<ProxyBody> {
    let protocol = if conn.tls.is_some() { "https" } else { "http" };
    let gateway = conn.config.primary();
    let mut tx = conn.egress.begin(
        &conn.identity,
        protocol,
        conn.destination.to_string(),
        gateway,
    );
    let (name, verdict) = request_verdict(conn, &request);
    tx.record.destination_name = name.clone();
    tx.record.method = Some(request.method().to_string());
    tx.record.path = Some(
        request
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_else(|| "/".into()),
    );
    // Servers differ on which of several `Host`s they route by; the gateway checks one, so
    // a request with more is refused rather than forwarded with a name nobody checked.
    let hosts = request.headers().get_all(header::HOST).iter().count();
    if hosts > 1 {
        let reason = format!("the request has {hosts} Host headers: send exactly one");
        tx.deny(reason.clone());
        return refuse(&mut tx, StatusCode::BAD_REQUEST, &reason);
    }
    // Trace context: continue the agent's trace if it sent one; upstream sees this span.
    let inbound = request
        .headers()
        .get(TRACEPARENT)
        .and_then(|v| v.to_str().ok())
        .and_then(TraceContext::parse);
    if let Some(parent) = inbound {
        tx.trace = parent.child();
        tx.parent_span = Some(parent.span_id);
    }
    if !verdict.allowed {
        tx.deny(verdict.reason.clone());
        return refuse(&mut tx, StatusCode::FORBIDDEN, &verdict.reason);
    }
    tx.allow(verdict.reason);
    // Credentials and budgets go by the name the request is for, and only when the sandbox
    // resolved that name to this very address through clrk: the upstream is then verified as
    // that name (the TLS name, which the Host must equal), so a secret never leaves for a
    // server, or a virtual host, that is not the policy's.
    let trusted_name = name
        .as_ref()
        .filter(|n| conn.names.iter().any(|known| known == *n))
        .cloned();
    let provider = trusted_name
        .as_deref()
        .and_then(|n| policy::provider_route(&conn.config, n))
        .map(|(_, provider)| provider);
    tx.provider = provider.map(Provider::as_str);
    if let Some(name) = &trusted_name {
        if let Some(response) = check_budgets(conn, &mut tx, name).await {
            return response;
        }
        if let Some(response) = inject_credentials(conn, &mut tx, name, request.headers_mut()).await
        {
            return response;
        }
    }
    if let Ok(value) = HeaderValue::from_str(&tx.trace.header_value()) {
        request.headers_mut().insert(TRACEPARENT, value);
    }
    if is_upgrade(request.headers()) {
        return upgrade(conn, tx, name.as_deref(), request).await;
    }
    let (mut parts, body) = request.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    let request_bytes = Arc::new(AtomicU64::new(0));
    // A provider call's body is held until it has gone upstream, with its share of the
    // gateway's body budget.
    let mut _held = None;
    let body: ProxyBody = if provider.is_some() {
        // Usage can only be read from a body the provider did not compress.
        parts.headers.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("identity"),
        );
        let counted = Counted::new(body, Arc::clone(&request_bytes));
        match crate::body::read(counted, &conn.egress.inner.body_budget).await {
            Ok(held) => {
                tx.record.model = request_model(&held.bytes);
                let bytes = held.bytes.clone();
                _held = Some(held);
                Full::new(bytes).map_err(|never| match never {}).boxed()
            }
            Err(error) => {
                let reason = error.to_string();
                tx.deny(reason.clone());
                return refuse(&mut tx, error.status(), &reason);
            }
        }
    } else {
        Counted::new(body, Arc::clone(&request_bytes)).boxed()
    };
    let upstream_request = Request::from_parts(parts, body);
    let timeout = gateway
        .map(|g| g.spec.request_timeout.0)
        .unwrap_or(std::time::Duration::from_secs(300));
    let target = match upstream_target(conn, name.as_deref()) {
        Ok(t) => t,
        Err(reason) => {
            tx.record.reason = format!("{}; {reason}", tx.record.reason);
            return refuse(&mut tx, StatusCode::BAD_GATEWAY, &reason);
        }
    };
    let pool = &conn.egress.inner.upstream_pool;
    let sent = tokio::time::timeout(timeout, pool.send(&target, upstream_request)).await;
    tx.record.request_bytes = request_bytes.load(Ordering::Relaxed);
    let response = match sent {
        Ok(Ok(response)) => response,
        Ok(Err(reason)) => {
            tx.record.reason = format!("{}; {reason}", tx.record.reason);
            return refuse(&mut tx, StatusCode::BAD_GATEWAY, &reason);
        }
        Err(_) => {
            let reason = format!(
                "no response within the gateway's requestTimeout ({})",
                clrk_api::GoDuration(timeout)
            );
            tx.record.reason = format!("{}; {reason}", tx.record.reason);
            return refuse(&mut tx, StatusCode::GATEWAY_TIMEOUT, &reason);
        }
    };
    tx.record.status = Some(response.status().as_u16());
    let meter = provider.map(|provider| {
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        UsageMeter::new(provider, content_type)
    });
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    Response::from_parts(
        parts,
        Metered {
            inner: body,
            meter,
            tx: Some(tx),
        }
        .boxed(),
    )
}

/// The name a request is for and whether it may go. Inside terminated TLS that is the TLS
/// name, which the upstream connection is verified as, and the request's `Host` (or
/// absolute-form authority) must be the same name: a server that routes by `Host` would
/// otherwise hand the request, and any credential in it, to another site. In the clear it is
/// the `Host`. Either way the name must itself be allowed and resolved to the destination
/// through clrk ([`policy::decide_claimed`]).
fn request_verdict<B>(conn: &Connection, request: &Request<B>) -> (Option<String>, Verdict) {
    let authority = request
        .uri()
        .authority()
        .map(|a| clrk_api::normal_name(strip_port(a.as_str())));
    let header = request
        .headers()
        .get(header::HOST)
        .map(|h| clrk_api::normal_name(strip_port(&String::from_utf8_lossy(h.as_bytes()))));
    let sni = conn
        .tls
        .clone()
        .flatten()
        .map(|n| clrk_api::normal_name(&n));
    let mismatch = match (&sni, &authority, &header) {
        (_, Some(a), Some(h)) if a != h => Some(format!(
            "the request's authority {a} does not match its Host {h}"
        )),
        (Some(sni), Some(host), _) | (Some(sni), None, Some(host)) if sni != host => Some(format!(
            "Host {host} does not match TLS name {sni}: the gateway sends a request only to the name it verified upstream"
        )),
        _ => None,
    };
    let host = authority.or(header);
    let name = sni.clone().or(host);
    if let Some(reason) = mismatch {
        return (
            name,
            Verdict {
                allowed: false,
                reason,
            },
        );
    }
    let claimed = name.as_deref().map(|name| policy::Claimed {
        carrier: if sni.is_some() { "TLS name" } else { "Host" },
        name,
    });
    let verdict = policy::decide_claimed(
        &conn.config,
        conn.destination,
        &conn.names,
        claimed,
        &conn.egress.inner.host,
    );
    (name, verdict)
}

/// Refuses with `status` and a one-line reason the agent can read.
fn refuse(tx: &mut Transaction, status: StatusCode, reason: &str) -> Response<ProxyBody> {
    let body = format!("clrk egress: {reason}\n");
    tx.record.status = Some(status.as_u16());
    tx.record.response_bytes = body.len() as u64;
    tx.finish();
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .header("x-clrk-egress", "refused")
        .body(
            Full::new(Bytes::from(body))
                .map_err(|never| match never {})
                .boxed(),
        )
        .expect("a static response is valid")
}

async fn check_budgets(
    conn: &Connection,
    tx: &mut Transaction,
    name: &str,
) -> Option<Response<ProxyBody>> {
    let budgets = policy::budgets(&conn.config, name);
    if budgets.is_empty() {
        return None;
    }
    let store = conn.egress.inner.store.clone();
    let execution = tx.record.execution_id.clone();
    let (namespace, agent) = (tx.record.namespace.clone(), tx.record.agent.clone());
    let day = tx.record.started_at.date_naive();
    let used = async {
        let per_execution = match &execution {
            Some(id) => store.execution_tokens(id).await?,
            None => 0,
        };
        Ok::<_, clrk_store::StoreError>((
            per_execution,
            store.tokens_on(&namespace, &agent, day).await?,
        ))
    }
    .await;
    let (pending_execution, pending_day) = conn.egress.inner.ledger.pending(&tx.ledger_keys());
    let (per_execution, today) = match used {
        Ok((e, d)) => (e + pending_execution, d + pending_day),
        other => {
            tracing::error!(?other, "token counts unreadable");
            let reason = "token budget unknown: the gateway could not read its counts";
            tx.deny(reason);
            return Some(refuse(tx, StatusCode::SERVICE_UNAVAILABLE, reason));
        }
    };
    for (route, budget) in budgets {
        let over = match (budget.max_tokens_per_execution, budget.max_tokens_per_day) {
            (Some(max), _) if per_execution >= max => Some(format!(
                "token budget exceeded: aiproviderroute {route} allows {max} tokens per execution and this execution used {per_execution}"
            )),
            (_, Some(max)) if today >= max => Some(format!(
                "token budget exceeded: aiproviderroute {route} allows {max} tokens per day and agent {} used {today} today (UTC)",
                tx.record.agent
            )),
            _ => None,
        };
        if let Some(reason) = over {
            tx.deny(reason.clone());
            return Some(refuse(tx, StatusCode::TOO_MANY_REQUESTS, &reason));
        }
    }
    None
}

async fn inject_credentials(
    conn: &Connection,
    tx: &mut Transaction,
    name: &str,
    headers: &mut http::HeaderMap,
) -> Option<Response<ProxyBody>> {
    let credentials = policy::credentials(&conn.config, name);
    // In the clear nothing proves which server gets the request: a credential goes only
    // where the gateway verified the upstream's TLS name.
    if let (Some(credential), None) = (credentials.first(), &conn.tls) {
        let reason = format!(
            "credentialinjectionpolicy {} covers {name}, whose credential is sent only over TLS the gateway verifies: call https://{name}",
            credential.policy
        );
        tx.deny(reason.clone());
        return Some(refuse(tx, StatusCode::FORBIDDEN, &reason));
    }
    let mut injected = Vec::new();
    for credential in credentials {
        let store = conn.egress.inner.store.clone();
        let c = credential.clone();
        let value = store
            .secret_value(&c.namespace, &c.secret, &c.key)
            .await
            .ok()
            .flatten();
        let Some(value) = value else {
            let reason = format!(
                "credentialinjectionpolicy {} needs key {} of secret {}/{}, which does not exist: set it with clrk secret set {} --from-literal {}=…",
                credential.policy,
                credential.key,
                credential.namespace,
                credential.secret,
                credential.secret,
                credential.key
            );
            tx.record.reason = format!("{}; {reason}", tx.record.reason);
            return Some(refuse(tx, StatusCode::BAD_GATEWAY, &reason));
        };
        let mut full = credential.prefix.clone().into_bytes();
        full.extend_from_slice(&value);
        let (Ok(header_name), Ok(mut header_value)) = (
            HeaderName::from_bytes(credential.header.as_bytes()),
            HeaderValue::from_bytes(&full),
        ) else {
            let reason = format!(
                "credentialinjectionpolicy {}: the secret's value cannot be sent in a header",
                credential.policy
            );
            tx.record.reason = format!("{}; {reason}", tx.record.reason);
            return Some(refuse(tx, StatusCode::BAD_GATEWAY, &reason));
        };
        header_value.set_sensitive(true);
        let replaced = headers.insert(header_name, header_value).is_some();
        injected.push(if replaced {
            format!("{} (replaced the agent's)", credential.header)
        } else {
            credential.header.clone()
        });
    }
    if !injected.is_empty() {
        tx.record.injected_header = Some(injected.join(", "));
    }
    None
}

/// Where the request goes: the original destination, over TLS when the agent's was,
/// verified as `name` (or the address when the agent gave none).
fn upstream_target(conn: &Connection, name: Option<&str>) -> Result<Target, String> {
    let tls = match conn.tls {
        None => None,
        Some(_) => {
            let config = conn
                .egress
                .upstream_tls(conn.config.primary())
                .map_err(|e| format!("upstream TLS is not configured: {e}"))?;
            let server_name = match name {
                Some(n) => rustls::pki_types::ServerName::try_from(n.to_owned())
                    .map_err(|_| format!("{n} is not a valid TLS server name"))?,
                None => rustls::pki_types::ServerName::IpAddress(conn.destination.ip().into()),
            };
            Some((config, server_name))
        }
    };
    Ok(Target {
        address: conn.destination,
        tls,
    })
}

/// Whether the agent asks to switch protocols (a WebSocket, say).
fn is_upgrade(headers: &http::HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// A protocol switch: the request goes upstream on a connection of its own with its
/// `Connection`/`Upgrade` headers; once the server agrees (101), bytes are relayed both ways
/// until either side closes or the sandbox goes, and the transaction is recorded then.
///
/// The relay outlives the HTTP connection it came from (hyper hands the connection over and
/// returns), so it takes slots of its own against the sandbox's and the gateway's connection
/// caps: an agent switching protocols in a loop is held to the caps like any other.
async fn upgrade(
    conn: &Connection,
    mut tx: Transaction,
    name: Option<&str>,
    mut request: Request<Incoming>,
) -> Response<ProxyBody> {
    let slots = match upgrade_slots(conn) {
        Ok(slots) => slots,
        Err(reason) => {
            tx.deny(reason.clone());
            return refuse(&mut tx, StatusCode::SERVICE_UNAVAILABLE, &reason);
        }
    };
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
    let target = match upstream_target(conn, name) {
        Ok(t) => t,
        Err(reason) => {
            tx.record.reason = format!("{}; {reason}", tx.record.reason);
            return refuse(&mut tx, StatusCode::BAD_GATEWAY, &reason);
        }
    };
    let mut response = match crate::upstream::send_upgrade(&target, upstream_request).await {
        Ok(r) => r,
        Err(reason) => {
            tx.record.reason = format!("{}; {reason}", tx.record.reason);
            return refuse(&mut tx, StatusCode::BAD_GATEWAY, &reason);
        }
    };
    tx.record.status = Some(response.status().as_u16());
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        let (parts, body) = response.into_parts();
        let metered = Metered {
            inner: body,
            meter: None,
            tx: Some(tx),
        };
        return Response::from_parts(parts, metered.boxed());
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
                            format!("{}; closed: the sandbox is gone", tx.record.reason)
                    }
                }
            }
            Err(error) => {
                tx.record.reason = format!("{}; upgrade failed: {error}", tx.record.reason)
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
        .egress
        .inner
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
        relayed = crate::relay::both(agent, upstream, RELAY_IDLE_TIMEOUT) => Some(relayed),
        // Dropping the relay closes both of its ends.
        _ = identity.gone() => None,
    }
}

/// Removes the headers that describe one connection (RFC 9110 §7.6.1), which a proxy must
/// not forward: the agent's `Connection: close` would otherwise close the gateway's upstream
/// connection, which it keeps for the next request.
fn strip_hop_by_hop(headers: &mut http::HeaderMap) {
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in listed {
        headers.remove(name);
    }
    for name in [
        header::CONNECTION,
        HeaderName::from_static("keep-alive"),
        header::PROXY_AUTHENTICATE,
        header::PROXY_AUTHORIZATION,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
    ] {
        headers.remove(name);
    }
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host;
    }
    host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host)
}

/// A request body that counts what passes, and fails when nothing arrives for
/// [`BODY_IDLE_TIMEOUT`]: an agent that stops sending must not hold a connection (and an
/// upstream one) for ever, while one sending slowly but steadily goes on.
struct Counted<B = Incoming> {
    inner: B,
    count: Arc<AtomicU64>,
    /// When the body is cut off unless a piece arrives first.
    idle: Pin<Box<tokio::time::Sleep>>,
}

impl<B> Counted<B> {
    fn new(inner: B, count: Arc<AtomicU64>) -> Counted<B> {
        Counted {
            inner,
            count,
            idle: Box::pin(tokio::time::sleep(BODY_IDLE_TIMEOUT)),
        }
    }
}

impl<B> Body for Counted<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BodyError>,
{
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.count.fetch_add(data.len() as u64, Ordering::Relaxed);
                }
                let next = tokio::time::Instant::now() + BODY_IDLE_TIMEOUT;
                self.idle.as_mut().reset(next);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => Poll::Ready(Some(Err(error.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match self.idle.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(IdleBody.into()))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that counts and meters what passes, and finishes the transaction at its
/// end (or when the agent stops reading).
struct Metered {
    inner: Incoming,
    meter: Option<UsageMeter>,
    tx: Option<Transaction>,
}

impl Metered {
    fn end(&mut self) {
        if let Some(mut tx) = self.tx.take() {
            if let Some(meter) = self.meter.take() {
                tx.usage = meter.finish();
            }
            tx.finish();
        }
    }
}

impl Body for Metered {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let this = &mut *self;
                    if let Some(tx) = &mut this.tx {
                        tx.record.response_bytes += data.len() as u64;
                    }
                    if let Some(meter) = &mut this.meter {
                        meter.feed(data);
                    }
                }
            }
            Poll::Ready(None) => self.end(),
            Poll::Ready(Some(Err(error))) => {
                if let Some(tx) = &mut self.tx {
                    tx.record.reason =
                        format!("{}; upstream body failed: {error}", tx.record.reason);
                }
                self.end();
            }
            Poll::Pending => {}
        }
        polled.map_err(Into::into)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Metered {
    fn drop(&mut self) {
        self.end();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_headers_are_not_forwarded() {
        let mut headers = http::HeaderMap::new();
        headers.insert(header::CONNECTION, HeaderValue::from_static("close, x-hop"));
        headers.insert("x-hop", HeaderValue::from_static("1"));
        headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        headers.insert("x-api-key", HeaderValue::from_static("k"));
        strip_hop_by_hop(&mut headers);
        let names: Vec<&str> = headers.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["x-api-key"]);
    }

    /// A switched protocol's relay holds a slot of its sandbox's and of the gateway's, and
    /// ends, closing both ends and giving the slots back, when the sandbox goes.
    #[tokio::test]
    async fn an_upgraded_relay_holds_slots_and_ends_with_its_sandbox() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let registry = crate::registry::SandboxRegistry::default();
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

    /// A body sent in `pieces`, each after `gap`, that stalls for ever after the last.
    fn trickle(
        pieces: usize,
        gap: std::time::Duration,
    ) -> impl Body<Data = Bytes, Error = BodyError> + Unpin {
        use futures::StreamExt as _;
        let stream = futures::stream::iter(0..pieces)
            .then(move |_| async move {
                tokio::time::sleep(gap).await;
                Ok::<_, BodyError>(Frame::data(Bytes::from_static(&[b'x'; 100])))
            })
            .chain(futures::stream::pending());
        http_body_util::StreamBody::new(Box::pin(stream))
    }

    /// Cut off after a silence, however much was sent before it; a slow upload that keeps
    /// sending goes on however long it takes.
    #[tokio::test(start_paused = true)]
    async fn a_body_is_cut_off_when_it_stops_sending_not_when_it_is_slow() {
        use std::time::Duration;
        let count = Arc::new(AtomicU64::new(0));
        let mut slow = Counted::new(trickle(12, Duration::from_secs(20)), Arc::clone(&count));
        let started = tokio::time::Instant::now();
        for _ in 0..12 {
            let frame = slow
                .frame()
                .await
                .unwrap()
                .expect("a steady upload was cut off");
            assert_eq!(frame.into_data().unwrap().len(), 100);
        }
        // 1,200 bytes in four minutes went through; then silence is cut off after 30 s.
        let last = tokio::time::Instant::now();
        assert_eq!(last - started, Duration::from_secs(240));
        let error = slow.frame().await.unwrap().unwrap_err();
        assert!(error.downcast_ref::<IdleBody>().is_some(), "{error}");
        assert_eq!(last.elapsed(), BODY_IDLE_TIMEOUT);
        assert_eq!(count.load(Ordering::Relaxed), 1200);
    }

    #[test]
    fn host_headers_lose_their_port() {
        assert_eq!(strip_port("llm.test:8443"), "llm.test");
        assert_eq!(strip_port("llm.test"), "llm.test");
        assert_eq!(strip_port("[::1]:80"), "[::1]:80");
    }
}
