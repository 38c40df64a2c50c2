//! The cluster end to end: PostgreSQL, `clrk server`s and `clrk worker`s, each on a host of
//! its own (a network namespace with its own loopback, nftables and metadata addresses, all
//! joined by a bridge), real gVisor on the workers, driven through the CLI and HTTP from the
//! test process as a user's machine would.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clrk_store::testing::TempPostgres;
use common::hosts::{Host, Hosts};
use common::*;

const INGRESS: u16 = 8080;
const API: u16 = 7070;
const LINK: u16 = 7071;
const HEALTH: u16 = 7072;

/// One clrk process on a host, its output in a log file.
struct Process {
    name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Process {
    fn spawn(name: &str, host: &Host, dir: &Path, args: &[String]) -> Process {
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let child = host
            .command(clrk_bin())
            .args(args)
            .env("CLRK_DIR", dir.join(name))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        Process {
            name: name.to_string(),
            child: Some(child),
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `kill -9`.
    fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// SIGTERM and wait for its exit: a worker drains and deletes its sandboxes.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let started = Instant::now();
            while child.try_wait().ok().flatten().is_none() && started.elapsed() < DEADLINE {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop();
    }
}

/// PostgreSQL on host 0, servers and workers on hosts of their own.
struct Cluster {
    servers: Vec<Process>,
    workers: Vec<Process>,
    /// A CLI for each server (a `CLRK_DIR` whose dev.json names it).
    clients: Vec<Dev>,
    _pg: TempPostgres,
    dir: tempfile::TempDir,
    /// Dropped last: the processes on the hosts stop first.
    hosts: Hosts,
}

impl Cluster {
    async fn start(servers: usize, workers: usize) -> Cluster {
        let hosts = Hosts::create(1 + servers + workers);
        // Not under /tmp: `host:` sandboxes get a private /tmp.
        let dir = tempfile::Builder::new()
            .prefix("clrk-cluster-")
            .tempdir_in("/var/tmp")
            .unwrap();
        let pg = TempPostgres::start_on(hosts[0].addr(5432), Some(hosts[0].netns()));
        let database = pg.create_database().await.url().to_string();
        let secret = dir.path().join("cluster-secret");
        let token = dir.path().join("token");
        let mut cluster = Cluster {
            servers: Vec::new(),
            workers: Vec::new(),
            clients: Vec::new(),
            _pg: pg,
            dir,
            hosts,
        };
        for i in 0..servers {
            let host = cluster.hosts[1 + i].clone();
            let args = [
                "server",
                "--database",
                &database,
                "--listen",
                &host.addr(INGRESS).to_string(),
                "--api",
                &host.addr(API).to_string(),
                "--token-file",
                token.to_str().unwrap(),
                "--cluster-secret-file",
                secret.to_str().unwrap(),
                "--allow-host-rootfs",
            ]
            .map(String::from);
            let name = format!("server-{i}");
            cluster
                .servers
                .push(Process::spawn(&name, &host, cluster.dir.path(), &args));
            // The first server creates the token and the secret the others read.
            cluster
                .wait_ready(&name, &format!("http://{}/readyz", host.addr(API)))
                .await;
        }
        let token = std::fs::read_to_string(&token).unwrap().trim().to_string();
        for i in 0..servers {
            let host = &cluster.hosts[1 + i];
            cluster.clients.push(client(
                &format!("http://{}", host.addr(INGRESS)),
                &format!("http://{}", host.addr(API)),
                &token,
            ));
        }
        for i in 0..workers {
            let host = cluster.hosts[1 + servers + i].clone();
            let name = format!("worker-{i}");
            let args = [
                "worker",
                "--database",
                &database,
                "--pool",
                "default",
                "--name",
                &name,
                "--listen",
                &host.addr(LINK).to_string(),
                "--health",
                &host.addr(HEALTH).to_string(),
                "--data-dir",
                cluster
                    .dir
                    .path()
                    .join(&name)
                    .join("data")
                    .to_str()
                    .unwrap(),
                "--cluster-secret-file",
                secret.to_str().unwrap(),
                "--allow-host-rootfs",
            ]
            .map(String::from);
            cluster
                .workers
                .push(Process::spawn(&name, &host, cluster.dir.path(), &args));
            cluster
                .wait_ready(&name, &format!("http://{}/readyz", host.addr(HEALTH)))
                .await;
        }
        cluster
    }

    /// Waits until `url` answers 200.
    async fn wait_ready(&self, name: &str, url: &str) {
        let started = Instant::now();
        loop {
            if let Ok(Ok(r)) = tokio::time::timeout(
                Duration::from_secs(5),
                tokio::spawn(request_checked("GET", url.to_string())),
            )
            .await
                && r == 200
            {
                return;
            }
            assert!(
                started.elapsed() < DEADLINE,
                "{name} did not get ready at {url}:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn logs(&self) -> String {
        self.servers
            .iter()
            .chain(&self.workers)
            .map(|p| format!("--- {} ---\n{}", p.name, p.log()))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// A CLI and HTTP client of one server.
fn client(ingress: &str, api: &str, token: &str) -> Dev {
    let dir = tempfile::Builder::new()
        .prefix("clrk-client-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let endpoints = serde_json::json!({"ingress": ingress, "api": api, "token": token});
    std::fs::write(dir.path().join("dev.json"), endpoints.to_string()).unwrap();
    Dev {
        dir,
        child: None,
        ingress: ingress.to_string(),
        api: api.to_string(),
        token: token.to_string(),
        env: Vec::new(),
    }
}

/// The status of a GET, or an error when nothing answers.
async fn request_checked(method: &'static str, url: String) -> u16 {
    let client: hyper_util::client::legacy::Client<_, http_body_util::Empty<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http();
    let request = http::Request::builder()
        .method(method)
        .uri(url)
        .body(http_body_util::Empty::new())
        .unwrap();
    match client.request(request).await {
        Ok(response) => response.status().as_u16(),
        Err(_) => 0,
    }
}

fn host_manifest() -> String {
    std::fs::read_to_string(repo_path("examples/word-count/taskagent-host.yaml")).unwrap()
}

const GUIDE_HEADERS: [(&str, &str); 3] = [
    ("X-Clrk-TaskAgent", "default/word-count"),
    ("X-Clrk-Trigger", "http"),
    ("content-type", "application/json"),
];

#[tokio::test(flavor = "multi_thread")]
async fn the_guide_flow_answers_through_either_server_from_workers_on_other_hosts() {
    let cluster = Cluster::start(2, 2).await;
    let (first, second) = (&cluster.clients[0], &cluster.clients[1]);
    let out = first.apply(&host_manifest());
    assert_eq!(
        out.trim(),
        "taskagent/word-count created",
        "{}",
        cluster.logs()
    );

    let mut ids = Vec::new();
    for client in [first, second, first, second] {
        let r = client
            .invoke(&GUIDE_HEADERS, r#"{"text":"hello world from clrk"}"#)
            .await;
        assert_eq!(r.status, 200, "{}\n{}", r.text(), cluster.logs());
        let id = r.header("x-clrk-execution-id").unwrap().to_string();
        assert_eq!(
            r.json(),
            serde_json::json!({"word_count": 4, "envelope_id": id})
        );
        ids.push(id);
    }
    // Every execution is on record, whichever server took it, seen through either.
    let runs = second.invocations("word-count").await;
    for id in &ids {
        let run = runs
            .iter()
            .find(|r| r["id"] == id.as_str())
            .unwrap_or_else(|| panic!("{id} not listed: {runs:?}"));
        assert_eq!(run["status"], "Succeeded");
        assert_eq!(run["trigger"], "http");
    }
    // The agent ran on the workers' hosts, not the servers'.
    let ran_on: Vec<String> = cluster
        .workers
        .iter()
        .filter(|w| w.log().contains("execution finished"))
        .map(|w| w.name.clone())
        .collect();
    assert!(!ran_on.is_empty(), "no worker ran it:\n{}", cluster.logs());
    for server in &cluster.servers {
        assert!(
            !server.log().contains("execution finished"),
            "{} ran an execution itself",
            server.name
        );
    }
}

/// A `host:` TaskAgent running `script` under `sh`, with extra spec lines.
fn sh_agent(name: &str, script: &str, extra_spec: &str) -> String {
    format!(
        r#"apiVersion: clrk.apoxy.dev/v1alpha1
kind: TaskAgent
metadata:
  name: {name}
spec:
  workerPoolRef: default
  timeout: 120s
{extra_spec}  template:
    spec:
      image: "host:"
      command: ["sh", "-c", {script:?}]
"#
    )
}

/// The registry as `GET /v1/workers` lists it: name → (state, running).
async fn workers(client: &Dev) -> std::collections::HashMap<String, (String, u64)> {
    let r = client.api_get("/v1/workers").await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            (
                w["name"].as_str().unwrap().to_string(),
                (
                    w["state"].as_str().unwrap().to_string(),
                    w["running"].as_u64().unwrap(),
                ),
            )
        })
        .collect()
}

fn headers(agent: &str) -> [(&str, String); 1] {
    [("X-Clrk-TaskAgent", format!("default/{agent}"))]
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_worker_fails_its_executions_worker_lost_and_the_others_finish() {
    let mut cluster = Cluster::start(1, 2).await;
    let client = &cluster.clients[0];
    // Quiet for 8 s, then answers: a lost one has written nothing yet.
    client.apply(&sh_agent("slow", "cat >/dev/null; sleep 8; echo done", ""));
    let ingress = client.ingress.clone();
    let calls: Vec<_> = (0..6)
        .map(|_| {
            let url = format!("{ingress}/");
            tokio::spawn(async move {
                let h = headers("slow");
                let pairs: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
                request("POST", &url, &pairs, bytes::Bytes::new()).await
            })
        })
        .collect();
    // All six run, spread over both workers.
    let spread = eventually("six executions running on both workers", || async {
        let w = workers(client).await;
        let (a, b) = (w["worker-0"].1, w["worker-1"].1);
        (a + b == 6 && a > 0 && b > 0).then_some((a, b))
    })
    .await;
    let killed_at = Instant::now();
    cluster.workers[0].kill9();

    let mut lost = 0;
    let mut done = 0;
    for call in calls {
        let r = call.await.unwrap();
        match r.status {
            502 => {
                assert_eq!(r.text().trim(), "worker lost");
                assert!(
                    killed_at.elapsed() < Duration::from_secs(10),
                    "a lost execution's caller waited {:?}",
                    killed_at.elapsed()
                );
                lost += 1;
            }
            200 => {
                assert_eq!(r.text().trim(), "done");
                done += 1;
            }
            other => panic!("{other}: {}\n{}", r.text(), cluster.logs()),
        }
    }
    assert_eq!((lost, done), spread, "{}", cluster.logs());
    let runs = client.invocations("slow").await;
    let failed = runs
        .iter()
        .filter(|r| r["status"] == "Failed" && r["reason"] == "worker lost")
        .count();
    let succeeded = runs.iter().filter(|r| r["status"] == "Succeeded").count();
    assert_eq!((failed as u64, succeeded as u64), spread, "{runs:?}");
    // Silent for three heartbeats, the killed worker is marked lost.
    eventually("the killed worker marked Lost", || async {
        (workers(client).await["worker-0"].0 == "Lost").then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn max_concurrent_holds_across_servers() {
    let cluster = Cluster::start(2, 2).await;
    let client = &cluster.clients[0];
    client.apply(&sh_agent(
        "two",
        "cat >/dev/null; sleep 3; echo ok",
        "  maxConcurrent: 2\n",
    ));
    let ingresses: Vec<String> = cluster.clients.iter().map(|c| c.ingress.clone()).collect();
    let calls: Vec<_> = (0..50)
        .map(|i| {
            let url = format!("{}/", ingresses[i % 2]);
            tokio::spawn(async move {
                let h = headers("two");
                let pairs: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
                request("POST", &url, &pairs, bytes::Bytes::new()).await
            })
        })
        .collect();
    // While they run, the store never holds more than two running, whichever server placed
    // them.
    let mut most = 0;
    while calls.iter().any(|c| !c.is_finished()) {
        let w = workers(client).await;
        let running = w["worker-0"].1 + w["worker-1"].1;
        most = most.max(running);
        assert!(running <= 2, "{w:?}\n{}", cluster.logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut statuses = std::collections::BTreeMap::new();
    for call in calls {
        let r = call.await.unwrap();
        if r.status == 429 {
            assert!(r.text().contains("limit of 2"), "{}", r.text());
        }
        *statuses.entry(r.status).or_insert(0) += 1;
    }
    let ok = statuses.get(&200).copied().unwrap_or(0);
    assert!(
        ok >= 2 && statuses.keys().all(|s| *s == 200 || *s == 429),
        "{statuses:?}\n{}",
        cluster.logs()
    );
    assert_eq!(most, 2, "two ran at once");
    // Only admitted executions are recorded, all of them succeeded.
    let runs = client.invocations("two").await;
    assert_eq!(runs.len(), ok, "{runs:?}");
    assert!(runs.iter().all(|r| r["status"] == "Succeeded"), "{runs:?}");
}
