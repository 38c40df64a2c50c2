//! The control API's OpenAPI document, derived from the handlers' `#[utoipa::path]`
//! annotations and the `clrk_wire` types, and the route that serves it.

use std::sync::Arc;

use axum::Extension;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

/// The parts of the document no route carries: title, version, tags and the bearer token.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "clrk control API",
        description = "Apply manifests and inspect agents, executions, logs, images, secrets, \
                       worker pools, workers and egress. Every route wants `Authorization: Bearer <token>`; \
                       `clrk dev` writes the token to `$CLRK_DIR/dev.json`."
    ),
    modifiers(&BearerToken),
    security(("bearer" = [])),
    tags(
        (name = "apply", description = "Create and update objects from manifests"),
        (name = "agents", description = "TaskAgents and DaemonAgents, their executions and logs"),
        (name = "egress", description = "Egress objects and the transactions agents made through them"),
        (name = "images", description = "The server's image store"),
        (name = "secrets", description = "Secrets: values in, names and keys out"),
        (name = "pools", description = "Worker pools"),
        (name = "workers", description = "The registered workers: list, drain"),
        (name = "openapi", description = "This document"),
    )
)]
pub struct ApiDoc;

struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The document as served, rendered once when the router is built.
#[derive(Clone)]
pub struct Document(pub Arc<str>);

/// This document.
#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    tag = "openapi",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API", content_type = "application/json"))
)]
pub async fn document(Extension(Document(text)): Extension<Document>) -> impl IntoResponse {
    ([(CONTENT_TYPE, "application/json")], text.to_string())
}
