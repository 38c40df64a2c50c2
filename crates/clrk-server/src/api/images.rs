//! The image store through the API: list, import an uploaded archive, prune.

use std::collections::BTreeMap;
use std::path::PathBuf;

use axum::Json;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use futures::TryStreamExt as _;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_util::io::{StreamReader, SyncIoBridge};

use super::ApiError;
use crate::state::AppState;

/// Revisions by the digest of their image.
async fn users(state: &AppState) -> Result<BTreeMap<String, Vec<String>>, ApiError> {
    let mut users: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (digest, namespace, revision) in state.store.revision_images().await? {
        users
            .entry(digest)
            .or_default()
            .push(format!("{namespace}/{revision}"));
    }
    Ok(users)
}

pub async fn list(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let images = state.images.clone();
    let local = tokio::task::spawn_blocking(move || images.list())
        .await
        .map_err(internal)?
        .map_err(image_error)?;
    let mut users = users(&state).await?;
    let items: Vec<Value> = local
        .into_iter()
        .map(|image| {
            let used_by = users.remove(&image.digest).unwrap_or_default();
            json!({
                "reference": image.reference,
                "digest": image.digest,
                "size": image.size,
                "imported": image.imported,
                "usedBy": used_by,
            })
        })
        .collect();
    Ok(Json(json!({ "items": items })))
}

#[derive(Deserialize)]
pub struct ImportQuery {
    /// The name to load the image under (`--name`); else the names the archive carries.
    name: Option<String>,
    /// The archive's file name on the client, for error messages.
    file: Option<String>,
}

/// Loads the archive in the request body; it is unpacked as it arrives.
pub async fn import(
    State(state): State<AppState>,
    Query(q): Query<ImportQuery>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let file = PathBuf::from(q.file.unwrap_or_else(|| "the uploaded archive".into()));
    let stream = body.into_data_stream().map_err(std::io::Error::other);
    let reader = SyncIoBridge::new(StreamReader::new(stream));
    let images = state.images.clone();
    let imported = tokio::task::spawn_blocking(move || {
        images.import_from(std::io::BufReader::new(reader), &file, q.name.as_deref())
    })
    .await
    .map_err(internal)?
    .map_err(|e| ApiError(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()))?;
    Ok(Json(json!({ "imported": imported })))
}

/// Removes every image no revision uses (imported images stay until deleted by name).
pub async fn prune(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let keep: Vec<String> = users(&state).await?.into_keys().collect();
    let images = state.images.clone();
    let report = tokio::task::spawn_blocking(move || images.prune(&keep))
        .await
        .map_err(internal)?
        .map_err(image_error)?;
    Ok(Json(json!({ "pruned": report })))
}

fn image_error(e: clrk_image::ImageError) -> ApiError {
    ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

fn internal(e: tokio::task::JoinError) -> ApiError {
    ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}
