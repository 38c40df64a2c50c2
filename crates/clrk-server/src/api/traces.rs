//! `GET /v1/agents/{ns}/{name}/traces`: the spans of one execution's trace (SPECIFICATION
//! §9.7), its latest execution's unless one is named.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use clrk_wire::{ErrorBody, ObjectKey, Trace, TraceSpan};
use serde::Deserialize;

use super::ApiError;
use super::agents::history_not_found;
use crate::state::AppState;

#[derive(Deserialize)]
pub struct TracesQuery {
    execution: Option<String>,
}

/// The spans of an execution of the agent, by start time.
#[utoipa::path(
    get,
    path = "/v1/agents/{namespace}/{name}/traces",
    tag = "agents",
    params(
        super::agents::AgentPath,
        ("execution" = Option<String>, Query, description = "This execution's trace (default: the latest execution's)"),
    ),
    responses(
        (status = 200, description = "The execution's spans", body = Trace),
        (status = 404, description = "No such agent or execution, or the agent has not run", body = ErrorBody),
    )
)]
pub async fn traces(
    State(state): State<AppState>,
    Path(ObjectKey { namespace, name }): Path<ObjectKey>,
    Query(q): Query<TracesQuery>,
) -> Result<Json<Trace>, ApiError> {
    // A deleted agent's executions are kept, and so are their traces: no agent lookup.
    let execution = match &q.execution {
        Some(id) => state
            .store
            .get_execution(id)
            .await?
            .filter(|e| e.namespace == namespace && e.agent == name)
            .ok_or_else(|| {
                ApiError(
                    StatusCode::NOT_FOUND,
                    format!(
                        "execution {id:?} of agent {namespace}/{name} not found: see clrk agents invocations {name} -n {namespace}"
                    ),
                )
            })?,
        None => state
            .store
            .executions(&namespace, &name, 1)
            .await
            .map_err(|e| history_not_found(e, &namespace, &name))?
            .into_iter()
            .next()
            .ok_or_else(|| {
                ApiError(
                    StatusCode::NOT_FOUND,
                    format!("agent {namespace}/{name} has not run yet: invoke it, then ask again"),
                )
            })?,
    };
    let spans: Vec<TraceSpan> = state
        .store
        .execution_spans(&execution.id)
        .await?
        .into_iter()
        .map(crate::views::trace_span)
        .collect();
    // The root's trace: a span the agent started with a `traceparent` of its own may be in
    // another one.
    let trace_id = spans
        .iter()
        .find(|s| s.name == "execution")
        .or(spans.first())
        .map(|s| s.trace_id.clone())
        .unwrap_or_default();
    Ok(Json(Trace {
        execution_id: execution.id,
        status: execution.status.to_string(),
        trace_id,
        spans,
    }))
}
