//! `/ui/executions/{id}`: one execution's record, its envelope, excerpts of its stdout and
//! stderr, its trace and its egress calls.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use clrk_store::{Execution, LogLine, LogPage};
use maud::{Markup, html};

use super::egress;
use super::layout::{self, agent_href, millis, status_class, time};
use crate::api::ApiError;
use crate::state::AppState;

/// Log lines of the execution shown at most, per page.
const EXCERPT_LINES: usize = 200;
/// Bytes of log text shown at most.
const EXCERPT_BYTES: usize = 64 << 10;
/// The agent's latest egress records searched for this execution's calls.
const EGRESS_SEARCHED: usize = 1000;

/// The execution page; a 404 page when there is no such execution.
pub async fn page(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let execution = match state.store.get_execution(&id).await {
        Ok(Some(e)) => e,
        Ok(None) => {
            return layout::missing(
                StatusCode::NOT_FOUND,
                &format!("There is no execution {id}."),
            );
        }
        Err(e) => return ApiError::from(e).into_response(),
    };
    match body(&state, &execution).await {
        Ok(body) => layout::page(&format!("Execution {}", execution.id), body),
        Err(e) => e.into_response(),
    }
}

async fn body(state: &AppState, e: &Execution) -> Result<Markup, ApiError> {
    let page = LogPage {
        execution: Some(e.id.clone()),
        after_seq: None,
        up_to_seq: None,
        max_lines: EXCERPT_LINES,
        max_bytes: EXCERPT_BYTES,
    };
    // The agent may have been deleted since; its history went with it.
    let lines = state
        .store
        .log_page(&e.namespace, &e.agent, &page)
        .await
        .unwrap_or_default();
    let records = state
        .store
        .egress_records(&e.namespace, &e.agent, EGRESS_SEARCHED)
        .await?;
    let status = e.status.to_string();
    Ok(html! {
        dl.facts #execution-facts {
            dt { "Agent" } dd { a href=(agent_href(&e.namespace, &e.agent)) { (e.namespace) "/" (e.agent) } }
            dt { "Revision" } dd { (e.revision) }
            dt { "Status" } dd.(status_class(&status)) #execution-status { (status) }
            dt { "Exit code" } dd { @if let Some(c) = e.exit_code { (c) } @else { "—" } }
            @if let Some(reason) = &e.reason { dt { "Reason" } dd { (reason) } }
            dt { "Trigger" } dd { (e.trigger) }
            dt { "Start" } dd { (e.start) }
            dt { "Started" } dd { (time(&e.started_at)) }
            dt { "Ended" } dd { @if let Some(t) = &e.ended_at { (time(t)) } @else { "running" } }
            dt { "Duration" } dd { (millis(e.duration_ms)) }
            @if let Some(worker) = &e.worker { dt { "Worker" } dd { (worker) } }
        }
        h2 { "Envelope" }
        (envelope(e))
        h2 { "stdout" }
        (excerpt("stdout", &lines))
        h2 { "stderr" }
        (excerpt("stderr", &lines))
        h2 { "Trace" }
        (trace_waterfall(e))
        h2 { "Egress calls" }
        (egress::table(egress::of_execution(&records, &e.id)))
    })
}

/// The CloudEvents attributes the execution received. Its `data` (the request body) is not
/// stored, so only the attributes clrk sets from the execution's record are shown.
fn envelope(e: &Execution) -> Markup {
    let attributes = serde_json::json!({
        "specversion": "1.0",
        "id": e.id,
        "source": format!("clrk://{}/{}", e.namespace, e.agent),
        "type": clrk_dispatch::envelope::INVOKE_TYPE,
        "time": e.started_at.to_rfc3339(),
        "clrkrevision": e.revision,
    });
    html! {
        pre #envelope { (serde_json::to_string_pretty(&attributes).unwrap_or_default()) }
        p.muted { "The envelope's data (the request body) is not kept after the execution starts." }
    }
}

/// The lines of one stream among `lines`, at most [`EXCERPT_LINES`] in all.
fn excerpt(stream: &str, lines: &[LogLine]) -> Markup {
    let own: Vec<&LogLine> = lines.iter().filter(|l| l.stream == stream).collect();
    let full = lines.len() >= EXCERPT_LINES
        || lines.iter().map(|l| l.line.len()).sum::<usize>() >= EXCERPT_BYTES;
    html! {
        @if own.is_empty() {
            p.muted { "nothing on " (stream) " was kept" }
        } @else {
            pre.excerpt id=(stream) {
                @for l in &own { (l.line) "\n" }
            }
            @if full {
                p.muted { "Only the first " (EXCERPT_LINES) " lines or " (EXCERPT_BYTES / 1024) " KiB are shown: " code { "clrk logs --execution " (lines[0].execution_id) } " has all of them." }
            }
        }
    }
}

/// The trace waterfall: spans are not stored yet, so every execution has none to show.
fn trace_waterfall(_execution: &Execution) -> Markup {
    html! { p.muted #trace { "no trace recorded" } }
}
