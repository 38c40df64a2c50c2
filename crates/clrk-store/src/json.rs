//! JSON documents are stored as text in both backends; this keeps that one convention.

use serde_json::Value;

use crate::StoreError;

/// Serialises `value` for a text column.
pub(crate) fn to_text(value: &Value, what: &'static str) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|source| StoreError::Json { what, source })
}
