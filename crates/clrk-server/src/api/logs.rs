//! `GET /v1/agents/{ns}/{name}/logs`: newline-delimited JSON, optionally followed.
//!
//! The log is read from the store a page at a time and each page is written before the next
//! is read, so a request holds one page in memory however long the log is.

use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use clrk_store::{LogLine, LogPage};
use clrk_wire::ObjectKey;
use serde::Deserialize;
use tokio::sync::broadcast;

use super::ApiError;
use super::agents::history_not_found;
use crate::state::AppState;
use crate::views;

/// Lines read from the store at a time.
const PAGE_LINES: usize = 1000;

/// A page ends early at the line that reaches this many bytes of text.
const PAGE_BYTES: usize = 1 << 20;

/// How often a follower reads the store when this process's bus announces nothing.
const POLL: std::time::Duration = std::time::Duration::from_secs(1);

/// Events taken off the bus at most before a page read; the bus holds 1024.
const DRAIN_MAX: usize = 1024;

#[derive(Deserialize)]
pub struct LogsQuery {
    tail: Option<usize>,
    execution: Option<String>,
    #[serde(default)]
    follow: bool,
}

/// An agent's log lines, oldest first, as newline-delimited JSON, with those of deleted agents
/// of the same name; with `follow` the answer stays open and new lines follow as they are
/// written, until the agent is deleted.
#[utoipa::path(
    get,
    path = "/v1/agents/{namespace}/{name}/logs",
    tag = "agents",
    params(
        super::agents::AgentPath,
        ("tail" = Option<usize>, Query, description = "Only the last N lines"),
        ("follow" = Option<bool>, Query, description = "Keep the answer open and send new lines as they come"),
        ("execution" = Option<String>, Query, description = "Only the lines of this execution"),
    ),
    responses(
        (status = 200, description = "One log line a line", body = clrk_wire::LogLine, content_type = "application/x-ndjson"),
        (status = 404, description = "No agent of that name ever ran", body = clrk_wire::ErrorBody),
    )
)]
pub async fn logs(
    State(state): State<AppState>,
    Path(ObjectKey { namespace, name }): Path<ObjectKey>,
    Query(q): Query<LogsQuery>,
) -> Result<Response, ApiError> {
    // The agent now, if there is one: a follower's answer ends when it is gone. The log of a
    // deleted agent is kept and served all the same.
    let agent = state.store.get_agent(&namespace, &name).await?;
    // Subscribe before reading the backlog so no line falls between the two.
    let events = state.dispatcher.logs().subscribe();
    let not_found = |e| history_not_found(e, &namespace, &name);
    let last_seq = state
        .store
        .log_last_seq(&namespace, &name)
        .await
        .map_err(not_found)?;
    let after_seq = match q.tail {
        Some(tail) => {
            let execution = q.execution.as_deref();
            state
                .store
                .log_tail_start(&namespace, &name, tail, execution)
                .await
                .map_err(not_found)?
        }
        None => None,
    };
    // Without `follow` the answer ends at the newest line now, however fast the agent writes;
    // a deleted agent writes no more.
    let following = agent.filter(|_| q.follow).map(|a| a.uid);
    let up_to_seq = match following {
        Some(_) => None,
        None => Some(last_seq.unwrap_or(i64::MIN)),
    };
    let pages = Pages {
        state,
        namespace,
        name,
        execution: q.execution,
        after_seq,
        up_to_seq,
        events: following.is_some().then_some(events),
        agent_uid: following,
        caught_up: false,
    };
    let body = Body::from_stream(pages.into_stream());
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

/// Waits until the bus announces a line of this agent (or [`POLL`] passes), then takes every event already
/// pending: their lines are in the store before they are announced, so the next page read
/// covers them all and a burst of N lines costs one read, not N. `false` once the bus is
/// closed.
async fn wait_for_lines(
    events: &mut broadcast::Receiver<clrk_dispatch::LogEvent>,
    namespace: &str,
    name: &str,
) -> bool {
    // Lines written by another process (a cluster's workers) are not on this process's bus:
    // the store is read again at least every POLL.
    let poll = tokio::time::sleep(POLL);
    tokio::pin!(poll);
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Ok(e) if e.namespace != namespace || e.agent != name => continue,
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => break,
                Err(broadcast::error::RecvError::Closed) => return false,
            },
            () = &mut poll => return true,
        }
    }
    // At most what the bus holds: an agent writing on cannot keep this loop going.
    for _ in 0..DRAIN_MAX {
        match events.try_recv() {
            Ok(_) | Err(broadcast::error::TryRecvError::Lagged(_)) => {}
            // Closed: what was announced is read first, the next wait ends the stream.
            Err(_) => break,
        }
    }
    true
}

/// Reads an agent's log page by page. Once caught up it ends, or when following waits for a
/// broadcast line of that agent and reads what is new from the store, so lines are never lost
/// or duplicated even if the bus lags.
struct Pages {
    state: AppState,
    namespace: String,
    name: String,
    execution: Option<String>,
    after_seq: Option<i64>,
    up_to_seq: Option<i64>,
    events: Option<broadcast::Receiver<clrk_dispatch::LogEvent>>,
    /// The uid of the agent followed; the answer ends once no agent of the name has it.
    agent_uid: Option<String>,
    caught_up: bool,
}

impl Pages {
    fn into_stream(self) -> impl futures::Stream<Item = Result<Bytes, Infallible>> {
        futures::stream::unfold(self, |mut p| async move {
            loop {
                if p.caught_up {
                    let events = p.events.as_mut()?;
                    if !wait_for_lines(events, &p.namespace, &p.name).await {
                        return None;
                    }
                }
                let lines = match p.next_page().await {
                    Ok(lines) => lines,
                    Err(error) => {
                        tracing::warn!(%error, "reading logs");
                        return None;
                    }
                };
                p.caught_up = lines.len() < PAGE_LINES
                    && lines.iter().map(|l| l.line.len()).sum::<usize>() < PAGE_BYTES;
                if let Some(last) = lines.last() {
                    p.after_seq = Some(last.seq);
                    return Some((Ok(ndjson(&lines)), p));
                }
                // Nothing new: the last lines of a deleted agent's runs are sent by now.
                if p.caught_up && !p.agent_still_there().await {
                    return None;
                }
            }
        })
    }

    /// Whether the agent followed is still there: not deleted, nor deleted and created again.
    async fn agent_still_there(&self) -> bool {
        let Some(uid) = &self.agent_uid else {
            return false;
        };
        match self
            .state
            .store
            .get_agent(&self.namespace, &self.name)
            .await
        {
            Ok(agent) => agent.is_some_and(|a| a.uid == *uid),
            Err(error) => {
                tracing::warn!(%error, "reading the agent of a followed log");
                false
            }
        }
    }

    /// The next page after `after_seq`, read off the async workers.
    async fn next_page(&self) -> Result<Vec<LogLine>, String> {
        let page = LogPage {
            execution: self.execution.clone(),
            after_seq: self.after_seq,
            up_to_seq: self.up_to_seq,
            max_lines: PAGE_LINES,
            max_bytes: PAGE_BYTES,
        };
        self.state
            .store
            .log_page(&self.namespace, &self.name, &page)
            .await
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(agent: &str, line: usize) -> clrk_dispatch::LogEvent {
        clrk_dispatch::LogEvent {
            namespace: "default".into(),
            agent: agent.into(),
            execution_id: "ev-1".into(),
            stream: "stderr".into(),
            line: line.to_string(),
        }
    }

    #[tokio::test]
    async fn a_burst_of_lines_wakes_a_follower_once() {
        let (tx, mut events) = broadcast::channel(1024);
        for i in 0..1000 {
            tx.send(event(if i % 10 == 0 { "other" } else { "echo" }, i))
                .unwrap();
        }
        assert!(wait_for_lines(&mut events, "default", "echo").await);
        // Every line announced is in the store already: one page read covers them all.
        assert!(
            matches!(
                events.try_recv(),
                Err(broadcast::error::TryRecvError::Empty)
            ),
            "{} events still pending: one page read each",
            events.len()
        );
        // Lines of other agents alone do not wake it.
        tx.send(event("other", 0)).unwrap();
        let waited = tokio::time::timeout(
            std::time::Duration::from_millis(50),
            wait_for_lines(&mut events, "default", "echo"),
        );
        assert!(waited.await.is_err());
        drop(tx);
        assert!(!wait_for_lines(&mut events, "default", "echo").await);
    }
}
