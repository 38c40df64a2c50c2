//! Log lines of executions, numbered by a store-wide, ever-increasing `seq`, with the bytes
//! each execution keeps so an agent's total can be held under a cap without scanning lines.
//! A line costs its text plus [`LOG_ROW_COST`], so empty and short lines count too.

use chrono::{DateTime, Utc};

/// What a stored line costs besides its text: it approximates a row's overhead in the store
/// (seq, ids, stream, time, index entry). Without it an empty line would cost nothing, and an
/// agent printing empty lines would fill the store without ever reaching a log limit.
pub const LOG_ROW_COST: u64 = 64;

/// Bytes a line counts for against log limits: its text plus [`LOG_ROW_COST`].
///
/// ```
/// assert_eq!(clrk_store::log_line_cost(""), clrk_store::LOG_ROW_COST);
/// assert_eq!(clrk_store::log_line_cost("abc"), 3 + clrk_store::LOG_ROW_COST);
/// ```
pub fn log_line_cost(line: &str) -> u64 {
    (line.len() as u64).saturating_add(LOG_ROW_COST)
}

/// A line to append.
#[derive(Debug, Clone, PartialEq)]
pub struct NewLogLine {
    /// Execution that wrote it.
    pub execution_id: String,
    /// Agent namespace.
    pub namespace: String,
    /// Agent name.
    pub agent: String,
    /// `stdout` or `stderr`.
    pub stream: String,
    /// When it was read.
    pub time: DateTime<Utc>,
    /// The text, without its newline.
    pub line: String,
}

/// A stored line.
#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    /// Increases with every line stored; use it as `after_seq` to follow.
    pub seq: i64,
    /// Execution that wrote it.
    pub execution_id: String,
    /// `stdout` or `stderr`.
    pub stream: String,
    /// When it was read.
    pub time: DateTime<Utc>,
    /// The text.
    pub line: String,
}

/// Which lines `logs` returns; the default is all of them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogQuery {
    /// Only the last N lines (after `after_seq` filtering).
    pub tail: Option<usize>,
    /// Only lines with `seq` greater than this.
    pub after_seq: Option<i64>,
}

/// One page of an agent's log in ascending `seq`, for readers that must bound their memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogPage {
    /// Only lines of this execution; `None` for all of the agent's.
    pub execution: Option<String>,
    /// Only lines with `seq` greater than this; `None` from the first line.
    pub after_seq: Option<i64>,
    /// Only lines with `seq` up to this; `None` up to the newest.
    pub up_to_seq: Option<i64>,
    /// At most this many lines.
    pub max_lines: usize,
    /// Stop after the line that reaches this many bytes of text.
    pub max_bytes: usize,
}
