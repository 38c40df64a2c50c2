//! What the ingress reads from a request's headers before anything else (SPECIFICATION §4), as a typed
//! extractor: [`IngressHeaders`] checks every `X-Clrk-*`, `ce-*`, `Accept`, `Content-Type` and
//! `Content-Length` header, and a request it rejects is answered by its [`Refusal`] (400 for
//! a bad header, 413 for a declared body over [`MAX_BODY`]) without its body being read.

use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, header};

use crate::body::BodyError;
use crate::envelope;
use crate::error::DispatchError;

/// Largest request body accepted (SPECIFICATION §4).
pub const MAX_BODY: usize = 32 * 1024 * 1024;
// The header names are the wire's, shared with the CLI.
pub use clrk_wire::headers::{
    EXECUTION_ID as EXECUTION_ID_HEADER, EXIT_CODE as EXIT_CODE_HEADER,
    TASK_AGENT as TASK_AGENT_HEADER, TIMEOUT as TIMEOUT_HEADER, TRIGGER as TRIGGER_HEADER,
};
pub(crate) const CLOUDEVENTS_JSON: &str = "application/cloudevents+json";

/// The checked headers of one ingress request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngressHeaders {
    /// `X-Clrk-Execution-ID`, else `x-request-id`, else a new UUID.
    pub execution_id: String,
    /// `X-Clrk-TaskAgent: <namespace>/<name>`.
    pub namespace: String,
    pub name: String,
    /// `X-Clrk-Trigger`, when not empty.
    pub trigger: Option<String>,
    /// `X-Clrk-Timeout`.
    pub timeout: Option<Duration>,
    pub content_type: Option<String>,
    /// `ce-<attr>` headers, attribute names lower-cased.
    pub overrides: Vec<(String, String)>,
    /// `Content-Length`, never over [`MAX_BODY`].
    pub declared_length: Option<u64>,
    /// `Accept: application/cloudevents+json`: the answer is one response event.
    pub wants_event: bool,
    /// A valid `traceparent`: the execution's trace continues the caller's. An invalid one
    /// is ignored (the execution starts a trace of its own), as W3C trace context asks.
    pub caller_trace: Option<clrk_egress::TraceContext>,
}

/// A request the ingress refuses: the error's status and message, and the execution id
/// header once the id is known.
#[derive(Debug)]
pub struct Refusal {
    pub error: DispatchError,
    pub execution_id: Option<String>,
}

impl Refusal {
    /// `error` for the execution `execution_id`.
    pub fn new(error: impl Into<DispatchError>, execution_id: &str) -> Refusal {
        Refusal {
            error: error.into(),
            execution_id: Some(execution_id.to_string()),
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let error = &self.error;
        let mut response = (error.status(), format!("{error}\n")).into_response();
        let retry = match error {
            DispatchError::TooManyExecutions { .. }
            | DispatchError::WorkerBusy { .. }
            | DispatchError::NotReady { .. }
            | DispatchError::WorkerUnreachable { .. }
            | DispatchError::NoWorker { .. }
            | DispatchError::Body(BodyError::Busy { .. }) => true,
            DispatchError::Remote { status, .. } => {
                *status == http::StatusCode::TOO_MANY_REQUESTS
                    || *status == http::StatusCode::SERVICE_UNAVAILABLE
            }
            _ => false,
        };
        if retry {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        match &self.execution_id {
            Some(id) => with_id(response, id),
            None => response,
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for IngressHeaders {
    type Rejection = Refusal;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Refusal> {
        let headers = &parts.headers;
        let execution_id = execution_id(headers).map_err(|error| Refusal {
            error,
            execution_id: None,
        })?;
        checked(headers, execution_id.clone()).map_err(|error| Refusal {
            error,
            execution_id: Some(execution_id),
        })
    }
}

/// Every header but the execution id, in the order their errors are reported.
fn checked(headers: &HeaderMap, execution_id: String) -> Result<IngressHeaders, DispatchError> {
    let (namespace, name) = target(headers)?;
    let wants_event = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            v.split(',')
                .any(|m| envelope::media_type(m) == CLOUDEVENTS_JSON)
        });
    let timeout = match header_str(headers, TIMEOUT_HEADER)? {
        Some(text) => Some(
            text.parse::<clrk_api::GoDuration>()
                .map_err(|e| {
                    DispatchError::BadHeader(format!(
                        "header X-Clrk-Timeout: {text:?} is not a duration like 30s or 1m30s: {e}"
                    ))
                })?
                .0,
        ),
        None => None,
    };
    let content_type = header_str(headers, header::CONTENT_TYPE.as_str())?.map(String::from);
    let trigger = header_str(headers, TRIGGER_HEADER)?
        .filter(|t| !t.is_empty())
        .map(String::from);
    let overrides = ce_overrides(headers)?;
    let declared_length = match header_str(headers, header::CONTENT_LENGTH.as_str())? {
        Some(text) => Some(text.parse::<u64>().map_err(|_| {
            DispatchError::BadHeader(format!("header Content-Length: {text:?} is not a number"))
        })?),
        None => None,
    };
    if declared_length.is_some_and(|n| n > MAX_BODY as u64) {
        return Err(BodyError::TooLarge {
            limit_mib: MAX_BODY / (1024 * 1024),
        }
        .into());
    }
    Ok(IngressHeaders {
        execution_id,
        namespace,
        name,
        trigger,
        timeout,
        content_type,
        overrides,
        declared_length,
        wants_event,
        caller_trace: headers
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .and_then(clrk_egress::TraceContext::parse),
    })
}

/// `response` with the `X-Clrk-Execution-ID` header.
pub(crate) fn with_id(mut response: Response, id: &str) -> Response {
    if let Ok(value) = HeaderValue::from_str(id) {
        response
            .headers_mut()
            .insert(HeaderName::from_static(EXECUTION_ID_HEADER), value);
    }
    response
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, DispatchError> {
    headers
        .get(name)
        .map(|v| {
            v.to_str()
                .map(str::trim)
                .map_err(|_| DispatchError::BadHeader(format!("header {name} is not valid text")))
        })
        .transpose()
}

/// `X-Clrk-TaskAgent: <namespace>/<name>`.
fn target(headers: &HeaderMap) -> Result<(String, String), DispatchError> {
    let shape = "expected <namespace>/<name>, e.g. X-Clrk-TaskAgent: default/word-count";
    let value = header_str(headers, TASK_AGENT_HEADER)?.ok_or_else(|| {
        DispatchError::BadHeader(format!("missing header X-Clrk-TaskAgent: {shape}"))
    })?;
    let malformed = || {
        DispatchError::BadHeader(format!(
            "header X-Clrk-TaskAgent: {value:?} is malformed: {shape}"
        ))
    };
    let (namespace, name) = value.split_once('/').ok_or_else(malformed)?;
    if clrk_api::validate_name(namespace).is_err() || clrk_api::validate_name(name).is_err() {
        return Err(malformed());
    }
    Ok((namespace.to_string(), name.to_string()))
}

/// `X-Clrk-Execution-ID`, else `x-request-id`, else a new UUID.
fn execution_id(headers: &HeaderMap) -> Result<String, DispatchError> {
    for name in [EXECUTION_ID_HEADER, "x-request-id"] {
        if let Some(id) = header_str(headers, name)? {
            let valid =
                !id.is_empty() && id.len() <= 128 && id.chars().all(|c| c.is_ascii_graphic());
            if !valid {
                return Err(DispatchError::BadHeader(format!(
                    "header {name}: {id:?} is not a usable id: use 1 to 128 visible ASCII characters"
                )));
            }
            return Ok(id.to_string());
        }
    }
    Ok(uuid::Uuid::new_v4().to_string())
}

/// `ce-<attr>` headers, attribute names lower-cased.
fn ce_overrides(headers: &HeaderMap) -> Result<Vec<(String, String)>, DispatchError> {
    let mut out = Vec::new();
    for (name, value) in headers {
        if let Some(attr) = name.as_str().strip_prefix("ce-") {
            let value = value.to_str().map_err(|_| {
                DispatchError::BadHeader(format!("header {name} is not valid text"))
            })?;
            out.push((attr.to_string(), value.to_string()));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::to_bytes;
    use http::{Request, StatusCode};

    async fn extract(headers: &[(&str, &str)]) -> Result<IngressHeaders, Response> {
        let mut request = Request::builder();
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let (mut parts, ()) = request.body(()).unwrap().into_parts();
        IngressHeaders::from_request_parts(&mut parts, &())
            .await
            .map_err(IntoResponse::into_response)
    }

    async fn text(response: Response) -> String {
        let body = to_bytes(response.into_body(), usize::MAX).await.unwrap();
        String::from_utf8(body.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn a_well_formed_request_yields_every_header() {
        let h = extract(&[
            ("x-clrk-taskagent", "default/word-count"),
            ("x-clrk-execution-id", "run-1"),
            ("x-clrk-trigger", "cli"),
            ("x-clrk-timeout", "1m30s"),
            ("content-type", "application/json"),
            ("content-length", "12"),
            ("ce-Type", "com.example.t"),
            ("accept", "text/plain, application/cloudevents+json"),
        ])
        .await
        .unwrap();
        assert_eq!(h.execution_id, "run-1");
        assert_eq!(
            (h.namespace.as_str(), h.name.as_str()),
            ("default", "word-count")
        );
        assert_eq!(h.trigger.as_deref(), Some("cli"));
        assert_eq!(h.timeout, Some(Duration::from_secs(90)));
        assert_eq!(h.content_type.as_deref(), Some("application/json"));
        assert_eq!(h.declared_length, Some(12));
        assert_eq!(
            h.overrides,
            [("type".to_string(), "com.example.t".to_string())]
        );
        assert!(h.wants_event);
    }

    #[tokio::test]
    async fn a_missing_agent_is_a_400_naming_the_header_and_carrying_the_id() {
        let response = extract(&[("x-request-id", "req-7")]).await.unwrap_err();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(response.headers()[EXECUTION_ID_HEADER], "req-7");
        assert_eq!(
            text(response).await,
            "missing header X-Clrk-TaskAgent: expected <namespace>/<name>, e.g. X-Clrk-TaskAgent: default/word-count\n"
        );
    }

    #[tokio::test]
    async fn an_unusable_execution_id_is_a_400_without_an_id() {
        let response = extract(&[
            ("x-clrk-taskagent", "default/a"),
            ("x-clrk-execution-id", "has space"),
        ])
        .await
        .unwrap_err();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert!(response.headers().get(EXECUTION_ID_HEADER).is_none());
    }

    #[tokio::test]
    async fn a_declared_body_over_the_limit_is_a_413_before_it_is_read() {
        let over = (MAX_BODY + 1).to_string();
        let response = extract(&[("x-clrk-taskagent", "default/a"), ("content-length", &over)])
            .await
            .unwrap_err();
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(
            text(response).await,
            "the request body is larger than the 32 MiB limit\n"
        );
    }

    #[tokio::test]
    async fn a_bad_timeout_is_a_400_that_shows_the_form() {
        let response = extract(&[
            ("x-clrk-taskagent", "default/a"),
            ("x-clrk-timeout", "soon"),
        ])
        .await
        .unwrap_err();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert!(
            text(response)
                .await
                .contains("is not a duration like 30s or 1m30s")
        );
    }
}
