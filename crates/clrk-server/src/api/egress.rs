//! Egress objects through the API (list, get, delete; apply goes through `/v1/apply`) and the
//! egress transactions recorded for an agent.

use std::str::FromStr as _;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use clrk_api::Kind;
use clrk_store::EgressObject;
use serde::Deserialize;
use serde_json::{Value, json};

use super::ApiError;
use super::agents::ListQuery;
use crate::state::AppState;
use crate::views;

/// Records returned when the request names no limit.
const DEFAULT_RECORDS: usize = 50;
/// The most records one request returns.
const MAX_RECORDS: usize = 1000;

pub async fn list(
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let items: Vec<Value> = state
        .store
        .egress_objects(q.namespace.as_deref())
        .await?
        .iter()
        .map(views::egress_object)
        .collect();
    Ok(Json(json!({ "items": items })))
}

pub async fn get(
    State(state): State<AppState>,
    Path((namespace, kind, name)): Path<(String, String, String)>,
) -> Result<Json<Value>, ApiError> {
    let object = find(&state, &namespace, egress_kind(&kind)?, &name).await?;
    Ok(Json(views::egress_object(&object)))
}

pub async fn delete(
    State(state): State<AppState>,
    Path((namespace, kind, name)): Path<(String, String, String)>,
) -> Result<Json<Value>, ApiError> {
    let kind = egress_kind(&kind)?;
    if !state
        .store
        .delete_egress_object(&namespace, kind.as_str(), &name)
        .await?
    {
        return Err(not_found(&namespace, kind, &name));
    }
    tracing::info!(%namespace, kind = %kind, %name, "egress object deleted");
    Ok(Json(json!({
        "deleted": { "kind": kind.as_str(), "namespace": namespace, "name": name }
    })))
}

#[derive(Deserialize)]
pub struct RecordsQuery {
    limit: Option<usize>,
}

/// An agent's latest egress transactions, newest first.
pub async fn records(
    State(state): State<AppState>,
    Path((namespace, name)): Path<(String, String)>,
    Query(q): Query<RecordsQuery>,
) -> Result<Json<Value>, ApiError> {
    super::agents::find(&state, &namespace, &name).await?;
    let limit = q.limit.unwrap_or(DEFAULT_RECORDS).min(MAX_RECORDS);
    let items: Vec<Value> = state
        .store
        .egress_records(&namespace, &name, limit)
        .await?
        .iter()
        .map(views::egress_record)
        .collect();
    Ok(Json(json!({ "items": items })))
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
