//! Secrets through the API: set (values in, never out), list (names and keys), delete.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Value, json};

use super::ApiError;
use super::agents::ListQuery;
use crate::state::AppState;

/// A secret's values are at most this large in all, so that nobody stores a file by mistake.
const MAX_SECRET_BYTES: usize = 1024 * 1024;

#[derive(Deserialize)]
pub struct SetSecret {
    /// Key → base64 of the value.
    data: BTreeMap<String, String>,
}

pub async fn set(
    State(state): State<AppState>,
    Path((namespace, name)): Path<(String, String)>,
    Json(body): Json<SetSecret>,
) -> Result<Json<Value>, ApiError> {
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
    Ok(Json(json!({
        "secret": { "namespace": namespace, "name": name, "keys": data.keys().collect::<Vec<_>>() },
        "outcome": if created { "created" } else { "configured" },
    })))
}

pub async fn list(
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let items: Vec<Value> = state
        .store
        .list_secrets(q.namespace.as_deref())
        .await?
        .into_iter()
        .map(|s| {
            json!({
                "namespace": s.namespace,
                "name": s.name,
                "keys": s.keys,
                "createdAt": s.created_at.to_rfc3339(),
                "updatedAt": s.updated_at.to_rfc3339(),
            })
        })
        .collect();
    Ok(Json(json!({ "items": items })))
}

pub async fn delete(
    State(state): State<AppState>,
    Path((namespace, name)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    if !state.store.delete_secret(&namespace, &name).await? {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("secret {namespace}/{name} not found: see clrk secret list -A"),
        ));
    }
    Ok(Json(
        json!({ "deleted": { "kind": "Secret", "namespace": namespace, "name": name } }),
    ))
}
