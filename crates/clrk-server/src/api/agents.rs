use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::header::{ACCEPT, CONTENT_TYPE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::StreamExt as _;
use serde::Deserialize;
use serde_json::json;

use super::ApiError;
use crate::apply::{self, ApplyRequest};
use crate::state::AppState;
use crate::views;
use clrk_store::Agent;

/// The media type of a streamed apply: one JSON object per line, `{"progress": …}` while
/// images are pulled, then `{"results": […]}` or `{"error": …, "status": N}`.
pub const NDJSON: &str = "application/x-ndjson";

pub async fn apply(
    State(state): State<AppState>,
    headers: HeaderMap,
    Json(request): Json<ApplyRequest>,
) -> Response {
    let streamed = headers
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains(NDJSON));
    if !streamed {
        return match apply_and_notify(&state, request, None).await {
            Ok(results) => Json(json!({ "results": results })).into_response(),
            Err(e) => e.into_response(),
        };
    }
    let (progress, events) = tokio::sync::mpsc::unbounded_channel();
    let (done, outcome) = tokio::sync::oneshot::channel();
    // The apply finishes even if the client goes away: it is all or nothing either way.
    tokio::spawn(async move {
        let line = match apply_and_notify(&state, request, Some(progress)).await {
            Ok(results) => json!({ "results": results }),
            Err(ApiError(status, error)) => json!({ "error": error, "status": status.as_u16() }),
        };
        let _ = done.send(line);
    });
    let progress = futures::stream::unfold(events, |mut events| async move {
        let event = events.recv().await?;
        Some((json!({ "progress": event }), events))
    });
    let last = futures::stream::once(async move {
        outcome.await.unwrap_or_else(
            |_| json!({ "error": "the server stopped before the apply finished", "status": 500 }),
        )
    });
    let lines = progress
        .chain(last)
        .map(|line| Ok::<_, std::convert::Infallible>(format!("{line}\n")));
    ([(CONTENT_TYPE, NDJSON)], Body::from_stream(lines)).into_response()
}

async fn apply_and_notify(
    state: &AppState,
    request: ApplyRequest,
    progress: Option<tokio::sync::mpsc::UnboundedSender<apply::PullProgress>>,
) -> Result<Vec<apply::ApplyResult>, ApiError> {
    let results = apply::apply(state, request, &progress).await;
    // Even a failed request may have applied its first documents.
    state.agents_changed();
    Ok(results?)
}

/// `?namespace=NS` of the list routes; all namespaces without it.
#[derive(Deserialize)]
pub struct ListQuery {
    pub namespace: Option<String>,
}

pub async fn list(
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let agents = state.store.list_agents(q.namespace.as_deref()).await?;
    let mut items = Vec::with_capacity(agents.len());
    for a in &agents {
        items.push(views::agent(&state, a).await?);
    }
    Ok(Json(serde_json::json!({ "items": items })))
}

pub async fn get(
    State(state): State<AppState>,
    Path((namespace, name)): Path<(String, String)>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let agent = find(&state, &namespace, &name).await?;
    Ok(Json(views::agent(&state, &agent).await?))
}

pub async fn delete(
    State(state): State<AppState>,
    Path((namespace, name)): Path<(String, String)>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let agent = find(&state, &namespace, &name).await?;
    state.store.delete_agent(&namespace, &name).await?;
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
    find(&state, &namespace, &name).await?;
    let executions = state
        .store
        .executions(&namespace, &name, q.limit.unwrap_or(20).min(1000))
        .await?;
    let items: Vec<_> = executions.iter().map(views::execution).collect();
    Ok(Json(serde_json::json!({ "items": items })))
}

/// The stored agent, or the 404 every agent route answers when there is none.
pub async fn find(state: &AppState, namespace: &str, name: &str) -> Result<Agent, ApiError> {
    state
        .store
        .get_agent(namespace, name)
        .await?
        .ok_or_else(|| not_found(namespace, name))
}

fn not_found(namespace: &str, name: &str) -> ApiError {
    ApiError(
        StatusCode::NOT_FOUND,
        format!("agent {namespace}/{name} not found: see clrk agents list -A"),
    )
}
