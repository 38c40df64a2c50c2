//! `clrk agents ...`: one module per subcommand.

pub mod delete;
pub mod egress;
pub mod get;
pub mod invocations;
pub mod list;
pub mod logs;

use serde_json::Value;

/// The text of a field of an agent's spec, e.g. `/template/spec/image`; `-` when unset.
///
/// ```
/// let spec = serde_json::json!({"timeout": "100s", "maxConcurrent": 2});
/// assert_eq!(clrk::commands::agents::spec_field(&spec, "/timeout"), "100s");
/// assert_eq!(clrk::commands::agents::spec_field(&spec, "/maxConcurrent"), "2");
/// assert_eq!(clrk::commands::agents::spec_field(&spec, "/schedule"), "-");
/// ```
pub fn spec_field(spec: &Value, pointer: &str) -> String {
    match spec.pointer(pointer) {
        None | Some(Value::Null) => "-".to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}
