//! HTTP through the gateway: each request an agent sends (in the clear or inside terminated
//! TLS) goes through a pipeline of stages, each in its own module, and is forwarded to the
//! original destination; the response streams back metered.
//!
//! The stages, in order: [`authorize`] (the name the request is for, and whether the policy
//! lets it go), trace context, [`budgets`] (token budgets of provider routes), [`credentials`]
//! (secrets written into the upstream request), then [`forward`] (or [`upgrade`] for a
//! protocol switch). A stage that refuses returns a [`Refusal`], which becomes the agent's
//! response and the transaction's record.

mod authorize;
mod budgets;
mod connection;
mod credentials;
mod forward;
mod metering;
mod refusal;
mod upgrade;

use std::sync::Arc;

use http::header::HeaderValue;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::limits::HEADER_READ_TIMEOUT;
use crate::proxy::body::ProxyBody;
use crate::telemetry::trace_context::TraceContext;
use crate::telemetry::transaction::Transaction;
pub(crate) use connection::{Connection, HttpContext};
use refusal::Refusal;

const TRACEPARENT: &str = "traceparent";

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

/// One request through the stages; the first refusal answers it.
async fn handle(conn: &Connection, mut request: Request<Incoming>) -> Response<ProxyBody> {
    let protocol = if conn.tls.is_some() { "https" } else { "http" };
    let mut tx = conn.ctx.recorder.begin(
        &conn.identity,
        protocol,
        conn.destination.to_string(),
        conn.config.primary(),
    );
    let authorized = match admit(conn, &mut tx, &mut request).await {
        Ok(authorized) => authorized,
        Err(refusal) => return refusal.respond(&mut tx),
    };
    let name = authorized.name.as_deref();
    if upgrade::is_upgrade(request.headers()) {
        return upgrade::upgrade(conn, tx, name, request).await;
    }
    forward::forward(conn, tx, name, authorized.provider, request).await
}

/// The stages before forwarding, in order; the first refusal ends the exchange.
async fn admit(
    conn: &Connection,
    tx: &mut Transaction,
    request: &mut Request<Incoming>,
) -> Result<authorize::Authorized, Refusal> {
    let claim = authorize::read_claim(conn, tx, request)?;
    // Continued before the verdict is applied, so a denied request's span joins the agent's
    // trace too.
    continue_trace(tx, request.headers());
    let authorized = authorize::authorize(conn, tx, claim)?;
    // Credentials and budgets go by the name the request is for, and only when the sandbox
    // resolved that name to this very address through clrk (see `authorize`).
    if let Some(name) = &authorized.trusted_name {
        budgets::check(conn, tx, name).await?;
        credentials::inject(conn, tx, name, authorized.provider, request).await?;
    }
    if let Ok(value) = HeaderValue::from_str(&tx.trace.header_value()) {
        request.headers_mut().insert(TRACEPARENT, value);
    }
    Ok(authorized)
}

/// The trace stage: continue the agent's trace if it sent one; upstream sees this span. It
/// never refuses: a malformed `traceparent` starts a trace of the gateway's own.
fn continue_trace(tx: &mut Transaction, headers: &http::HeaderMap) {
    let inbound = headers
        .get(TRACEPARENT)
        .and_then(|v| v.to_str().ok())
        .and_then(TraceContext::parse);
    if let Some(parent) = inbound {
        tx.trace = parent.child();
        tx.parent_span = Some(parent.span_id);
    }
}
