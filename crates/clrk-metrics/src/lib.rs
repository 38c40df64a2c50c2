//! clrk-metrics: the Prometheus metrics of a clrk process — what it counts, under which
//! names and labels — and their exposition as OpenMetrics text.
//!
//! Every part records into the one set of families of its process ([`global`]); a process
//! exposes the [`Role`]s it plays, so `clrk server` shows placement's families and
//! `clrk worker` a worker's, and `clrk dev` both.
//!
//! It must not serve HTTP (the server crate does) and must not take a label value an agent or
//! an upstream chooses without bounding it ([`BoundedValues`], [`trigger`]).
//!
//! ```
//! use clrk_metrics::{Role, global};
//! global().daemon_restart("default", "watcher");
//! let text = clrk_metrics::encode(&clrk_metrics::registry(&[Role::Worker]));
//! assert!(text.contains(r#"clrk_daemon_restarts_total{namespace="default",agent="watcher"} 1"#));
//! ```

mod bounded;
mod families;

use std::sync::OnceLock;

pub use bounded::{BoundedValues, OTHER, trigger};
pub use families::{Metrics, Role, Start};
pub use prometheus_client::registry::Registry;

/// The content type of [`encode`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The families of this process.
pub fn global() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::default)
}

/// A registry of the families `roles` need, for a process to expose.
pub fn registry(roles: &[Role]) -> Registry {
    let mut registry = Registry::default();
    for role in roles {
        global().register(*role, &mut registry);
    }
    registry
}

/// The registry's families as OpenMetrics text.
pub fn encode(registry: &Registry) -> String {
    let mut text = String::with_capacity(16 * 1024);
    prometheus_client::encoding::text::encode(&mut text, registry)
        .expect("writing to a String cannot fail");
    text
}
