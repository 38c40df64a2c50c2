//! `/ui/agents/{namespace}/{name}`: one agent's spec, revisions, invocations, latency over
//! time, live logs, egress records and tokens per day against its budgets.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{Duration, NaiveDate, Utc};
use clrk_api::TokenBudget;
use clrk_store::{Agent, Execution};
use clrk_wire::ObjectKey;
use maud::{Markup, html};

use super::layout::{self, execution_href, millis, status_class, time};
use super::{charts, egress};
use crate::api::ApiError;
use crate::state::AppState;
use crate::views;

/// Invocations in the table.
pub const INVOCATION_ROWS: usize = 20;
/// Executions drawn in the latency chart.
const LATENCY_POINTS: usize = 100;
/// Egress records listed.
const EGRESS_ROWS: usize = 50;
/// Days of token use drawn.
const TOKEN_DAYS: i64 = 7;

/// The agent page; a 404 page when there is no such agent.
pub async fn page(
    State(state): State<AppState>,
    Path(ObjectKey { namespace, name }): Path<ObjectKey>,
) -> Response {
    let Some(agent) = (match state.store.get_agent(&namespace, &name).await {
        Ok(agent) => agent,
        Err(e) => return ApiError::from(e).into_response(),
    }) else {
        return layout::missing(
            StatusCode::NOT_FOUND,
            &format!("There is no agent {namespace}/{name}."),
        );
    };
    match body(&state, &agent).await {
        Ok(body) => layout::page(&format!("{namespace}/{name}"), body),
        Err(e) => e.into_response(),
    }
}

async fn body(state: &AppState, agent: &Agent) -> Result<Markup, ApiError> {
    let (namespace, name) = (agent.namespace.as_str(), agent.name.as_str());
    let references = views::References::now(state).await?;
    let view = views::agent(state, &references, agent).await?;
    let invocations = invocation_rows(state, namespace, name).await?;
    let mut latest = state
        .store
        .executions(namespace, name, LATENCY_POINTS)
        .await?;
    latest.reverse();
    let latencies: Vec<i64> = latest.iter().filter_map(|e| e.duration_ms).collect();
    let records = state
        .store
        .egress_records(namespace, name, EGRESS_ROWS)
        .await?;
    let tokens = tokens_per_day(state, namespace, name).await?;
    let budgets = budgets(state, namespace).await?;
    let yaml = serde_saphyr::to_string(&agent.spec)
        .unwrap_or_else(|e| format!("# the spec cannot be shown as YAML: {e}"));
    let data = format!("/ui/data/agents/{namespace}/{name}");
    Ok(html! {
        dl.facts #agent-facts {
            dt { "Kind" } dd { (view.kind) }
            dt { "Latest revision" } dd { (view.status.latest_revision.as_deref().unwrap_or("—")) }
            dt { "Ready revision" } dd { (view.status.ready_revision.as_deref().unwrap_or("—")) }
            dt { "Warm ready/wanted" } dd { (view.status.warm) "/" (super::agents::warm_wanted(agent)) }
            dt { "Active" } dd { (view.status.active) }
            @for c in &view.status.conditions {
                dt { (c.kind) } dd.bad { (c.message) }
            }
        }
        h2 { "Invocations" span.live-state {} }
        table #invocations {
            thead { tr {
                th { "Execution" } th { "Status" } th.num { "Exit code" } th.num { "Duration" }
                th { "Start" } th { "Trigger" } th { "Revision" } th.num { "Tokens" } th { "Started" }
            } }
            tbody data-live-rows data-src={ (data) "/invocations" } { (invocations) }
        }
        h2 { "Latency" }
        (charts::line(&latencies, 640, 120, "ms"))
        h2 { "Logs" span.live-state { "live" } }
        pre.logs #logs data-live-logs data-src={ (data) "/logs" } {
            span.empty.muted { "no log lines yet" }
        }
        h2 { "Egress" }
        (egress::table(&records))
        h2 { "Tokens per day" }
        (token_section(&tokens, &budgets))
        h2 { "Revisions" }
        table #revisions {
            thead { tr { th { "Revision" } th { "State" } th { "Image" } th { "Created" } th { "Reason" } } }
            tbody {
                @for r in view.revisions.iter().rev() {
                    tr { td { (r.name) } td { (r.state) } td { code { (r.image) } } td { (r.created_at) } td { (r.reason.as_deref().unwrap_or("")) } }
                }
            }
        }
        h2 { "Spec" }
        pre #spec { (yaml) }
    })
}

/// The rows of the invocations table, newest first: the page and its live refresh share them.
pub async fn invocation_rows(
    state: &AppState,
    namespace: &str,
    name: &str,
) -> Result<Markup, ApiError> {
    let executions = state
        .store
        .executions(namespace, name, INVOCATION_ROWS)
        .await?;
    let mut tokens = Vec::with_capacity(executions.len());
    for e in &executions {
        tokens.push(state.store.execution_tokens(&e.id).await?);
    }
    Ok(html! {
        @if executions.is_empty() {
            tr { td colspan="9" .muted { "no invocations yet" } }
        }
        @for (e, tokens) in executions.iter().zip(tokens) {
            (invocation_row(e, tokens))
        }
    })
}

fn invocation_row(e: &Execution, tokens: u64) -> Markup {
    let status = e.status.to_string();
    html! {
        tr.invocation data-execution=(e.id) {
            td { a href=(execution_href(&e.id)) { code { (e.id.get(..8).unwrap_or(&e.id)) } } }
            td.(status_class(&status)) { (status) }
            td.num { @if let Some(code) = e.exit_code { (code) } @else { "—" } }
            td.num { (millis(e.duration_ms)) }
            td { (e.start) }
            td { (e.trigger) }
            td { (e.revision) }
            td.num { (tokens) }
            td { (time(&e.started_at)) }
        }
    }
}

/// Tokens of each of the last [`TOKEN_DAYS`] UTC days, oldest first.
async fn tokens_per_day(
    state: &AppState,
    namespace: &str,
    name: &str,
) -> Result<Vec<(NaiveDate, u64)>, ApiError> {
    let today = Utc::now().date_naive();
    let mut days = Vec::new();
    for back in (0..TOKEN_DAYS).rev() {
        let day = today - Duration::days(back);
        days.push((day, state.store.tokens_on(namespace, name, day).await?));
    }
    Ok(days)
}

/// The token budgets of the namespace's AIProviderRoutes, by route.
async fn budgets(
    state: &AppState,
    namespace: &str,
) -> Result<Vec<(String, TokenBudget)>, ApiError> {
    let routes = state.store.egress_objects(Some(namespace)).await?;
    let mut out = Vec::new();
    for route in routes.iter().filter(|o| o.kind == "AIProviderRoute") {
        let filters = route
            .spec
            .pointer("/spec/filters")
            .and_then(|f| f.as_array());
        for budget in filters.into_iter().flatten() {
            if let Some(Ok(budget)) = budget
                .get("tokenBudget")
                .map(|b| serde_json::from_value::<TokenBudget>(b.clone()))
            {
                out.push((route.name.clone(), budget));
            }
        }
    }
    Ok(out)
}

fn token_section(days: &[(NaiveDate, u64)], budgets: &[(String, TokenBudget)]) -> Markup {
    let daily = budgets
        .iter()
        .filter_map(|(_, b)| b.max_tokens_per_day)
        .min();
    let bars: Vec<(String, u64)> = days.iter().map(|(d, t)| (d.to_string(), *t)).collect();
    html! {
        (charts::bars(&bars, daily, 420, 110))
        @if budgets.is_empty() {
            p.muted { "No AIProviderRoute in this namespace sets a token budget." }
        } @else {
            table #budgets {
                thead { tr { th { "AIProviderRoute" } th.num { "Per day" } th.num { "Per execution" } } }
                tbody {
                    @for (route, b) in budgets {
                        tr {
                            td { (route) }
                            td.num { (b.max_tokens_per_day.map_or("—".into(), |v| v.to_string())) }
                            td.num { (b.max_tokens_per_execution.map_or("—".into(), |v| v.to_string())) }
                        }
                    }
                }
            }
        }
        p.muted { "Today (UTC): " (days.last().map_or(0, |(_, t)| *t)) " tokens." }
    }
}
