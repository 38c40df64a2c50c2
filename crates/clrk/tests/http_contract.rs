//! The real `clrk` binary against a real HTTP server that speaks the control API and ingress
//! contract on a loopback port: what the CLI sends, and how it presents each kind of answer.

use std::convert::Infallible;
use std::future::Future;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Channel, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::{Mutex, mpsc, oneshot};

/// Generous, for a loaded 2-core machine.
const DEADLINE: Duration = Duration::from_secs(60);

type Body = BoxBody<Bytes, Infallible>;

/// A request as the server saw it.
#[derive(Debug)]
struct Seen {
    method: http::Method,
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

/// Serves `handler` on a free loopback port; returns its base URL and the requests it saw.
async fn serve<F, Fut>(handler: F) -> (String, mpsc::UnboundedReceiver<Seen>)
where
    F: Fn(Seen) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (seen_tx, seen_rx) = mpsc::unbounded_channel();
    let handler = Arc::new(handler);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let handler = handler.clone();
            let seen_tx = seen_tx.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<Incoming>| {
                    let handler = handler.clone();
                    let seen_tx = seen_tx.clone();
                    async move {
                        let (parts, body) = request.into_parts();
                        let body = body.collect().await.unwrap().to_bytes();
                        let seen = Seen {
                            method: parts.method,
                            path: parts.uri.path_and_query().unwrap().to_string(),
                            headers: parts.headers,
                            body,
                        };
                        let copy = Seen {
                            method: seen.method.clone(),
                            path: seen.path.clone(),
                            headers: seen.headers.clone(),
                            body: seen.body.clone(),
                        };
                        let _ = seen_tx.send(copy);
                        Ok::<_, Infallible>(handler(seen).await)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (url, seen_rx)
}

fn full(status: u16, body: &str) -> Response<Body> {
    Response::builder()
        .status(status)
        .body(Full::new(Bytes::from(body.to_string())).boxed())
        .unwrap()
}

/// A `CLRK_DIR` whose `dev.json` points both endpoints at `url`.
fn clrk_dir_for(url: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let dev = serde_json::json!({"ingress": url, "api": url, "token": "test-token"});
    std::fs::write(dir.path().join("dev.json"), dev.to_string()).unwrap();
    dir
}

fn clrk(clrk_dir: &Path, args: &[&str]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_clrk"));
    command
        .args(args)
        .env("CLRK_DIR", clrk_dir)
        .env_remove("CLRK_SERVER")
        .env_remove("CLRK_TOKEN")
        .env_remove("CLRK_INGRESS")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

struct Run {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

async fn run(clrk_dir: &Path, args: &[&str]) -> Run {
    let output = tokio::time::timeout(DEADLINE, clrk(clrk_dir, args).output())
        .await
        .expect("clrk finished in time")
        .unwrap();
    Run {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn run_task_streams_output_as_it_arrives_and_honours_the_exit_code_trailer() {
    let (release_tx, release_rx) = oneshot::channel::<()>();
    let release = Arc::new(Mutex::new(Some(release_rx)));
    let (url, mut seen) = serve(move |_| {
        let release = release.clone();
        async move {
            let (mut tx, body) = Channel::<Bytes, Infallible>::new(4);
            tokio::spawn(async move {
                tx.send_data(Bytes::from_static(b"first\n")).await.unwrap();
                let gate = release.lock().await.take().unwrap();
                let _ = gate.await;
                tx.send_data(Bytes::from_static(b"second\n")).await.unwrap();
                let mut trailers = HeaderMap::new();
                trailers.insert("x-clrk-exit-code", HeaderValue::from_static("3"));
                tx.send_trailers(trailers).await.unwrap();
            });
            // hyper sends only the trailer fields the response announces.
            Response::builder()
                .header("trailer", "x-clrk-exit-code")
                .header("x-clrk-execution-id", "exec-1")
                .body(body.boxed())
                .unwrap()
        }
    })
    .await;
    let dir = clrk_dir_for(&url);
    let mut child = clrk(
        dir.path(),
        &[
            "agents",
            "run-task",
            "echo",
            "-n",
            "team",
            "-i",
            r#"{"text":"hi"}"#,
            "-H",
            "x-request-id=abc",
            "--timeout",
            "5s",
            "-v",
        ],
    )
    .spawn()
    .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    tokio::time::timeout(DEADLINE, stdout.read_line(&mut first))
        .await
        .expect("the first line arrives while the agent is still running")
        .unwrap();
    assert_eq!(first, "first\n");
    release_tx.send(()).unwrap();

    let mut rest = String::new();
    stdout.read_to_string(&mut rest).await.unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .await
        .unwrap();
    let status = tokio::time::timeout(DEADLINE, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rest, "second\n");
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("execution: exec-1"), "{stderr}");
    assert!(
        stderr.contains("error: agent exited with code 3"),
        "{stderr}"
    );

    let request = seen.recv().await.unwrap();
    assert_eq!(request.method, http::Method::POST);
    assert_eq!(request.path, "/");
    assert_eq!(request.headers["x-clrk-taskagent"], "team/echo");
    assert_eq!(request.headers["x-clrk-trigger"], "cli");
    assert_eq!(request.headers["te"], "trailers");
    assert_eq!(request.headers["content-type"], "application/json");
    assert_eq!(request.headers["x-clrk-timeout"], "5s");
    assert_eq!(request.headers["x-request-id"], "abc");
    assert_eq!(&request.body[..], br#"{"text":"hi"}"#);
}

#[tokio::test(flavor = "multi_thread")]
async fn run_task_exit_codes_follow_the_ingress_answer() {
    let (url, _seen) = serve(|seen: Seen| async move {
        match seen.headers["x-clrk-taskagent"].to_str().unwrap() {
            "default/ok" => {
                let (mut tx, body) = Channel::<Bytes, Infallible>::new(2);
                tokio::spawn(async move {
                    tx.send_data(Bytes::from_static(b"done\n")).await.unwrap();
                    let mut trailers = HeaderMap::new();
                    trailers.insert("x-clrk-exit-code", HeaderValue::from_static("0"));
                    tx.send_trailers(trailers).await.unwrap();
                });
                Response::builder()
                    .header("trailer", "x-clrk-exit-code")
                    .body(body.boxed())
                    .unwrap()
            }
            "default/crash" => {
                let mut response = full(500, "agent exited with code 2");
                response
                    .headers_mut()
                    .insert("x-clrk-exit-code", HeaderValue::from_static("2"));
                response
            }
            "default/slow" => full(504, "execution timed out after 1s"),
            "default/busy" => {
                let mut response = full(429, "agent default/busy is at maxConcurrent 1");
                response
                    .headers_mut()
                    .insert("retry-after", HeaderValue::from_static("1"));
                response
            }
            _ => full(404, r#"{"error": "agent default/missing not found"}"#),
        }
    })
    .await;
    let dir = clrk_dir_for(&url);
    let cases = [
        ("ok", Some(0), "done\n", ""),
        ("crash", Some(1), "", "error: agent exited with code 2\n"),
        (
            "slow",
            Some(124),
            "",
            "error: execution timed out after 1s\n",
        ),
        (
            "busy",
            Some(77),
            "",
            "error: agent default/busy is at maxConcurrent 1 (retry after 1s)\n",
        ),
        (
            "missing",
            Some(77),
            "",
            "error: agent default/missing not found\n",
        ),
    ];
    for (agent, code, stdout, stderr) in cases {
        let out = run(dir.path(), &["agents", "run-task", agent]).await;
        assert_eq!(out.status.code(), code, "{agent}: {}", out.stderr);
        assert_eq!(out.stdout, stdout, "{agent}");
        assert_eq!(out.stderr, stderr, "{agent}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_input_is_refused_before_any_request() {
    let (url, mut seen) = serve(|_| async { full(200, "") }).await;
    let dir = clrk_dir_for(&url);
    let out = run(
        dir.path(),
        &["agents", "run-task", "echo", "-i", "{\"text\": }"],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        out.stderr
            .starts_with("error: the input from the -i argument is not valid JSON"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("line 1 column 10"), "{}", out.stderr);
    assert!(seen.try_recv().is_err(), "the ingress was called");
}

#[tokio::test(flavor = "multi_thread")]
async fn apply_sends_parsed_documents_with_the_token_and_prints_outcomes() {
    let (url, mut seen) = serve(|seen: Seen| async move {
        let request: serde_json::Value = serde_json::from_slice(&seen.body).unwrap();
        let outcomes = [("created", None), ("configured", Some("b-00002"))];
        let results: Vec<serde_json::Value> = request["documents"]
            .as_array()
            .unwrap()
            .iter()
            .zip(outcomes)
            .map(|(doc, (outcome, revision))| {
                serde_json::json!({
                    "kind": doc["manifest"]["kind"], "namespace": "default",
                    "name": doc["manifest"]["metadata"]["name"], "outcome": outcome,
                    "revision": revision, "warnings": [],
                })
            })
            .collect();
        full(200, &serde_json::json!({ "results": results }).to_string())
    })
    .await;
    let dir = clrk_dir_for(&url);
    let manifest = |name: &str| {
        format!(
            "apiVersion: clrk.apoxy.dev/v1alpha1\nkind: TaskAgent\nmetadata:\n  name: {name}\n\
             spec:\n  template:\n    spec:\n      image: 'host:'\n      command: [cat]\n"
        )
    };
    let file = dir.path().join("agents.yaml");
    std::fs::write(&file, format!("{}---\n{}", manifest("a"), manifest("b"))).unwrap();

    let out = run(
        dir.path(),
        &["apply", "-f", file.to_str().unwrap(), "--local"],
    )
    .await;
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(
        out.stdout,
        "taskagent/a created\ntaskagent/b configured (revision b-00002)\n"
    );

    let request = seen.recv().await.unwrap();
    assert_eq!(request.method, http::Method::POST);
    assert_eq!(request.path, "/v1/apply");
    assert_eq!(request.headers["authorization"], "Bearer test-token");
    let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
    let documents = body["documents"].as_array().unwrap();
    assert_eq!(documents.len(), 2);
    assert_eq!(documents[1]["source"], file.to_str().unwrap());
    assert_eq!(documents[1]["index"], 2);
    assert_eq!(documents[1]["manifest"]["metadata"]["name"], "b");
}

#[tokio::test(flavor = "multi_thread")]
async fn api_errors_and_lists_are_presented_for_people() {
    let (url, _seen) = serve(|seen: Seen| async move {
        match seen.path.as_str() {
            "/v1/agents/default/gone" => full(404, r#"{"error": "agent default/gone not found"}"#),
            "/v1/pools" => full(
                200,
                r#"{"items": [{"name": "default", "runtime": "runsc", "maxExecutionsPerWorker": 8, "workers": 1, "capacity": 8}]}"#,
            ),
            "/v1/agents/default/chatty/logs?tail=2" => {
                let (mut tx, body) = Channel::<Bytes, Infallible>::new(4);
                tokio::spawn(async move {
                    // One record split across frames, as a network may deliver it.
                    for part in [
                        &br#"{"seq": 1, "time": "t", "executionId": "e1", "stream": "stderr", "li"#[..],
                        b"ne\": \"hello\"}\n{\"seq\": 2, \"time\": \"t\", \"executionId\": \"e1\", \"stream\": \"stdout\", \"line\": \"bye\"}\n",
                    ] {
                        tx.send_data(Bytes::from_static(part)).await.unwrap();
                    }
                });
                Response::new(body.boxed())
            }
            _ => full(401, r#"{"error": "missing token"}"#),
        }
    })
    .await;
    let dir = clrk_dir_for(&url);

    let out = run(dir.path(), &["agents", "delete", "gone"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(out.stderr, "error: agent default/gone not found\n");

    let out = run(dir.path(), &["pools", "list"]).await;
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(
        out.stdout,
        "NAME      RUNTIME   MAX-EXECUTIONS   WORKERS\ndefault   runsc     8                1\n"
    );

    let out = run(dir.path(), &["agents", "logs", "chatty", "--tail", "2"]).await;
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(out.stdout, "e1 hello\ne1 [stdout] bye\n");

    let out = run(dir.path(), &["agents", "list"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        out.stderr.contains("rejected the API token"),
        "{}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stopped_server_is_named_with_the_way_to_start_one() {
    // Bind then drop: the port is free and nothing answers on it.
    let url = {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let dir = clrk_dir_for(&url);
    let out = run(dir.path(), &["agents", "list"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        out.stderr
            .starts_with("error: cannot reach the clrk server at "),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains(&url), "{}", out.stderr);
    assert!(out.stderr.contains("clrk dev"), "{}", out.stderr);
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn no_server_anywhere_says_how_to_start_one() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(dir.path(), &["pools", "list"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        out.stderr,
        "error: no clrk server found: start one with 'clrk dev', or set CLRK_SERVER and CLRK_TOKEN\n"
    );
}
