//! Reading clrk's column conventions out of SQLite rows: timestamps as integer milliseconds,
//! JSON as TEXT, enums as TEXT in their `Display` form.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use rusqlite::Row;
use rusqlite::types::{FromSqlError, Type};
use serde_json::Value;

/// Reads an integer-milliseconds column.
pub(super) fn time(row: &Row<'_>, idx: usize) -> rusqlite::Result<DateTime<Utc>> {
    from_millis(row.get(idx)?, idx)
}

/// Reads a nullable integer-milliseconds column.
pub(super) fn optional_time(row: &Row<'_>, idx: usize) -> rusqlite::Result<Option<DateTime<Utc>>> {
    row.get::<_, Option<i64>>(idx)?
        .map(|m| from_millis(m, idx))
        .transpose()
}

fn from_millis(millis: i64, idx: usize) -> rusqlite::Result<DateTime<Utc>> {
    crate::time::from_millis(millis).ok_or(rusqlite::Error::IntegralValueOutOfRange(idx, millis))
}

/// Reads a TEXT column holding JSON.
pub(super) fn json(row: &Row<'_>, idx: usize) -> rusqlite::Result<Value> {
    let text: String = row.get(idx)?;
    serde_json::from_str(&text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(idx, Type::Text, FromSqlError::other(e).into())
    })
}

/// Reads a TEXT column holding an enum's `Display` form.
pub(super) fn enum_text<T>(row: &Row<'_>, idx: usize) -> rusqlite::Result<T>
where
    T: FromStr<Err = String>,
{
    let text: String = row.get(idx)?;
    text.parse().map_err(|e: String| {
        rusqlite::Error::FromSqlConversionFailure(
            idx,
            Type::Text,
            FromSqlError::Other(e.into()).into(),
        )
    })
}

/// Reads a count column: never negative.
pub(super) fn read_count(row: &Row<'_>, idx: usize) -> rusqlite::Result<u64> {
    let value: i64 = row.get(idx)?;
    u64::try_from(value).map_err(|_| rusqlite::Error::IntegralValueOutOfRange(idx, value))
}

/// Reads a nullable count column.
pub(super) fn optional_count(row: &Row<'_>, idx: usize) -> rusqlite::Result<Option<u64>> {
    row.get::<_, Option<i64>>(idx)?
        .map(|value| {
            u64::try_from(value).map_err(|_| rusqlite::Error::IntegralValueOutOfRange(idx, value))
        })
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_range_millis_is_an_error_not_a_panic() {
        assert!(from_millis(i64::MAX, 3).is_err());
    }
}
