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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::peers::SandboxIdentity;
    use crate::telemetry::recorder::Recorder;

    /// The records `agent` has once there are `count`, waiting for the background writes.
    async fn records(
        store: &clrk_store::Store,
        agent: &str,
        count: usize,
    ) -> Vec<clrk_store::EgressRecord> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let found = store.egress_records("default", agent, 10).await.unwrap();
            if found.len() >= count || tokio::time::Instant::now() > deadline {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn body_text(response: Response<ProxyBody>) -> String {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    /// A denial is recorded as denied for its reason; a failure keeps the allowing rule and
    /// adds what failed. Either way the agent reads the status and the reason.
    #[tokio::test]
    async fn a_refusal_is_the_response_and_the_record() {
        let dir = tempfile::tempdir().unwrap();
        let store = clrk_store::Store::open(&dir.path().join("clrk.db")).unwrap();
        let recorder = Recorder::new(store.clone());
        let identity = Arc::new(SandboxIdentity::new(
            "TaskAgent",
            "default",
            "a",
            "a-00001",
            vec![],
            None,
        ));

        let mut tx = recorder.begin(&identity, "https", "192.0.2.1:443".into(), None);
        tx.allow("hostname api.example.test of l4route web");
        let response = Refusal::failed(StatusCode::BAD_GATEWAY, "upstream HTTP failed: reset")
            .respond(&mut tx);
        assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
        assert_eq!(response.headers()["x-clrk-egress"], "refused");
        assert_eq!(
            body_text(response).await,
            "clrk egress: upstream HTTP failed: reset\n"
        );
        let failed = records(&store, "a", 1).await;
        assert_eq!(failed.len(), 1);
        assert!(failed[0].allowed);
        assert_eq!(
            failed[0].reason,
            "hostname api.example.test of l4route web; upstream HTTP failed: reset"
        );
        assert_eq!(failed[0].status, Some(502));

        let mut tx = recorder.begin(&identity, "https", "192.0.2.1:443".into(), None);
        tx.allow("hostname api.example.test of l4route web");
        let response = Refusal::denied(StatusCode::TOO_MANY_REQUESTS, "token budget exceeded")
            .respond(&mut tx);
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            body_text(response).await,
            "clrk egress: token budget exceeded\n"
        );
        let denied = records(&store, "a", 2).await;
        assert_eq!(denied.len(), 2);
        assert!(!denied[0].allowed);
        assert_eq!(denied[0].reason, "token budget exceeded");
        assert_eq!(denied[0].status, Some(429));
        assert_eq!(
            denied[0].response_bytes,
            "clrk egress: token budget exceeded\n".len() as u64
        );
    }
}
