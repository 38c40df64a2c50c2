//! The image store through the API: list, import an uploaded archive, prune.

use std::collections::BTreeMap;
use std::path::PathBuf;

use axum::Json;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use clrk_wire::{ImportResponse, List, LocalImage, PruneResponse};
use futures::TryStreamExt as _;
use serde::Deserialize;
use tokio_util::io::{StreamReader, SyncIoBridge};

use super::ApiError;
use crate::state::AppState;
use crate::views;

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

/// The images the server holds and the revisions that use them.
#[utoipa::path(
    get,
    path = "/v1/images",
    tag = "images",
    responses((status = 200, description = "The images", body = List<LocalImage>))
)]
pub async fn list(State(state): State<AppState>) -> Result<Json<List<LocalImage>>, ApiError> {
    let images = state.images.clone();
    let local = tokio::task::spawn_blocking(move || images.list())
        .await
        .map_err(internal)?
        .map_err(image_error)?;
    let mut users = users(&state).await?;
    let items = local
        .iter()
        .map(|image| LocalImage {
            used_by: users.remove(&image.digest).unwrap_or_default(),
            image: views::image(image),
        })
        .collect();
    Ok(Json(List { items }))
}

#[derive(Deserialize)]
pub struct ImportQuery {
    /// The name to load the image under (`--name`); else the names the archive carries.
    name: Option<String>,
    /// The archive's file name on the client, for error messages.
    file: Option<String>,
}

/// Loads the archive in the request body; it is unpacked as it arrives.
#[utoipa::path(
    post,
    path = "/v1/images/import",
    tag = "images",
    params(
        ("name" = Option<String>, Query, description = "The name to load the image under; else the names the archive carries"),
        ("file" = Option<String>, Query, description = "The archive's file name on the client, for messages"),
    ),
    request_body(content = String, content_type = "application/octet-stream", description = "A docker-archive or OCI layout archive (tar, optionally gzipped)"),
    responses(
        (status = 200, description = "The images loaded", body = ImportResponse),
        (status = 422, description = "The archive cannot be read", body = clrk_wire::ErrorBody),
    )
)]
pub async fn import(
    State(state): State<AppState>,
    Query(q): Query<ImportQuery>,
    body: Body,
) -> Result<Json<ImportResponse>, ApiError> {
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
    Ok(Json(ImportResponse {
        imported: imported.iter().map(views::image).collect(),
    }))
}

/// Removes every image no revision uses (imported images stay until deleted by name).
#[utoipa::path(
    post,
    path = "/v1/images/prune",
    tag = "images",
    responses((status = 200, description = "What was removed", body = PruneResponse))
)]
pub async fn prune(State(state): State<AppState>) -> Result<Json<PruneResponse>, ApiError> {
    let keep: Vec<String> = users(&state).await?.into_keys().collect();
    let images = state.images.clone();
    let report = tokio::task::spawn_blocking(move || images.prune(&keep))
        .await
        .map_err(internal)?
        .map_err(image_error)?;
    Ok(Json(PruneResponse {
        pruned: views::prune_report(&report),
    }))
}

fn image_error(e: clrk_image::ImageError) -> ApiError {
    ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

fn internal(e: tokio::task::JoinError) -> ApiError {
    ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}
