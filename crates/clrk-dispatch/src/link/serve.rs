//! The worker's end of the cluster link: the routes a server calls, served by
//! `clrk_link::LinkServer` (which has already checked the server's proof of the cluster
//! secret before a request gets here).
//!
//! - `POST /link/v1/executions`: the body is an [`ExecutionOrder`] as JSON; the answer is
//!   `200` with the execution's events as [`frames`](super::frames), or the status and message
//!   a refusal maps to (409 for a reused execution id, 429 at `maxConcurrent`, 503 while the
//!   worker shuts down).
//! - `POST /link/v1/agents/{namespace}/{name}/stop`: stops the agent's executions on this
//!   worker, each failed with the reason in the body; answers how many as text.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use futures::StreamExt as _;
use http::StatusCode;
use tokio_util::codec::Encoder as _;
use tracing::Instrument as _;

use crate::body::{self, BodyLimits};
use crate::ingress_headers::MAX_BODY;
use crate::link::frames;
use crate::placement::execution_span;
use crate::worker::Worker;
use crate::worker::order::ExecutionOrder;

/// The path of the execution route.
pub const EXECUTIONS: &str = "/link/v1/executions";

/// An order is its envelope (a request body of at most [`MAX_BODY`], base64 in the worst
/// case) and a few KiB of shape; it arrives from a server on a fast network.
const ORDER_LIMITS: BodyLimits = BodyLimits {
    max: MAX_BODY / 3 * 4 + 1024 * 1024,
    idle: Duration::from_secs(10),
    total: Duration::from_secs(60),
};

/// The routes a worker serves on its link listener.
pub fn router(worker: Worker) -> Router {
    Router::new()
        .route(EXECUTIONS, post(execute))
        .route("/link/v1/agents/{namespace}/{name}/stop", post(stop))
        .with_state(worker)
}

async fn execute(State(worker): State<Worker>, request: axum::extract::Request) -> Response {
    let declared = request
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse().ok());
    let held = match body::read(
        request.into_body(),
        declared,
        ORDER_LIMITS,
        worker.body_budget(),
    )
    .await
    {
        Ok(held) => held,
        Err(error) => {
            let status = crate::DispatchError::from(error).status();
            return (status, "the execution order did not arrive whole\n").into_response();
        }
    };
    let (bytes, permit) = held.into_parts();
    let order: ExecutionOrder = match serde_json::from_slice(&bytes) {
        Ok(order) => order,
        Err(error) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("an unreadable execution order: {error}\n"),
            )
                .into_response();
        }
    };
    drop(bytes);
    let span = execution_span(
        &order.execution_id,
        &order.namespace,
        &order.agent,
        Some(&order.trigger),
    );
    let started = match worker
        .execute(order, Some(permit), None)
        .instrument(span)
        .await
    {
        Ok(started) => started,
        Err(error) => return (error.status(), format!("{error}\n")).into_response(),
    };
    let events = futures::stream::unfold(started.events, |mut events| async move {
        events.recv().await.map(|event| (event, events))
    });
    let frames = events.map(|event| {
        let mut framed = bytes::BytesMut::new();
        frames::codec()
            .encode(frames::encode(event), &mut framed)
            .map(|()| framed.freeze())
    });
    Response::new(Body::from_stream(frames))
}

async fn stop(
    State(worker): State<Worker>,
    Path((namespace, name)): Path<(String, String)>,
    reason: String,
) -> String {
    worker.stop_agent(&namespace, &name, &reason).to_string()
}
