//! The sandbox-local metadata service (SPECIFICATION §5): `GET /v1/event` hands a Metadata-mode agent
//! its event, `POST /v1/response` takes its answer.
//!
//! A sandbox is known by the source address of its connection: clrk assigns each sandbox's
//! address and the host firewall drops anything a sandbox sends from another one, so nothing
//! the agent sends can make it another execution.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use tokio::sync::oneshot;

use crate::body::{BodyBudget, BodyLimits};
use crate::error::DispatchError;

/// How an agent's answer must arrive: at most 32 MiB, with no pause over 10 s, within a
/// minute.
const RESPONSE_LIMITS: BodyLimits = BodyLimits {
    max: 32 * 1024 * 1024,
    idle: std::time::Duration::from_secs(10),
    total: std::time::Duration::from_secs(60),
};
const CLOUDEVENTS_JSON: &str = "application/cloudevents+json";

/// What a Metadata-mode agent answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentResponse {
    pub content_type: Option<String>,
    pub body: Bytes,
}

struct Live {
    event: Event,
    response: Mutex<Option<oneshot::Sender<AgentResponse>>>,
}

/// Executions visible to the metadata service, by sandbox address. Cloning shares it.
#[derive(Clone)]
pub struct MetadataService {
    live: Arc<Mutex<HashMap<IpAddr, Arc<Live>>>>,
    /// Answers being received count against the dispatcher's body budget.
    budget: BodyBudget,
}

/// Keeps an execution visible until dropped.
pub struct Registration {
    service: MetadataService,
    addresses: Vec<IpAddr>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut live = self.service.live.lock().expect("metadata registry");
        for address in &self.addresses {
            live.remove(address);
        }
    }
}

impl MetadataService {
    /// A service whose answers being received take their bytes from `budget`.
    pub fn new(budget: BodyBudget) -> MetadataService {
        MetadataService {
            live: Arc::default(),
            budget,
        }
    }

    /// Makes `envelope` the event of the sandbox at `addresses` (its IPv4 and IPv6 address);
    /// the receiver gets the agent's response, if it posts one, and fails once the
    /// registration is dropped without one.
    pub fn register(
        &self,
        addresses: &[IpAddr],
        envelope: serde_json::Value,
    ) -> (Registration, oneshot::Receiver<AgentResponse>) {
        let (tx, rx) = oneshot::channel();
        let live = Arc::new(Live {
            event: Event::of(&envelope),
            response: Mutex::new(Some(tx)),
        });
        let mut map = self.live.lock().expect("metadata registry");
        for address in addresses {
            map.insert(*address, Arc::clone(&live));
        }
        let registration = Registration {
            service: self.clone(),
            addresses: addresses.to_vec(),
        };
        (registration, rx)
    }

    /// `/v1/event` and `/v1/response`; needs `ConnectInfo<SocketAddr>` (serve with
    /// `into_make_service_with_connect_info`).
    pub fn router(&self) -> Router {
        Router::new()
            .route("/v1/event", get(event))
            .route("/v1/response", axum::routing::post(response))
            .with_state(self.clone())
    }

    /// The execution of the sandbox at `peer`; an IPv4 peer may arrive mapped into IPv6 on
    /// a dual-stack socket.
    fn find(&self, peer: SocketAddr) -> Option<Arc<Live>> {
        let address = peer.ip().to_canonical();
        self.live
            .lock()
            .expect("metadata registry")
            .get(&address)
            .cloned()
    }
}

fn no_execution() -> Response {
    (
        StatusCode::NOT_FOUND,
        "no execution is live for this sandbox\n",
    )
        .into_response()
}

async fn event(
    State(service): State<MetadataService>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let Some(live) = service.find(peer) else {
        return no_execution();
    };
    let structured = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains(CLOUDEVENTS_JSON));
    // Both forms were built once at registration: a request costs a reference, not a copy.
    let event = &live.event;
    if structured {
        return (
            [(header::CONTENT_TYPE, CLOUDEVENTS_JSON)],
            event.structured.clone(),
        )
            .into_response();
    }
    (StatusCode::OK, event.headers.clone(), event.body.clone()).into_response()
}

/// An execution's event in both of the forms the service answers with.
struct Event {
    structured: Bytes,
    headers: HeaderMap,
    body: Bytes,
}

impl Event {
    fn of(envelope: &serde_json::Value) -> Event {
        let (headers, body) = binary(envelope);
        Event {
            structured: Bytes::from(envelope.to_string()),
            headers,
            body: Bytes::from(body),
        }
    }
}

/// Binary mode: attributes as `ce-*` headers, the data as the body with its content type.
fn binary(envelope: &serde_json::Value) -> (HeaderMap, Vec<u8>) {
    let mut headers = HeaderMap::new();
    let mut body = Vec::new();
    let Some(attributes) = envelope.as_object() else {
        return (headers, body);
    };
    for (name, value) in attributes {
        match name.as_str() {
            "data" => {
                body = match value {
                    serde_json::Value::String(text) => text.clone().into_bytes(),
                    other => other.to_string().into_bytes(),
                };
            }
            "data_base64" => {
                body = value
                    .as_str()
                    .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
                    .unwrap_or_default();
            }
            "datacontenttype" => {
                if let Some(v) = value.as_str().and_then(|v| HeaderValue::from_str(v).ok()) {
                    headers.insert(header::CONTENT_TYPE, v);
                }
            }
            attr => {
                let text = match value {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                if let (Ok(n), Ok(v)) = (
                    HeaderName::from_bytes(format!("ce-{attr}").as_bytes()),
                    HeaderValue::from_str(&text),
                ) {
                    headers.insert(n, v);
                }
            }
        }
    }
    (headers, body)
}

/// An execution's one answer, claimed while its body is received; given back when dropped
/// unanswered (the body failed, or the agent hung up half way).
struct Claim {
    live: Arc<Live>,
    tx: Option<oneshot::Sender<AgentResponse>>,
}

impl Claim {
    fn take(live: &Arc<Live>) -> Option<Claim> {
        let tx = live.response.lock().expect("response slot").take()?;
        Some(Claim {
            live: Arc::clone(live),
            tx: Some(tx),
        })
    }

    fn answer(&mut self) -> oneshot::Sender<AgentResponse> {
        self.tx.take().expect("a claim is answered once")
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if let Some(tx) = self.tx.take() {
            *self.live.response.lock().expect("response slot") = Some(tx);
        }
    }
}

async fn response(
    State(service): State<MetadataService>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    let Some(live) = service.find(peer) else {
        return no_execution();
    };
    // The execution's one answer is claimed before its body is read: an agent posting many
    // answers at once makes clrk read (and hold) only one.
    let Some(mut claim) = Claim::take(&live) else {
        return (
            StatusCode::CONFLICT,
            "this execution already has its response, or one is being received\n",
        )
            .into_response();
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let held = match crate::body::read(body, declared, RESPONSE_LIMITS, &service.budget).await {
        Ok(held) => held,
        // Not answered after all: the claim goes back and the agent may try again.
        Err(error) => {
            let error = DispatchError::Body(error);
            return (error.status(), format!("{error}\n")).into_response();
        }
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    // The caller may have gone away; the agent still did its part.
    let _ = claim.answer().send(AgentResponse {
        content_type,
        body: held.into_parts().0,
    });
    StatusCode::NO_CONTENT.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_mode_puts_attributes_in_headers_and_data_in_the_body() {
        let envelope = serde_json::json!({
            "specversion": "1.0", "id": "e1", "type": "t", "source": "clrk://default/a",
            "datacontenttype": "application/json", "data": {"text": "hi"}, "clrkrevision": "a-00001",
        });
        let (h, body) = binary(&envelope);
        assert_eq!(body, br#"{"text":"hi"}"#);
        let h = &h;
        assert_eq!(h["ce-id"], "e1");
        assert_eq!(h["ce-specversion"], "1.0");
        assert_eq!(h["ce-clrkrevision"], "a-00001");
        assert_eq!(h["content-type"], "application/json");
        assert!(h.get("ce-data").is_none());
    }

    #[test]
    fn a_claim_dropped_unanswered_gives_the_answer_back() {
        let service = MetadataService::new(BodyBudget::new(1024));
        let (_registration, _answer) =
            service.register(&["169.254.1.2".parse().unwrap()], serde_json::json!({}));
        let live = service.find("169.254.1.2:4000".parse().unwrap()).unwrap();
        let claim = Claim::take(&live).unwrap();
        assert!(Claim::take(&live).is_none(), "claimed twice");
        drop(claim);
        let mut again = Claim::take(&live).expect("given back");
        drop(again.answer());
        drop(again);
        assert!(Claim::take(&live).is_none(), "answered, yet claimable");
    }

    #[test]
    fn an_ipv4_peer_mapped_into_ipv6_is_the_same_sandbox() {
        let service = MetadataService::new(BodyBudget::new(64 * 1024 * 1024));
        let (_registration, _answer) =
            service.register(&["169.254.1.2".parse().unwrap()], serde_json::json!({}));
        assert!(
            service
                .find("[::ffff:169.254.1.2]:4000".parse().unwrap())
                .is_some()
        );
        assert!(
            service
                .find("[::ffff:169.254.1.3]:4000".parse().unwrap())
                .is_none()
        );
    }

    #[tokio::test]
    async fn only_the_registered_address_sees_its_execution_and_answers_once() {
        let service = MetadataService::new(BodyBudget::new(64 * 1024 * 1024));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = service.router();
        tokio::spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
            .unwrap();
        });
        let url = format!("http://{addr}/v1");
        let client = reqwest::Client::new();
        // Nothing registered for 127.0.0.1 yet.
        let r = client.get(format!("{url}/event")).send().await.unwrap();
        assert_eq!(r.status(), 404);

        let envelope = serde_json::json!({"specversion": "1.0", "id": "e1", "data": "x"});
        let (registration, answer) = service.register(&["127.0.0.1".parse().unwrap()], envelope);
        let r = client
            .get(format!("{url}/event"))
            .header("accept", CLOUDEVENTS_JSON)
            .send()
            .await
            .unwrap();
        assert_eq!(r.json::<serde_json::Value>().await.unwrap()["id"], "e1");
        let r = client.post(format!("{url}/event")).send().await.unwrap();
        assert_eq!(r.status(), 405);
        let r = client
            .post(format!("{url}/response"))
            .header("content-type", "text/plain")
            .body("done")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
        let r = client
            .post(format!("{url}/response"))
            .body("again")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 409);
        let got = answer.await.unwrap();
        assert_eq!(got.body, "done");
        assert_eq!(got.content_type.as_deref(), Some("text/plain"));
        drop(registration);
        let r = client.get(format!("{url}/event")).send().await.unwrap();
        assert_eq!(r.status(), 404);
    }
}
