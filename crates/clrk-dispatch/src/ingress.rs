//! The HTTP ingress (SPECIFICATION §4): any method and path, routed by `X-Clrk-TaskAgent`.
//!
//! The headers are checked by the [`IngressHeaders`] extractor before anything else; a
//! request it accepts runs inside its execution's span, and every request inside a span of
//! its own (method, path, status, latency) from the router's trace layer.

use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use futures::StreamExt as _;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use http_body::Frame;
use tower_http::trace::TraceLayer;
use tracing::Instrument as _;

use crate::body::{self, BodyLimits};
use crate::envelope::{RequestData, response_event};
use crate::error::DispatchError;
use crate::ingress_headers::{CLOUDEVENTS_JSON, Refusal, with_id};
use crate::output::{MAX_BUFFERED_OUTPUT, OutputBuffer, Reservation};
use crate::placement::{Dispatcher, Invocation, execution_span};
use crate::trace::ExecutionTrace;
use crate::worker::NO_RESPONSE;
use crate::worker::metadata::AgentResponse;
use crate::worker::order::{ExecEvent, Outcome, Started};

pub use crate::ingress_headers::{
    EXECUTION_ID_HEADER, EXIT_CODE_HEADER, IngressHeaders, MAX_BODY, TASK_AGENT_HEADER,
    TIMEOUT_HEADER, TRIGGER_HEADER,
};

/// How a request body must arrive: a client that stops sending for 10 s, or takes more than
/// 2 minutes for the whole body, is answered 408.
const BODY_LIMITS: BodyLimits = BodyLimits {
    max: MAX_BODY,
    idle: Duration::from_secs(10),
    total: Duration::from_secs(120),
};

/// The ingress router: every method and path goes to [`invoke`], each request in a span
/// with its method and path, to which its status and latency are added when it is answered.
pub fn router(dispatcher: Dispatcher) -> Router {
    let trace = TraceLayer::new_for_http()
        .make_span_with(|request: &Request| {
            tracing::info_span!(
                "ingress",
                method = %request.method(),
                path = %request.uri().path(),
                status = tracing::field::Empty,
                latency_ms = tracing::field::Empty,
            )
        })
        .on_request(())
        .on_response(
            |response: &Response, latency: Duration, span: &tracing::Span| {
                span.record("status", response.status().as_u16());
                span.record("latency_ms", latency.as_millis() as u64);
                tracing::debug!("answered");
            },
        )
        // A failing agent is an answer (500, 504), not a fault of the ingress to log again.
        .on_failure(());
    Router::new()
        .fallback(invoke)
        .with_state(dispatcher)
        .layer(trace)
}

/// Handles one request: resolves the agent, runs an execution, answers with its stdout,
/// streamed or held until the agent exits as the agent's `spec.streaming` says.
pub async fn invoke(
    State(dispatcher): State<Dispatcher>,
    headers: IngressHeaders,
    request: Request,
) -> Response {
    let span = execution_span(
        &headers.execution_id,
        &headers.namespace,
        &headers.name,
        headers.trigger.as_deref(),
    );
    let execution_id = headers.execution_id.clone();
    match run(dispatcher, headers, request).instrument(span).await {
        Ok(response) => response,
        Err(error) => Refusal::new(error, &execution_id).into_response(),
    }
}

async fn run(
    dispatcher: Dispatcher,
    headers: IngressHeaders,
    request: Request,
) -> Result<Response, DispatchError> {
    let IngressHeaders {
        execution_id,
        namespace,
        name,
        trigger,
        timeout,
        content_type,
        overrides,
        declared_length,
        wants_event,
        caller_trace,
    } = headers;
    let mut trace = ExecutionTrace::begin(caller_trace);
    let (parts, body) = request.into_parts();
    // Routed before the body is read: a request that cannot run (404, 503, 429) costs no
    // memory. Its places are taken once the body is in, so a slow body holds none.
    let route = dispatcher.route(&namespace, &name).await?;
    let held = body::read(body, declared_length, BODY_LIMITS, dispatcher.body_budget()).await?;
    let mut admission = route.admit().await?;
    trace.admission_began();
    let (body, permit) = held.into_parts();
    admission.hold_body(permit);
    let invocation = Invocation {
        namespace,
        name,
        execution_id,
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
        trace,
    };
    let streaming = admission.streams_output();
    let started = admission.start(invocation).await?;
    Ok(if wants_event {
        wrapped_response(started).await
    } else if streaming {
        streamed_response(started).await
    } else {
        buffered_response(started).await
    })
}

/// Holds stdout until the end, so the status follows the outcome: 200 with the whole output
/// for exit 0, the status table's 5xx otherwise. Output over [`MAX_BUFFERED_OUTPUT`] is a 502
/// at once; the execution goes on to its end, its output discarded.
async fn buffered_response(mut started: Started) -> Response {
    let id = started.execution_id.clone();
    let mut output = OutputBuffer::new(MAX_BUFFERED_OUTPUT);
    let mut answer = None;
    let outcome = loop {
        match started.events.recv().await {
            Some(ExecEvent::Stdout(bytes)) => {
                if let Err(err) = output.push(&bytes).await {
                    tracing::info!(%err, "output not held");
                    let body = format!("{err}\n");
                    return with_id((StatusCode::BAD_GATEWAY, body).into_response(), &id);
                }
            }
            Some(ExecEvent::Response(posted)) => answer = Some(posted),
            Some(ExecEvent::Finished(outcome)) => break outcome,
            None => break Outcome::Failed("the execution ended without a result".into()),
        }
    };
    match (outcome, answer) {
        (Outcome::Exited(0), Some(answer)) => answered_response(answer, &id),
        (outcome, _) => match output.into_body().await {
            Ok(body) => finished_response(&outcome, body, &id),
            Err(err) => {
                let body = format!("{err}\n");
                with_id((StatusCode::BAD_GATEWAY, body).into_response(), &id)
            }
        },
    }
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
        Some(ExecEvent::Finished(outcome)) => finished_response(&outcome, Body::empty(), &id),
        None => finished_response(
            &Outcome::Failed("the execution ended without a result".into()),
            Body::empty(),
            &id,
        ),
    }
}

/// `Accept: application/cloudevents+json`: the whole stdout in a response event.
async fn wrapped_response(mut started: Started) -> Response {
    let mut stdout = Vec::new();
    // Counted against the memory held output shares: an event is built in memory, so past the
    // budget it is refused rather than held.
    let mut memory = Reservation::default();
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
                if !memory.grow(bytes.len()) {
                    outcome = Outcome::Failed(format!(
                        "clrk's memory for held output is in use by other executions, and an event is built in memory; retry, or call without Accept: {CLOUDEVENTS_JSON}"
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
        return finished_response(&outcome, Body::empty(), &id);
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

fn finished_response(outcome: &Outcome, body: Body, id: &str) -> Response {
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
        // The worker running it vanished: a gateway's failure, not the agent's.
        Outcome::Failed(reason) if reason == clrk_store::WORKER_LOST => {
            (StatusCode::BAD_GATEWAY, format!("{reason}\n")).into_response()
        }
        Outcome::Failed(reason) => {
            (StatusCode::INTERNAL_SERVER_ERROR, format!("{reason}\n")).into_response()
        }
        // Nothing ran: the image could not be had on the worker, a retry may find it.
        Outcome::Unavailable(reason) => {
            let mut r = (StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n")).into_response();
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            r
        }
        Outcome::NoResponse => {
            (StatusCode::BAD_GATEWAY, format!("{NO_RESPONSE}\n")).into_response()
        }
        Outcome::Killed { code, reason } => {
            let mut r = (StatusCode::INTERNAL_SERVER_ERROR, format!("{reason}\n")).into_response();
            r.headers_mut()
                .insert(EXIT_CODE_HEADER, HeaderValue::from(*code));
            r
        }
    };
    response.headers_mut().remove(header::CONTENT_LENGTH);
    with_id(response, id)
}

fn exit_code_value(outcome: &Outcome) -> HeaderValue {
    match outcome {
        Outcome::Exited(code) | Outcome::Killed { code, .. } => HeaderValue::from(*code),
        Outcome::TimedOut(_) => HeaderValue::from_static("timeout"),
        Outcome::Failed(_) | Outcome::Unavailable(_) => HeaderValue::from_static("failed"),
        Outcome::NoResponse => HeaderValue::from(0),
    }
}
