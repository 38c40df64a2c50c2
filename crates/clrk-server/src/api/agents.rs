use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::header::{ACCEPT, CONTENT_TYPE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use clrk_store::{Agent, StoreError};
use clrk_wire::{
    ApplyEvent, ApplyRequest, ApplyResponse, ApplyResult, Deleted, ErrorBody, Execution, List,
    ObjectKey, ObjectRef, PullProgress,
};
use futures::StreamExt as _;
use serde::Deserialize;

use super::ApiError;
use crate::apply;
use crate::state::AppState;
use crate::views;

/// The media type of a streamed apply: one JSON object per line, `{"progress": …}` while
/// images are pulled, then `{"results": […]}` or `{"error": …, "status": N}`.
pub const NDJSON: &str = "application/x-ndjson";

/// Applies manifests: every document is validated before any is applied.
#[utoipa::path(
    post,
    path = "/v1/apply",
    tag = "apply",
    request_body = ApplyRequest,
    responses(
        (status = 200, description = "What applying each document did; with `Accept: application/x-ndjson`, pull progress lines and then the results or the error, one JSON object a line", content(
            (ApplyResponse = "application/json"),
            (ApplyEvent = "application/x-ndjson"),
        )),
        (status = 422, description = "A document is invalid or its image cannot be prepared; nothing after it was applied", body = ErrorBody),
    )
)]
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
            Ok(results) => Json(ApplyResponse { results }).into_response(),
            Err(e) => e.into_response(),
        };
    }
    let (progress, events) = tokio::sync::mpsc::unbounded_channel();
    let (done, outcome) = tokio::sync::oneshot::channel();
    // The apply finishes even if the client goes away: it is all or nothing either way.
    tokio::spawn(async move {
        let line = match apply_and_notify(&state, request, Some(progress)).await {
            Ok(results) => ApplyEvent::Done { results },
            Err(ApiError(status, error)) => ApplyEvent::Failed {
                error,
                status: status.as_u16(),
            },
        };
        let _ = done.send(line);
    });
    let progress = futures::stream::unfold(events, |mut events| async move {
        let event = events.recv().await?;
        Some((ApplyEvent::Progress { progress: event }, events))
    });
    let last = futures::stream::once(async move {
        outcome.await.unwrap_or_else(|_| ApplyEvent::Failed {
            error: "the server stopped before the apply finished".into(),
            status: 500,
        })
    });
    let lines = progress
        .chain(last)
        .map(|line| Ok::<_, std::convert::Infallible>(ndjson_line(&line)));
    ([(CONTENT_TYPE, NDJSON)], Body::from_stream(lines)).into_response()
}

/// One event as a line of newline-delimited JSON.
fn ndjson_line(event: &ApplyEvent) -> String {
    let mut line = serde_json::to_string(event).expect("an apply event serialises");
    line.push('\n');
    line
}

async fn apply_and_notify(
    state: &AppState,
    request: ApplyRequest,
    progress: Option<tokio::sync::mpsc::UnboundedSender<PullProgress>>,
) -> Result<Vec<ApplyResult>, ApiError> {
    let results = apply::apply(state, request, &progress).await;
    // Even a failed request may have applied its first documents.
    state.agents_changed();
    Ok(results?)
}

/// The `{namespace}/{name}` of the routes about one agent, for the OpenAPI document.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct AgentPath {
    /// The agent's namespace.
    namespace: String,
    /// The agent's name.
    name: String,
}

/// `?namespace=NS` of the list routes; all namespaces without it.
#[derive(Deserialize)]
pub struct ListQuery {
    pub namespace: Option<String>,
}

/// Agents of one namespace, or of all.
#[utoipa::path(
    get,
    path = "/v1/agents",
    tag = "agents",
    params(("namespace" = Option<String>, Query, description = "Only this namespace; all without it")),
    responses((status = 200, description = "The agents", body = List<clrk_wire::Agent>))
)]
pub async fn list(
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<List<clrk_wire::Agent>>, ApiError> {
    let agents = state.store.list_agents(q.namespace.as_deref()).await?;
    let references = views::References::now(&state).await?;
    let mut items = Vec::with_capacity(agents.len());
    for a in &agents {
        items.push(views::agent(&state, &references, a).await?);
    }
    Ok(Json(List { items }))
}

/// One agent with its status and revisions.
#[utoipa::path(
    get,
    path = "/v1/agents/{namespace}/{name}",
    tag = "agents",
    params(AgentPath),
    responses(
        (status = 200, description = "The agent", body = clrk_wire::Agent),
        (status = 404, description = "No such agent", body = ErrorBody),
    )
)]
pub async fn get(
    State(state): State<AppState>,
    Path(ObjectKey { namespace, name }): Path<ObjectKey>,
) -> Result<Json<clrk_wire::Agent>, ApiError> {
    let agent = find(&state, &namespace, &name).await?;
    let references = views::References::now(&state).await?;
    Ok(Json(views::agent(&state, &references, &agent).await?))
}

/// Deletes an agent, its revisions and its history, and stops its executions.
#[utoipa::path(
    delete,
    path = "/v1/agents/{namespace}/{name}",
    tag = "agents",
    params(AgentPath),
    responses(
        (status = 200, description = "What was deleted", body = Deleted),
        (status = 404, description = "No such agent", body = ErrorBody),
    )
)]
pub async fn delete(
    State(state): State<AppState>,
    Path(ObjectKey { namespace, name }): Path<ObjectKey>,
) -> Result<Json<Deleted>, ApiError> {
    let agent = find(&state, &namespace, &name).await?;
    state.store.delete_agent(&namespace, &name).await?;
    let stopped = state
        .dispatcher
        .stop_agent(&namespace, &name, "stopped: the agent was deleted")
        .await;
    state.agents_changed();
    tracing::info!(%namespace, %name, stopped, "agent deleted");
    Ok(Json(Deleted {
        deleted: ObjectRef {
            kind: agent.kind,
            key: ObjectKey::new(namespace, name),
        },
    }))
}

#[derive(Deserialize)]
pub struct InvocationsQuery {
    limit: Option<usize>,
}

/// An agent's latest executions, newest first, with those of deleted agents of the same name
/// (marked `agentDeleted`).
#[utoipa::path(
    get,
    path = "/v1/agents/{namespace}/{name}/invocations",
    tag = "agents",
    params(AgentPath, ("limit" = Option<usize>, Query, description = "At most this many (default 20, at most 1000)")),
    responses(
        (status = 200, description = "The executions", body = List<Execution>),
        (status = 404, description = "No agent of that name ever ran", body = ErrorBody),
    )
)]
pub async fn invocations(
    State(state): State<AppState>,
    Path(ObjectKey { namespace, name }): Path<ObjectKey>,
    Query(q): Query<InvocationsQuery>,
) -> Result<Json<List<Execution>>, ApiError> {
    let executions = state
        .store
        .executions(&namespace, &name, q.limit.unwrap_or(20).min(1000))
        .await
        .map_err(|e| history_not_found(e, &namespace, &name))?;
    let items = executions.iter().map(views::execution).collect();
    Ok(Json(List { items }))
}

/// The stored agent, or the 404 every agent route answers when there is none.
pub async fn find(state: &AppState, namespace: &str, name: &str) -> Result<Agent, ApiError> {
    state
        .store
        .get_agent(namespace, name)
        .await?
        .ok_or_else(|| not_found(namespace, name))
}

/// The store's answer for a name without history (never applied, or deleted before it ran)
/// as the 404 of a missing agent.
pub fn history_not_found(e: StoreError, namespace: &str, name: &str) -> ApiError {
    match e {
        StoreError::AgentNotFound { .. } => not_found(namespace, name),
        e => e.into(),
    }
}

fn not_found(namespace: &str, name: &str) -> ApiError {
    ApiError(
        StatusCode::NOT_FOUND,
        format!("agent {namespace}/{name} not found: see clrk agents list -A"),
    )
}
