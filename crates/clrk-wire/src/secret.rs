//! `/v1/secrets`: values go in, only names and keys come out.

use std::collections::BTreeMap;

use clrk_api::ObjectKey;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Body of `PUT /v1/secrets/{namespace}/{name}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SetSecretRequest {
    /// Key → base64 of the value.
    pub data: BTreeMap<String, String>,
}

/// Answer of `PUT /v1/secrets/{namespace}/{name}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SetSecretResponse {
    pub secret: SecretKeys,
    /// `created` or `configured`.
    pub outcome: String,
}

/// A secret's name and keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SecretKeys {
    #[serde(flatten)]
    pub key: ObjectKey,
    /// Its keys, sorted.
    pub keys: Vec<String>,
}

/// One secret as `GET /v1/secrets` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Secret {
    #[serde(flatten)]
    pub key: ObjectKey,
    /// Its keys, sorted.
    pub keys: Vec<String>,
    #[serde(default)]
    pub created_at: String,
    #[serde(default)]
    pub updated_at: String,
}
