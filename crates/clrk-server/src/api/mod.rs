//! The control API (HTTP/JSON, bearer token): apply, agents, logs, invocations, pools, secrets,
//! egress objects and egress records.

mod agents;
mod auth;
mod egress;
mod images;
mod logs;
mod pools;
mod secrets;

use axum::Json;
use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};

use crate::error::ServerError;
use crate::state::AppState;

/// The control API router; every route requires `Authorization: Bearer <token>`.
pub fn router(state: AppState, token: String) -> Router {
    Router::new()
        .route("/v1/apply", post(agents::apply))
        .route("/v1/agents", get(agents::list))
        .route(
            "/v1/agents/{namespace}/{name}",
            get(agents::get).delete(agents::delete),
        )
        .route(
            "/v1/agents/{namespace}/{name}/invocations",
            get(agents::invocations),
        )
        .route("/v1/agents/{namespace}/{name}/logs", get(logs::logs))
        .route("/v1/agents/{namespace}/{name}/egress", get(egress::records))
        .route("/v1/egress", get(egress::list))
        .route(
            "/v1/egress/{namespace}/{kind}/{name}",
            get(egress::get).delete(egress::delete),
        )
        .route("/v1/images", get(images::list))
        .route("/v1/images/import", post(images::import))
        .route("/v1/images/prune", post(images::prune))
        .route("/v1/secrets", get(secrets::list))
        .route(
            "/v1/secrets/{namespace}/{name}",
            axum::routing::put(secrets::set).delete(secrets::delete),
        )
        .route("/v1/pools", get(pools::list))
        .route("/v1/pools/{name}", delete(pools::delete))
        .layer(axum::middleware::from_fn_with_state(
            auth::Token::new(token),
            auth::require_token,
        ))
        .with_state(state)
}

/// Errors as `{"error": "..."}` with the status that fits.
pub struct ApiError(pub StatusCode, pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

impl From<ServerError> for ApiError {
    fn from(e: ServerError) -> ApiError {
        let status = match &e {
            ServerError::Apply(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ServerError::NotFound(_) => StatusCode::NOT_FOUND,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(status, e.to_string())
    }
}

impl From<clrk_store::StoreError> for ApiError {
    fn from(e: clrk_store::StoreError) -> ApiError {
        ServerError::from(e).into()
    }
}
