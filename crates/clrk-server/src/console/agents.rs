//! `/ui/`: every agent with its kind, revision, warm sandboxes, activity, last run and its
//! last hour (error rate, p50/p99 and a latency line).

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use clrk_store::Agent;
use clrk_wire as wire;
use maud::{Markup, html};

use super::layout::{self, agent_href, execution_href, millis, status_class};
use super::{charts, stats};
use crate::api::ApiError;
use crate::state::AppState;
use crate::views;

/// The agents page.
pub async fn page(State(state): State<AppState>) -> Response {
    match rows(&state).await {
        Ok(rows) => layout::page("Agents", table(&rows)),
        Err(e) => e.into_response(),
    }
}

struct Row {
    view: wire::Agent,
    warm_wanted: u64,
    hour: stats::Hour,
}

async fn rows(state: &AppState) -> Result<Vec<Row>, ApiError> {
    let agents = state.store.list_agents(None).await?;
    let references = views::References::now(state).await?;
    let now = chrono::Utc::now();
    let mut rows = Vec::with_capacity(agents.len());
    for agent in &agents {
        let executions = state
            .store
            .executions(&agent.namespace, &agent.name, stats::HOUR_EXECUTIONS)
            .await?;
        rows.push(Row {
            view: views::agent(state, &references, agent).await?,
            warm_wanted: warm_wanted(agent),
            hour: stats::Hour::before(now, &executions),
        });
    }
    Ok(rows)
}

/// `spec.warmPoolSize`, 0 when unset.
pub fn warm_wanted(agent: &Agent) -> u64 {
    agent
        .spec
        .pointer("/spec/warmPoolSize")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0)
}

fn table(rows: &[Row]) -> Markup {
    html! {
        @if rows.is_empty() {
            p.notice #no-agents { "No agents yet: " code { "clrk apply -f agent.yaml" } }
        } @else {
            table #agents {
                thead { tr {
                    th { "Agent" } th { "Kind" } th { "Revision" }
                    th.num { "Warm ready/wanted" } th.num { "Active" } th { "Last run" }
                    th.num { "Runs (1 h)" } th.num { "Errors" } th.num { "p50" } th.num { "p99" }
                    th { "Latency (1 h)" }
                } }
                tbody {
                    @for row in rows { (agent_row(row)) }
                }
            }
        }
    }
}

fn agent_row(row: &Row) -> Markup {
    let a = &row.view;
    let (namespace, name) = (&a.key.namespace, &a.key.name);
    html! {
        tr data-agent=(name) {
            td { a href=(agent_href(namespace, name)) { (namespace) "/" (name) } }
            td { (a.kind) }
            td { (a.status.latest_revision.as_deref().unwrap_or("—")) }
            td.num { (a.status.warm) "/" (row.warm_wanted) }
            td.num { (a.status.active) }
            td {
                @match &a.status.last_run {
                    Some(run) => {
                        a.(status_class(&run.status)) href=(execution_href(&run.id)) { (run.status) }
                        " " span.muted { (millis(run.duration_ms)) }
                    }
                    None => span.muted { "never" },
                }
            }
            td.num { (row.hour.runs) }
            td.num { (row.hour.error_rate()) }
            td.num { (millis(row.hour.p50_ms)) }
            td.num { (millis(row.hour.p99_ms)) }
            td { (charts::sparkline(&row.hour.durations_ms, 120, 22, "ms")) }
        }
    }
}
