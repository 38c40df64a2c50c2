//! The export task's side: spans taken off the queue in batches and posted to the collector,
//! retried with backoff while it is unavailable, dropped (and counted) when that does not help.

use std::error::Error as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1 as proto;
use prost::Message as _;
use reqwest::header::{CONTENT_TYPE, RETRY_AFTER};
use reqwest::{StatusCode, Url};
use tokio::sync::mpsc;

use super::span::{Span, to_proto};

/// Spans waiting for export; beyond this, new spans are dropped so memory stays bounded while
/// the collector is down.
const QUEUE_CAPACITY: usize = 4096;
/// The most spans sent in one request.
const BATCH_SIZE: usize = 512;
/// How long the first span of a batch waits for others before the batch is sent.
const BATCH_WINDOW: Duration = Duration::from_secs(1);
/// The whole request, connect to last response byte.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Waits before each retry of a failed batch; when they run out, the batch is dropped.
const BACKOFF: [Duration; 5] = [
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
    Duration::from_secs(8),
];
/// A collector's `Retry-After` is honoured up to this long.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

/// What the exporter counts, shared by its handles and the task.
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) dropped: AtomicU64,
    pub(super) exported: AtomicU64,
}

/// Knobs fixed in production; tests shorten the waits.
#[derive(Debug, Clone)]
pub(super) struct Tuning {
    pub(super) queue_capacity: usize,
    pub(super) batch_size: usize,
    pub(super) batch_window: Duration,
    pub(super) request_timeout: Duration,
    pub(super) backoff: Vec<Duration>,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            queue_capacity: QUEUE_CAPACITY,
            batch_size: BATCH_SIZE,
            batch_window: BATCH_WINDOW,
            request_timeout: REQUEST_TIMEOUT,
            backoff: BACKOFF.to_vec(),
        }
    }
}

/// The background task's side: owns the HTTP client and the queue's receiving end.
pub(super) struct Delivery {
    pub(super) client: reqwest::Client,
    pub(super) url: Url,
    pub(super) resource: Resource,
    pub(super) counters: Arc<Counters>,
    pub(super) tuning: Tuning,
}

/// What became of one POST.
enum Outcome {
    /// Accepted, possibly with some spans rejected.
    Accepted { rejected: u64 },
    /// Refused in a way retrying will not fix (4xx other than 429).
    Refused { status: StatusCode },
    /// Failed in a way that may pass later: connection error, timeout, 5xx or 429.
    Retry {
        reason: String,
        retry_after: Option<Duration>,
    },
}

impl Delivery {
    /// Delivers what `queue` brings until every sender is gone and the last batch is sent.
    pub(super) async fn run(self, mut queue: mpsc::Receiver<Span>) {
        let mut batch = Vec::with_capacity(self.tuning.batch_size);
        loop {
            let closed = self.fill_batch(&mut queue, &mut batch).await;
            if !batch.is_empty() {
                self.deliver(std::mem::take(&mut batch), &queue).await;
            }
            if closed {
                break;
            }
        }
        tracing::debug!(url = %self.url, "OTLP span export stopped: every exporter handle was dropped");
    }

    /// Waits for a first span, then gathers more until the batch is full or the batch window
    /// has passed. Returns true once every sender is gone and the queue is empty.
    async fn fill_batch(&self, queue: &mut mpsc::Receiver<Span>, batch: &mut Vec<Span>) -> bool {
        let size = self.tuning.batch_size;
        if queue.recv_many(batch, size).await == 0 {
            return true;
        }
        let deadline = tokio::time::Instant::now() + self.tuning.batch_window;
        while batch.len() < size {
            let more =
                tokio::time::timeout_at(deadline, queue.recv_many(batch, size - batch.len()));
            match more.await {
                Ok(0) => return true,
                Ok(_) => {}
                Err(_elapsed) => break,
            }
        }
        false
    }

    /// Sends one batch, retrying with backoff; drops and counts it when that fails.
    async fn deliver(&self, spans: Vec<Span>, queue: &mpsc::Receiver<Span>) {
        let count = spans.len() as u64;
        let body = Bytes::from(self.encode(spans).encode_to_vec());
        let mut backoff = self.tuning.backoff.iter();
        for attempt in 1.. {
            let (reason, retry_after) = match self.post(body.clone()).await {
                Outcome::Accepted { rejected } => {
                    let rejected = rejected.min(count);
                    self.counters
                        .exported
                        .fetch_add(count - rejected, Ordering::Relaxed);
                    if rejected > 0 {
                        self.drop_batch(rejected, attempt, "collector rejected some spans");
                    }
                    return;
                }
                Outcome::Refused { status } => {
                    let reason =
                        format!("collector answered {status}; check the endpoint and headers");
                    self.drop_batch(count, attempt, &reason);
                    return;
                }
                Outcome::Retry {
                    reason,
                    retry_after,
                } => (reason, retry_after),
            };
            // Once every handle is gone the process is shutting down: one attempt only.
            if queue.is_closed() {
                self.drop_batch(count, attempt, &reason);
                return;
            }
            let Some(&wait) = backoff.next() else {
                self.drop_batch(count, attempt, &reason);
                return;
            };
            let wait = retry_after.map_or(wait, |asked| asked.min(MAX_RETRY_AFTER).max(wait));
            tracing::debug!(url = %self.url, attempt, spans = count, ?wait, %reason, "OTLP export failed; will retry");
            tokio::time::sleep(wait).await;
        }
    }

    fn drop_batch(&self, spans: u64, attempts: u32, reason: &str) {
        let total_dropped = self.counters.dropped.fetch_add(spans, Ordering::Relaxed) + spans;
        tracing::warn!(
            url = %self.url,
            spans,
            attempts,
            total_dropped,
            reason,
            "OTLP export failed; dropping spans"
        );
    }

    async fn post(&self, body: Bytes) -> Outcome {
        let sent = self
            .client
            .post(self.url.clone())
            .header(CONTENT_TYPE, "application/x-protobuf")
            .body(body)
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(error) => {
                return Outcome::Retry {
                    reason: error_chain(&error),
                    retry_after: None,
                };
            }
        };
        let status = response.status();
        if status.is_success() {
            // A partial success names spans the collector refused; an unreadable answer is
            // taken as full success since the request itself was accepted.
            let partial = response
                .bytes()
                .await
                .ok()
                .and_then(|body| ExportTraceServiceResponse::decode(body).ok())
                .and_then(|answer| answer.partial_success);
            let rejected = partial.map_or(0, |partial| {
                if partial.rejected_spans > 0 {
                    tracing::warn!(
                        url = %self.url,
                        rejected_spans = partial.rejected_spans,
                        message = %partial.error_message,
                        "OTLP collector rejected some spans"
                    );
                }
                u64::try_from(partial.rejected_spans).unwrap_or(0)
            });
            return Outcome::Accepted { rejected };
        }
        if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            let retry_after = response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            return Outcome::Retry {
                reason: format!("collector answered {status}"),
                retry_after,
            };
        }
        Outcome::Refused { status }
    }

    fn encode(&self, spans: Vec<Span>) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: vec![proto::ResourceSpans {
                resource: Some(self.resource.clone()),
                scope_spans: vec![proto::ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: env!("CARGO_PKG_NAME").to_string(),
                        version: env!("CARGO_PKG_VERSION").to_string(),
                        ..Default::default()
                    }),
                    spans: spans.into_iter().map(to_proto).collect(),
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        }
    }
}

/// An error with its causes, since reqwest's top-level message hides the interesting part
/// ("connection refused").
pub(super) fn error_chain(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
