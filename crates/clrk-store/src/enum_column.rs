//! Enums are stored as TEXT in their `Display` form ("Running", "Ready", ...).

use std::str::FromStr;

use rusqlite::types::{FromSqlError, Type};

/// Reads a TEXT column holding an enum's `Display` form.
pub(crate) fn column<T>(row: &rusqlite::Row<'_>, idx: usize) -> rusqlite::Result<T>
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
