//! The workers: one DaemonSet per pool, on the nodes labelled
//! `clrk.apoxy.dev/worker-pool=POOL`. A worker runs gVisor and builds network namespaces
//! and nftables rules inside its pod, so it is privileged; it is named after its node, so a
//! restarted pod takes its node's place in the registry.

use clrk_server::cluster::worker::LONGEST_STOP;
use serde_json::{Value, json};

use super::objects::{
    API_PORT, CLUSTER_SECRET, CLUSTER_SECRET_KEY, DATABASE_URL_KEY, HEALTH_PORT, InstallOptions,
    LINK_PORT, POOL_LABEL, POOL_NODE_LABEL, TOKEN_KEY, TOKEN_SECRET, WorkerCache, labels, metadata,
    probes, secret_env, secret_volume, selector, with_metrics,
};
use super::server::{API_SERVICE, SERVICE_ACCOUNT};

/// The worker container's name (what `clrk upgrade` sets the image of).
pub const CONTAINER: &str = "worker";

/// Time beyond the worker's own longest stop: the preStop drain's call to a server, and the
/// kubelet's own delays.
pub const GRACE_MARGIN_SECS: u64 = 30;

/// The pod's grace period: SIGTERM drains (daemons handed over, executions in flight
/// finished, sandboxes stopped, at most [`LONGEST_STOP`]) before the kubelet would kill it.
///
/// ```
/// use clrk::commands::install::worker::grace_period_secs;
/// assert!(grace_period_secs() > clrk_server::cluster::worker::LONGEST_STOP.as_secs());
/// ```
pub const fn grace_period_secs() -> u64 {
    LONGEST_STOP.as_secs() + GRACE_MARGIN_SECS
}

/// The DaemonSet of `pool`.
pub fn daemon_set_name(pool: &str) -> String {
    format!("clrk-worker-{pool}")
}

/// One DaemonSet per pool.
pub fn objects(options: &InstallOptions) -> Vec<Value> {
    options
        .pools
        .iter()
        .map(|pool| with_metrics(daemon_set(options, pool), options.metrics_port))
        .collect()
}

fn pod_selector(pool: &str) -> serde_json::Map<String, Value> {
    let mut labels = selector("worker");
    labels.insert(POOL_LABEL.into(), pool.into());
    labels
}

fn daemon_set(options: &InstallOptions, pool: &str) -> Value {
    let mut all_labels = labels("worker");
    all_labels.insert(POOL_LABEL.into(), pool.into());
    let data = match options.worker_cache {
        WorkerCache::HostPath => json!({
            "name": "data",
            "hostPath": { "path": format!("/var/lib/clrk/{pool}"), "type": "DirectoryOrCreate" },
        }),
        WorkerCache::EmptyDir => json!({ "name": "data", "emptyDir": {} }),
    };
    let api = format!("http://{API_SERVICE}.{}.svc:{API_PORT}", options.namespace);
    let (readiness, liveness) = probes("health");
    json!({
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": metadata(&daemon_set_name(pool), &options.namespace, all_labels.clone()),
        "spec": {
            "selector": { "matchLabels": pod_selector(pool) },
            // One node at a time, each pod drained before its replacement starts.
            "updateStrategy": { "type": "RollingUpdate", "rollingUpdate": { "maxUnavailable": 1 } },
            "template": {
                "metadata": { "labels": all_labels },
                "spec": {
                    "serviceAccountName": SERVICE_ACCOUNT,
                    "automountServiceAccountToken": false,
                    "enableServiceLinks": false,
                    "nodeSelector": { POOL_NODE_LABEL: pool },
                    "terminationGracePeriodSeconds": grace_period_secs(),
                    "containers": [{
                        "name": CONTAINER,
                        "image": options.image,
                        "imagePullPolicy": "IfNotPresent",
                        "args": [
                            "worker",
                            "--pool", pool,
                            "--name", "$(NODE_NAME)",
                            "--listen", format!("0.0.0.0:{LINK_PORT}"),
                            "--advertise", format!("$(POD_IP):{LINK_PORT}"),
                            "--health", format!("0.0.0.0:{HEALTH_PORT}"),
                            "--data-dir", "/var/lib/clrk/worker",
                            "--cluster-secret-file", format!("/etc/clrk/cluster-secret/{CLUSTER_SECRET_KEY}"),
                        ],
                        "env": [
                            { "name": "NODE_NAME", "valueFrom": { "fieldRef": { "fieldPath": "spec.nodeName" } } },
                            { "name": "POD_IP", "valueFrom": { "fieldRef": { "fieldPath": "status.podIP" } } },
                            secret_env("CLRK_DATABASE", &options.database_secret, DATABASE_URL_KEY),
                            { "name": "CLRK_DIR", "value": "/var/lib/clrk" },
                            // For the preStop drain, through the servers like any operator.
                            { "name": "CLRK_SERVER", "value": api },
                            secret_env("CLRK_TOKEN", TOKEN_SECRET, TOKEN_KEY),
                        ],
                        "ports": [
                            { "name": "link", "containerPort": LINK_PORT, "protocol": "TCP" },
                            { "name": "health", "containerPort": HEALTH_PORT, "protocol": "TCP" },
                        ],
                        "readinessProbe": readiness,
                        "livenessProbe": liveness,
                        // No new executions from the moment the pod is told to go; the
                        // SIGTERM that follows finishes the drain and stops the sandboxes.
                        "lifecycle": { "preStop": { "exec": { "command": [
                            "/bin/sh", "-c", "exec clrk workers drain \"$NODE_NAME\"",
                        ] } } },
                        "resources": { "requests": { "cpu": "500m", "memory": "512Mi" } },
                        // The image's user is not root; a worker must be.
                        "securityContext": { "privileged": true, "runAsUser": 0, "runAsGroup": 0 },
                        "volumeMounts": [
                            { "name": "data", "mountPath": "/var/lib/clrk/worker" },
                            { "name": "cluster-secret", "mountPath": "/etc/clrk/cluster-secret", "readOnly": true },
                        ],
                    }],
                    "volumes": [data, secret_volume("cluster-secret", CLUSTER_SECRET)],
                },
            },
        },
    })
}
