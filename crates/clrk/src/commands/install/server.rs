//! The servers: a Deployment of `clrk server` (no state of its own, any of them may go),
//! a Service for the ingress and one for the control API, a PodDisruptionBudget, and the
//! ServiceAccount every clrk pod runs as (no API token mounted: clrk never calls
//! Kubernetes).

use serde_json::{Value, json};

use super::objects::{
    API_PORT, CLUSTER_SECRET, CLUSTER_SECRET_KEY, DATABASE_URL_KEY, INGRESS_PORT, InstallOptions,
    SERVER_UID, TOKEN_KEY, TOKEN_SECRET, labels, metadata, probes, secret_env, secret_volume,
    selector, with_metrics,
};

/// The Deployment's name.
pub const DEPLOYMENT: &str = "clrk-server";
/// The server container's name (what `clrk upgrade` sets the image of).
pub const CONTAINER: &str = "server";
/// The init container that hands the secret files to the server's user.
pub const INIT_CONTAINER: &str = "secret-files";
/// The Service in front of the servers' ingress (port 80).
pub const INGRESS_SERVICE: &str = "clrk-ingress";
/// The Service in front of the servers' control API.
pub const API_SERVICE: &str = "clrk-api";
/// The ServiceAccount of every clrk pod.
pub const SERVICE_ACCOUNT: &str = "clrk";

/// Where the server reads its token and cluster secret: private copies the init container
/// made, owned by the server's user (a Secret volume's files belong to root).
const RUN_DIR: &str = "/run/clrk";

/// The ServiceAccount, the Deployment, both Services and the PodDisruptionBudget.
pub fn objects(options: &InstallOptions) -> Vec<Value> {
    vec![
        service_account(options),
        with_metrics(deployment(options), options.metrics_port),
        service(options, INGRESS_SERVICE, "ingress", 80),
        service(options, API_SERVICE, "api", API_PORT),
        disruption_budget(options),
    ]
}

fn service_account(options: &InstallOptions) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": metadata(SERVICE_ACCOUNT, &options.namespace, labels("server")),
        "automountServiceAccountToken": false,
    })
}

fn deployment(options: &InstallOptions) -> Value {
    let image = &options.image;
    let token = format!("{RUN_DIR}/{TOKEN_KEY}");
    let secret = format!("{RUN_DIR}/{CLUSTER_SECRET_KEY}");
    // Secret volumes' files are root's (0400); an fsGroup would make them group-readable,
    // which clrk refuses. So a root init container with CHOWN alone copies them for the
    // server's user into memory. It removes earlier copies first: init containers run again
    // when the pod's sandbox is recreated, and without DAC_OVERRIDE root cannot overwrite a
    // file the server's user owns.
    let copy = format!(
        "rm -f {token} {secret} \
         && cp /etc/clrk/token/{TOKEN_KEY} /etc/clrk/cluster-secret/{CLUSTER_SECRET_KEY} {RUN_DIR}/ \
         && chown {SERVER_UID}:{SERVER_UID} {token} {secret}"
    );
    let (readiness, liveness) = probes("api");
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(DEPLOYMENT, &options.namespace, labels("server")),
        "spec": {
            "replicas": options.servers,
            "selector": { "matchLabels": selector("server") },
            // A new server is ready before an old one goes.
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": { "maxUnavailable": 0, "maxSurge": 1 },
            },
            "template": {
                "metadata": { "labels": labels("server") },
                "spec": {
                    "serviceAccountName": SERVICE_ACCOUNT,
                    "automountServiceAccountToken": false,
                    "enableServiceLinks": false,
                    "securityContext": { "seccompProfile": { "type": "RuntimeDefault" } },
                    "topologySpreadConstraints": [{
                        "maxSkew": 1,
                        "topologyKey": "kubernetes.io/hostname",
                        "whenUnsatisfiable": "ScheduleAnyway",
                        "labelSelector": { "matchLabels": selector("server") },
                    }],
                    "initContainers": [{
                        "name": INIT_CONTAINER,
                        "image": image,
                        "imagePullPolicy": "IfNotPresent",
                        "command": ["/bin/sh", "-c", copy],
                        "securityContext": {
                            "runAsUser": 0,
                            "runAsNonRoot": false,
                            "allowPrivilegeEscalation": false,
                            "readOnlyRootFilesystem": true,
                            "capabilities": { "drop": ["ALL"], "add": ["CHOWN"] },
                        },
                        "resources": {
                            "requests": { "cpu": "10m", "memory": "16Mi" },
                            "limits": { "memory": "64Mi" },
                        },
                        "volumeMounts": [
                            { "name": "token", "mountPath": "/etc/clrk/token", "readOnly": true },
                            { "name": "cluster-secret", "mountPath": "/etc/clrk/cluster-secret", "readOnly": true },
                            { "name": "run", "mountPath": RUN_DIR },
                        ],
                    }],
                    "containers": [{
                        "name": CONTAINER,
                        "image": image,
                        "imagePullPolicy": "IfNotPresent",
                        "args": [
                            "server",
                            "--listen", format!("0.0.0.0:{INGRESS_PORT}"),
                            "--api", format!("0.0.0.0:{API_PORT}"),
                            "--token-file", token,
                            "--cluster-secret-file", secret,
                            "--data-dir", "/var/lib/clrk/server",
                            // Behind a Service, many clients arrive from few addresses.
                            "--max-connections-per-client", "4096",
                        ],
                        "env": [
                            secret_env("CLRK_DATABASE", &options.database_secret, DATABASE_URL_KEY),
                            { "name": "CLRK_DIR", "value": "/var/lib/clrk" },
                            { "name": "HOME", "value": "/var/lib/clrk" },
                        ],
                        "ports": [
                            { "name": "ingress", "containerPort": INGRESS_PORT, "protocol": "TCP" },
                            { "name": "api", "containerPort": API_PORT, "protocol": "TCP" },
                        ],
                        "readinessProbe": readiness,
                        "livenessProbe": liveness,
                        // Endpoints drop a stopping pod asynchronously: keep serving a few
                        // seconds so no new connection lands on a closed port.
                        "lifecycle": { "preStop": { "sleep": { "seconds": 5 } } },
                        "resources": {
                            "requests": { "cpu": "250m", "memory": "256Mi" },
                            "limits": { "memory": "1Gi" },
                        },
                        "securityContext": {
                            "runAsNonRoot": true,
                            "runAsUser": SERVER_UID,
                            "runAsGroup": SERVER_UID,
                            "allowPrivilegeEscalation": false,
                            "readOnlyRootFilesystem": true,
                            "capabilities": { "drop": ["ALL"] },
                        },
                        "volumeMounts": [
                            { "name": "run", "mountPath": RUN_DIR, "readOnly": true },
                            { "name": "state", "mountPath": "/var/lib/clrk" },
                            { "name": "tmp", "mountPath": "/tmp" },
                        ],
                    }],
                    "volumes": [
                        secret_volume("token", TOKEN_SECRET),
                        secret_volume("cluster-secret", CLUSTER_SECRET),
                        { "name": "run", "emptyDir": { "medium": "Memory", "sizeLimit": "1Mi" } },
                        // The image metadata apply caches: rebuilt on demand.
                        { "name": "state", "emptyDir": {} },
                        { "name": "tmp", "emptyDir": {} },
                    ],
                },
            },
        },
    })
}

fn service(options: &InstallOptions, name: &str, target: &str, port: u16) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(name, &options.namespace, labels("server")),
        "spec": {
            "type": "ClusterIP",
            "selector": selector("server"),
            "ports": [{ "name": target, "port": port, "targetPort": target, "protocol": "TCP" }],
        },
    })
}

fn disruption_budget(options: &InstallOptions) -> Value {
    json!({
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": metadata(DEPLOYMENT, &options.namespace, labels("server")),
        "spec": {
            // One at a time: node drains never take every server at once, and a single
            // server (--servers 1) can still be moved.
            "maxUnavailable": 1,
            "selector": { "matchLabels": selector("server") },
        },
    })
}
