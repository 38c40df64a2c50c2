//! A span as the gateway records it, and its OTLP protobuf form.

use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1 as proto;

use crate::telemetry::trace_context::{TraceContext, hex_id};

/// The value of a span attribute.
#[derive(Debug, Clone, PartialEq)]
pub enum AttributeValue {
    /// A string, e.g. `gen_ai.request.model`.
    String(String),
    /// An integer, e.g. `gen_ai.usage.input_tokens`.
    Int(i64),
    /// A flag.
    Bool(bool),
}

/// One finished operation, as the gateway records it.
#[derive(Debug, Clone)]
pub struct Span {
    /// The trace this span belongs to and the span's own id.
    pub context: TraceContext,
    /// The span this one is a child of, when it has a parent.
    pub parent_span_id: Option<[u8; 8]>,
    /// What was done, e.g. `chat gpt-4o` or `CONNECT api.example.test`.
    pub name: String,
    /// `SPAN_KIND_CLIENT` when true (a call to another service), otherwise `SPAN_KIND_INTERNAL`.
    pub kind_client: bool,
    /// When the operation started.
    pub start: SystemTime,
    /// When it ended.
    pub end: SystemTime,
    /// Details, keyed by OpenTelemetry semantic-convention names where one exists.
    pub attributes: Vec<(String, AttributeValue)>,
    /// Why the operation failed; `None` leaves the status unset, as for success.
    pub error: Option<String>,
}

impl Span {
    /// The form an execution's trace keeps it in the store.
    pub fn to_record(&self) -> clrk_store::SpanRecord {
        let micros = |t: SystemTime| {
            t.duration_since(UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        };
        let start_unix_us = micros(self.start);
        let attributes = self
            .attributes
            .iter()
            .map(|(key, value)| {
                let value = match value {
                    AttributeValue::String(s) => serde_json::Value::from(s.as_str()),
                    AttributeValue::Int(i) => serde_json::Value::from(*i),
                    AttributeValue::Bool(b) => serde_json::Value::from(*b),
                };
                (key.clone(), value)
            })
            .collect();
        clrk_store::SpanRecord {
            trace_id: hex_id(&self.context.trace_id),
            span_id: hex_id(&self.context.span_id),
            parent_span_id: self.parent_span_id.map(|id| hex_id(&id)),
            name: self.name.clone(),
            start_unix_us,
            duration_us: micros(self.end).saturating_sub(start_unix_us).max(0),
            attributes,
            error: self.error.clone(),
        }
    }
}

/// The resource every exported span belongs to: the service named `service_name`.
pub(super) fn resource(service_name: &str) -> Resource {
    Resource {
        attributes: vec![key_value(
            "service.name".to_string(),
            AttributeValue::String(service_name.to_string()),
        )],
        ..Default::default()
    }
}

/// The protobuf form of `span`.
pub(super) fn to_proto(span: Span) -> proto::Span {
    let kind = if span.kind_client {
        proto::span::SpanKind::Client
    } else {
        proto::span::SpanKind::Internal
    };
    let status = span.error.map(|message| proto::Status {
        message,
        code: proto::status::StatusCode::Error as i32,
    });
    proto::Span {
        trace_id: span.context.trace_id.to_vec(),
        span_id: span.context.span_id.to_vec(),
        parent_span_id: span
            .parent_span_id
            .map(|id| id.to_vec())
            .unwrap_or_default(),
        // The low byte carries the W3C trace flags.
        flags: u32::from(span.context.sampled),
        name: span.name,
        kind: kind as i32,
        start_time_unix_nano: unix_nanos(span.start),
        end_time_unix_nano: unix_nanos(span.end),
        attributes: span
            .attributes
            .into_iter()
            .map(|(key, value)| key_value(key, value))
            .collect(),
        status,
        ..Default::default()
    }
}

fn key_value(key: String, value: AttributeValue) -> KeyValue {
    let value = match value {
        AttributeValue::String(s) => any_value::Value::StringValue(s),
        AttributeValue::Int(i) => any_value::Value::IntValue(i),
        AttributeValue::Bool(b) => any_value::Value::BoolValue(b),
    };
    KeyValue {
        key,
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

/// Nanoseconds since the Unix epoch; times before it (a badly set clock) become 0.
fn unix_nanos(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |since| {
        u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
    })
}
