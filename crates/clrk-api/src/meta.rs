//! Object metadata and the naming rule every name in a manifest follows.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The namespace an object lands in when its manifest names none.
pub const DEFAULT_NAMESPACE: &str = "default";

/// `metadata` of every manifest document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ObjectMeta {
    /// DNS-1123 label naming the object within its namespace.
    pub name: String,
    /// Namespace; default `default`.
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// Free-form labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Free-form annotations.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

impl ObjectMeta {
    /// Metadata with just a name, in the default namespace.
    ///
    /// ```
    /// let meta = clrk_api::ObjectMeta::named("word-count");
    /// assert_eq!(meta.namespace, "default");
    /// ```
    pub fn named(name: &str) -> ObjectMeta {
        ObjectMeta {
            name: name.to_owned(),
            namespace: default_namespace(),
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
        }
    }
}

fn default_namespace() -> String {
    DEFAULT_NAMESPACE.to_owned()
}

/// Checks the DNS-1123 label rule: at most 63 lowercase letters, digits or `-`, starting
/// and ending with a letter or digit. The error says what is allowed.
///
/// ```
/// use clrk_api::validate_name;
/// assert!(validate_name("word-count").is_ok());
/// assert!(validate_name("Word_Count").is_err());
/// ```
pub fn validate_name(s: &str) -> Result<(), String> {
    let allowed = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-';
    let alphanumeric = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = s.as_bytes();
    let valid = !bytes.is_empty()
        && bytes.len() <= 63
        && bytes.iter().all(|b| allowed(*b))
        && bytes.first().is_some_and(alphanumeric)
        && bytes.last().is_some_and(alphanumeric);
    if valid {
        Ok(())
    } else {
        Err(format!(
            "\"{s}\" is not a valid name: use at most 63 lowercase letters, digits or '-', \
             starting and ending with a letter or digit"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_dns_labels() {
        for good in ["a", "word-count", "0", "a1-b2", &"a".repeat(63)] {
            assert_eq!(validate_name(good), Ok(()), "{good}");
        }
    }

    #[test]
    fn refuses_everything_else() {
        for bad in [
            "",
            "Word_Count",
            "-a",
            "a-",
            "a.b",
            "a b",
            "é",
            &"a".repeat(64),
        ] {
            let err = validate_name(bad).unwrap_err();
            assert!(err.contains("at most 63 lowercase letters"), "{bad}: {err}");
        }
    }
}
