//! What every rendered object shares: the names, labels, ports and paths that tie the
//! objects together, and the install options they are pure functions of.

use serde_json::{Map, Value, json};

pub use crate::cli::WorkerCache;
use clrk_server::cluster::health::{HEALTHZ, READYZ};

use crate::cli::default_image;

/// The field manager of every server-side apply, so a later install owns the same fields.
pub const FIELD_MANAGER: &str = "clrk";
/// `app.kubernetes.io/name` of every object.
pub const APP: &str = "clrk";
/// The node label a worker DaemonSet selects: `clrk.apoxy.dev/worker-pool=POOL`.
pub const POOL_NODE_LABEL: &str = "clrk.apoxy.dev/worker-pool";
/// The pod label naming a worker's pool.
pub const POOL_LABEL: &str = "clrk.apoxy.dev/pool";

/// The servers' ingress port in the pod.
pub const INGRESS_PORT: u16 = 8080;
/// The servers' control API port in the pod (also `/healthz`, `/readyz`).
pub const API_PORT: u16 = 7070;
/// The workers' link port, dialled by servers at the pod's address.
pub const LINK_PORT: u16 = 7071;
/// The workers' `/healthz` and `/readyz`.
pub const HEALTH_PORT: u16 = 7072;

/// The user the servers run as: not root, and not one the image's base uses.
pub const SERVER_UID: u32 = 10001;

/// The Secret holding the control API token (key [`TOKEN_KEY`]).
pub const TOKEN_SECRET: &str = "clrk-api-token";
pub const TOKEN_KEY: &str = "token";
/// The Secret holding the cluster secret (key [`CLUSTER_SECRET_KEY`]).
pub const CLUSTER_SECRET: &str = "clrk-cluster-secret";
pub const CLUSTER_SECRET_KEY: &str = "cluster-secret";
/// The Secret holding the database URL (key [`DATABASE_URL_KEY`]) unless `--database-secret`.
pub const DATABASE_SECRET: &str = "clrk-database";
pub const DATABASE_URL_KEY: &str = "url";

/// Everything the rendered objects depend on.
#[derive(Debug, Clone)]
pub struct InstallOptions {
    pub namespace: String,
    /// Server replicas.
    pub servers: u32,
    /// The clrk image of servers and workers.
    pub image: String,
    /// The Secret with the database URL, created by the user (or by install for the demo
    /// PostgreSQL).
    pub database_secret: String,
    /// Render the single-pod PostgreSQL for trying clrk out.
    pub demo_postgres: bool,
    /// One worker DaemonSet per pool.
    pub pools: Vec<String>,
    pub worker_cache: WorkerCache,
    /// Servers and workers also serve `/metrics` without a token on this port of the pod.
    pub metrics_port: Option<u16>,
}

impl Default for InstallOptions {
    fn default() -> Self {
        InstallOptions {
            namespace: "clrk".into(),
            servers: 2,
            image: default_image(),
            database_secret: DATABASE_SECRET.into(),
            demo_postgres: false,
            pools: vec!["default".into()],
            worker_cache: WorkerCache::HostPath,
            metrics_port: None,
        }
    }
}

/// The labels that select one component's pods (never changed after install: selectors
/// are immutable).
pub fn selector(component: &str) -> Map<String, Value> {
    let mut labels = Map::new();
    labels.insert("app.kubernetes.io/name".into(), APP.into());
    labels.insert("app.kubernetes.io/component".into(), component.into());
    labels
}

/// The selector labels plus the ones that say who made the object.
pub fn labels(component: &str) -> Map<String, Value> {
    let mut labels = selector(component);
    labels.insert("app.kubernetes.io/part-of".into(), APP.into());
    labels.insert("app.kubernetes.io/managed-by".into(), FIELD_MANAGER.into());
    labels
}

/// `metadata` of a namespaced object.
pub fn metadata(name: &str, namespace: &str, labels: Map<String, Value>) -> Value {
    json!({ "name": name, "namespace": namespace, "labels": labels })
}

/// A Secret volume readable by its owner only: clrk refuses a secret file others may read.
pub fn secret_volume(volume: &str, secret: &str) -> Value {
    json!({ "name": volume, "secret": { "secretName": secret, "defaultMode": 0o400 } })
}

/// The `readinessProbe` and `livenessProbe` of a clrk container whose `/readyz` and
/// `/healthz` answer on the named container port.
pub fn probes(port: &str) -> (Value, Value) {
    (
        json!({
            "httpGet": { "path": READYZ, "port": port },
            "periodSeconds": 2,
            "failureThreshold": 2,
        }),
        json!({
            "httpGet": { "path": HEALTHZ, "port": port },
            "initialDelaySeconds": 10,
            "periodSeconds": 10,
            "failureThreshold": 3,
        }),
    )
}

/// With `port`, makes the pod template of `workload` (a Deployment or DaemonSet whose first
/// container is clrk) serve `/metrics` without a token on that port of the pod, and says so
/// in the `prometheus.io/*` annotations scrapers look for.
pub fn with_metrics(mut workload: Value, port: Option<u16>) -> Value {
    let Some(port) = port else {
        return workload;
    };
    let template = &mut workload["spec"]["template"];
    template["metadata"]["annotations"] = json!({
        "prometheus.io/scrape": "true",
        "prometheus.io/port": port.to_string(),
        "prometheus.io/path": "/metrics",
    });
    let container = &mut template["spec"]["containers"][0];
    if let Some(args) = container["args"].as_array_mut() {
        args.extend([json!("--metrics"), json!(format!("0.0.0.0:{port}"))]);
    }
    if let Some(ports) = container["ports"].as_array_mut() {
        ports.push(json!({ "name": "metrics", "containerPort": port, "protocol": "TCP" }));
    }
    workload
}

/// An environment variable read from a Secret's key.
pub fn secret_env(name: &str, secret: &str, key: &str) -> Value {
    json!({ "name": name, "valueFrom": { "secretKeyRef": { "name": secret, "key": key } } })
}
