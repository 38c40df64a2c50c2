//! The data endpoints the agent page polls: new log lines as JSON and the invocations
//! table's rows as an HTML fragment. Both are bounded per request.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use clrk_store::LogPage;
use clrk_wire::ObjectKey;
use serde::{Deserialize, Serialize};

use crate::api::ApiError;
use crate::api::agents::find;
use crate::state::AppState;
use crate::views;

/// Lines one poll returns at most; the first poll starts this many lines before the end.
const LINES_PER_POLL: usize = 200;
/// A poll's lines stop at the one that reaches this many bytes of text.
const BYTES_PER_POLL: usize = 256 << 10;

#[derive(Deserialize)]
pub struct LogsQuery {
    after: Option<i64>,
}

/// Log lines after `after`, or the last [`LINES_PER_POLL`] without it.
#[derive(Serialize)]
pub struct LogPoll {
    items: Vec<clrk_wire::LogLine>,
    /// The `after` of the next poll.
    after: Option<i64>,
}

/// `GET /ui/data/agents/{namespace}/{name}/logs?after=SEQ`.
pub async fn logs(
    State(state): State<AppState>,
    Path(ObjectKey { namespace, name }): Path<ObjectKey>,
    Query(q): Query<LogsQuery>,
) -> Result<Json<LogPoll>, ApiError> {
    find(&state, &namespace, &name).await?;
    let after_seq = match q.after {
        Some(after) => Some(after),
        None => {
            state
                .store
                .log_tail_start(&namespace, &name, LINES_PER_POLL, None)
                .await?
        }
    };
    let page = LogPage {
        execution: None,
        after_seq,
        up_to_seq: None,
        max_lines: LINES_PER_POLL,
        max_bytes: BYTES_PER_POLL,
    };
    let lines = state.store.log_page(&namespace, &name, &page).await?;
    Ok(Json(LogPoll {
        after: lines.last().map(|l| l.seq).or(after_seq),
        items: lines.iter().map(views::log_line).collect(),
    }))
}

/// `GET /ui/data/agents/{namespace}/{name}/invocations`: the table's rows, escaped HTML.
pub async fn invocations(
    State(state): State<AppState>,
    Path(ObjectKey { namespace, name }): Path<ObjectKey>,
) -> Result<Response, ApiError> {
    find(&state, &namespace, &name).await?;
    let rows = super::agent::invocation_rows(&state, &namespace, &name).await?;
    Ok((
        [(header::CACHE_CONTROL, "no-store")],
        Html(rows.into_string()),
    )
        .into_response())
}
