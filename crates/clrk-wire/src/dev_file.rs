//! `dev.json`: where a running `clrk dev` answers, for the commands run next to it.

use serde::{Deserialize, Serialize};

/// What `clrk dev` writes to `$CLRK_DIR/dev.json` (mode 0600) and removes when it stops.
///
/// ```
/// let file: clrk_wire::DevFile = serde_json::from_str(
///     r#"{"ingress": "http://127.0.0.1:18080", "api": "http://127.0.0.1:17070", "token": "t"}"#,
/// ).unwrap();
/// assert_eq!(file.api, "http://127.0.0.1:17070");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DevFile {
    /// Ingress base URL.
    pub ingress: String,
    /// Control API base URL.
    pub api: String,
    /// Bearer token for the control API.
    pub token: String,
    /// The `--metrics` listener's base URL, when `clrk dev` has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<String>,
}
