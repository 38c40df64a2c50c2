//! Worker pools through the API: list and delete (apply goes through `/v1/apply`).

use axum::Json;
use axum::extract::{Path, State};
use clrk_wire::{Deleted, ErrorBody, List, ObjectKey, ObjectRef, Pool};

use super::ApiError;
use crate::state::AppState;
use crate::views;

/// The worker pools, the implicit `default` pool first when it was never applied.
#[utoipa::path(
    get,
    path = "/v1/pools",
    tag = "pools",
    responses((status = 200, description = "The pools", body = List<Pool>))
)]
pub async fn list(State(state): State<AppState>) -> Result<Json<List<Pool>>, ApiError> {
    let items = views::pools(&state).await?;
    Ok(Json(List { items }))
}

/// Deletes a worker pool; its agents find no pool until it is applied again.
#[utoipa::path(
    delete,
    path = "/v1/pools/{name}",
    tag = "pools",
    params(("name" = String, Path, description = "The pool's name")),
    responses(
        (status = 200, description = "What was deleted", body = Deleted),
        (status = 404, description = "No such pool", body = ErrorBody),
        (status = 409, description = "The default pool cannot be deleted", body = ErrorBody),
    )
)]
pub async fn delete(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Deleted>, ApiError> {
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
    Ok(Json(Deleted {
        deleted: ObjectRef {
            kind: "WorkerPool".into(),
            key: ObjectKey::new(clrk_api::DEFAULT_NAMESPACE, name),
        },
    }))
}
