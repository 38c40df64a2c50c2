//! End-to-end harness: a real `clrk dev` (real runsc, real SQLite) on free loopback ports
//! with a temporary `CLRK_DIR`, driven through the `clrk` binary and plain HTTP.

#![allow(dead_code)]

pub mod cluster;
pub mod dns;
pub mod hosts;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// Generous: a loaded 2-core machine starts gVisor slowly.
pub const DEADLINE: Duration = Duration::from_secs(90);

pub fn clrk_bin() -> &'static str {
    env!("CARGO_BIN_EXE_clrk")
}

/// A running `clrk dev` in its own temporary `CLRK_DIR`.
pub struct Dev {
    pub dir: tempfile::TempDir,
    pub child: Option<Child>,
    pub ingress: String,
    pub api: String,
    pub token: String,
    /// Extra environment for the server and every CLI run (e.g. `DOCKER_CONFIG`).
    pub env: Vec<(String, String)>,
}

impl Dev {
    /// Starts `clrk dev` on free ports and waits until it answers.
    pub fn start() -> Dev {
        Dev::start_with(&[])
    }

    /// Starts `clrk dev` with extra arguments.
    pub fn start_with(extra: &[&str]) -> Dev {
        Dev::start_with_env(extra, &[])
    }

    /// Starts `clrk dev` with extra arguments and environment (also given to CLI runs).
    pub fn start_with_env(extra: &[&str], env: &[(&str, &str)]) -> Dev {
        // Not under /tmp: `host:` sandboxes get a private /tmp, so a CLRK_DIR there would look
        // masked whether or not clrk masks it.
        let dir = tempfile::Builder::new()
            .prefix("clrk-e2e-")
            .tempdir_in("/var/tmp")
            .expect("tempdir");
        let mut dev = Dev {
            dir,
            child: None,
            ingress: String::new(),
            api: String::new(),
            token: String::new(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        dev.spawn(extra);
        dev
    }

    pub fn clrk_dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("dev")
    }

    /// Starts (or restarts) the server process with extra `clrk dev` arguments.
    pub fn spawn(&mut self, extra: &[&str]) {
        let endpoints = self.clrk_dir().join("dev.json");
        let _ = std::fs::remove_file(&endpoints);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.clrk_dir().join("server.log"))
            .expect("server log");
        let child = Command::new(clrk_bin())
            .args(["dev", "--listen", "127.0.0.1:0", "--api", "127.0.0.1:0"])
            .args(extra)
            .env("CLRK_DIR", self.clrk_dir())
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start clrk dev");
        self.child = Some(child);
        let started = Instant::now();
        loop {
            if let Ok(text) = std::fs::read_to_string(&endpoints)
                && let Ok(v) = serde_json::from_str::<serde_json::Value>(&text)
            {
                self.ingress = v["ingress"].as_str().unwrap().to_string();
                self.api = v["api"].as_str().unwrap().to_string();
                self.token = v["token"].as_str().unwrap().to_string();
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("clrk dev exited with {status}:\n{}", self.server_log());
            }
            assert!(
                started.elapsed() < DEADLINE,
                "clrk dev did not start:\n{}",
                self.server_log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn server_log(&self) -> String {
        std::fs::read_to_string(self.clrk_dir().join("server.log")).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// `kill -9` of the server.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
    }

    /// SIGTERM, as Ctrl-C would, and waits for a clean exit.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        unsafe_signal(child.id(), "TERM");
        let started = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            assert!(
                started.elapsed() < DEADLINE,
                "clrk dev did not stop:\n{}",
                self.server_log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs the CLI against this server.
    pub fn clrk(&self, args: &[&str]) -> Output {
        self.clrk_with_stdin(args, None)
    }

    pub fn clrk_with_stdin(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        self.clrk_in(None, args, stdin)
    }

    /// Runs the CLI from `cwd` (relative paths in manifests are relative to it).
    pub fn clrk_in(&self, cwd: Option<&Path>, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let mut cmd = Command::new(clrk_bin());
        if let Some(cwd) = cwd {
            cmd.current_dir(cwd);
        }
        cmd.args(args)
            .env("CLRK_DIR", self.clrk_dir())
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env_remove("CLRK_SERVER")
            .env_remove("CLRK_TOKEN")
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("run clrk");
        if let Some(input) = stdin {
            use std::io::Write as _;
            let mut pipe = child.stdin.take().unwrap();
            pipe.write_all(input).unwrap();
        }
        child.wait_with_output().expect("clrk output")
    }

    /// `clrk apply -f` of a manifest text; panics with the CLI's output if it fails.
    pub fn apply(&self, manifest: &str) -> String {
        let out = self.try_apply(manifest);
        assert!(
            out.status.success(),
            "apply failed: {}\n{}",
            text(&out.stderr),
            self.server_log()
        );
        text(&out.stdout)
    }

    pub fn try_apply(&self, manifest: &str) -> Output {
        let file = self.clrk_dir().join(format!("m-{}.yaml", uuid_like()));
        std::fs::write(&file, manifest).unwrap();
        self.clrk(&["apply", "-f", file.to_str().unwrap()])
    }

    /// The sandboxes runsc still knows under this server's data dir.
    pub fn runsc_list(&self) -> Vec<String> {
        let root = self.data_dir().join("sandboxes").join("state");
        let out = Command::new("runsc")
            .args(["--root", root.to_str().unwrap(), "list", "-quiet"])
            .output()
            .expect("runsc list");
        text(&out.stdout)
            .lines()
            .map(str::to_string)
            .filter(|l| !l.is_empty())
            .collect()
    }

    /// The ids of this server's runsc sandboxes that run now: a sandbox stopped (its program
    /// ended or killed) stays listed by runsc until it is deleted.
    pub fn running_sandboxes(&self) -> Vec<String> {
        let root = self.data_dir().join("sandboxes").join("state");
        let out = Command::new("runsc")
            .args(["--root", root.to_str().unwrap(), "list", "--format=json"])
            .output()
            .expect("runsc list");
        let listed: Option<Vec<serde_json::Value>> =
            serde_json::from_slice(&out.stdout).expect("runsc list --format=json");
        listed
            .unwrap_or_default()
            .into_iter()
            .filter(|c| c["status"] == "running")
            .filter_map(|c| c["id"].as_str().map(str::to_string))
            .collect()
    }

    /// Host processes that belong to this server's sandboxes (runsc processes name the data dir).
    pub fn sandbox_processes(&self) -> Vec<String> {
        let marker = self.data_dir().to_string_lossy().to_string();
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            if Some(pid) == self.child.as_ref().map(std::process::Child::id) {
                continue;
            }
            let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
                continue;
            };
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(&marker) {
                found.push(format!("{pid}: {cmdline}"));
            }
        }
        found
    }

    /// Polls `check` until it returns `Some`, up to [`DEADLINE`].
    pub fn wait_for<T>(&self, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
        let started = Instant::now();
        loop {
            if let Some(v) = check() {
                return v;
            }
            assert!(
                started.elapsed() < DEADLINE,
                "timed out waiting for {what}\n{}",
                self.server_log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// GET on the control API with the token.
    pub async fn api_get(&self, path: &str) -> HttpResponse {
        request(
            "GET",
            &format!("{}{}", self.api, path),
            &[("authorization", &format!("Bearer {}", self.token))],
            Bytes::new(),
        )
        .await
    }

    /// A request to the ingress.
    pub async fn invoke(&self, headers: &[(&str, &str)], body: impl Into<Bytes>) -> HttpResponse {
        request("POST", &format!("{}/", self.ingress), headers, body.into()).await
    }

    pub async fn invocations(&self, agent: &str) -> Vec<serde_json::Value> {
        let r = self
            .api_get(&format!("/v1/agents/default/{agent}/invocations?limit=100"))
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()["items"].as_array().unwrap().clone()
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            unsafe_signal(child.id(), "TERM");
            let started = Instant::now();
            while child.try_wait().ok().flatten().is_none() && started.elapsed() < DEADLINE {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn unsafe_signal(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status();
}

/// Polls an async check until it returns `Some`, up to [`DEADLINE`].
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(started.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A complete HTTP response, trailers included.
pub struct HttpResponse {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: Bytes,
    pub trailers: HashMap<String, String>,
}

impl HttpResponse {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).to_string()
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// One HTTP/1.1 request with `TE: trailers`.
pub async fn request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> HttpResponse {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut builder = http::Request::builder()
        .method(method)
        .uri(url)
        .header("te", "trailers");
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    let response = client
        .request(builder.body(Full::new(body)).unwrap())
        .await
        .expect("HTTP request");
    let status = response.status().as_u16();
    let headers = lower_map(response.headers());
    let collected = response.into_body().collect().await.expect("HTTP body");
    let trailers = collected.trailers().map(lower_map).unwrap_or_default();
    HttpResponse {
        status,
        headers,
        body: collected.to_bytes(),
        trailers,
    }
}

fn lower_map(h: &http::HeaderMap) -> HashMap<String, String> {
    h.iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                v.to_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).to_string()
}

pub fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// `spec` lines for [`sh_agent`]'s `extra_spec`: stdout streamed as it is written, the exit
/// code in a trailer (SPECIFICATION §4.3).
pub const STREAMING: &str = "  streaming:\n    enabled: true";

/// A TaskAgent running a shell script from the host root filesystem.
pub fn sh_agent(name: &str, script: &str, extra_spec: &str) -> String {
    sh_manifest("TaskAgent", name, script, extra_spec)
}

/// An agent of `kind` running a shell script from the host root filesystem; `extra_spec`
/// holds more `spec` lines, indented by two spaces.
pub fn sh_manifest(kind: &str, name: &str, script: &str, extra_spec: &str) -> String {
    let script = serde_json::to_string(script).unwrap();
    format!(
        r#"apiVersion: clrk.apoxy.dev/v1alpha1
kind: {kind}
metadata:
  name: {name}
spec:
{extra_spec}
  template:
    spec:
      image: "host:"
      command: ["/bin/sh", "-c", {script}]
"#
    )
}

/// A Metadata-mode TaskAgent running an inline Python program from the host root.
pub fn metadata_py_agent(name: &str, program: &str) -> String {
    let program = serde_json::to_string(program).unwrap();
    format!(
        r#"apiVersion: clrk.apoxy.dev/v1alpha1
kind: TaskAgent
metadata:
  name: {name}
spec:
  timeout: 120s
  delivery:
    mode: Metadata
  template:
    spec:
      image: "host:"
      command: ["python3", "-c", {program}]
"#
    )
}

/// Resident memory of process `pid`, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("process status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .expect("VmRSS in kB")
}

/// Descriptors process `pid` holds open.
pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("the process's fd dir")
        .count()
}

/// The highest value a measurement took, sampled on a thread until [`Peak::stop`].
pub struct Peak {
    sampling: std::sync::Arc<std::sync::atomic::AtomicBool>,
    most: std::sync::Arc<std::sync::atomic::AtomicU64>,
    thread: std::thread::JoinHandle<()>,
}

impl Peak {
    /// Starts sampling `measure` every `every`.
    pub fn sample(every: Duration, measure: impl Fn() -> u64 + Send + 'static) -> Peak {
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        let sampling = std::sync::Arc::new(AtomicBool::new(true));
        let most = std::sync::Arc::new(AtomicU64::new(measure()));
        let thread = {
            let (sampling, most) = (sampling.clone(), most.clone());
            std::thread::spawn(move || {
                while sampling.load(Ordering::Relaxed) {
                    most.fetch_max(measure(), Ordering::Relaxed);
                    std::thread::sleep(every);
                }
            })
        };
        Peak {
            sampling,
            most,
            thread,
        }
    }

    /// Stops sampling; the highest value seen.
    pub fn stop(self) -> u64 {
        use std::sync::atomic::Ordering;
        self.sampling.store(false, Ordering::Relaxed);
        self.thread.join().expect("sampler");
        self.most.load(Ordering::Relaxed)
    }
}

/// Path of a file in the repository.
pub fn repo_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel)
}
