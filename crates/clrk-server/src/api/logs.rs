//! `GET /v1/agents/{ns}/{name}/logs`: newline-delimited JSON, optionally followed.

use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use clrk_store::{LogLine, LogQuery};
use serde::Deserialize;
use tokio::sync::broadcast;

use super::ApiError;
use super::agents::find;
use crate::state::AppState;
use crate::views;

#[derive(Deserialize)]
pub struct LogsQuery {
    tail: Option<usize>,
    #[serde(default)]
    follow: bool,
}

pub async fn logs(
    State(state): State<AppState>,
    Path((namespace, name)): Path<(String, String)>,
    Query(q): Query<LogsQuery>,
) -> Result<Response, ApiError> {
    find(&state, &namespace, &name)?;
    // Subscribe before reading the backlog so no line falls between the two.
    let events = state.dispatcher.logs().subscribe();
    let backlog = state.store.logs(
        &namespace,
        &name,
        &LogQuery {
            tail: q.tail,
            after_seq: None,
        },
    )?;
    let last_seq = backlog.last().map(|l| l.seq);
    let first = futures::stream::once(async move { Ok::<_, Infallible>(ndjson(&backlog)) });
    let body = if q.follow {
        let follow = Follow {
            state,
            namespace,
            name,
            events,
            last_seq,
        };
        Body::from_stream(futures::StreamExt::chain(first, follow.into_stream()))
    } else {
        Body::from_stream(first)
    };
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response())
}

fn ndjson(lines: &[LogLine]) -> Bytes {
    let mut out = Vec::new();
    for line in lines {
        serde_json::to_writer(&mut out, &views::log_line(line)).expect("log line serialises");
        out.push(b'\n');
    }
    Bytes::from(out)
}

/// Follows an agent's log: wakes on every broadcast line of that agent, then reads what is
/// new from the store, so lines are never lost or duplicated even if the bus lags.
struct Follow {
    state: AppState,
    namespace: String,
    name: String,
    events: broadcast::Receiver<clrk_dispatch::LogEvent>,
    last_seq: Option<i64>,
}

impl Follow {
    fn into_stream(self) -> impl futures::Stream<Item = Result<Bytes, Infallible>> {
        futures::stream::unfold(self, |mut f| async move {
            loop {
                match f.events.recv().await {
                    Ok(e) if e.namespace != f.namespace || e.agent != f.name => continue,
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
                let query = LogQuery {
                    tail: None,
                    after_seq: f.last_seq.or(Some(0)),
                };
                let lines = match f.state.store.logs(&f.namespace, &f.name, &query) {
                    Ok(lines) => lines,
                    Err(error) => {
                        tracing::warn!(%error, "following logs");
                        return None;
                    }
                };
                if let Some(last) = lines.last() {
                    f.last_seq = Some(last.seq);
                    return Some((Ok(ndjson(&lines)), f));
                }
            }
        })
    }
}
