//! Egress objects through the API (list, get, delete; apply goes through `/v1/apply`) and the
//! egress transactions recorded for an agent.

use std::str::FromStr as _;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use clrk_api::Kind;
use clrk_store::EgressObject;
use clrk_wire::{Deleted, EgressRecord, ErrorBody, List, ObjectKey, ObjectRef};
use serde::Deserialize;

use super::ApiError;
use super::agents::{AgentPath, ListQuery};
use crate::state::AppState;
use crate::views;

/// Records returned when the request names no limit.
const DEFAULT_RECORDS: usize = 50;
/// The most records one request returns.
const MAX_RECORDS: usize = 1000;

/// Egress gateways, routes and policies of one namespace, or of all.
#[utoipa::path(
    get,
    path = "/v1/egress",
    tag = "egress",
    params(("namespace" = Option<String>, Query, description = "Only this namespace; all without it")),
    responses((status = 200, description = "The egress objects", body = List<clrk_wire::EgressObject>))
)]
pub async fn list(
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<List<clrk_wire::EgressObject>>, ApiError> {
    let references = views::References::now(&state).await?;
    let items = state
        .store
        .egress_objects(q.namespace.as_deref())
        .await?
        .iter()
        .map(|o| views::egress_object(&references, o))
        .collect();
    Ok(Json(List { items }))
}

/// The `{namespace}/{kind}/{name}` of the routes about one egress object.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct EgressPath {
    /// The object's namespace.
    namespace: String,
    /// `EgressGateway`, `EgressL4Route`, `CredentialInjectionPolicy` or `AIProviderRoute`,
    /// or the same in lowercase.
    kind: String,
    /// The object's name.
    name: String,
}

/// One egress object, its manifest with secrets redacted.
#[utoipa::path(
    get,
    path = "/v1/egress/{namespace}/{kind}/{name}",
    tag = "egress",
    params(EgressPath),
    responses(
        (status = 200, description = "The object", body = clrk_wire::EgressObject),
        (status = 404, description = "No such object, or not an egress kind", body = ErrorBody),
    )
)]
pub async fn get(
    State(state): State<AppState>,
    Path((namespace, kind, name)): Path<(String, String, String)>,
) -> Result<Json<clrk_wire::EgressObject>, ApiError> {
    let object = find(&state, &namespace, egress_kind(&kind)?, &name).await?;
    let references = views::References::now(&state).await?;
    Ok(Json(views::egress_object(&references, &object)))
}

/// Deletes an egress object.
#[utoipa::path(
    delete,
    path = "/v1/egress/{namespace}/{kind}/{name}",
    tag = "egress",
    params(EgressPath),
    responses(
        (status = 200, description = "What was deleted", body = Deleted),
        (status = 404, description = "No such object, or not an egress kind", body = ErrorBody),
    )
)]
pub async fn delete(
    State(state): State<AppState>,
    Path((namespace, kind, name)): Path<(String, String, String)>,
) -> Result<Json<Deleted>, ApiError> {
    let kind = egress_kind(&kind)?;
    if !state
        .store
        .delete_egress_object(&namespace, kind.as_str(), &name)
        .await?
    {
        return Err(not_found(&namespace, kind, &name));
    }
    tracing::info!(%namespace, kind = %kind, %name, "egress object deleted");
    Ok(Json(Deleted {
        deleted: ObjectRef {
            kind: kind.as_str().to_owned(),
            key: ObjectKey::new(namespace, name),
        },
    }))
}

#[derive(Deserialize)]
pub struct RecordsQuery {
    limit: Option<usize>,
}

/// An agent's latest egress transactions, newest first.
#[utoipa::path(
    get,
    path = "/v1/agents/{namespace}/{name}/egress",
    tag = "egress",
    params(AgentPath, ("limit" = Option<usize>, Query, description = "At most this many (default 50, at most 1000)")),
    responses(
        (status = 200, description = "The transactions", body = List<EgressRecord>),
        (status = 404, description = "No such agent", body = ErrorBody),
    )
)]
pub async fn records(
    State(state): State<AppState>,
    Path(ObjectKey { namespace, name }): Path<ObjectKey>,
    Query(q): Query<RecordsQuery>,
) -> Result<Json<List<EgressRecord>>, ApiError> {
    super::agents::find(&state, &namespace, &name).await?;
    let limit = q.limit.unwrap_or(DEFAULT_RECORDS).min(MAX_RECORDS);
    let items = state
        .store
        .egress_records(&namespace, &name, limit)
        .await?
        .iter()
        .map(views::egress_record)
        .collect();
    Ok(Json(List { items }))
}

/// The kind in a URL (`EgressGateway` or `egressgateway`), refused unless it is an egress kind.
fn egress_kind(text: &str) -> Result<Kind, ApiError> {
    match Kind::from_str(text) {
        Ok(kind) if kind.is_egress() => Ok(kind),
        _ => Err(ApiError(
            StatusCode::NOT_FOUND,
            format!(
                "{text:?} is not an egress kind: use EgressGateway, EgressL4Route, \
                 CredentialInjectionPolicy or AIProviderRoute"
            ),
        )),
    }
}

async fn find(
    state: &AppState,
    namespace: &str,
    kind: Kind,
    name: &str,
) -> Result<EgressObject, ApiError> {
    state
        .store
        .egress_objects(Some(namespace))
        .await?
        .into_iter()
        .find(|o| o.kind == kind.as_str() && o.name == name)
        .ok_or_else(|| not_found(namespace, kind, name))
}

fn not_found(namespace: &str, kind: Kind, name: &str) -> ApiError {
    ApiError(
        StatusCode::NOT_FOUND,
        format!(
            "{} {namespace}/{name} not found: see clrk egress list -A",
            kind.lower()
        ),
    )
}
