//! `GET /v1/agents/{namespace}/{name}/traces`: the spans of one execution's trace.

use std::collections::HashMap;

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

/// The spans depth first, each parent before its children, siblings by start; a span whose
/// parent is not in the trace (the caller's, or an agent's own) is a root. With each, its
/// depth: how many of its ancestors are in the trace.
///
/// ```
/// let span = |id: &str, parent: Option<&str>, start| clrk_wire::TraceSpan {
///     trace_id: "t".into(), span_id: id.into(), parent_span_id: parent.map(Into::into),
///     name: id.into(), start_unix_us: start, duration_us: 1,
///     attributes: Default::default(), error: None,
/// };
/// let spans = [span("run", Some("root"), 2), span("root", None, 1), span("call", Some("run"), 3)];
/// let order: Vec<(usize, &str)> =
///     clrk_wire::in_tree_order(&spans).into_iter().map(|(d, s)| (d, s.name.as_str())).collect();
/// assert_eq!(order, [(0, "root"), (1, "run"), (2, "call")]);
/// ```
pub fn in_tree_order(spans: &[TraceSpan]) -> Vec<(usize, &TraceSpan)> {
    let ids: HashMap<&str, usize> = spans
        .iter()
        .enumerate()
        .map(|(i, s)| (s.span_id.as_str(), i))
        .collect();
    let mut children: HashMap<Option<usize>, Vec<usize>> = HashMap::new();
    for (i, span) in spans.iter().enumerate() {
        let parent = span
            .parent_span_id
            .as_deref()
            .and_then(|p| ids.get(p).copied())
            .filter(|&p| p != i);
        children.entry(parent).or_default().push(i);
    }
    for list in children.values_mut() {
        list.sort_by_key(|&i| (spans[i].start_unix_us, i));
    }
    let mut order = Vec::with_capacity(spans.len());
    let mut seen = vec![false; spans.len()];
    let mut stack: Vec<(usize, usize)> = children
        .get(&None)
        .map(|roots| roots.iter().rev().map(|&i| (0, i)).collect())
        .unwrap_or_default();
    while let Some((depth, i)) = stack.pop() {
        if std::mem::replace(&mut seen[i], true) {
            continue;
        }
        order.push((depth, &spans[i]));
        if let Some(kids) = children.get(&Some(i)) {
            stack.extend(kids.iter().rev().map(|&k| (depth + 1, k)));
        }
    }
    // Spans in a parent cycle reach no root; they are still shown.
    for (i, span) in spans.iter().enumerate() {
        if !seen[i] {
            order.push((0, span));
        }
    }
    order
}
