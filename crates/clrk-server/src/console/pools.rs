//! `/ui/pools`: the worker pools with their load, and the registered workers.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use maud::html;

use super::layout;
use crate::api::ApiError;
use crate::state::AppState;
use crate::views;

/// The pools and workers page.
pub async fn page(State(state): State<AppState>) -> Response {
    let pools = match views::pools(&state).await {
        Ok(pools) => pools,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let workers: Vec<_> = match state.store.list_workers().await {
        Ok(workers) => workers.into_iter().map(views::worker).collect(),
        Err(e) => return ApiError::from(e).into_response(),
    };
    let limit = |n: u64| {
        if n == 0 {
            "no limit".to_string()
        } else {
            n.to_string()
        }
    };
    layout::page(
        "Pools & workers",
        html! {
            h2 { "Pools" }
            table #pools {
                thead { tr {
                    th { "Pool" } th { "Runtime" } th.num { "Per worker" } th.num { "Workers" }
                    th.num { "Running" } th.num { "Queued" }
                } }
                tbody {
                    @for p in &pools {
                        tr { td { (p.name) } td { (p.runtime) } td.num { (limit(p.max_executions_per_worker)) }
                             td.num { (p.workers) } td.num { (p.running) } td.num { (p.queued) } }
                    }
                }
            }
            h2 { "Workers" }
            table #workers {
                thead { tr {
                    th { "Worker" } th { "Pool" } th { "State" } th { "Address" }
                    th.num { "Capacity" } th.num { "Running" } th.num { "Warm" } th { "Heartbeat" }
                } }
                tbody {
                    @for w in &workers {
                        tr { td { (w.name) } td { (w.pool) } td.(if w.state == "Ready" { "ok" } else { "bad" }) { (w.state) }
                             td { (w.address) } td.num { (w.capacity) } td.num { (w.running) }
                             td.num { (w.warm) } td { (w.heartbeat_at) } }
                    }
                }
            }
        },
    )
}
