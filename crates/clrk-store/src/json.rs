//! JSON documents are stored as TEXT; these helpers keep that one convention.

use rusqlite::types::{FromSqlError, Type};
use serde_json::Value;

use crate::StoreError;

/// Serialises `value` for a TEXT column.
pub(crate) fn to_text(value: &Value, what: &'static str) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|source| StoreError::Json { what, source })
}

/// Reads a TEXT column holding JSON.
pub(crate) fn column(row: &rusqlite::Row<'_>, idx: usize) -> rusqlite::Result<Value> {
    let text: String = row.get(idx)?;
    serde_json::from_str(&text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(idx, Type::Text, FromSqlError::other(e).into())
    })
}
