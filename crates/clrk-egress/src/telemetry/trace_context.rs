//! W3C trace context (`traceparent`): parsing the header an agent sends and minting the ids of
//! the spans the gateway records, so its spans join the agent's trace when there is one.
//!
//! See <https://www.w3.org/TR/trace-context/#traceparent-header>.

use std::fmt::Write as _;

/// Length of a version-00 `traceparent` value: `00-<32 hex>-<16 hex>-<2 hex>`.
const TRACEPARENT_LEN: usize = 55;

/// The position of one span in a distributed trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    /// The trace every span of one request tree shares; never all zeros.
    pub trace_id: [u8; 16],
    /// This span's id; never all zeros.
    pub span_id: [u8; 8],
    /// Whether the caller asked for the trace to be recorded (flag bit 0).
    pub sampled: bool,
}

impl TraceContext {
    /// Parses a `traceparent` header value.
    ///
    /// Version `00` must be exactly four fields; a later version may carry more fields after a
    /// `-`, which are ignored as the spec asks. Uppercase hex, all-zero ids, version `ff` and
    /// wrong lengths are rejected.
    ///
    /// ```
    /// use clrk_egress::TraceContext;
    /// let ctx =
    ///     TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
    /// assert!(ctx.sampled);
    /// let zero_trace = "00-00000000000000000000000000000000-00f067aa0ba902b7-01";
    /// assert!(TraceContext::parse(zero_trace).is_none());
    /// ```
    pub fn parse(traceparent: &str) -> Option<TraceContext> {
        // Surrounding whitespace can appear when the header was folded or joined by a proxy.
        let value = traceparent.trim_matches([' ', '\t']).as_bytes();
        if value.len() < TRACEPARENT_LEN {
            return None;
        }
        let version = hex_byte(&value[0..2])?;
        if version == 0xff {
            return None;
        }
        if version == 0 && value.len() != TRACEPARENT_LEN {
            return None;
        }
        if value.len() > TRACEPARENT_LEN && value[TRACEPARENT_LEN] != b'-' {
            return None;
        }
        if value[2] != b'-' || value[35] != b'-' || value[52] != b'-' {
            return None;
        }
        let mut trace_id = [0u8; 16];
        decode_hex(&value[3..35], &mut trace_id)?;
        let mut span_id = [0u8; 8];
        decode_hex(&value[36..52], &mut span_id)?;
        let flags = hex_byte(&value[53..55])?;
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        Some(TraceContext {
            trace_id,
            span_id,
            sampled: flags & 0x01 != 0,
        })
    }

    /// A new root context with random ids, sampled.
    ///
    /// ```
    /// use clrk_egress::TraceContext;
    /// let root = TraceContext::new_root();
    /// assert!(root.sampled);
    /// ```
    pub fn new_root() -> TraceContext {
        TraceContext {
            trace_id: random_nonzero(),
            span_id: random_nonzero(),
            sampled: true,
        }
    }

    /// A child of this context: the same trace and sampling decision, a new random span id.
    ///
    /// ```
    /// use clrk_egress::TraceContext;
    /// let root = TraceContext::new_root();
    /// assert_eq!(root.child().trace_id, root.trace_id);
    /// ```
    pub fn child(&self) -> TraceContext {
        TraceContext {
            trace_id: self.trace_id,
            span_id: random_nonzero(),
            sampled: self.sampled,
        }
    }

    /// The `traceparent` header value of this context (version `00`).
    ///
    /// ```
    /// use clrk_egress::TraceContext;
    /// let ctx = TraceContext::new_root();
    /// assert_eq!(TraceContext::parse(&ctx.header_value()), Some(ctx));
    /// ```
    pub fn header_value(&self) -> String {
        let mut out = String::with_capacity(TRACEPARENT_LEN);
        out.push_str("00-");
        push_hex(&mut out, &self.trace_id);
        out.push('-');
        push_hex(&mut out, &self.span_id);
        out.push_str(if self.sampled { "-01" } else { "-00" });
        out
    }
}

/// `bytes` as lowercase hex, as trace and span ids are written.
///
/// ```
/// assert_eq!(clrk_egress::hex_id(&[0x00, 0xf0, 0x67]), "00f067");
/// ```
pub fn hex_id(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    push_hex(&mut out, bytes);
    out
}

/// Random bytes that are not all zero: an all-zero id means "invalid" in W3C trace context.
fn random_nonzero<const N: usize>() -> [u8; N] {
    loop {
        let id: [u8; N] = rand::random();
        if id.iter().any(|&b| b != 0) {
            return id;
        }
    }
}

fn push_hex(out: &mut String, bytes: &[u8]) {
    for b in bytes {
        // Writing to a String cannot fail.
        let _ = write!(out, "{b:02x}");
    }
}

/// Decodes lowercase hex into `out`; `None` on any other character.
fn decode_hex(hex: &[u8], out: &mut [u8]) -> Option<()> {
    for (byte, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        *byte = hex_byte(pair)?;
    }
    Some(())
}

fn hex_byte(pair: &[u8]) -> Option<u8> {
    Some((hex_digit(pair[0])? << 4) | hex_digit(pair[1])?)
}

/// The spec allows only lowercase hex digits in `traceparent`.
fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_a_valid_header() {
        let ctx = TraceContext::parse(VALID).unwrap();
        assert_eq!(
            ctx.trace_id,
            [
                0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e,
                0x47, 0x36
            ]
        );
        assert_eq!(
            ctx.span_id,
            [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]
        );
        assert!(ctx.sampled);

        let unsampled =
            TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00").unwrap();
        assert!(!unsampled.sampled);
        // Other flag bits do not matter for sampling.
        let other_flags =
            TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03").unwrap();
        assert!(other_flags.sampled);
        assert_eq!(TraceContext::parse(&format!(" {VALID}\t")), Some(ctx));
    }

    #[test]
    fn accepts_future_versions_with_extra_fields() {
        let future =
            "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-holds";
        assert!(TraceContext::parse(future).is_some());
        let glued = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x";
        assert!(TraceContext::parse(glued).is_none());
    }

    #[test]
    fn rejects_invalid_headers() {
        let invalid = [
            "",
            "00",
            // Uppercase hex.
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",
            // All-zero trace id and span id.
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            // Forbidden version.
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            // Version 00 with trailing data.
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            // Short trace id, long span id.
            "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
            // Wrong separators and non-hex characters.
            "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
            // Multi-byte characters where hex belongs must not panic.
            "00-4bf92f3577b34da6a3ce929d0e0e47é-00f067aa0ba902b7-01",
        ];
        for header in invalid {
            assert_eq!(TraceContext::parse(header), None, "{header:?}");
        }
    }

    #[test]
    fn header_value_round_trips() {
        assert_eq!(TraceContext::parse(VALID).unwrap().header_value(), VALID);
        let root = TraceContext::new_root();
        assert!(root.sampled);
        assert_eq!(TraceContext::parse(&root.header_value()), Some(root));
        let unsampled = TraceContext {
            sampled: false,
            ..root
        };
        assert!(unsampled.header_value().ends_with("-00"));
        assert_eq!(
            TraceContext::parse(&unsampled.header_value()),
            Some(unsampled)
        );
    }

    #[test]
    fn child_keeps_trace_id_and_sampling() {
        let parent = TraceContext::parse(VALID).unwrap();
        let child = parent.child();
        assert_eq!(child.trace_id, parent.trace_id);
        assert_ne!(child.span_id, parent.span_id);
        assert_ne!(child.span_id, [0; 8]);
        assert_eq!(child.sampled, parent.sampled);
        assert_ne!(
            TraceContext::new_root().trace_id,
            TraceContext::new_root().trace_id
        );
    }
}
