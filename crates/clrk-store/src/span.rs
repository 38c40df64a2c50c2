//! The spans of an execution's trace (SPECIFICATION §9.7): admission, sandbox start or warm
//! take, the agent's run and each egress call, kept beside the execution and bounded.

use serde_json::{Map, Value};

/// Spans kept per execution: the first this many are stored, later ones dropped.
pub const SPANS_PER_EXECUTION: usize = 256;
/// Attributes kept per span.
pub const ATTRIBUTES_PER_SPAN: usize = 32;
/// Bytes kept of a span's name, of each string attribute and of its error.
pub const SPAN_TEXT_BYTES: usize = 256;

/// One finished operation of an execution's trace.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SpanRecord {
    /// 32 lowercase hex digits.
    pub trace_id: String,
    /// 16 lowercase hex digits.
    pub span_id: String,
    /// The span it is a child of (the caller's span for an execution's root span).
    pub parent_span_id: Option<String>,
    /// What was done: `execution`, `admission`, `sandbox start`, `run`, `GET api.example`.
    pub name: String,
    /// Microseconds since the Unix epoch.
    pub start_unix_us: i64,
    pub duration_us: i64,
    /// Strings, integers and flags, by OpenTelemetry-style key.
    pub attributes: Map<String, Value>,
    /// Why it failed, when it did.
    pub error: Option<String>,
}

impl SpanRecord {
    /// This span with its name, error and attributes held to their caps.
    ///
    /// ```
    /// let mut span = clrk_store::SpanRecord { name: "x".repeat(1000), ..Default::default() };
    /// for i in 0..100 {
    ///     span.attributes.insert(format!("k{i}"), "v".repeat(1000).into());
    /// }
    /// let capped = span.capped();
    /// assert_eq!(capped.name.len(), clrk_store::SPAN_TEXT_BYTES);
    /// assert_eq!(capped.attributes.len(), clrk_store::ATTRIBUTES_PER_SPAN);
    /// ```
    pub fn capped(mut self) -> SpanRecord {
        truncate(&mut self.name);
        if let Some(error) = &mut self.error {
            truncate(error);
        }
        if self.attributes.len() > ATTRIBUTES_PER_SPAN {
            self.attributes = std::mem::take(&mut self.attributes)
                .into_iter()
                .take(ATTRIBUTES_PER_SPAN)
                .collect();
        }
        for value in self.attributes.values_mut() {
            match value {
                Value::String(s) => truncate(s),
                Value::Number(_) | Value::Bool(_) => {}
                other => *other = Value::String(String::new()),
            }
        }
        self
    }
}

/// Cuts `text` to at most [`SPAN_TEXT_BYTES`], at a character boundary.
fn truncate(text: &mut String) {
    if text.len() <= SPAN_TEXT_BYTES {
        return;
    }
    let mut end = SPAN_TEXT_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_cut_at_a_character_boundary_and_objects_become_empty() {
        let mut span = SpanRecord {
            error: Some("é".repeat(200)),
            ..Default::default()
        };
        span.attributes
            .insert("nested".into(), serde_json::json!({"a": 1}));
        span.attributes.insert("n".into(), 7.into());
        let capped = span.capped();
        let error = capped.error.unwrap();
        assert!(error.len() <= SPAN_TEXT_BYTES && error.chars().all(|c| c == 'é'));
        assert_eq!(capped.attributes["nested"], "");
        assert_eq!(capped.attributes["n"], 7);
    }
}
