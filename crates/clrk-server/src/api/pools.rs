use axum::Json;
use axum::extract::{Path, State};

use super::ApiError;
use crate::state::AppState;
use crate::views;

pub async fn list(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    let pools = views::pools(&state).await?;
    Ok(Json(serde_json::json!({ "items": pools })))
}

pub async fn delete(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if name == "default" {
        return Err(ApiError(
            axum::http::StatusCode::CONFLICT,
            "the default worker pool always exists and cannot be deleted".into(),
        ));
    }
    if !state.store.delete_pool(&name).await? {
        return Err(ApiError(
            axum::http::StatusCode::NOT_FOUND,
            format!("workerpool {name} not found"),
        ));
    }
    // Its agents now find no pool (503) rather than a remembered one.
    state.agents_changed();
    Ok(Json(
        serde_json::json!({ "deleted": { "kind": "WorkerPool", "namespace": "default", "name": name } }),
    ))
}
