//! `/ui/executions/{id}`: one execution's record, its envelope, excerpts of its stdout and
//! stderr, its trace and its egress calls.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use clrk_store::{Execution, LogLine, LogPage};
use clrk_wire::TraceSpan;
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
    // The agent may have been deleted since; its history is kept.
    let lines = state
        .store
        .log_page(&e.namespace, &e.agent, &page)
        .await
        .unwrap_or_default();
    let records = state
        .store
        .egress_records(&e.namespace, &e.agent, EGRESS_SEARCHED)
        .await?;
    let spans: Vec<TraceSpan> = state
        .store
        .execution_spans(&e.id)
        .await?
        .into_iter()
        .map(crate::views::trace_span)
        .collect();
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
        (trace_waterfall(&spans))
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

/// Width of a span's bar in the waterfall, in SVG units (it scales with the column).
const BAR_WIDTH: i64 = 400;

/// The trace as a waterfall: one row per span, indented under its parent, with its start
/// offset, its duration and a bar placed on the execution's time line.
fn trace_waterfall(spans: &[TraceSpan]) -> Markup {
    if spans.is_empty() {
        return html! { p.muted #trace { "no trace recorded" } };
    }
    let start = spans.iter().map(|s| s.start_unix_us).min().unwrap_or(0);
    let end = spans
        .iter()
        .map(|s| s.start_unix_us + s.duration_us.max(0))
        .max()
        .unwrap_or(start);
    let total = (end - start).max(1);
    html! {
        table #trace {
            thead { tr { th { "span" } th { "start" } th { "duration" } th.waterfall { "" } } }
            tbody {
                @for (depth, span) in clrk_wire::in_tree_order(spans) {
                    @let offset = span.start_unix_us - start;
                    @let x = offset * BAR_WIDTH / total;
                    @let width = (span.duration_us.max(0) * BAR_WIDTH / total).max(1);
                    tr.(if span.error.is_some() { "failed" } else { "" }) {
                        td.span-name data-depth=(depth) {
                            (format!("{}{}", "\u{a0}\u{a0}".repeat(depth), span.name))
                            @if let Some(error) = &span.error { " ! " (error) }
                        }
                        td.num { (micros(offset)) }
                        td.num { (micros(span.duration_us)) }
                        td.waterfall {
                            svg viewBox=(format!("0 0 {BAR_WIDTH} 10")) preserveAspectRatio="none" width="100%" height="10" {
                                rect x=(x) y="1" width=(width) height="8" {}
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Microseconds as milliseconds with one decimal.
fn micros(us: i64) -> String {
    format!("{:.1} ms", us as f64 / 1000.0)
}
