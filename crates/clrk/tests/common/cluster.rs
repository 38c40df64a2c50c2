//! A cluster on hosts of its own for end-to-end tests: PostgreSQL on host 0, `clrk server`s
//! and `clrk worker`s (pool `default`, `host:` images allowed) each on a host of its own, a
//! CLI and HTTP client ([`Dev`]) per server, and the helpers the cluster tests share.
//!
//! [`Cluster::start`]`(servers, workers)` (or [`Cluster::start_with`], adding arguments to
//! every process, e.g. `--insecure-registry`) returns once every server answers `/readyz` and
//! every worker is registered and ready. Dropping it stops the workers with SIGTERM (they
//! drain and delete their sandboxes), the servers, PostgreSQL, then the hosts.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clrk_store::testing::TempPostgres;

use super::hosts::{Host, Hosts};
use super::*;

pub const INGRESS: u16 = 8080;
pub const API: u16 = 7070;
pub const LINK: u16 = 7071;
pub const HEALTH: u16 = 7072;

/// One clrk process on a host, its output in a log file.
pub struct Process {
    pub name: String,
    child: Option<Child>,
    log: PathBuf,
    host: Host,
    dir: PathBuf,
    args: Vec<String>,
}

impl Process {
    pub fn spawn(name: &str, host: &Host, dir: &Path, args: &[String]) -> Process {
        let log = dir.join(format!("{name}.log"));
        let mut process = Process {
            name: name.to_string(),
            child: None,
            log,
            host: host.clone(),
            dir: dir.to_path_buf(),
            args: args.to_vec(),
        };
        process.start();
        process
    }

    /// Starts it (again, after [`Process::kill9`] or [`Process::stop`]) with the same
    /// arguments; its log goes on.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "{} is running", self.name);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = self
            .host
            .command(clrk_bin())
            .args(&self.args)
            .env("CLRK_DIR", self.dir.join(&self.name))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", self.name));
        self.child = Some(child);
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `kill -9`.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// SIGTERM and wait for its exit: a worker drains and deletes its sandboxes.
    pub fn stop(&mut self) {
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

/// More command-line arguments for a cluster's servers and workers.
#[derive(Debug, Clone, Default)]
pub struct Args {
    pub servers: Vec<String>,
    pub workers: Vec<String>,
}

/// PostgreSQL on host 0, servers and workers on hosts of their own.
pub struct Cluster {
    pub servers: Vec<Process>,
    pub workers: Vec<Process>,
    /// A CLI for each server (a `CLRK_DIR` whose dev.json names it).
    pub clients: Vec<Dev>,
    pub pg: TempPostgres,
    pub dir: tempfile::TempDir,
    /// Dropped last: the processes on the hosts stop first.
    pub hosts: Hosts,
}

impl Cluster {
    pub async fn start(servers: usize, workers: usize) -> Cluster {
        Self::start_with(servers, workers, 0, |_| Args::default()).await
    }

    /// [`start`](Self::start) with `extra_hosts` more hosts after the workers' (see
    /// [`Cluster::extra_host`]) and more arguments for the servers and the workers, made once
    /// the hosts exist (so they can name e.g. a service on [`Hosts::gateway`]).
    pub async fn start_with(
        servers: usize,
        workers: usize,
        extra_hosts: usize,
        args: impl FnOnce(&Hosts) -> Args,
    ) -> Cluster {
        let hosts = Hosts::create(1 + servers + workers + extra_hosts);
        let Args {
            servers: server_args,
            workers: worker_args,
        } = args(&hosts);
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
            pg,
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
            .map(String::from)
            .into_iter()
            .chain(server_args.iter().cloned())
            .collect::<Vec<_>>();
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
            .map(String::from)
            .into_iter()
            .chain(worker_args.iter().cloned())
            .collect::<Vec<_>>();
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
    pub async fn wait_ready(&self, name: &str, url: &str) {
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

    /// Extra host `i` (of [`Cluster::start_with`]'s `extra_hosts`): nothing of the cluster
    /// runs there.
    pub fn extra_host(&self, i: usize) -> &Host {
        &self.hosts[1 + self.servers.len() + self.workers.len() + i]
    }

    /// The host worker `i` runs on.
    pub fn worker_host(&self, i: usize) -> &Host {
        &self.hosts[1 + self.servers.len() + i]
    }

    /// Every process's log, then the end of every agent's log (what its executions wrote on
    /// stderr): all a failed assertion needs to say why.
    pub fn logs(&self) -> String {
        let processes = self
            .servers
            .iter()
            .chain(&self.workers)
            .map(|p| format!("--- {} ---\n{}", p.name, p.log()));
        processes
            .chain(self.agent_logs())
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn agent_logs(&self) -> Vec<String> {
        let Some(client) = self.clients.first() else {
            return Vec::new();
        };
        let list = client.clrk(&["agents", "list", "-o", "json"]);
        let list: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap_or_default();
        let names = list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| {
                Some((
                    a["namespace"].as_str()?.to_string(),
                    a["name"].as_str()?.to_string(),
                ))
            });
        names
            .map(|(namespace, name)| {
                let out = client.clrk(&["agents", "logs", &name, "-n", &namespace, "--tail", "40"]);
                format!(
                    "--- agent {namespace}/{name} ---\n{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                )
            })
            .collect()
    }
}

/// A CLI and HTTP client of one server.
pub fn client(ingress: &str, api: &str, token: &str) -> Dev {
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
pub async fn request_checked(method: &'static str, url: String) -> u16 {
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

/// The registry as `GET /v1/workers` lists it: name → (state, running).
pub async fn workers(client: &Dev) -> std::collections::HashMap<String, (String, u64)> {
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

/// Invokes `agent` through the ingress `client` answers on, in a task of its own, with an
/// empty body.
pub fn spawn_invoke(client: &Dev, agent: &str) -> tokio::task::JoinHandle<HttpResponse> {
    let url = format!("{}/", client.ingress);
    let agent = format!("default/{agent}");
    tokio::spawn(async move {
        request(
            "POST",
            &url,
            &[("X-Clrk-TaskAgent", &agent)],
            bytes::Bytes::new(),
        )
        .await
    })
}
