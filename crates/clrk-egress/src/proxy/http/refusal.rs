//! A refused exchange: the status and one-line reason the agent reads, and whether the policy
//! denied it or it was allowed and then failed (upstream unreachable, a secret missing). Every
//! stage of the HTTP pipeline returns one instead of answering itself, so each refusal is
//! recorded and answered the same way.

use bytes::Bytes;
use http::header;
use http::{Response, StatusCode};
use http_body_util::{BodyExt as _, Full};

use crate::proxy::body::ProxyBody;
use crate::telemetry::transaction::Transaction;

/// Why an exchange ends here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Refusal {
    pub(super) status: StatusCode,
    pub(super) reason: String,
    pub(super) kind: RefusalKind,
}

/// What the record says about a refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RefusalKind {
    /// The policy (or a limit) does not let the request go: the record is a denial with this
    /// reason.
    Denied,
    /// The request was allowed and could not be carried out: the record stays allowed, and its
    /// reason gains this one.
    Failed,
}

impl Refusal {
    /// A denial with `status`.
    pub(super) fn denied(status: StatusCode, reason: impl Into<String>) -> Refusal {
        Refusal {
            status,
            reason: reason.into(),
            kind: RefusalKind::Denied,
        }
    }

    /// An allowed request that failed with `status`.
    pub(super) fn failed(status: StatusCode, reason: impl Into<String>) -> Refusal {
        Refusal {
            status,
            reason: reason.into(),
            kind: RefusalKind::Failed,
        }
    }

    /// Records the refusal in `tx`, finishes it, and answers the agent with the status and a
    /// one-line reason it can read.
    pub(super) fn respond(self, tx: &mut Transaction) -> Response<ProxyBody> {
        match self.kind {
            RefusalKind::Denied => tx.deny(self.reason.clone()),
            RefusalKind::Failed => {
                tx.record.reason = format!("{}; {}", tx.record.reason, self.reason);
            }
        }
        let body = format!("clrk egress: {}\n", self.reason);
        tx.record.status = Some(self.status.as_u16());
        tx.record.response_bytes = body.len() as u64;
        tx.finish();
        Response::builder()
            .status(self.status)
            .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .header("x-clrk-egress", "refused")
            .body(
                Full::new(Bytes::from(body))
                    .map_err(|never| match never {})
                    .boxed(),
            )
            .expect("a static response is valid")
    }
}
