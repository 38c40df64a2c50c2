//! `GET /v1/agents/{namespace}/{name}/traces`: the spans of one execution's trace.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One execution's trace: its spans, by start time.
///
/// ```
/// let trace: clrk_wire::Trace = serde_json::from_str(
///     r#"{"executionId": "e1", "status": "Succeeded", "traceId": "4bf92f3577b34da6a3ce929d0e0e4736",
///         "spans": [{"traceId": "4bf92f3577b34da6a3ce929d0e0e4736", "spanId": "00f067aa0ba902b7",
///                    "name": "execution", "startUnixUs": 1, "durationUs": 2}]}"#,
/// ).unwrap();
/// assert_eq!(trace.spans[0].name, "execution");
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Trace {
    /// The execution the trace is of.
    pub execution_id: String,
    /// The execution's status: `Running`, `Succeeded`, `Failed`, `TimedOut` or `Stopped`.
    #[serde(default)]
    pub status: String,
    /// 32 hex digits: the caller's trace when it sent a `traceparent`; empty before the
    /// execution's spans are stored.
    #[serde(default)]
    pub trace_id: String,
    #[serde(default)]
    pub spans: Vec<TraceSpan>,
}

/// One span: an operation of the execution (`execution`, `admission`, `warm take`,
/// `sandbox start`, `image prepare`, `runtime start`, `run`) or an egress call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TraceSpan {
    pub trace_id: String,
    pub span_id: String,
    /// The span it is a child of; for the `execution` span, the caller's span if any.
    #[serde(default)]
    pub parent_span_id: Option<String>,
    pub name: String,
    /// Microseconds since the Unix epoch.
    pub start_unix_us: i64,
    pub duration_us: i64,
    /// Details: `agent.name`, `invocation.id`, `http.request.method`, `gen_ai.*`, ...
    #[serde(default)]
    #[schema(value_type = Object)]
    pub attributes: serde_json::Map<String, serde_json::Value>,
    /// Why it failed, when it did.
    #[serde(default)]
    pub error: Option<String>,
}
