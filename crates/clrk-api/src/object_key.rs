//! The key of a namespaced object: its namespace and its name.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Namespace and name of an agent, secret or egress object, written `namespace/name`.
///
/// In JSON it is two fields, `namespace` and `name`; the control API's answers flatten it
/// into the object they describe.
///
/// ```
/// let key = clrk_api::ObjectKey::new("default", "word-count");
/// assert_eq!(key.to_string(), "default/word-count");
/// assert_eq!(
///     serde_json::to_value(&key).unwrap(),
///     serde_json::json!({"namespace": "default", "name": "word-count"})
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ObjectKey {
    /// The namespace the object was applied in.
    pub namespace: String,
    /// `metadata.name`, unique within its namespace and kind.
    pub name: String,
}

impl ObjectKey {
    /// The key of `name` in `namespace`.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> ObjectKey {
        ObjectKey {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}
