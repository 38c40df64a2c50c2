//! Placement's end of the cluster link: sends an [`ExecutionOrder`] to a worker and turns the
//! frames of its answer back into the execution's events.
//!
//! A worker that refuses the order (a reused execution id, `maxConcurrent` reached, shutting
//! down) answers with a status and a message, passed to the caller as they are. A worker that
//! cannot be reached never got the order: nothing was recorded. A worker lost after it
//! accepted the order (its answer ends before the end frame) leaves the execution `Running`
//! in the store; it is recorded `Failed` with reason `worker lost` here, unless the worker's
//! own record of its end got there first.

use std::net::SocketAddr;

use axum::body::Body;
use bytes::Bytes;
use chrono::Utc;
use clrk_link::{LinkClient, LinkError};
use clrk_store::{Store, WORKER_LOST};
use futures::StreamExt as _;
use http::{Request, StatusCode, header};
use http_body_util::BodyExt as _;
use tokio::sync::mpsc;
use tokio_util::codec::FramedRead;
use tokio_util::io::StreamReader;
use tracing::Instrument as _;

use crate::error::DispatchError;
use crate::link::frames;
use crate::link::serve::EXECUTIONS;
use crate::worker::Places;
use crate::worker::order::{ExecEvent, ExecutionOrder, Outcome, Started};

/// Most bytes of a refusal's message read from a worker.
const REFUSAL_LIMIT: usize = 64 * 1024;
/// Events buffered between the link and a slow caller.
const EVENT_QUEUE: usize = 8;

/// A worker as placement reaches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerAddress {
    pub name: String,
    pub addr: SocketAddr,
}

/// Why an order did not start on a worker.
pub(crate) enum NotStarted {
    /// The worker could not be reached, or turned the order away before recording it: another
    /// may take it.
    Undelivered(DispatchError),
    /// The worker refused it, or the link broke once it may have had it.
    Refused(DispatchError),
}

/// An order serialised once, so it can be offered to another worker when one is out of
/// reach.
pub(crate) struct Sendable {
    json: Bytes,
    execution_id: String,
    namespace: String,
    agent: String,
    revision: String,
}

impl Sendable {
    pub(crate) fn new(order: &ExecutionOrder) -> Sendable {
        Sendable {
            json: Bytes::from(serde_json::to_vec(order).expect("an order serialises")),
            execution_id: order.execution_id.clone(),
            namespace: order.namespace.clone(),
            agent: order.agent.clone(),
            revision: order.revision.clone(),
        }
    }

    pub(crate) fn namespace(&self) -> &str {
        &self.namespace
    }

    pub(crate) fn agent(&self) -> &str {
        &self.agent
    }

    pub(crate) fn revision(&self) -> &str {
        &self.revision
    }
}

/// Offers the order to `worker`; once it accepts, its events stream back and `places` are
/// held until the execution ends.
pub(crate) async fn execute(
    client: &LinkClient,
    store: &Store,
    worker: &WorkerAddress,
    order: &Sendable,
    places: Places,
) -> Result<Started, (NotStarted, Places)> {
    let request = Request::post(EXECUTIONS)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(order.json.clone()))
        .expect("a valid request");
    let response = match client.request(worker.addr, request).await {
        Ok(response) => response,
        Err(error) => {
            let undelivered = matches!(
                error,
                LinkError::Connect { .. }
                    | LinkError::Handshake { .. }
                    | LinkError::HandshakeTimeout { .. }
            );
            let error = DispatchError::WorkerUnreachable {
                worker: worker.name.clone(),
                reason: error.to_string(),
            };
            let why = if undelivered {
                NotStarted::Undelivered(error)
            } else {
                NotStarted::Refused(error)
            };
            return Err((why, places));
        }
    };
    if response.status() != StatusCode::OK {
        let status = response.status();
        let message = match http_body_util::Limited::new(response.into_body(), REFUSAL_LIMIT)
            .collect()
            .await
        {
            Ok(body) => String::from_utf8_lossy(&body.to_bytes())
                .trim_end()
                .to_owned(),
            Err(error) => format!("worker {} refused the execution: {error}", worker.name),
        };
        let error = DispatchError::Remote { status, message };
        // A worker shutting down (or out of memory for bodies) recorded nothing: another
        // may take the order.
        let why = if status == StatusCode::SERVICE_UNAVAILABLE {
            NotStarted::Undelivered(error)
        } else {
            NotStarted::Refused(error)
        };
        return Err((why, places));
    }
    let (tx, rx) = mpsc::channel(EVENT_QUEUE);
    let data = response.into_body().into_data_stream().map(|chunk| {
        chunk.map_err(|error| std::io::Error::new(std::io::ErrorKind::BrokenPipe, error))
    });
    let frames = FramedRead::new(StreamReader::new(data), frames::codec());
    tokio::spawn(
        relay(
            frames,
            tx,
            store.clone(),
            worker.clone(),
            order.execution_id.clone(),
            Some(places),
        )
        .in_current_span(),
    );
    Ok(Started {
        execution_id: order.execution_id.clone(),
        revision: order.revision.clone(),
        source: format!("clrk://{}/{}", order.namespace, order.agent),
        events: rx,
    })
}

/// Passes the worker's events to the caller until the end frame; records the execution lost
/// when the answer breaks off before it.
async fn relay<S>(
    mut frames: S,
    tx: mpsc::Sender<ExecEvent>,
    store: Store,
    worker: WorkerAddress,
    execution_id: String,
    places: Option<Places>,
) where
    S: futures::Stream<Item = Result<bytes::BytesMut, std::io::Error>> + Unpin,
{
    let mut caller_gone = false;
    let why = loop {
        let event = match frames.next().await {
            Some(Ok(frame)) => match frames::decode(frame) {
                Ok(event) => event,
                Err(why) => break why,
            },
            Some(Err(error)) => break error.to_string(),
            None => break "the answer ended before the execution did".to_string(),
        };
        if let ExecEvent::Finished(outcome) = event {
            drop(places);
            let _ = tx.send(ExecEvent::Finished(outcome)).await;
            return;
        }
        // A caller that went away does not stop the execution: its events are read and
        // dropped so the worker never blocks on the link.
        if !caller_gone && tx.send(event).await.is_err() {
            caller_gone = true;
        }
    };
    tracing::warn!(worker = %worker.name, reason = %why, "lost the worker of an execution");
    if let Err(error) = store
        .fail_execution_if_running(&execution_id, WORKER_LOST, Utc::now())
        .await
    {
        tracing::error!(%error, "could not record an execution whose worker was lost");
    }
    drop(places);
    let _ = tx
        .send(ExecEvent::Finished(Outcome::Failed(
            WORKER_LOST.to_string(),
        )))
        .await;
}

/// Asks `worker` to stop `namespace/name`'s executions, failing them with `reason`; returns
/// how many it stopped.
pub(crate) async fn stop_agent(
    client: &LinkClient,
    worker: &WorkerAddress,
    namespace: &str,
    name: &str,
    reason: &str,
) -> Result<usize, DispatchError> {
    let request = Request::post(format!("/link/v1/agents/{namespace}/{name}/stop"))
        .body(Body::from(Bytes::from(reason.to_owned())))
        .expect("a valid request");
    let unreachable = |reason: String| DispatchError::WorkerUnreachable {
        worker: worker.name.clone(),
        reason,
    };
    let response = client
        .request(worker.addr, request)
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    let body = http_body_util::Limited::new(response.into_body(), REFUSAL_LIMIT)
        .collect()
        .await
        .map_err(|e| unreachable(e.to_string()))?
        .to_bytes();
    Ok(String::from_utf8_lossy(&body).trim().parse().unwrap_or(0))
}
