//! Egress gateway configuration: gateways, routes and policies, stored as their manifests.

use chrono::{DateTime, Utc};
use serde_json::Value;

/// One stored egress object.
#[derive(Debug, Clone, PartialEq)]
pub struct EgressObject {
    pub namespace: String,
    /// `EgressGateway`, `EgressL4Route`, `CredentialInjectionPolicy` or `AIProviderRoute`.
    pub kind: String,
    pub name: String,
    /// The manifest last applied, as stored.
    pub spec: Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}
