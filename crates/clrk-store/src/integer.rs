//! Counts (bytes, tokens, milliseconds, limits) in the signed 64-bit integer columns both
//! backends store them in.

/// A count as a signed 64-bit column value: counts past `i64::MAX` cannot occur, and would be
/// stored as `i64::MAX` rather than wrap negative.
pub(crate) fn saturating_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
