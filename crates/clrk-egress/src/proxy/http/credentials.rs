//! The credentials stage: the secrets credential injection policies name for a request's name
//! are read from the store per request and written into the upstream request, never into
//! anything the agent sees.
//!
//! Each credential goes through two steps: [`secret_value`] reads it, [`apply`] puts it where
//! its policy says. A new kind of target (a query parameter, a provider's own header) is a new
//! arm of [`apply`], which gets the whole request.

use http::header::{HeaderName, HeaderValue};
use http::{Request, StatusCode};

use super::connection::Connection;
use super::refusal::Refusal;
use crate::policy::{self, Credential};
use crate::telemetry::transaction::Transaction;

/// Injects every credential covering `name` into `request` and records which headers it
/// set. In the clear nothing proves which server gets the request, so a name a credential
/// covers is refused (403) there: a credential goes only where the gateway verified the
/// upstream's TLS name.
pub(super) async fn inject<B>(
    conn: &Connection,
    tx: &mut Transaction,
    name: &str,
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
    for credential in credentials {
        let value = secret_value(conn, &credential).await?;
        injected.push(apply(&credential, &value, request)?);
    }
    if !injected.is_empty() {
        tx.record.injected_header = Some(injected.join(", "));
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

/// Writes `value` into `request` where `credential` says (today: a header, after its prefix,
/// replacing the agent's); returns what the record shows of it.
fn apply<B>(
    credential: &Credential,
    value: &[u8],
    request: &mut Request<B>,
) -> Result<String, Refusal> {
    let mut full = credential.prefix.clone().into_bytes();
    full.extend_from_slice(value);
    let (Ok(header_name), Ok(mut header_value)) = (
        HeaderName::from_bytes(credential.header.as_bytes()),
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
    let replaced = request
        .headers_mut()
        .insert(header_name, header_value)
        .is_some();
    Ok(if replaced {
        format!("{} (replaced the agent's)", credential.header)
    } else {
        credential.header.clone()
    })
}
