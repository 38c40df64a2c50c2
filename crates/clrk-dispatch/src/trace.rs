//! An execution's trace (SPECIFICATION §9.7): one trace per execution, continuing the
//! caller's `traceparent` when it sent a valid one. Placement starts it and times the
//! admission; the worker adds the warm take or the sandbox start (image prepare, runtime
//! start) and the agent's run, and the egress gateway makes each call of the run a child of
//! it. The spans are held in memory while the execution runs and written in one store write
//! once its caller has the answer.

use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clrk_egress::{AttributeValue, Span, TraceContext};
use serde::{Deserialize, Serialize};

/// The spans an execution's trace may hold in memory before the rest are dropped; the store
/// keeps at most [`clrk_store::SPANS_PER_EXECUTION`] with the gateway's.
const SPANS_IN_MEMORY: usize = 32;

/// Span names, as `clrk agents traces` shows them.
pub const EXECUTION: &str = "execution";
pub const ADMISSION: &str = "admission";
pub const WARM_TAKE: &str = "warm take";
pub const SANDBOX_START: &str = "sandbox start";
pub const IMAGE_PREPARE: &str = "image prepare";
pub const RUNTIME_START: &str = "runtime start";
pub const RUN: &str = "run";

/// Where an execution's trace stands when placement hands it to a worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionTrace {
    /// The `traceparent` of the execution's root span.
    pub root: String,
    /// The caller's span, the root's parent, as 16 hex digits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller_span: Option<String>,
    /// When the request arrived: the root span's start (microseconds since the epoch).
    pub received_us: i64,
    /// When it began waiting for its places: the admission span's start.
    pub admission_us: i64,
    /// When placement handed it on: the admission span's end.
    #[serde(default)]
    pub admitted_us: i64,
}

impl ExecutionTrace {
    /// A trace for a request that arrived now, continuing `caller` (a parsed `traceparent`)
    /// when there is one.
    ///
    /// ```
    /// use clrk_dispatch::trace::ExecutionTrace;
    /// use clrk_egress::TraceContext;
    /// let caller =
    ///     TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
    /// let trace = ExecutionTrace::begin(Some(caller));
    /// assert!(trace.root.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
    /// assert_eq!(trace.caller_span.as_deref(), Some("00f067aa0ba902b7"));
    /// ```
    pub fn begin(caller: Option<TraceContext>) -> ExecutionTrace {
        let root = caller.map_or_else(TraceContext::new_root, |c| c.child());
        let now = unix_us(SystemTime::now());
        ExecutionTrace {
            root: root.header_value(),
            caller_span: caller.map(|c| clrk_egress::hex_id(&c.span_id)),
            received_us: now,
            admission_us: now,
            admitted_us: now,
        }
    }

    /// Marks the start of the wait for places.
    pub fn admission_began(&mut self) {
        self.admission_us = unix_us(SystemTime::now());
    }

    /// Marks the end of admission: the order goes to a worker now.
    pub fn admitted(&mut self) {
        self.admitted_us = unix_us(SystemTime::now());
    }
}

/// The spans of one execution as its worker collects them.
pub struct TraceSpans {
    root: TraceContext,
    caller_span: Option<[u8; 8]>,
    received: SystemTime,
    /// The span the agent's run will have, made up front so the gateway can parent the
    /// spans of its calls before the run ends.
    run: TraceContext,
    spans: Mutex<Vec<Span>>,
}

impl TraceSpans {
    /// The worker's side of `trace` (a new trace when placement sent none), with its
    /// admission span.
    pub fn from_order(trace: Option<&ExecutionTrace>) -> TraceSpans {
        let now = SystemTime::now();
        let root = trace
            .and_then(|t| TraceContext::parse(&t.root))
            .unwrap_or_else(TraceContext::new_root);
        let caller_span = trace
            .and_then(|t| t.caller_span.as_deref())
            .and_then(span_id);
        let received = trace.map_or(now, |t| from_unix_us(t.received_us));
        let spans = TraceSpans {
            root,
            caller_span,
            received,
            run: root.child(),
            spans: Mutex::new(Vec::new()),
        };
        if let Some(t) = trace {
            spans.add(
                ADMISSION,
                None,
                from_unix_us(t.admission_us),
                from_unix_us(t.admitted_us.max(t.admission_us)),
                Vec::new(),
            );
        }
        spans
    }

    /// The run span's context: the gateway's spans of the agent's calls are its children.
    pub fn run_context(&self) -> TraceContext {
        self.run
    }

    /// A new span id under the root, for a span with children of its own.
    pub fn child_of_root(&self) -> TraceContext {
        self.root.child()
    }

    /// Adds a finished span under `parent` (the root when `None`).
    pub fn add(
        &self,
        name: &str,
        parent: Option<TraceContext>,
        start: SystemTime,
        end: SystemTime,
        attributes: Vec<(String, AttributeValue)>,
    ) {
        let parent = parent.unwrap_or(self.root);
        self.push(Span {
            context: parent.child(),
            parent_span_id: Some(parent.span_id),
            name: name.to_owned(),
            kind_client: false,
            start,
            end,
            attributes,
            error: None,
        });
    }

    /// Adds a finished span with its own context (one whose children were made already).
    pub fn add_with(
        &self,
        context: TraceContext,
        name: &str,
        start: SystemTime,
        end: SystemTime,
        error: Option<String>,
    ) {
        self.push(Span {
            context,
            parent_span_id: Some(self.root.span_id),
            name: name.to_owned(),
            kind_client: false,
            start,
            end,
            attributes: Vec::new(),
            error,
        });
    }

    fn push(&self, span: Span) {
        let mut spans = self.spans.lock().expect("trace spans");
        if spans.len() < SPANS_IN_MEMORY {
            spans.push(span);
        }
    }

    /// Every span, the root (ended now, carrying `attributes` and `error`) first; the
    /// collection is left empty.
    pub fn finish(
        &self,
        attributes: Vec<(String, AttributeValue)>,
        error: Option<String>,
    ) -> Vec<Span> {
        let mut spans = std::mem::take(&mut *self.spans.lock().expect("trace spans"));
        spans.insert(
            0,
            Span {
                context: self.root,
                parent_span_id: self.caller_span,
                name: EXECUTION.to_owned(),
                kind_client: false,
                start: self.received,
                end: SystemTime::now().max(self.received),
                attributes,
                error,
            },
        );
        spans
    }
}

/// Start and end of the steps of a sandbox start that has them (image prepare, runtime
/// start), as the launcher times them.
#[derive(Default)]
pub struct StartSteps {
    steps: Mutex<Vec<(&'static str, SystemTime, SystemTime)>>,
}

impl StartSteps {
    /// Records that `step` ran from `start` until now.
    pub fn done(&self, step: &'static str, start: SystemTime) {
        let end = SystemTime::now();
        self.steps
            .lock()
            .expect("start steps")
            .push((step, start, end));
    }

    /// The steps recorded, in order.
    pub fn take(&self) -> Vec<(&'static str, SystemTime, SystemTime)> {
        std::mem::take(&mut *self.steps.lock().expect("start steps"))
    }
}

/// Microseconds since the Unix epoch (0 before it).
pub fn unix_us(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

fn from_unix_us(us: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_micros(u64::try_from(us).unwrap_or(0))
}

/// 16 lowercase hex digits as a span id.
fn span_id(hex: &str) -> Option<[u8; 8]> {
    let probe = format!("00-0123456789abcdef0123456789abcdef-{hex}-01");
    TraceContext::parse(&probe).map(|c| c.span_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_continues_the_caller_and_the_run_is_its_child() {
        let caller =
            TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        let mut order = ExecutionTrace::begin(Some(caller));
        order.admitted();
        let wire: ExecutionTrace =
            serde_json::from_value(serde_json::to_value(&order).unwrap()).unwrap();
        let spans = TraceSpans::from_order(Some(&wire));
        let run = spans.run_context();
        let now = SystemTime::now();
        spans.add_with(run, RUN, now, now, None);
        let all = spans.finish(Vec::new(), None);
        let names: Vec<&str> = all.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, [EXECUTION, ADMISSION, RUN]);
        assert!(all.iter().all(|s| s.context.trace_id == caller.trace_id));
        assert_eq!(all[0].parent_span_id, Some(caller.span_id));
        assert_eq!(all[1].parent_span_id, Some(all[0].context.span_id));
        assert_eq!(all[2].parent_span_id, Some(all[0].context.span_id));
    }

    #[test]
    fn without_a_caller_the_trace_is_new_and_the_root_has_no_parent() {
        let spans = TraceSpans::from_order(None);
        let all = spans.finish(Vec::new(), None);
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].parent_span_id, None);
    }
}
