//! Secrets: named sets of keys and values that the egress proxy injects into agents' requests.
//! Values are only ever read by name and key, never listed; the database file is mode 0600.

use chrono::{DateTime, Utc};

/// A stored secret without its values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretInfo {
    pub namespace: String,
    pub name: String,
    /// Its keys, sorted.
    pub keys: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}
