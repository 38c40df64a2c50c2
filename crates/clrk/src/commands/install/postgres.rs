//! The demo database (`--demo-postgres`): one PostgreSQL pod with a small volume, to try
//! clrk on a cluster without a database of its own. Not for production: no replica, no
//! backup, no TLS. Its password and the URL clrk connects with are generated at install.

use serde_json::{Map, Value, json};

use super::objects::{DATABASE_URL_KEY, InstallOptions, labels, metadata, secret_env, selector};

/// The StatefulSet and its Service.
pub const NAME: &str = "clrk-postgres";
/// The generated Secret: `password` and `url`.
pub const SECRET: &str = "clrk-demo-postgres";
pub const PASSWORD_KEY: &str = "password";
/// The official image, pinned to a major version on the same Debian as clrk's.
pub const IMAGE: &str = "postgres:17-bookworm";
const PORT: u16 = 5432;

/// The URL clrk connects with, in the generated Secret's `url`.
pub fn url(namespace: &str, password: &str) -> String {
    format!("postgres://clrk:{password}@{NAME}.{namespace}.svc:{PORT}/clrk")
}

fn demo_labels() -> Map<String, Value> {
    let mut labels = labels("demo-postgres");
    labels.insert("clrk.apoxy.dev/not-for-production".into(), "true".into());
    labels
}

fn warning() -> Value {
    json!({
        "clrk.apoxy.dev/warning":
            "A single PostgreSQL pod for trying clrk out: no replica, no backup, no TLS. \
             Not for production: use a managed or replicated database and --database-secret.",
    })
}

/// The headless Service and the StatefulSet, when asked for.
pub fn objects(options: &InstallOptions) -> Vec<Value> {
    if !options.demo_postgres {
        return Vec::new();
    }
    let mut service_meta = metadata(NAME, &options.namespace, demo_labels());
    service_meta["annotations"] = warning();
    let set_meta = service_meta.clone();
    vec![
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": service_meta,
            "spec": {
                "clusterIP": "None",
                "selector": selector("demo-postgres"),
                "ports": [{ "name": "postgres", "port": PORT, "targetPort": "postgres", "protocol": "TCP" }],
            },
        }),
        json!({
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": set_meta,
            "spec": {
                "serviceName": NAME,
                "replicas": 1,
                "selector": { "matchLabels": selector("demo-postgres") },
                "template": {
                    "metadata": { "labels": demo_labels(), "annotations": warning() },
                    "spec": {
                        "automountServiceAccountToken": false,
                        "enableServiceLinks": false,
                        // The image's postgres user.
                        "securityContext": {
                            "runAsUser": 999,
                            "runAsGroup": 999,
                            "fsGroup": 999,
                            "runAsNonRoot": true,
                            "seccompProfile": { "type": "RuntimeDefault" },
                        },
                        "containers": [{
                            "name": "postgres",
                            "image": IMAGE,
                            "imagePullPolicy": "IfNotPresent",
                            // Each clrk process pools up to 17 connections.
                            "args": ["-c", "max_connections=200"],
                            "env": [
                                { "name": "POSTGRES_USER", "value": "clrk" },
                                { "name": "POSTGRES_DB", "value": "clrk" },
                                secret_env("POSTGRES_PASSWORD", SECRET, PASSWORD_KEY),
                                { "name": "PGDATA", "value": "/var/lib/postgresql/data/pgdata" },
                            ],
                            "ports": [{ "name": "postgres", "containerPort": PORT, "protocol": "TCP" }],
                            "readinessProbe": {
                                "exec": { "command": ["pg_isready", "-U", "clrk", "-d", "clrk"] },
                                "periodSeconds": 5,
                            },
                            "livenessProbe": {
                                "exec": { "command": ["pg_isready", "-U", "clrk", "-d", "clrk"] },
                                "initialDelaySeconds": 30,
                                "periodSeconds": 10,
                            },
                            "resources": {
                                "requests": { "cpu": "100m", "memory": "256Mi" },
                                "limits": { "memory": "1Gi" },
                            },
                            "securityContext": {
                                "allowPrivilegeEscalation": false,
                                "capabilities": { "drop": ["ALL"] },
                            },
                            "volumeMounts": [
                                { "name": "data", "mountPath": "/var/lib/postgresql/data" },
                                { "name": "run", "mountPath": "/var/run/postgresql" },
                            ],
                        }],
                        "volumes": [{ "name": "run", "emptyDir": {} }],
                    },
                },
                "volumeClaimTemplates": [{
                    "metadata": { "name": "data", "labels": demo_labels() },
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "resources": { "requests": { "storage": "1Gi" } },
                    },
                }],
            },
        }),
    ]
}

/// The key of the generated Secret clrk reads its URL from.
pub const URL_KEY: &str = DATABASE_URL_KEY;
