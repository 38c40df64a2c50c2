//! The authorize stage: the name a request is for, and whether the policy lets it go there.
//!
//! Inside terminated TLS the name is the TLS name, which the upstream connection is verified
//! as, and the request's `Host` (or absolute-form authority) must be the same name: a server
//! that routes by `Host` would otherwise hand the request, and any credential in it, to
//! another site. In the clear it is the `Host`. Either way the name must itself be allowed and
//! resolved to the destination through clrk ([`policy::decide_claimed`]).

use http::header;
use http::{Request, StatusCode};

use super::connection::Connection;
use super::refusal::Refusal;
use crate::policy::{self, Verdict};
use crate::telemetry::transaction::Transaction;
use crate::usage::Provider;

/// What a request claims to be for, and the policy's verdict on it.
pub(super) struct Claim {
    name: Option<String>,
    verdict: Verdict,
}

/// A request the policy lets go.
pub(super) struct Authorized {
    /// The name the request is for (the TLS name, else its `Host`).
    pub(super) name: Option<String>,
    /// That name, when the sandbox resolved it to this very address through clrk: only then
    /// do credentials and budgets apply, the upstream being verified as that name (the TLS
    /// name, which the Host must equal), so a secret never leaves for a server, or a virtual
    /// host, that is not the policy's.
    pub(super) trusted_name: Option<String>,
    /// The provider when a provider route covers the trusted name.
    pub(super) provider: Option<Provider>,
}

/// Reads the name the request is for and the policy's verdict into `tx`. A request with
/// several `Host`s is refused here (400).
pub(super) fn read_claim<B>(
    conn: &Connection,
    tx: &mut Transaction,
    request: &Request<B>,
) -> Result<Claim, Refusal> {
    let (name, verdict) = request_verdict(conn, request);
    tx.record.destination_name = name.clone();
    tx.record.method = Some(request.method().to_string());
    tx.record.path = Some(
        request
            .uri()
            .path_and_query()
            .map_or_else(|| "/".into(), |p| p.as_str().to_owned()),
    );
    // Servers differ on which of several `Host`s they route by; the gateway checks one, so
    // a request with more is refused rather than forwarded with a name nobody checked.
    let hosts = request.headers().get_all(header::HOST).iter().count();
    if hosts > 1 {
        return Err(Refusal::denied(
            StatusCode::BAD_REQUEST,
            format!("the request has {hosts} Host headers: send exactly one"),
        ));
    }
    Ok(Claim { name, verdict })
}

/// Applies the verdict: a refused request gets a 403 saying why; an allowed one is recorded
/// as allowed by its rule, with the provider its trusted name belongs to.
pub(super) fn authorize(
    conn: &Connection,
    tx: &mut Transaction,
    claim: Claim,
) -> Result<Authorized, Refusal> {
    let Claim { name, verdict } = claim;
    if !verdict.allowed {
        return Err(Refusal::denied(StatusCode::FORBIDDEN, verdict.reason));
    }
    tx.allow(verdict.reason);
    let trusted_name = name
        .as_ref()
        .filter(|n| conn.names.iter().any(|known| known == *n))
        .cloned();
    let provider = trusted_name
        .as_deref()
        .and_then(|n| policy::provider_route(&conn.config, n))
        .map(|(_, provider)| provider);
    tx.provider = provider.map(Provider::as_str);
    Ok(Authorized {
        name,
        trusted_name,
        provider,
    })
}

/// The name a request is for and whether it may go.
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
        &conn.ctx.host,
    );
    (name, verdict)
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host;
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_headers_lose_their_port() {
        assert_eq!(strip_port("llm.test:8443"), "llm.test");
        assert_eq!(strip_port("llm.test"), "llm.test");
        assert_eq!(strip_port("[::1]:80"), "[::1]:80");
    }
}
