//! The forward stage: the request goes to the original destination on a pooled upstream
//! connection (over TLS verified as the request's name when the agent's was TLS), within the
//! gateway's `requestTimeout`; the response streams back metered. A provider call's body is
//! read whole first, within the gateway's body budget, to find the model.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use http::header::{self, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;

use super::connection::Connection;
use super::metering::{Counted, Metered};
use super::refusal::Refusal;
use crate::proxy::body::ProxyBody;
use crate::proxy::upstream::Target;
use crate::telemetry::transaction::Transaction;
use crate::usage::{Provider, UsageMeter, request_model};

/// Sends `request` (for `name`) upstream and answers with the response, metered for
/// `provider`'s usage; refusals are answered here too.
pub(super) async fn forward(
    conn: &Connection,
    mut tx: Transaction,
    name: Option<&str>,
    provider: Option<Provider>,
    request: Request<Incoming>,
) -> Response<ProxyBody> {
    let response = match send(conn, &mut tx, name, provider, request).await {
        Ok(response) => response,
        Err(refusal) => return refusal.respond(&mut tx),
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
    Response::from_parts(parts, Metered::new(body, meter, tx).boxed())
}

/// The upstream's response to `request`; the bytes sent are recorded once it is sent.
async fn send(
    conn: &Connection,
    tx: &mut Transaction,
    name: Option<&str>,
    provider: Option<Provider>,
    request: Request<Incoming>,
) -> Result<Response<Incoming>, Refusal> {
    let request_bytes = Arc::new(AtomicU64::new(0));
    let (mut parts, body) = request.into_parts();
    strip_hop_by_hop(&mut parts.headers);
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
        let held = crate::proxy::body::read(counted, &conn.ctx.body_budget)
            .await
            .map_err(|error| Refusal::denied(error.status(), error.to_string()))?;
        tx.record.model = request_model(&held.bytes);
        let bytes = held.bytes.clone();
        _held = Some(held);
        Full::new(bytes).map_err(|never| match never {}).boxed()
    } else {
        Counted::new(body, Arc::clone(&request_bytes)).boxed()
    };
    let upstream_request = Request::from_parts(parts, body);
    let timeout = conn
        .config
        .primary()
        .map_or(std::time::Duration::from_secs(300), |g| {
            g.spec.request_timeout.0
        });
    let target = upstream_target(conn, name)?;
    let pool = &conn.ctx.upstream_pool;
    let sent = tokio::time::timeout(timeout, pool.send(&target, upstream_request)).await;
    tx.record.request_bytes = request_bytes.load(Ordering::Relaxed);
    match sent {
        Ok(Ok(response)) => Ok(response),
        Ok(Err(reason)) => Err(Refusal::failed(StatusCode::BAD_GATEWAY, reason)),
        Err(_) => Err(Refusal::failed(
            StatusCode::GATEWAY_TIMEOUT,
            format!(
                "no response within the gateway's requestTimeout ({})",
                clrk_api::GoDuration(timeout)
            ),
        )),
    }
}

/// Where the request goes: the original destination, over TLS when the agent's was,
/// verified as `name` (or the address when the agent gave none).
pub(super) fn upstream_target(conn: &Connection, name: Option<&str>) -> Result<Target, Refusal> {
    let tls = match conn.tls {
        None => None,
        Some(_) => {
            let failed = |reason: String| Refusal::failed(StatusCode::BAD_GATEWAY, reason);
            let config = conn
                .ctx
                .upstream_trust
                .of(conn.config.primary())
                .map_err(|e| failed(format!("upstream TLS is not configured: {e}")))?;
            let server_name = match name {
                Some(n) => rustls::pki_types::ServerName::try_from(n.to_owned())
                    .map_err(|_| failed(format!("{n} is not a valid TLS server name")))?,
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

/// Removes the headers that describe one connection (RFC 9110 §7.6.1), which a proxy must
/// not forward: the agent's `Connection: close` would otherwise close the gateway's upstream
/// connection, which it keeps for the next request.
pub(super) fn strip_hop_by_hop(headers: &mut http::HeaderMap) {
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
        let names: Vec<&str> = headers.keys().map(http::HeaderName::as_str).collect();
        assert_eq!(names, ["x-api-key"]);
    }
}
