//! OTLP/HTTP export of the gateway's spans: protobuf `POST {endpoint}/v1/traces`.
//!
//! Telemetry must never slow or fail an agent's call, so [`OtlpExporter::export`] only puts the
//! span on a bounded queue and a background task does the network work: it batches, retries
//! with backoff while the collector is unavailable, and drops (and counts) what it cannot
//! deliver.

mod delivery;
mod span;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use reqwest::Url;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use tokio::sync::mpsc;

use crate::EgressError;
use delivery::{Counters, Delivery, Tuning, error_chain};
use span::resource;
pub use span::{AttributeValue, Span};

/// Queue-full drops are logged once per this many, not once per span.
const DROP_WARN_EVERY: u64 = 100;

/// How many spans the exporter has delivered and dropped since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExportStats {
    /// Spans dropped: queue full, rejected by the collector, or retries exhausted.
    pub dropped: u64,
    /// Spans the collector accepted.
    pub exported: u64,
}

/// A handle to the background task exporting spans over OTLP/HTTP; cheap to clone.
///
/// When every handle is dropped the task sends what it still holds, once, and ends.
#[derive(Debug, Clone)]
pub struct OtlpExporter {
    queue: mpsc::Sender<Span>,
    counters: Arc<Counters>,
}

impl OtlpExporter {
    /// Starts the export task on the current tokio runtime.
    ///
    /// `endpoint` is the collector's base URL (`http://127.0.0.1:4318`, trailing slash
    /// tolerated; a URL already ending in `/v1/traces` is used as is). `headers` are sent with
    /// every request, e.g. an API key. `service_name` becomes the `service.name` resource
    /// attribute.
    ///
    /// ```
    /// let runtime = tokio::runtime::Runtime::new().unwrap();
    /// let _entered = runtime.enter();
    /// let exporter = clrk_egress::OtlpExporter::spawn(
    ///     "http://127.0.0.1:4318",
    ///     vec![("authorization".into(), "Bearer token".into())],
    ///     "clrk-egress",
    /// )
    /// .unwrap();
    /// assert_eq!(exporter.stats(), clrk_egress::ExportStats::default());
    /// ```
    pub fn spawn(
        endpoint: &str,
        headers: Vec<(String, String)>,
        service_name: &str,
    ) -> Result<OtlpExporter, EgressError> {
        Self::spawn_tuned(endpoint, headers, service_name, Tuning::default())
    }

    fn spawn_tuned(
        endpoint: &str,
        headers: Vec<(String, String)>,
        service_name: &str,
        tuning: Tuning,
    ) -> Result<OtlpExporter, EgressError> {
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| EgressError::OtlpExporter {
                reason: "it must be started from within a tokio runtime".to_string(),
            })?;
        let url = traces_url(endpoint)?;
        let client = reqwest::Client::builder()
            .default_headers(header_map(headers)?)
            .timeout(tuning.request_timeout)
            // The collector is addressed directly: the gateway is the proxy, and routing its
            // own telemetry through an ambient HTTP_PROXY would be a surprise.
            .no_proxy()
            .build()
            .map_err(|error| EgressError::OtlpExporter {
                reason: format!("cannot build its HTTP client: {}", error_chain(&error)),
            })?;
        let (queue, receiver) = mpsc::channel(tuning.queue_capacity);
        let counters = Arc::new(Counters::default());
        let delivery = Delivery {
            client,
            url,
            resource: resource(service_name),
            counters: Arc::clone(&counters),
            tuning,
        };
        tracing::debug!(url = %delivery.url, service_name, "OTLP span export started");
        runtime.spawn(delivery.run(receiver));
        Ok(OtlpExporter { queue, counters })
    }

    /// Queues a span for export. Never blocks and never fails: when the queue is full the
    /// span is dropped and counted.
    ///
    /// ```
    /// use clrk_egress::{AttributeValue, OtlpExporter, Span, TraceContext};
    /// let runtime = tokio::runtime::Runtime::new().unwrap();
    /// let _entered = runtime.enter();
    /// let exporter = OtlpExporter::spawn("http://127.0.0.1:4318", Vec::new(), "clrk-egress").unwrap();
    /// let now = std::time::SystemTime::now();
    /// exporter.export(Span {
    ///     context: TraceContext::new_root(),
    ///     parent_span_id: None,
    ///     name: "chat gpt-4o".into(),
    ///     kind_client: true,
    ///     start: now,
    ///     end: now,
    ///     attributes: vec![("gen_ai.system".into(), AttributeValue::String("openai".into()))],
    ///     error: None,
    /// });
    /// ```
    pub fn export(&self, span: Span) {
        if self.queue.try_send(span).is_err() {
            let dropped = self.counters.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if dropped % DROP_WARN_EVERY == 1 {
                tracing::warn!(
                    total_dropped = dropped,
                    queue_capacity = self.queue.max_capacity(),
                    "OTLP export queue full (collector slow or down); dropping spans"
                );
            }
        }
    }

    /// Spans dropped and delivered so far.
    ///
    /// ```no_run
    /// # fn example(exporter: clrk_egress::OtlpExporter) {
    /// let stats = exporter.stats();
    /// println!("{} exported, {} dropped", stats.exported, stats.dropped);
    /// # }
    /// ```
    pub fn stats(&self) -> ExportStats {
        ExportStats {
            dropped: self.counters.dropped.load(Ordering::Relaxed),
            exported: self.counters.exported.load(Ordering::Relaxed),
        }
    }
}

/// `{endpoint}/v1/traces`, keeping any query the endpoint has.
fn traces_url(endpoint: &str) -> Result<Url, EgressError> {
    let invalid = |reason: &str| EgressError::OtlpEndpoint {
        endpoint: endpoint.to_string(),
        reason: reason.to_string(),
    };
    let mut url = Url::parse(endpoint.trim()).map_err(|error| invalid(&error.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("is not an http or https URL"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("has no host"));
    }
    let base = url.path().trim_end_matches('/');
    if !base.ends_with("/v1/traces") {
        let path = format!("{base}/v1/traces");
        url.set_path(&path);
    }
    Ok(url)
}

fn header_map(headers: Vec<(String, String)>) -> Result<HeaderMap, EgressError> {
    let mut map = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        let invalid = |reason: &str| EgressError::OtlpHeader {
            name: name.clone(),
            reason: reason.to_string(),
        };
        let header_name = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| invalid("is not a valid header name"))?;
        // The value is left out of errors: it is usually a credential.
        let mut header_value = HeaderValue::from_str(value.trim())
            .map_err(|_| invalid("has a value with characters not allowed in a header"))?;
        header_value.set_sensitive(true);
        map.append(header_name, header_value);
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::convert::Infallible;
    use std::sync::Mutex;
    use std::sync::atomic::AtomicUsize;

    use http_body_util::{BodyExt, Full};
    use hyper::body::Incoming;
    use hyper::service::service_fn;
    use hyper::{Request, Response};
    use hyper_util::rt::TokioIo;
    use tokio::net::TcpListener;

    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use bytes::Bytes;
    use opentelemetry_proto::tonic::collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
    };
    use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
    use opentelemetry_proto::tonic::trace::v1 as proto;
    use prost::Message as _;
    use reqwest::header::CONTENT_TYPE;

    use super::*;
    use crate::telemetry::trace_context::TraceContext;

    /// Waits for conditions in tests; generous because CI machines are slow.
    const DEADLINE: Duration = Duration::from_secs(15);

    fn fast() -> Tuning {
        Tuning {
            batch_window: Duration::from_millis(20),
            request_timeout: Duration::from_secs(5),
            backoff: vec![Duration::from_millis(10); 5],
            ..Tuning::default()
        }
    }

    /// What the test collector received in one successful request.
    struct Received {
        path: String,
        headers: http::HeaderMap,
        request: ExportTraceServiceRequest,
    }

    /// A minimal OTLP/HTTP collector on a loopback port. It answers each request with the next
    /// status of its script (200 once the script is exhausted) and forwards accepted requests.
    struct Collector {
        endpoint: String,
        received: mpsc::UnboundedReceiver<Received>,
        hits: Arc<AtomicUsize>,
    }

    impl Collector {
        async fn start(script: Vec<u16>) -> Collector {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let endpoint = format!("http://{}/", listener.local_addr().unwrap());
            let (sender, received) = mpsc::unbounded_channel();
            let script = Arc::new(Mutex::new(VecDeque::from(script)));
            let hits = Arc::new(AtomicUsize::new(0));
            let counted = Arc::clone(&hits);
            tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let sender = sender.clone();
                    let script = Arc::clone(&script);
                    let hits = Arc::clone(&counted);
                    let service = service_fn(move |request| {
                        let status = script.lock().unwrap().pop_front().unwrap_or(200);
                        hits.fetch_add(1, Ordering::SeqCst);
                        Self::answer(request, status, sender.clone())
                    });
                    tokio::spawn(async move {
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            });
            Collector {
                endpoint,
                received,
                hits,
            }
        }

        async fn answer(
            request: Request<Incoming>,
            status: u16,
            sender: mpsc::UnboundedSender<Received>,
        ) -> Result<Response<Full<Bytes>>, Infallible> {
            let (parts, body) = request.into_parts();
            let body = body.collect().await.unwrap().to_bytes();
            if status == 200 {
                assert_eq!(parts.method, http::Method::POST);
                let request = ExportTraceServiceRequest::decode(body).expect("OTLP protobuf");
                let _ = sender.send(Received {
                    path: parts.uri.path().to_string(),
                    headers: parts.headers,
                    request,
                });
            }
            let answer = ExportTraceServiceResponse::default().encode_to_vec();
            Ok(Response::builder()
                .status(status)
                .header(CONTENT_TYPE, "application/x-protobuf")
                .body(Full::new(Bytes::from(answer)))
                .unwrap())
        }

        /// The spans of accepted requests until `count` have arrived.
        async fn spans(&mut self, count: usize) -> Vec<(Received, Vec<proto::Span>)> {
            let mut out = Vec::new();
            let mut total = 0;
            while total < count {
                let received = tokio::time::timeout(DEADLINE, self.received.recv())
                    .await
                    .expect("collector received spans in time")
                    .expect("collector running");
                let spans: Vec<proto::Span> = received
                    .request
                    .resource_spans
                    .iter()
                    .flat_map(|r| &r.scope_spans)
                    .flat_map(|s| s.spans.clone())
                    .collect();
                total += spans.len();
                out.push((received, spans));
            }
            out
        }
    }

    async fn wait_until(what: &str, condition: impl Fn() -> bool) {
        let polling = async {
            while !condition() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        tokio::time::timeout(DEADLINE, polling)
            .await
            .unwrap_or_else(|_| panic!("timed out waiting until {what}"));
    }

    fn span(name: &str) -> Span {
        let now = SystemTime::now();
        Span {
            context: TraceContext::new_root(),
            parent_span_id: None,
            name: name.to_string(),
            kind_client: false,
            start: now,
            end: now,
            attributes: Vec::new(),
            error: None,
        }
    }

    fn attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
        attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref())
            .and_then(|v| v.value.as_ref())
    }

    #[tokio::test]
    async fn exports_spans_to_a_collector() {
        let mut collector = Collector::start(Vec::new()).await;
        let headers = vec![("X-Api-Key".to_string(), "s3cret".to_string())];
        let exporter =
            OtlpExporter::spawn_tuned(&collector.endpoint, headers, "clrk-test", fast()).unwrap();

        let parent =
            TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        let context = parent.child();
        let start = UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789);
        let end = start + Duration::from_millis(1500);
        exporter.export(Span {
            context,
            parent_span_id: Some(parent.span_id),
            name: "chat gpt-4o".to_string(),
            kind_client: true,
            start,
            end,
            attributes: vec![
                (
                    "gen_ai.system".to_string(),
                    AttributeValue::String("openai".to_string()),
                ),
                (
                    "gen_ai.usage.input_tokens".to_string(),
                    AttributeValue::Int(1117),
                ),
                (
                    "clrk.egress.allowed".to_string(),
                    AttributeValue::Bool(true),
                ),
            ],
            error: Some("upstream answered 500".to_string()),
        });
        exporter.export(span("dns lookup"));

        let batches = collector.spans(2).await;
        let (received, _) = &batches[0];
        assert_eq!(received.path, "/v1/traces");
        assert_eq!(received.headers[CONTENT_TYPE], "application/x-protobuf");
        assert_eq!(received.headers["x-api-key"], "s3cret");
        let resource = received.request.resource_spans[0]
            .resource
            .as_ref()
            .unwrap();
        assert_eq!(
            attribute(&resource.attributes, "service.name"),
            Some(&any_value::Value::StringValue("clrk-test".to_string()))
        );

        let spans: Vec<proto::Span> = batches.into_iter().flat_map(|(_, spans)| spans).collect();
        let client = spans.iter().find(|s| s.name == "chat gpt-4o").unwrap();
        assert_eq!(client.trace_id, parent.trace_id.to_vec());
        assert_eq!(client.span_id, context.span_id.to_vec());
        assert_eq!(client.parent_span_id, parent.span_id.to_vec());
        assert_eq!(client.kind, proto::span::SpanKind::Client as i32);
        assert_eq!(client.flags & 0xff, 1);
        assert_eq!(client.start_time_unix_nano, 1_700_000_000_123_456_789);
        assert_eq!(client.end_time_unix_nano, 1_700_000_001_623_456_789);
        assert_eq!(
            attribute(&client.attributes, "gen_ai.system"),
            Some(&any_value::Value::StringValue("openai".to_string()))
        );
        assert_eq!(
            attribute(&client.attributes, "gen_ai.usage.input_tokens"),
            Some(&any_value::Value::IntValue(1117))
        );
        assert_eq!(
            attribute(&client.attributes, "clrk.egress.allowed"),
            Some(&any_value::Value::BoolValue(true))
        );
        let status = client.status.as_ref().unwrap();
        assert_eq!(status.code, proto::status::StatusCode::Error as i32);
        assert_eq!(status.message, "upstream answered 500");

        let internal = spans.iter().find(|s| s.name == "dns lookup").unwrap();
        assert_eq!(internal.kind, proto::span::SpanKind::Internal as i32);
        assert!(internal.parent_span_id.is_empty());
        assert_eq!(internal.status, None);

        wait_until("both spans count as exported", || {
            exporter.stats().exported == 2
        })
        .await;
        assert_eq!(exporter.stats().dropped, 0);
    }

    #[tokio::test]
    async fn retries_after_server_errors() {
        let mut collector = Collector::start(vec![503, 503]).await;
        let exporter =
            OtlpExporter::spawn_tuned(&collector.endpoint, Vec::new(), "clrk-test", fast())
                .unwrap();
        exporter.export(span("retried"));

        let batches = collector.spans(1).await;
        assert_eq!(batches[0].1[0].name, "retried");
        assert_eq!(collector.hits.load(Ordering::SeqCst), 3);
        wait_until("the span counts as exported", || {
            exporter.stats().exported == 1
        })
        .await;
        assert_eq!(exporter.stats().dropped, 0);
    }

    #[tokio::test]
    async fn client_errors_drop_the_batch_at_once() {
        let collector = Collector::start(vec![400]).await;
        let exporter =
            OtlpExporter::spawn_tuned(&collector.endpoint, Vec::new(), "clrk-test", fast())
                .unwrap();
        exporter.export(span("refused"));

        wait_until("the span is dropped", || exporter.stats().dropped == 1).await;
        assert_eq!(collector.hits.load(Ordering::SeqCst), 1);
        assert_eq!(exporter.stats().exported, 0);
    }

    #[tokio::test]
    async fn unreachable_collector_never_blocks_and_counts_drops() {
        let endpoint = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            format!("http://{}", listener.local_addr().unwrap())
        };
        let exporter =
            OtlpExporter::spawn_tuned(&endpoint, Vec::new(), "clrk-test", fast()).unwrap();

        let started = std::time::Instant::now();
        for i in 0..10 {
            exporter.export(span(&format!("lost {i}")));
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "export must not wait on the network"
        );

        wait_until("every span is dropped", || exporter.stats().dropped == 10).await;
        assert_eq!(exporter.stats().exported, 0);
    }

    #[tokio::test]
    async fn full_queue_drops_new_spans() {
        let endpoint = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            format!("http://{}", listener.local_addr().unwrap())
        };
        let tuning = Tuning {
            queue_capacity: 4,
            ..fast()
        };
        let exporter =
            OtlpExporter::spawn_tuned(&endpoint, Vec::new(), "clrk-test", tuning).unwrap();
        // The export task cannot run in between: this test's runtime has a single thread.
        for i in 0..100 {
            exporter.export(span(&format!("overflow {i}")));
        }
        assert_eq!(exporter.stats().dropped, 96);
    }

    #[tokio::test]
    async fn dropping_every_handle_flushes_the_queue() {
        let mut collector = Collector::start(Vec::new()).await;
        let tuning = Tuning {
            // Only the shutdown can end this batch in time.
            batch_window: Duration::from_secs(3600),
            ..fast()
        };
        let exporter =
            OtlpExporter::spawn_tuned(&collector.endpoint, Vec::new(), "clrk-test", tuning)
                .unwrap();
        let clone = exporter.clone();
        for i in 0..3 {
            clone.export(span(&format!("flushed {i}")));
        }
        drop(clone);
        drop(exporter);
        let batches = collector.spans(3).await;
        let names: Vec<String> = batches
            .into_iter()
            .flat_map(|(_, spans)| spans)
            .map(|s| s.name)
            .collect();
        assert_eq!(names, ["flushed 0", "flushed 1", "flushed 2"]);
    }

    #[test]
    fn endpoint_becomes_the_traces_url() {
        for endpoint in [
            "http://127.0.0.1:4318",
            "http://127.0.0.1:4318/",
            "http://127.0.0.1:4318/v1/traces",
        ] {
            assert_eq!(
                traces_url(endpoint).unwrap().as_str(),
                "http://127.0.0.1:4318/v1/traces",
                "{endpoint}"
            );
        }
        assert_eq!(
            traces_url("https://otel.example.test/otlp/?tenant=a")
                .unwrap()
                .as_str(),
            "https://otel.example.test/otlp/v1/traces?tenant=a"
        );
        for bad in [
            "127.0.0.1:4318",
            "localhost",
            "ftp://collector",
            "not a url",
            "",
        ] {
            assert!(
                matches!(traces_url(bad), Err(EgressError::OtlpEndpoint { .. })),
                "{bad}"
            );
        }
    }

    #[tokio::test]
    async fn invalid_headers_are_rejected() {
        let bad_name = vec![("bad header".to_string(), "x".to_string())];
        let error = OtlpExporter::spawn("http://127.0.0.1:4318", bad_name, "clrk").unwrap_err();
        assert!(matches!(error, EgressError::OtlpHeader { ref name, .. } if name == "bad header"));
        let bad_value = vec![("authorization".to_string(), "Bearer a\nb".to_string())];
        let error = OtlpExporter::spawn("http://127.0.0.1:4318", bad_value, "clrk").unwrap_err();
        assert!(!error.to_string().contains("Bearer"), "{error}");
    }

    #[test]
    fn spawn_outside_a_runtime_is_an_error() {
        let error = OtlpExporter::spawn("http://127.0.0.1:4318", Vec::new(), "clrk").unwrap_err();
        assert!(matches!(error, EgressError::OtlpExporter { .. }));
    }
}
