//! The HTTP ingress (SPEC §4): any method and path, routed by `X-Clrk-TaskAgent`.

use std::convert::Infallible;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt as _;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use http_body::Frame;

use crate::body::{self, BodyError, BodyLimits};
use crate::dispatcher::{Dispatcher, ExecEvent, Invocation, NO_RESPONSE, Outcome, Started};
use crate::envelope::{self, RequestData, response_event};
use crate::error::DispatchError;
use crate::metadata::AgentResponse;

/// Largest request body accepted (SPEC §4).
pub const MAX_BODY: usize = 32 * 1024 * 1024;
/// How a request body must arrive: a client that stops sending for 10 s, or takes more than
/// 2 minutes for the whole body, is answered 408.
const BODY_LIMITS: BodyLimits = BodyLimits {
    max: MAX_BODY,
    idle: std::time::Duration::from_secs(10),
    total: std::time::Duration::from_secs(120),
};
pub const TASK_AGENT_HEADER: &str = "x-clrk-taskagent";
pub const TRIGGER_HEADER: &str = "x-clrk-trigger";
pub const EXECUTION_ID_HEADER: &str = "x-clrk-execution-id";
pub const EXIT_CODE_HEADER: &str = "x-clrk-exit-code";
/// Lowers the execution's timeout for this request (used by `clrk agents run-task --timeout`).
pub const TIMEOUT_HEADER: &str = "x-clrk-timeout";
const CLOUDEVENTS_JSON: &str = "application/cloudevents+json";

/// The ingress router: every method and path goes to [`invoke`].
pub fn router(dispatcher: Dispatcher) -> Router {
    Router::new().fallback(invoke).with_state(dispatcher)
}

/// Handles one request: resolves the agent, runs an execution, answers with its stdout.
pub async fn invoke(State(dispatcher): State<Dispatcher>, request: Request) -> Response {
    let execution_id = match execution_id(request.headers()) {
        Ok(id) => id,
        Err(e) => return error_response(&e, None),
    };
    match run(dispatcher, request, &execution_id).await {
        Ok(response) => response,
        Err(e) => error_response(&e, Some(&execution_id)),
    }
}

async fn run(
    dispatcher: Dispatcher,
    request: Request,
    execution_id: &str,
) -> Result<Response, DispatchError> {
    let (parts, body) = request.into_parts();
    let headers = &parts.headers;
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
    let declared = match header_str(headers, header::CONTENT_LENGTH.as_str())? {
        Some(text) => Some(text.parse::<u64>().map_err(|_| {
            DispatchError::BadHeader(format!("header Content-Length: {text:?} is not a number"))
        })?),
        None => None,
    };
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return Err(BodyError::TooLarge {
            limit_mib: MAX_BODY / (1024 * 1024),
        }
        .into());
    }
    // Routed before the body is read: a request that cannot run (404, 503, 429) costs no
    // memory. Its places are taken once the body is in, so a slow body holds none.
    let route = dispatcher.route(&namespace, &name).await?;
    let held = body::read(body, declared, BODY_LIMITS, dispatcher.body_budget()).await?;
    let mut admission = route.admit().await?;
    let (body, permit) = held.into_parts();
    admission.hold_body(permit);
    let invocation = Invocation {
        namespace,
        name,
        execution_id: execution_id.to_string(),
        trigger,
        request: RequestData {
            method: parts.method.to_string(),
            path: parts.uri.path().to_string(),
            query: parts.uri.query().unwrap_or_default().to_string(),
            content_type,
            body,
            overrides,
        },
        timeout,
    };
    let started = admission.start(invocation).await?;
    Ok(if wants_event {
        wrapped_response(started).await
    } else {
        streamed_response(started).await
    })
}

/// Waits for the first stdout bytes or the end: output decides 200 and streams the rest,
/// with the exit code as a trailer; an end without output maps to the status table.
async fn streamed_response(mut started: Started) -> Response {
    let first = started.events.recv().await;
    let id = started.execution_id.clone();
    match first {
        Some(ExecEvent::Stdout(chunk)) => {
            let rest = futures::stream::unfold(started.events, |mut events| async move {
                loop {
                    match events.recv().await? {
                        ExecEvent::Stdout(bytes) => {
                            return Some((Ok::<_, Infallible>(Frame::data(bytes)), events));
                        }
                        // Only Metadata-mode agents answer this way, and they stream nothing.
                        ExecEvent::Response(_) => continue,
                        ExecEvent::Finished(outcome) => {
                            let mut trailers = HeaderMap::new();
                            trailers.insert(EXIT_CODE_HEADER, exit_code_value(&outcome));
                            return Some((Ok(Frame::trailers(trailers)), events));
                        }
                    }
                }
            });
            let frames =
                futures::stream::once(async move { Ok::<_, Infallible>(Frame::data(chunk)) })
                    .chain(rest);
            let body = Body::new(http_body_util::StreamBody::new(frames));
            let mut response = Response::new(body);
            let headers = response.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            headers.insert(
                header::TRAILER,
                HeaderValue::from_static("X-Clrk-Exit-Code"),
            );
            with_id(response, &id)
        }
        Some(ExecEvent::Response(answer)) => answered_response(answer, &id),
        Some(ExecEvent::Finished(outcome)) => finished_response(&outcome, Bytes::new(), &id),
        None => finished_response(
            &Outcome::Failed("the execution ended without a result".into()),
            Bytes::new(),
            &id,
        ),
    }
}

/// `Accept: application/cloudevents+json`: the whole stdout in a response event.
async fn wrapped_response(mut started: Started) -> Response {
    let mut stdout = Vec::new();
    let mut outcome = Outcome::Failed("the execution ended without a result".into());
    while let Some(event) = started.events.recv().await {
        match event {
            ExecEvent::Stdout(bytes) => {
                if stdout.len() + bytes.len() > MAX_BODY {
                    outcome = Outcome::Failed(format!(
                        "output over {} MiB cannot be wrapped in an event; call without Accept: {CLOUDEVENTS_JSON}",
                        MAX_BODY / (1024 * 1024)
                    ));
                    break;
                }
                stdout.extend_from_slice(&bytes);
            }
            ExecEvent::Response(answer) => stdout = answer.body.to_vec(),
            ExecEvent::Finished(end) => {
                outcome = end;
                break;
            }
        }
    }
    let id = started.execution_id.clone();
    if outcome != Outcome::Exited(0) {
        return finished_response(&outcome, Bytes::new(), &id);
    }
    let event = response_event(&started.execution_id, &started.source, &stdout);
    let mut response = (StatusCode::OK, event.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(CLOUDEVENTS_JSON),
    );
    with_id(response, &id)
}

/// Metadata mode: the agent's posted body, with its own Content-Type.
fn answered_response(answer: AgentResponse, id: &str) -> Response {
    let content_type = answer
        .content_type
        .and_then(|ct| HeaderValue::from_str(&ct).ok())
        .unwrap_or_else(|| HeaderValue::from_static("application/octet-stream"));
    let mut response = (StatusCode::OK, answer.body).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, content_type);
    with_id(response, id)
}

fn finished_response(outcome: &Outcome, body: Bytes, id: &str) -> Response {
    let mut response = match outcome {
        Outcome::Exited(0) => {
            let mut r = (StatusCode::OK, body).into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            r
        }
        Outcome::Exited(code) => {
            let mut r = (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("agent exited with code {code}\n"),
            )
                .into_response();
            r.headers_mut()
                .insert(EXIT_CODE_HEADER, HeaderValue::from(*code));
            r
        }
        Outcome::TimedOut(after) => (
            StatusCode::GATEWAY_TIMEOUT,
            format!(
                "execution timed out after {}\n",
                clrk_api::GoDuration(*after)
            ),
        )
            .into_response(),
        Outcome::Failed(reason) => {
            (StatusCode::INTERNAL_SERVER_ERROR, format!("{reason}\n")).into_response()
        }
        Outcome::NoResponse => {
            (StatusCode::BAD_GATEWAY, format!("{NO_RESPONSE}\n")).into_response()
        }
    };
    response.headers_mut().remove(header::CONTENT_LENGTH);
    with_id(response, id)
}

fn exit_code_value(outcome: &Outcome) -> HeaderValue {
    match outcome {
        Outcome::Exited(code) => HeaderValue::from(*code),
        Outcome::TimedOut(_) => HeaderValue::from_static("timeout"),
        Outcome::Failed(_) => HeaderValue::from_static("failed"),
        Outcome::NoResponse => HeaderValue::from(0),
    }
}

fn error_response(error: &DispatchError, id: Option<&str>) -> Response {
    let mut response = (error.status(), format!("{error}\n")).into_response();
    if let DispatchError::TooManyExecutions { .. }
    | DispatchError::WorkerBusy { .. }
    | DispatchError::NotReady { .. }
    | DispatchError::Body(BodyError::Busy { .. }) = error
    {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    match id {
        Some(id) => with_id(response, id),
        None => response,
    }
}

fn with_id(mut response: Response, id: &str) -> Response {
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
