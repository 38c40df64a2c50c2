//! The control API (HTTP/JSON, bearer token): apply, agents, logs, invocations, traces, pools,
//! workers, secrets, egress objects and egress records, its OpenAPI document, and `/metrics`.
//!
//! Every route is added with `routes!`, which takes its method and path from the handler's
//! `#[utoipa::path]`, so the router and the document list the same routes.

pub(crate) mod agents;
pub(crate) mod auth;
mod egress;
mod images;
mod logs;
mod openapi;
mod pools;
mod secrets;
mod traces;
mod workers;

use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json, Router};
use clrk_wire::ErrorBody;
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ServerError;
use crate::metrics::{Exposition, METRICS};
use crate::state::AppState;

/// The control API router, `/metrics` with `metrics`' families among its routes; every route
/// requires `Authorization: Bearer <token>`.
pub fn router(state: AppState, token: String, metrics: &Exposition) -> Router {
    let (router, document) = routes().split_for_parts();
    let document = openapi::Document(Arc::from(
        document.to_json().expect("the OpenAPI document serialises"),
    ));
    router
        .route(METRICS, metrics.route())
        .layer(Extension(document))
        .layer(axum::middleware::from_fn_with_state(
            auth::Token::new(token),
            auth::require_token,
        ))
        .with_state(state)
}

fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(agents::apply))
        .routes(routes!(agents::list))
        .routes(routes!(agents::get, agents::delete))
        .routes(routes!(agents::invocations))
        .routes(routes!(logs::logs))
        .routes(routes!(traces::traces))
        .routes(routes!(egress::records))
        .routes(routes!(egress::list))
        .routes(routes!(egress::get, egress::delete))
        .routes(routes!(images::list))
        .routes(routes!(images::import))
        .routes(routes!(images::prune))
        .routes(routes!(secrets::list))
        .routes(routes!(secrets::set, secrets::delete))
        .routes(routes!(pools::list))
        .routes(routes!(pools::delete))
        .routes(routes!(workers::list))
        .routes(routes!(workers::drain))
        .routes(routes!(openapi::document))
}

/// Errors as `{"error": "..."}` with the status that fits.
pub struct ApiError(pub StatusCode, pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(ErrorBody { error: self.1 })).into_response()
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
