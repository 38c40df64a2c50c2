//! SPECIFICATION §5 Metadata delivery with real gVisor sandboxes on their own network: the agent
//! fetches its event from $CLRK_METADATA_URL and posts its answer; it sees only its own
//! execution and reaches nothing but clrk.

mod common;

use common::*;

const HELPERS: &str = r#"
import json, os, sys, urllib.request, urllib.error
BASE = os.environ["CLRK_METADATA_URL"]
def call(method, path, body=None, headers={}):
    req = urllib.request.Request(BASE + path, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()
"#;

#[tokio::test(flavor = "multi_thread")]
async fn the_metadata_example_answers_through_the_ingress() {
    let dev = Dev::start();
    let shipped =
        std::fs::read_to_string(repo_path("examples/metadata-bot/taskagent-host.yaml")).unwrap();
    let installed = "/usr/local/share/clrk/examples/metadata-bot/agent.py";
    assert_eq!(
        std::fs::read(installed).ok(),
        std::fs::read(repo_path("examples/metadata-bot/agent.py")).ok(),
        "{installed} is missing or stale: run scripts/setup.sh"
    );
    dev.apply(&shipped);
    let r = dev
        .invoke(
            &[
                ("X-Clrk-TaskAgent", "default/metadata-bot"),
                ("X-Clrk-Execution-ID", "meta-1"),
                ("content-type", "application/json"),
            ],
            r#"{"text":"hello world from clrk"}"#,
        )
        .await;
    assert_eq!(r.status, 200, "{}\n{}", r.text(), dev.server_log());
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(
        r.json(),
        serde_json::json!({"word_count": 4, "envelope_id": "meta-1"})
    );
    // stdout went to the logs, tagged with the execution (printed after the answer was
    // posted, so it may land a moment after the caller's response).
    let logs = eventually("the agent's stdout in the logs", || async {
        let logs = text(&dev.clrk(&["agents", "logs", "metadata-bot"]).stdout);
        logs.contains("answered").then_some(logs)
    })
    .await;
    assert!(
        logs.contains("meta-1") && logs.contains("answered meta-1"),
        "{logs}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn binary_mode_statuses_and_closed_stdin() {
    let dev = Dev::start();
    let program = format!(
        "{HELPERS}
assert sys.stdin.read() == ''
status, headers, body = call('GET', '/event')
report = {{'event': status, 'id': headers.get('ce-id'), 'type': headers.get('ce-type'),
          'ct': headers.get('content-type'), 'body': body.decode()}}
report['put'] = call('PUT', '/event')[0]
report['first'] = call('POST', '/response', json.dumps(report).encode(), {{'Content-Type': 'application/json'}})[0]
report['again'] = call('POST', '/response', b'x')[0]
print(json.dumps(report), file=sys.stderr, flush=True)
"
    );
    dev.apply(&metadata_py_agent("binary", &program));
    let r = dev
        .invoke(
            &[
                ("X-Clrk-TaskAgent", "default/binary"),
                ("X-Clrk-Execution-ID", "bin-1"),
                ("content-type", "text/plain"),
            ],
            "some words",
        )
        .await;
    assert_eq!(r.status, 200, "{}\n{}", r.text(), dev.server_log());
    let seen = r.json();
    assert_eq!(seen["event"], 200);
    assert_eq!(seen["id"], "bin-1");
    assert_eq!(seen["type"], "dev.apoxy.clrk.taskagent.invoke");
    assert_eq!(seen["ct"], "text/plain");
    assert_eq!(seen["body"], "some words");
    assert_eq!(seen["put"], 405);
    // The first answer is taken, a second refused; the agent logs what it got, after the
    // caller already has its answer, so wait for the line.
    let logs = eventually("the agent's report in the logs", || async {
        let logs = text(&dev.clrk(&["agents", "logs", "binary"]).stdout);
        logs.contains("again").then_some(logs)
    })
    .await;
    assert!(
        logs.contains("\"first\": 204") && logs.contains("\"again\": 409"),
        "{logs}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn exiting_without_a_response_is_a_502_and_a_failure_is_a_500() {
    let dev = Dev::start();
    dev.apply(&metadata_py_agent("silent", "print('no answer')"));
    let r = dev
        .invoke(&[("X-Clrk-TaskAgent", "default/silent")], "")
        .await;
    assert_eq!(r.status, 502, "{}", r.text());
    dev.apply(&metadata_py_agent("crash", "import sys; sys.exit(4)"));
    let r = dev
        .invoke(&[("X-Clrk-TaskAgent", "default/crash")], "")
        .await;
    assert_eq!(r.status, 500, "{}", r.text());
    assert_eq!(r.header("x-clrk-exit-code"), Some("4"));
}

#[tokio::test(flavor = "multi_thread")]
async fn each_sandbox_sees_only_its_own_execution() {
    let dev = Dev::start();
    let program = format!(
        "{HELPERS}
import time
status, headers, body = call('GET', '/event', headers={{'Accept': 'application/cloudevents+json'}})
time.sleep(1)
call('POST', '/response', json.loads(body)['id'].encode(), {{'Content-Type': 'text/plain'}})
"
    );
    dev.apply(&metadata_py_agent("mine", &program));
    let mut calls = Vec::new();
    for i in 0..3 {
        let ingress = dev.ingress.clone();
        calls.push(tokio::spawn(async move {
            let id = format!("own-{i}");
            let r = request(
                "POST",
                &format!("{ingress}/"),
                &[
                    ("X-Clrk-TaskAgent", "default/mine"),
                    ("X-Clrk-Execution-ID", &id),
                ],
                bytes::Bytes::new(),
            )
            .await;
            (id, r.status, r.text())
        }));
    }
    for call in calls {
        let (id, status, body) = call.await.unwrap();
        assert_eq!(status, 200, "{body}");
        assert_eq!(body, id);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sandbox_reaches_nothing_but_clrk() {
    let dev = Dev::start();
    // The host's own address on its default route, its loopback, and a public address.
    let route = std::process::Command::new("ip")
        .args(["-4", "route", "get", "1.1.1.1"])
        .output()
        .unwrap();
    let route = text(&route.stdout);
    let host_ip = route
        .split_whitespace()
        .skip_while(|w| *w != "src")
        .nth(1)
        .unwrap_or("10.0.0.1")
        .to_string();
    let api_port = dev.api.rsplit(':').next().unwrap().to_string();
    let program = format!(
        "{HELPERS}
import socket
results = {{}}
for host, port in [('{host_ip}', {api_port}), ('127.0.0.1', {api_port}), ('1.1.1.1', 80), ('8.8.8.8', 53)]:
    s = socket.socket(); s.settimeout(3)
    try:
        s.connect((host, port)); results[host] = 'connected'
    except OSError as e:
        results[host] = 'refused'
    finally:
        s.close()
results['metadata'] = call('GET', '/event')[0]
call('POST', '/response', json.dumps(results).encode())
"
    );
    dev.apply(&metadata_py_agent("prober", &program));
    let r = dev
        .invoke(&[("X-Clrk-TaskAgent", "default/prober")], "")
        .await;
    assert_eq!(r.status, 200, "{}\n{}", r.text(), dev.server_log());
    let seen = r.json();
    assert_eq!(seen["metadata"], 200, "{seen}");
    for host in [host_ip.as_str(), "127.0.0.1", "1.1.1.1", "8.8.8.8"] {
        assert_eq!(
            seen[host], "refused",
            "{host} reachable from a sandbox: {seen}"
        );
    }
}
