//! The credentials stage: the secrets credential injection policies name for a request's name
//! are read from the store per request and written into the upstream request, never into
//! anything the agent sees.
//!
//! Each credential goes through two steps: [`secret_value`] reads it, [`apply`] puts it where
//! its policy says: a header, a query parameter, or (`ProviderAuth`) the header the
//! destination's provider documents, after clearing every other place a provider reads a key
//! from. The record names the places written and replaced, never a value; a query parameter's
//! value is shown redacted in the recorded path.

use http::header::{HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use http::{Request, StatusCode, Uri};

use super::connection::Connection;
use super::refusal::Refusal;
use crate::credential_place::{self, KEY_HEADERS, KEY_PARAMS};
use crate::policy::{self, Credential, CredentialPlace};
use crate::telemetry::transaction::Transaction;
use crate::usage::Provider;

/// Injects every credential covering `name` (whose provider route, if any, names
/// `provider`) into `request` and records where it went. In the clear nothing proves which
/// server gets the request, so a name a credential covers is refused (403) there: a
/// credential goes only where the gateway verified the upstream's TLS name.
pub(super) async fn inject<B>(
    conn: &Connection,
    tx: &mut Transaction,
    name: &str,
    provider: Option<Provider>,
    request: &mut Request<B>,
) -> Result<(), Refusal> {
    let credentials = policy::credentials(&conn.config, name);
    if let (Some(credential), None) = (credentials.first(), &conn.tls) {
        return Err(Refusal::denied(
            StatusCode::FORBIDDEN,
            format!(
                "credentialinjectionpolicy {} covers {name}, whose credential is sent only over TLS the gateway verifies: call https://{name}",
                credential.policy
            ),
        ));
    }
    let mut injected = Vec::new();
    for credential in &credentials {
        let value = secret_value(conn, credential).await?;
        injected.push(apply(credential, name, provider, &value, request)?);
    }
    if !injected.is_empty() {
        tx.record.injected_header = Some(injected.join(", "));
    }
    let params: Vec<&str> = credentials
        .iter()
        .filter_map(|c| match &c.place {
            CredentialPlace::Query { name, .. } => Some(name.as_str()),
            _ => None,
        })
        .collect();
    if !params.is_empty()
        && let Some(path) = &tx.record.path
        && let Some((path, query)) = path.split_once('?')
    {
        tx.record.path = Some(format!(
            "{path}?{}",
            credential_place::redact_params(query, &params)
        ));
    }
    Ok(())
}

/// The secret `credential` names, or a refusal (502) saying how to set it.
async fn secret_value(conn: &Connection, credential: &Credential) -> Result<Vec<u8>, Refusal> {
    let c = credential;
    let value = conn
        .ctx
        .store
        .secret_value(&c.namespace, &c.secret, &c.key)
        .await
        .ok()
        .flatten();
    value.ok_or_else(|| {
        Refusal::failed(
            StatusCode::BAD_GATEWAY,
            format!(
                "credentialinjectionpolicy {} needs key {} of secret {}/{}, which does not exist: set it with clrk secret set {} --from-literal {}=…",
                credential.policy,
                credential.key,
                credential.namespace,
                credential.secret,
                credential.secret,
                credential.key
            ),
        )
    })
}

/// Writes `value` into `request` where `credential` says; returns what the record shows of
/// it (the places written and replaced, never the value).
fn apply<B>(
    credential: &Credential,
    name: &str,
    provider: Option<Provider>,
    value: &[u8],
    request: &mut Request<B>,
) -> Result<String, Refusal> {
    match &credential.place {
        CredentialPlace::Header { name, prefix } => {
            let replaced = set_header(credential, request, name, prefix, value)?;
            Ok(if replaced {
                format!("{name} (replaced the agent's)")
            } else {
                name.clone()
            })
        }
        CredentialPlace::Query { name, prefix } => {
            let mut full = prefix.clone().into_bytes();
            full.extend_from_slice(value);
            let removed = edit_query(credential, request, &[name.as_str()], Some((name, &full)))?;
            Ok(if removed.is_empty() {
                format!("?{name}")
            } else {
                format!("?{name} (replaced the agent's)")
            })
        }
        CredentialPlace::ProviderAuth => {
            let Some(provider) = provider else {
                return Err(Refusal::failed(
                    StatusCode::BAD_GATEWAY,
                    format!(
                        "credentialinjectionpolicy {} has target ProviderAuth, but no aiproviderroute names {name}'s provider: add one matching {name}, or use target: Header",
                        credential.policy
                    ),
                ));
            };
            let mut replaced: Vec<String> = KEY_HEADERS
                .iter()
                .filter(|h| request.headers_mut().remove(**h).is_some())
                .map(|h| (*h).to_owned())
                .collect();
            let params = edit_query(credential, request, &KEY_PARAMS, None)?;
            replaced.extend(params.into_iter().map(|p| format!("?{p}")));
            let key = credential_place::documented(provider);
            set_header(credential, request, key.header, key.prefix, value)?;
            let mut shown = format!("{} ({} key", key.header, provider.as_str());
            if !replaced.is_empty() {
                shown.push_str("; replaced the agent's ");
                shown.push_str(&replaced.join(", "));
            }
            shown.push(')');
            Ok(shown)
        }
    }
}

/// Sets `header` to `prefix` and `value`, marked sensitive; whether it replaced the agent's.
fn set_header<B>(
    credential: &Credential,
    request: &mut Request<B>,
    header: &str,
    prefix: &str,
    value: &[u8],
) -> Result<bool, Refusal> {
    let mut full = prefix.as_bytes().to_vec();
    full.extend_from_slice(value);
    let (Ok(header_name), Ok(mut header_value)) = (
        HeaderName::from_bytes(header.as_bytes()),
        HeaderValue::from_bytes(&full),
    ) else {
        return Err(Refusal::failed(
            StatusCode::BAD_GATEWAY,
            format!(
                "credentialinjectionpolicy {}: the secret's value cannot be sent in a header",
                credential.policy
            ),
        ));
    };
    header_value.set_sensitive(true);
    Ok(request
        .headers_mut()
        .insert(header_name, header_value)
        .is_some())
}

/// Removes the query parameters named `remove` from `request`'s URI and appends `set`
/// (escaped); returns the names it removed.
fn edit_query<B>(
    credential: &Credential,
    request: &mut Request<B>,
    remove: &[&str],
    set: Option<(&str, &[u8])>,
) -> Result<Vec<String>, Refusal> {
    let uri = request.uri();
    let (path, query) = match uri.path_and_query() {
        Some(pq) => (pq.path(), pq.query().unwrap_or("")),
        None => ("/", ""),
    };
    let (mut query, removed) = credential_place::remove_params(query, remove);
    if removed.is_empty() && set.is_none() {
        return Ok(removed);
    }
    if let Some((name, value)) = set {
        query = credential_place::append_param(&query, name, value);
    }
    let path_and_query = if query.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{query}")
    };
    let mut parts = uri.clone().into_parts();
    let rebuilt = PathAndQuery::try_from(path_and_query).ok().and_then(|pq| {
        parts.path_and_query = Some(pq);
        Uri::from_parts(parts).ok()
    });
    let Some(rebuilt) = rebuilt else {
        return Err(Refusal::failed(
            StatusCode::BAD_GATEWAY,
            format!(
                "credentialinjectionpolicy {}: the request's URL cannot carry the credential",
                credential.policy
            ),
        ));
    };
    *request.uri_mut() = rebuilt;
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credential(place: CredentialPlace) -> Credential {
        Credential {
            policy: "p".into(),
            namespace: "default".into(),
            secret: "s".into(),
            key: "token".into(),
            place,
        }
    }

    fn request(uri: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut builder = Request::builder().uri(uri);
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        builder.body(()).unwrap()
    }

    const PLACEHOLDER: &str = "clrk-injected-by-proxy";

    #[test]
    fn provider_auth_clears_every_key_place_and_sets_the_documented_one() {
        let sdk_headers = [
            ("authorization", "Bearer clrk-injected-by-proxy"),
            ("x-api-key", PLACEHOLDER),
            ("api-key", PLACEHOLDER),
            ("x-goog-api-key", PLACEHOLDER),
            ("anthropic-version", "2023-06-01"),
        ];
        let c = credential(CredentialPlace::ProviderAuth);
        let mut r = request(
            "/v1/messages?beta=true&key=clrk-injected-by-proxy",
            &sdk_headers,
        );
        let shown = apply(
            &c,
            "llm.test",
            Some(Provider::Anthropic),
            b"sk-real",
            &mut r,
        )
        .unwrap();
        assert_eq!(
            shown,
            "x-api-key (anthropic key; replaced the agent's authorization, x-api-key, api-key, x-goog-api-key, ?key)"
        );
        assert_eq!(r.headers()["x-api-key"], "sk-real");
        assert_eq!(r.headers()["anthropic-version"], "2023-06-01");
        assert_eq!(r.headers().len(), 2);
        assert_eq!(r.uri(), "/v1/messages?beta=true");

        let mut r = request("/v1/chat/completions", &sdk_headers[..2]);
        let shown = apply(&c, "llm.test", Some(Provider::OpenAi), b"sk-real", &mut r).unwrap();
        assert_eq!(
            shown,
            "authorization (openai key; replaced the agent's authorization, x-api-key)"
        );
        assert_eq!(r.headers()["authorization"], "Bearer sk-real");
        assert!(r.headers()["authorization"].is_sensitive());
        assert_eq!(r.headers().len(), 1);

        let mut r = request("/", &[]);
        let shown = apply(&c, "llm.test", Some(Provider::OpenAi), b"k", &mut r).unwrap();
        assert_eq!(shown, "authorization (openai key)");
    }

    #[test]
    fn provider_auth_without_a_provider_route_says_what_to_add() {
        let c = credential(CredentialPlace::ProviderAuth);
        let mut r = request("/", &[("x-api-key", PLACEHOLDER)]);
        let refusal = apply(&c, "llm.test", None, b"k", &mut r).unwrap_err();
        assert_eq!(refusal.status, StatusCode::BAD_GATEWAY);
        assert!(
            refusal
                .reason
                .contains("no aiproviderroute names llm.test's provider"),
            "{}",
            refusal.reason
        );
    }

    #[test]
    fn a_query_parameter_replaces_the_agents_and_keeps_the_rest() {
        let c = credential(CredentialPlace::Query {
            name: "key".into(),
            prefix: String::new(),
        });
        let mut r = request("https://maps.test/geo?q=a%20b&key=placeholder", &[]);
        let shown = apply(&c, "maps.test", None, b"s e/cret", &mut r).unwrap();
        assert_eq!(shown, "?key (replaced the agent's)");
        assert_eq!(r.uri(), "https://maps.test/geo?q=a%20b&key=s%20e%2Fcret");
        let mut r = request("/geo", &[]);
        assert_eq!(apply(&c, "maps.test", None, b"k", &mut r).unwrap(), "?key");
        assert_eq!(r.uri(), "/geo?key=k");
    }

    #[test]
    fn a_header_gets_its_prefix() {
        let c = credential(CredentialPlace::Header {
            name: "authorization".into(),
            prefix: "Bearer ".into(),
        });
        let mut r = request("/", &[("authorization", "Bearer placeholder")]);
        let shown = apply(&c, "api.test", None, b"tok", &mut r).unwrap();
        assert_eq!(shown, "authorization (replaced the agent's)");
        assert_eq!(r.headers()["authorization"], "Bearer tok");
    }
}
