//! The registry of workers through the API: list them, drain one.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use clrk_wire::{DrainAnswer, ErrorBody, List, WorkerView};

use super::ApiError;
use crate::state::AppState;
use crate::views;

/// The registered workers by pool then name, with their state, load and last heartbeat.
#[utoipa::path(
    get,
    path = "/v1/workers",
    tag = "workers",
    responses((status = 200, description = "The workers", body = List<WorkerView>))
)]
pub async fn list(State(state): State<AppState>) -> Result<Json<List<WorkerView>>, ApiError> {
    let items = state
        .store
        .list_workers()
        .await?
        .into_iter()
        .map(views::worker)
        .collect();
    Ok(Json(List { items }))
}

/// Drains a worker: it takes no new executions and finishes the ones it runs. A worker that
/// is already lost stays lost.
#[utoipa::path(
    post,
    path = "/v1/workers/{name}/drain",
    tag = "workers",
    params(("name" = String, Path, description = "The worker's name")),
    responses(
        (status = 200, description = "The worker's state now", body = DrainAnswer),
        (status = 404, description = "No such worker", body = ErrorBody),
    )
)]
pub async fn drain(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<DrainAnswer>, ApiError> {
    if !state.store.drain_worker(&name).await? {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("worker {name} not found; `clrk workers list` shows the registered workers"),
        ));
    }
    let now = state
        .store
        .list_workers()
        .await?
        .into_iter()
        .find(|w| w.name == name)
        .map_or_else(|| "Draining".to_owned(), |w| w.state.to_string());
    Ok(Json(DrainAnswer {
        worker: name,
        state: now,
    }))
}
