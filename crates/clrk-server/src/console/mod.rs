//! The web console under `/ui/`: read-only HTML pages (agents, one agent, one execution,
//! pools and workers) built from the same views the control API answers with, and two data
//! endpoints the pages poll for live rows and log lines.
//!
//! Everything it serves is built into the binary (no CDN); charts are small hand-written SVG.
//! It holds no state-changing action: the cookie it sets opens these pages and nothing else.

mod agent;
mod agents;
mod assets;
mod charts;
mod egress;
mod execution;
mod layout;
mod live;
mod login;
mod pools;
mod session;
mod stats;

use axum::Router;
use axum::middleware::from_fn;
use axum::middleware::from_fn_with_state;
use axum::response::Redirect;
use axum::routing::{get, post};

use crate::api::auth::Token;
use crate::state::AppState;

/// Where the console lives on the control API's listener.
pub const PREFIX: &str = "/ui/";

/// The console's routes. Pages need the session cookie (or `?token=`, which sets it) and
/// redirect to the login form without it; data endpoints answer 401 without it. `secure`
/// marks the cookie `Secure`, for a listener reached over TLS.
pub fn router(state: AppState, token: String, secure: bool) -> Router {
    let session = session::Session::new(Token::new(token), secure);
    let pages = Router::new()
        .route("/ui/", get(agents::page))
        .route("/ui/agents/{namespace}/{name}", get(agent::page))
        .route("/ui/executions/{id}", get(execution::page))
        .route("/ui/pools", get(pools::page))
        .layer(from_fn_with_state(session.clone(), session::require_page));
    let data = Router::new()
        .route("/ui/data/agents/{namespace}/{name}/logs", get(live::logs))
        .route(
            "/ui/data/agents/{namespace}/{name}/invocations",
            get(live::invocations),
        )
        .layer(from_fn_with_state(session.clone(), session::require_data));
    let open = Router::new()
        .route("/ui/login", get(login::form).post(login::submit))
        .route("/ui/logout", post(login::logout))
        .route("/ui/assets/{file}", get(assets::serve))
        .route("/ui", get(|| async { Redirect::to(PREFIX) }))
        .with_state(session);
    pages
        .merge(data)
        .with_state(state)
        .merge(open)
        .layer(from_fn(layout::protect))
}
