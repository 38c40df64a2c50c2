use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;

use super::ApiError;
use crate::apply::{self, ApplyRequest};
use crate::state::AppState;
use crate::views;
use clrk_store::Agent;

pub async fn apply(
    State(state): State<AppState>,
    Json(request): Json<ApplyRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let results = apply::apply(&state, request).await;
    // Even a failed request may have applied its first documents.
    state.agents_changed();
    let results = results?;
    Ok(Json(serde_json::json!({ "results": results })))
}

#[derive(Deserialize)]
pub struct ListQuery {
    namespace: Option<String>,
}

pub async fn list(
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let agents = state.store.list_agents(q.namespace.as_deref())?;
    let items = agents
        .iter()
        .map(|a| views::agent(&state, a))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Json(serde_json::json!({ "items": items })))
}

pub async fn get(
    State(state): State<AppState>,
    Path((namespace, name)): Path<(String, String)>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let agent = find(&state, &namespace, &name)?;
    Ok(Json(views::agent(&state, &agent)?))
}

pub async fn delete(
    State(state): State<AppState>,
    Path((namespace, name)): Path<(String, String)>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let agent = find(&state, &namespace, &name)?;
    state.store.delete_agent(&namespace, &name)?;
    let stopped = state
        .dispatcher
        .stop_agent(&namespace, &name, "stopped: the agent was deleted");
    state.agents_changed();
    tracing::info!(%namespace, %name, stopped, "agent deleted");
    Ok(Json(serde_json::json!({
        "deleted": { "kind": agent.kind, "namespace": namespace, "name": name }
    })))
}

#[derive(Deserialize)]
pub struct InvocationsQuery {
    limit: Option<usize>,
}

pub async fn invocations(
    State(state): State<AppState>,
    Path((namespace, name)): Path<(String, String)>,
    Query(q): Query<InvocationsQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    find(&state, &namespace, &name)?;
    let executions = state
        .store
        .executions(&namespace, &name, q.limit.unwrap_or(20).min(1000))?;
    let items: Vec<_> = executions.iter().map(views::execution).collect();
    Ok(Json(serde_json::json!({ "items": items })))
}

/// The stored agent, or the 404 every agent route answers when there is none.
pub fn find(state: &AppState, namespace: &str, name: &str) -> Result<Agent, ApiError> {
    state
        .store
        .get_agent(namespace, name)?
        .ok_or_else(|| not_found(namespace, name))
}

fn not_found(namespace: &str, name: &str) -> ApiError {
    ApiError(
        StatusCode::NOT_FOUND,
        format!("agent {namespace}/{name} not found: see clrk agents list -A"),
    )
}
