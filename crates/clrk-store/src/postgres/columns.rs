//! Reading clrk's column conventions out of PostgreSQL rows: timestamps as BIGINT
//! milliseconds, JSON as TEXT, enums as TEXT in their `Display` form.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio_postgres::Row;

use crate::StoreError;

/// Reads a BIGINT-milliseconds column.
pub(super) fn time(row: &Row, idx: usize) -> Result<DateTime<Utc>, StoreError> {
    from_millis(row.try_get(idx)?)
}

/// Reads a nullable BIGINT-milliseconds column.
pub(super) fn optional_time(row: &Row, idx: usize) -> Result<Option<DateTime<Utc>>, StoreError> {
    row.try_get::<_, Option<i64>>(idx)?
        .map(from_millis)
        .transpose()
}

fn from_millis(millis: i64) -> Result<DateTime<Utc>, StoreError> {
    crate::time::from_millis(millis).ok_or_else(|| StoreError::Corrupt {
        what: "timestamp",
        reason: format!("{millis} ms is out of range"),
    })
}

/// Reads a TEXT column holding JSON.
pub(super) fn json(row: &Row, idx: usize) -> Result<Value, StoreError> {
    let text: &str = row.try_get(idx)?;
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt {
        what: "JSON document",
        reason: e.to_string(),
    })
}

/// Reads a TEXT column holding an enum's `Display` form.
pub(super) fn enum_text<T>(row: &Row, idx: usize) -> Result<T, StoreError>
where
    T: FromStr<Err = String>,
{
    let text: &str = row.try_get(idx)?;
    text.parse().map_err(|reason| StoreError::Corrupt {
        what: "enum value",
        reason,
    })
}

/// A BIGINT column read as an unsigned count; negative values (never written) read as 0.
pub(super) fn count(row: &Row, idx: usize) -> Result<u64, StoreError> {
    Ok(u64::try_from(row.try_get::<_, i64>(idx)?).unwrap_or(0))
}
