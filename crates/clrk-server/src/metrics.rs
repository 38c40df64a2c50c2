//! `GET /metrics`: the process's Prometheus metrics (SPECIFICATION §18) as OpenMetrics text,
//! on the control API behind its token, and on an optional `--metrics` listener without one.
//!
//! Gauges of what is held now (warm sandboxes) are read at the scrape, so nothing on an
//! execution's path keeps them.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{MethodRouter, get};
use clrk_metrics::{Registry, Role};
use tokio::net::TcpListener;

use crate::listener::{self, ConnectionLimits};

/// The route, on the control API and on `--metrics`.
pub const METRICS: &str = "/metrics";

/// What a process exposes: the families of its roles, and what to read before a scrape.
#[derive(Clone)]
pub struct Exposition {
    registry: Arc<Registry>,
    refresh: Arc<dyn Fn() + Send + Sync>,
}

impl Exposition {
    /// The families of `roles`; `refresh` sets the gauges read at each scrape.
    pub fn new(roles: &[Role], refresh: impl Fn() + Send + Sync + 'static) -> Exposition {
        Exposition {
            registry: Arc::new(clrk_metrics::registry(roles)),
            refresh: Arc::new(refresh),
        }
    }

    /// The `GET /metrics` handler, for a router of any state.
    pub fn route<S: Clone + Send + Sync + 'static>(&self) -> MethodRouter<S> {
        get(scrape).with_state(self.clone())
    }

    /// A router serving only `/metrics`, without a token: the `--metrics` listener.
    pub fn router(&self) -> Router {
        Router::new().route(METRICS, self.route())
    }

    /// Serves `/metrics` on `listener` (`--metrics`) within the control API's connection
    /// caps and header deadline, until the task is dropped.
    pub fn serve(&self, listener: TcpListener) -> tokio::task::JoinHandle<()> {
        tokio::spawn(listener::serve(
            listener,
            self.router(),
            ConnectionLimits::metrics(),
        ))
    }
}

async fn scrape(State(exposition): State<Exposition>) -> impl IntoResponse {
    (exposition.refresh)();
    (
        [(header::CONTENT_TYPE, clrk_metrics::CONTENT_TYPE)],
        clrk_metrics::encode(&exposition.registry),
    )
}

/// `--metrics`: `ADDR:PORT`, or a bare `PORT` on loopback.
///
/// ```
/// use clrk_server::metrics::parse_address;
/// assert_eq!(parse_address("9464").unwrap().to_string(), "127.0.0.1:9464");
/// assert_eq!(parse_address("0.0.0.0:9464").unwrap().to_string(), "0.0.0.0:9464");
/// assert!(parse_address("localhost").is_err());
/// ```
pub fn parse_address(text: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = text.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    text.parse().map_err(|_| {
        format!("{text:?} is not an address: give ADDR:PORT (e.g. 127.0.0.1:9464) or a port")
    })
}

#[cfg(test)]
mod tests {
    use super::parse_address;

    #[test]
    fn a_bare_port_is_on_loopback_and_an_address_is_taken_as_it_is() {
        assert_eq!(
            parse_address("9464").unwrap(),
            "127.0.0.1:9464".parse().unwrap()
        );
        assert_eq!(parse_address("0").unwrap(), "127.0.0.1:0".parse().unwrap());
        assert_eq!(
            parse_address("[::1]:9464").unwrap(),
            "[::1]:9464".parse().unwrap()
        );
        let refused = parse_address("metrics.lan:9464").unwrap_err();
        assert!(refused.contains("ADDR:PORT"), "{refused}");
    }
}
