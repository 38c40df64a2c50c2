//! Secrets through the API: set (values in, never out), list (names and keys), delete.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use base64::Engine as _;
use clrk_wire::{
    Deleted, ErrorBody, List, ObjectKey, ObjectRef, Secret, SecretKeys, SetSecretRequest,
    SetSecretResponse,
};

use super::ApiError;
use super::agents::ListQuery;
use crate::state::AppState;

/// A secret's values are at most this large in all, so that nobody stores a file by mistake.
const MAX_SECRET_BYTES: usize = 1024 * 1024;

/// The `{namespace}/{name}` of the routes about one secret.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct SecretPath {
    /// The secret's namespace.
    namespace: String,
    /// The secret's name.
    name: String,
}

/// Creates or replaces a secret; its values never come back out of the API.
#[utoipa::path(
    put,
    path = "/v1/secrets/{namespace}/{name}",
    tag = "secrets",
    params(SecretPath),
    request_body = SetSecretRequest,
    responses(
        (status = 200, description = "The secret's keys", body = SetSecretResponse),
        (status = 422, description = "A bad name, key or value, or over 1 MiB in all", body = ErrorBody),
    )
)]
pub async fn set(
    State(state): State<AppState>,
    Path(ObjectKey { namespace, name }): Path<ObjectKey>,
    Json(body): Json<SetSecretRequest>,
) -> Result<Json<SetSecretResponse>, ApiError> {
    let invalid = |msg: String| ApiError(StatusCode::UNPROCESSABLE_ENTITY, msg);
    for (what, value) in [("namespace", &namespace), ("name", &name)] {
        clrk_api::validate_name(value).map_err(|e| invalid(format!("secret {what}: {e}")))?;
    }
    if body.data.is_empty() {
        return Err(invalid(format!(
            "secret {name}: no keys given: pass --from-literal KEY=VALUE, --from-file KEY=PATH or --from-env KEY=VAR"
        )));
    }
    let mut data = BTreeMap::new();
    for (key, encoded) in body.data {
        if key.is_empty()
            || !key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(invalid(format!(
                "secret {name}: key {key:?} must be letters, digits, '-', '_' or '.'"
            )));
        }
        let value = base64::engine::general_purpose::STANDARD
            .decode(&encoded)
            .map_err(|_| invalid(format!("secret {name}: the value of {key} is not base64")))?;
        data.insert(key, value);
    }
    let size: usize = data.values().map(Vec::len).sum();
    if size > MAX_SECRET_BYTES {
        return Err(invalid(format!(
            "secret {name}: its values hold {size} bytes, over the limit of {MAX_SECRET_BYTES}"
        )));
    }
    let created = state.store.set_secret(&namespace, &name, &data).await?;
    Ok(Json(SetSecretResponse {
        secret: SecretKeys {
            key: ObjectKey::new(namespace, name),
            keys: data.into_keys().collect(),
        },
        outcome: if created { "created" } else { "configured" }.into(),
    }))
}

/// Secrets of one namespace, or of all: names and keys, never values.
#[utoipa::path(
    get,
    path = "/v1/secrets",
    tag = "secrets",
    params(("namespace" = Option<String>, Query, description = "Only this namespace; all without it")),
    responses((status = 200, description = "The secrets", body = List<Secret>))
)]
pub async fn list(
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<List<Secret>>, ApiError> {
    let items = state
        .store
        .list_secrets(q.namespace.as_deref())
        .await?
        .into_iter()
        .map(|s| Secret {
            key: ObjectKey::new(s.namespace, s.name),
            keys: s.keys,
            created_at: s.created_at.to_rfc3339(),
            updated_at: s.updated_at.to_rfc3339(),
        })
        .collect();
    Ok(Json(List { items }))
}

/// Deletes a secret.
#[utoipa::path(
    delete,
    path = "/v1/secrets/{namespace}/{name}",
    tag = "secrets",
    params(SecretPath),
    responses(
        (status = 200, description = "What was deleted", body = Deleted),
        (status = 404, description = "No such secret", body = ErrorBody),
    )
)]
pub async fn delete(
    State(state): State<AppState>,
    Path(ObjectKey { namespace, name }): Path<ObjectKey>,
) -> Result<Json<Deleted>, ApiError> {
    if !state.store.delete_secret(&namespace, &name).await? {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("secret {namespace}/{name} not found: see clrk secret list -A"),
        ));
    }
    Ok(Json(Deleted {
        deleted: ObjectRef {
            kind: "Secret".into(),
            key: ObjectKey::new(namespace, name),
        },
    }))
}
