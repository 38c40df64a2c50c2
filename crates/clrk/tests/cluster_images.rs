//! Registry images in the cluster: a real `docker-registry` on the hosts' gateway, an image
//! pushed to it with `skopeo`, applied through one server (which resolves the tag to a
//! digest once) and invoked through another; each worker pulls the layers by digest when it
//! first runs the revision and serves later requests from its own cache, and a worker that
//! cannot reach the registry answers 503 naming the image. Under a runc pool (which cannot
//! run `host:` images) the workers run the pulled image on the host's kernel.

mod common;
#[allow(dead_code)]
#[path = "../../clrk-image/tests/common/registry.rs"]
mod registry;

use std::path::{Path, PathBuf};

use clrk_image::testing::{LayerBuilder, OciLayoutBuilder, WrittenImage};
use common::cluster::*;
use common::*;
use registry::Registry;

const GREETING: &str = "hello from the registry image";

/// A static busybox image that prints [`GREETING`], then its envelope.
fn image(dir: &Path) -> WrittenImage {
    let layer = LayerBuilder::new()
        .add_dir("bin", 0o755)
        .add_host_file("bin/busybox", "/bin/busybox")
        .unwrap()
        .add_symlink("bin/sh", "busybox")
        .add_symlink("bin/cat", "busybox")
        .add_dir("proc", 0o755)
        .add_file("greeting", format!("{GREETING}\n"), 0o644);
    OciLayoutBuilder::new()
        .add_layer(layer)
        .set_entrypoint(["/bin/sh", "-c", "cat /greeting; cat"])
        .write(dir, Some("latest"))
        .expect("write OCI layout")
}

fn manifest(reference: &str) -> String {
    format!(
        "apiVersion: clrk.apoxy.dev/v1alpha1\nkind: TaskAgent\nmetadata:\n  name: pulled\nspec:\n  template:\n    spec:\n      image: {reference}\n"
    )
}

/// A registry on the gateway of the cluster's hosts, and the cluster's servers and workers
/// told it speaks plain HTTP. The image is pushed as `agent:1`; returns its reference.
async fn cluster_with_registry(
    servers: usize,
    workers: usize,
) -> (Cluster, Registry, String, WrittenImage, tempfile::TempDir) {
    let mut registry = None;
    let cluster = Cluster::start_with(servers, workers, 0, |hosts| {
        let r = Registry::start_on(hosts.gateway());
        let args = vec!["--insecure-registry".to_string(), r.host.clone()];
        registry = Some(r);
        Args {
            servers: args.clone(),
            workers: args,
        }
    })
    .await;
    let registry = registry.unwrap();
    let build = tempfile::tempdir().unwrap();
    let written = image(build.path());
    registry.push(build.path(), "latest", "agent", "1");
    let reference = format!("{}/agent:1", registry.host);
    (cluster, registry, reference, written, build)
}

/// The worker's layer cache directory of `layer`.
fn cached_layer(cluster: &Cluster, worker: &str, layer: &str) -> PathBuf {
    let hex = layer.strip_prefix("sha256:").unwrap();
    cluster
        .dir
        .path()
        .join(worker)
        .join("data/images/layers/sha256")
        .join(hex)
}

/// How many executions each worker has finished, by its log.
fn finished(cluster: &Cluster) -> Vec<usize> {
    cluster
        .workers
        .iter()
        .map(|w| w.log().matches("execution finished").count())
        .collect()
}

async fn invoke(client: &Dev, text: &str) -> HttpResponse {
    client
        .invoke(
            &[
                ("X-Clrk-TaskAgent", "default/pulled"),
                ("content-type", "application/json"),
            ],
            format!(r#"{{"text":"{text}"}}"#),
        )
        .await
}

fn assert_answer(r: &HttpResponse, text: &str, cluster: &Cluster) {
    assert_eq!(r.status, 200, "{}\n{}", r.text(), cluster.logs());
    let body = r.text();
    assert!(
        body.starts_with(&format!("{GREETING}\n")) && body.contains(text),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn workers_pull_a_registry_image_by_digest_once_and_serve_it_from_their_cache() {
    let (cluster, mut registry, reference, written, _build) = cluster_with_registry(2, 2).await;
    let (first, second) = (&cluster.clients[0], &cluster.clients[1]);
    assert_eq!(
        first.apply(&manifest(&reference)).trim(),
        "taskagent/pulled created",
        "{}",
        cluster.logs()
    );
    // Apply pinned the tag to the pushed manifest's digest.
    let agent = second.api_get("/v1/agents/default/pulled").await.json();
    let digest = agent["revisions"][0]["imageDigest"].as_str().unwrap();
    assert!(digest.starts_with("sha256:"), "{agent}");
    let layer = &written.layer_digests[0];
    for worker in ["worker-0", "worker-1"] {
        assert!(
            !cached_layer(&cluster, worker, layer).exists(),
            "{worker} pulled before running anything"
        );
    }

    // The first request, through the other server, runs on one worker, which pulls the layer.
    assert_answer(&invoke(second, "first").await, "first", &cluster);
    let ran = finished(&cluster);
    let one = ran.iter().position(|n| *n == 1).expect("one worker ran it");
    let other = 1 - one;
    let (one_name, other_name) = (format!("worker-{one}"), format!("worker-{other}"));
    assert_eq!(ran[other], 0, "{ran:?}");
    assert!(cached_layer(&cluster, &one_name, layer).is_dir());
    assert!(!cached_layer(&cluster, &other_name, layer).exists());

    // Drained, that worker takes nothing new: the other one pulls the image and answers.
    let out = first.clrk(&["workers", "drain", &one_name]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    eventually("the drain seen by the servers", || async {
        (workers(second).await[&one_name].0 == "Draining").then_some(())
    })
    .await;
    // Servers refresh their view of the workers every second: until this one has, a request
    // may still land on the drained worker.
    let mut sent = 0;
    eventually("a request answered by the other worker", || {
        sent += 1;
        let word = format!("second-{sent}");
        let cluster = &cluster;
        async move {
            assert_answer(&invoke(second, &word).await, &word, cluster);
            (finished(cluster)[other] == 1).then_some(())
        }
    })
    .await;
    assert!(cached_layer(&cluster, &other_name, layer).is_dir());
    let ran = finished(&cluster);

    // With the registry gone, the worker still answers from its cache, through either server.
    registry.stop();
    for (i, client) in [first, second].into_iter().enumerate() {
        let word = format!("cached-{i}");
        assert_answer(&invoke(client, &word).await, &word, &cluster);
    }
    let now = finished(&cluster);
    assert_eq!(
        (now[one], now[other]),
        (ran[one], ran[other] + 2),
        "{}",
        cluster.logs()
    );
    let runs = first.invocations("pulled").await;
    assert_eq!(runs.len(), now[0] + now[1], "{runs:?}");
    assert!(runs.iter().all(|r| r["status"] == "Succeeded"), "{runs:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_that_cannot_pull_the_image_answers_503_naming_it() {
    let (cluster, mut registry, reference, _written, _build) = cluster_with_registry(1, 1).await;
    let client = &cluster.clients[0];
    assert_eq!(
        client.apply(&manifest(&reference)).trim(),
        "taskagent/pulled created"
    );
    // The server resolved the image; the worker has not pulled it, and now cannot.
    registry.stop();
    let r = invoke(client, "nothing").await;
    assert_eq!(r.status, 503, "{}\n{}", r.text(), cluster.logs());
    assert!(
        r.text()
            .contains(&format!("image {reference} is not on this worker"))
            && r.text().contains("retry shortly"),
        "{}",
        r.text()
    );
    let runs = client.invocations("pulled").await;
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0]["status"], "Failed");
    assert!(
        runs[0]["reason"].as_str().unwrap().contains(&reference),
        "{runs:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn runc_workers_run_the_pulled_image_warm_on_the_host_kernel() {
    let (cluster, _registry, reference, _written, _build) = cluster_with_registry(1, 2).await;
    let client = &cluster.clients[0];
    client.apply(
        "apiVersion: clrk.apoxy.dev/v1alpha1\nkind: WorkerPool\nmetadata:\n  name: default\nspec:\n  runtime: runc\n",
    );
    let agent = format!(
        "apiVersion: clrk.apoxy.dev/v1alpha1\nkind: TaskAgent\nmetadata:\n  name: pulled\nspec:\n  warmPoolSize: 2\n  template:\n    spec:\n      image: {reference}\n      command: [\"/bin/sh\", \"-c\", \"cat /proc/version; cat\"]\n"
    );
    assert_eq!(client.apply(&agent).trim(), "taskagent/pulled created");
    // The pool's two sandboxes are spread over both workers: each pulled the image.
    eventually("a warm sandbox on each worker", || async {
        let r = client.api_get("/v1/workers").await;
        let items = r.json()["items"].as_array().unwrap().clone();
        items
            .iter()
            .all(|w| w["warm"].as_u64() == Some(1))
            .then_some(())
    })
    .await;
    let host_kernel = std::fs::read_to_string("/proc/version").unwrap();
    for word in ["one", "two"] {
        let r = invoke(client, word).await;
        assert_eq!(r.status, 200, "{}\n{}", r.text(), cluster.logs());
        let body = r.text();
        assert_eq!(
            body.lines().next(),
            Some(host_kernel.trim()),
            "runc shares the host kernel: {body}"
        );
        assert!(body.contains(word), "{body}");
    }
}
