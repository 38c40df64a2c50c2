//! `/healthz` (the process is up) and `/readyz` (it can take work: its database answers and,
//! for a worker, the registry has it Ready) for load balancers and orchestrators. No token:
//! they reveal nothing but `ok` or why not.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;
use http::StatusCode;

/// The liveness route: `200 ok` whenever the process runs.
pub const HEALTHZ: &str = "/healthz";
/// The readiness route: `200 ok` when the process can take work, else `503` and why not.
pub const READYZ: &str = "/readyz";

/// Answers whether the process can take work now: `Ok(())`, or why not.
pub type Readiness =
    Arc<dyn Fn() -> futures::future::BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// Whether the shared database answers: the first thing either process needs to take work.
pub async fn database(store: &clrk_store::Store) -> Result<(), String> {
    store
        .list_workers()
        .await
        .map(drop)
        .map_err(|e| format!("the database does not answer: {e}"))
}

/// The two routes, readiness answered by `ready`.
pub fn router(ready: Readiness) -> Router {
    Router::new()
        .route(HEALTHZ, get(|| async { "ok\n" }))
        .route(READYZ, get(readyz))
        .with_state(ready)
}

async fn readyz(State(ready): State<Readiness>) -> axum::response::Response {
    match ready().await {
        Ok(()) => "ok\n".into_response(),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")).into_response(),
    }
}
