//! Field checks shared by the agent and the egress validation rules: a name that must be a
//! DNS label, a duration that must be positive.
//!
//! They sit below both `validate` and `egress_validate` so neither imports the other's
//! helpers.

use crate::duration::{GoDuration, zero_message};
use crate::field_error::FieldError;
use crate::meta::validate_name;

/// The value at `path` must be a valid object name.
pub(crate) fn name(path: &str, value: &str) -> Result<(), FieldError> {
    validate_name(value).map_err(|message| FieldError::new(path, message))
}

/// The duration at `path` must be more than zero.
pub(crate) fn positive(path: &str, d: GoDuration) -> Result<(), FieldError> {
    if d.is_zero() {
        return Err(FieldError::new(path, zero_message(d)));
    }
    Ok(())
}
