//! The egress gateway end to end (SPECIFICATION §9): an agent in a real gVisor sandbox calls an
//! HTTPS "LLM" through the gateway with a placeholder key. The upstream runs in a network
//! namespace this test creates (the worker's own addresses are never reachable from a
//! sandbox), names come from a DNS server the test runs, and spans go to an OTLP receiver
//! the test runs.

mod common;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use common::{Dev, Peak, eventually, open_fds, repo_path};
use http_body_util::{BodyExt, Full};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as OtlpValue;
use prost::Message as _;
use serde_json::{Value, json};

const SECRET: &str = "sk-ant-real-7f3a9c1e";
const PLACEHOLDER: &str = "clrk-injected-by-proxy";

/// The agent: makes the calls its event lists and reports what it got, and whether the
/// secret appears in its environment or files.
const AGENT: &str = r#"
import json, os, sys, urllib.request, urllib.error
data = json.load(sys.stdin).get("data", {})
out = []
for call in data.get("calls", []):
    if "raw" in call:
        # A request written by hand, with whatever TLS name and Host the caller chooses,
        # to the address a name resolves to: what an agent that lies to the gateway sends.
        import socket, ssl
        raw = call["raw"]
        try:
            conn = socket.create_connection((raw["connect"], raw["port"]), timeout=30)
            if "sni" in raw:
                context = ssl.create_default_context()
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
                conn = context.wrap_socket(conn, server_hostname=raw["sni"])
            head = f"GET {raw.get('path', '/')} HTTP/1.1\r\nHost: {raw['host']}\r\nConnection: close\r\n"
            head += "".join(f"{k}: {v}\r\n" for k, v in raw.get("headers", {}).items())
            conn.sendall((head + "\r\n").encode())
            got = b""
            while chunk := conn.recv(65536):
                got += chunk
            status = int(got.split(b" ", 2)[1]) if got else 0
            out.append({"status": status, "body": got.partition(b"\r\n\r\n")[2].decode(errors="replace")})
        except Exception as e:
            out.append({"status": 0, "error": repr(e)})
        continue
    if "upgrade" in call:
        # A protocol switch by hand: urllib has none.
        import socket, ssl
        raw = socket.create_connection((call["upgrade"], 443), timeout=30)
        tls = ssl.create_default_context().wrap_socket(raw, server_hostname=call["upgrade"])
        tls.sendall(f"GET /ws HTTP/1.1\r\nHost: {call['upgrade']}\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n".encode())
        reader = tls.makefile("rb")
        status = int(reader.readline().split()[1])
        while reader.readline() not in (b"\r\n", b""):
            pass
        tls.sendall(call["send"].encode() + b"\n")
        out.append({"status": status, "body": reader.readline().decode()})
        continue
    body = json.dumps(call["body"]).encode() if "body" in call else None
    req = urllib.request.Request(call["url"], data=body, method=call.get("method", "GET"), headers=call.get("headers", {}))
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            out.append({"status": r.status, "body": r.read().decode()})
    except urllib.error.HTTPError as e:
        out.append({"status": e.code, "body": e.read().decode()})
    except Exception as e:
        out.append({"status": 0, "error": repr(e)})
found = []
for path in data.get("unreadable", []):
    try:
        with open(path, "rb") as fh:
            found.append("readable " + path)
    except OSError:
        pass
secret = data.get("search")
if secret:
    found += ["env " + k for k, v in os.environ.items() if secret in v]
    for root in ["/etc", "/tmp"] + data.get("dirs", []):
        for d, _, files in os.walk(root):
            for f in files:
                if not os.path.isfile(os.path.join(d, f)):
                    continue
                try:
                    with open(os.path.join(d, f), "rb") as fh:
                        if secret.encode() in fh.read(1 << 20):
                            found.append(os.path.join(d, f))
                except Exception:
                    pass
print(json.dumps({"results": out, "found": found}), flush=True)
"#;

/// A daemon that calls the upstream once and idles with the connection open.
const DAEMON: &str = r#"
import http.client, time
conn = http.client.HTTPSConnection("llm.test", timeout=30)
conn.request("GET", "/v1/plain")
conn.getresponse().read()
time.sleep(1000)
"#;

/// Established TCP connections to clrk's listeners on the metadata address (the gateway's
/// among them) on this host.
fn gateway_connections() -> usize {
    let out = Command::new("ss")
        .args(["-Htn", "state", "established", "src", "169.254.169.254"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).lines().count()
}

/// A network namespace holding the upstream, joined to the host by a veth pair.
struct Upstream {
    netns: String,
    host_veth: String,
    /// The host's end: an address of this worker.
    host_ip: Ipv4Addr,
    /// The upstream's address.
    ip: Ipv4Addr,
    /// Its IPv6 address, which `v6.test` names (and nothing else does).
    ip6: Ipv6Addr,
    servers: Vec<Child>,
    ca_pem: String,
    /// The upstream CA's file, readable from `host:` sandboxes.
    ca_file: String,
    /// Where the trusted servers log each request they receive (a JSON line each).
    requests: std::path::PathBuf,
    _dir: tempfile::TempDir,
    /// Holds this upstream's number (its namespace, veth and addresses) while it lives.
    _slot: std::fs::File,
}

/// A number for an upstream's namespace, veth and addresses that no other running test holds:
/// each is claimed by a lock on a file, which the kernel releases when its process ends,
/// killed or not.
fn claim_slot() -> (u8, std::fs::File) {
    static STARTED: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let k = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let first = std::process::id() + 101 * k;
    for i in 0..200 {
        let n = ((first + i) % 200 + 20) as u8;
        let path = format!("/run/clrkt-up-{n}.lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .unwrap();
        if file.try_lock().is_ok() {
            return (n, file);
        }
    }
    panic!("every upstream number is held by a running test");
}

impl Upstream {
    fn start() -> Upstream {
        let (n, slot) = claim_slot();
        let netns = format!("clrkt-up-{n}");
        // Not "clrk…": that prefix is how the firewall knows sandbox veths.
        let host_veth = format!("egtup{n}");
        let (host_ip, ip) = (Ipv4Addr::new(10, 251, n, 1), Ipv4Addr::new(10, 251, n, 2));
        let ip6 = Ipv6Addr::new(0xfd11, n.into(), 0, 0, 0, 0, 0, 2);
        let _ = Command::new("ip").args(["netns", "del", &netns]).status();
        let _ = Command::new("ip")
            .args(["link", "del", &host_veth])
            .status();
        sh(&format!(
            "ip netns add {netns} && ip link add {host_veth} type veth peer name eth0 netns {netns} && \
             ip addr add {host_ip}/30 dev {host_veth} && ip link set {host_veth} up && \
             ip -n {netns} addr add {ip}/30 dev eth0 && ip -n {netns} link set eth0 up && \
             ip -n {netns} link set lo up && \
             ip addr add fd11:{n:x}::1/64 dev {host_veth} nodad && \
             ip -n {netns} addr add {ip6}/64 dev eth0 nodad"
        ));
        // Not under /tmp: a `host:` sandbox has its own /tmp, and one agent reads the CA.
        let dir = tempfile::tempdir_in("/var/tmp").unwrap();
        // The upstream's own CA, which the gateway is told to trust; and a server whose
        // certificate nobody trusts.
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "egress test upstream CA");
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        // It also stands in for Anthropic's and OpenAI's APIs, for the shipped examples, and
        // for the other names the tests give this one address.
        let leaf = rcgen::CertificateParams::new(
            [
                "llm.test",
                "api.anthropic.com",
                "api.openai.com",
                "gpt.test",
                "azure.test",
                "maps.test",
                "v6.test",
            ]
            .map(str::to_string)
            .to_vec(),
        )
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
        let bad_key = rcgen::KeyPair::generate().unwrap();
        let bad = rcgen::CertificateParams::new(vec!["bad.test".to_string()])
            .unwrap()
            .self_signed(&bad_key)
            .unwrap();
        let write = |name: &str, text: String| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path.to_string_lossy().into_owned()
        };
        let good = (
            write("llm.crt", leaf.pem()),
            write("llm.key", leaf_key.serialize_pem()),
        );
        let untrusted = (
            write("bad.crt", bad.pem()),
            write("bad.key", bad_key.serialize_pem()),
        );
        let script = repo_path("crates/clrk/tests/fixtures/llm_upstream.py");
        let requests = dir.path().join("requests.jsonl");
        let mut servers = Vec::new();
        for (addr, port, (cert, key)) in [
            (ip.to_string(), 443, good.clone()),
            (ip.to_string(), 8443, untrusted),
            (ip6.to_string(), 443, good),
        ] {
            let mut child = Command::new("ip")
                .args(["netns", "exec", &netns, "python3"])
                .arg(&script)
                .args([&addr, &port.to_string(), &cert, &key])
                .arg(&requests)
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            let mut line = String::new();
            std::io::BufRead::read_line(
                &mut std::io::BufReader::new(child.stdout.take().unwrap()),
                &mut line,
            )
            .unwrap();
            assert_eq!(
                line.trim(),
                "ready",
                "upstream on port {port} did not start"
            );
            servers.push(child);
        }
        let ca_file = write("ca.crt", ca_cert.pem());
        Upstream {
            ca_file,
            requests,
            netns,
            host_veth,
            host_ip,
            ip,
            ip6,
            servers,
            ca_pem: ca_cert.pem(),
            _dir: dir,
            _slot: slot,
        }
    }
}

impl Upstream {
    /// Every request the trusted servers received so far: method, path with query, headers.
    fn requests(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.requests)
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        for s in &mut self.servers {
            let _ = s.kill();
            let _ = s.wait();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.netns])
            .status();
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_veth])
            .status();
    }
}

fn sh(script: &str) {
    let status = Command::new("sh").args(["-c", script]).status().unwrap();
    assert!(status.success(), "{script}");
}

/// A DNS server for the test's names: `*.test` names it knows point at the upstream, the
/// rest do not exist.
async fn dns_server(upstream: Ipv4Addr, upstream6: Ipv6Addr) -> SocketAddr {
    dns_server_asked(upstream, upstream6).await.0
}

/// [`dns_server`], with every name it was asked about.
async fn dns_server_asked(
    upstream: Ipv4Addr,
    upstream6: Ipv6Addr,
) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let v4 = vec![IpAddr::V4(upstream)];
    let names = vec![
        ("llm.test", v4.clone()),
        ("bad.test", v4.clone()),
        ("denied.test", v4.clone()),
        ("api.anthropic.com", v4.clone()),
        ("api.openai.com", v4.clone()),
        ("gpt.test", v4.clone()),
        ("azure.test", v4.clone()),
        ("maps.test", v4),
        ("v6.test", vec![IpAddr::V6(upstream6)]),
    ];
    common::dns::dns_server_on("127.0.0.1:0".parse().unwrap(), names).await
}

/// One span as the receiver decoded it.
#[derive(Debug, Clone)]
struct ReceivedSpan {
    trace_id: String,
    parent_span_id: String,
    attributes: HashMap<String, String>,
    header: Option<String>,
}

/// An OTLP/HTTP receiver: decodes every `/v1/traces` export.
async fn otlp_receiver() -> (SocketAddr, Arc<Mutex<Vec<ReceivedSpan>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let spans: Arc<Mutex<Vec<ReceivedSpan>>> = Arc::default();
    let sink = Arc::clone(&spans);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let sink = Arc::clone(&sink);
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let sink = Arc::clone(&sink);
                        async move {
                            let header = req
                                .headers()
                                .get("x-otlp-key")
                                .map(|v| v.to_str().unwrap().to_string());
                            assert_eq!(req.uri().path(), "/v1/traces");
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let export = ExportTraceServiceRequest::decode(body).unwrap();
                            let mut sink = sink.lock().unwrap();
                            for span in export
                                .resource_spans
                                .iter()
                                .flat_map(|r| &r.scope_spans)
                                .flat_map(|s| &s.spans)
                            {
                                let attributes = span
                                    .attributes
                                    .iter()
                                    .map(|kv| {
                                        let v =
                                            match kv.value.as_ref().and_then(|v| v.value.clone()) {
                                                Some(OtlpValue::StringValue(s)) => s,
                                                Some(OtlpValue::IntValue(i)) => i.to_string(),
                                                Some(OtlpValue::BoolValue(b)) => b.to_string(),
                                                other => format!("{other:?}"),
                                            };
                                        (kv.key.clone(), v)
                                    })
                                    .collect();
                                sink.push(ReceivedSpan {
                                    trace_id: hex(&span.trace_id),
                                    parent_span_id: hex(&span.parent_span_id),
                                    attributes,
                                    header: header.clone(),
                                });
                            }
                            Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                                Bytes::new(),
                            )))
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, spans)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn indent(text: &str, by: usize) -> String {
    text.lines()
        .map(|l| format!("{}{l}\n", " ".repeat(by)))
        .collect()
}

/// A `clrk dev` resolving through `dns`, with the provider key as a secret and the gateways,
/// routes and policies of [`manifests`] applied.
fn dev_with_gateways(dns: SocketAddr, upstream: &Upstream, otlp: SocketAddr) -> Dev {
    let dev = dev_with_key(dns);
    dev.apply(&manifests(&upstream.ca_pem, &upstream.ca_file, otlp));
    dev
}

/// A `clrk dev` resolving through `dns`, with the provider key as the secret `anthropic`.
fn dev_with_key(dns: SocketAddr) -> Dev {
    let dev = Dev::start_with(&["--dns-upstream", &dns.to_string()]);
    let out = dev.clrk(&[
        "secret",
        "set",
        "anthropic",
        "--from-literal",
        &format!("token={SECRET}"),
    ]);
    assert!(out.status.success(), "{}", common::text(&out.stderr));
    dev
}

fn manifests(ca_pem: &str, ca_file: &str, otlp: SocketAddr) -> String {
    let agent = serde_json::to_string(AGENT).unwrap();
    format!(
        r#"apiVersion: clrk.apoxy.dev/v1alpha1
kind: EgressGateway
metadata: {{name: main}}
spec:
  upstreamTLS:
    additionalTrustBundle: |
{bundle}  otlp:
    endpoint: http://{otlp}
    headers: {{x-otlp-key: otlp-key-123}}
---
apiVersion: clrk.apoxy.dev/v1alpha1
kind: EgressL4Route
metadata: {{name: untrusted}}
spec:
  parentRefs: [{{name: main}}]
  rules: [{{destinationHostnames: [bad.test], ports: [8443]}}]
---
apiVersion: clrk.apoxy.dev/v1alpha1
kind: AIProviderRoute
metadata: {{name: llm}}
spec:
  parentRefs: [{{name: main}}]
  matches: [{{provider: anthropic, hostnames: [llm.test]}}]
  filters:
    - type: TokenBudget
      tokenBudget: {{maxTokensPerExecution: 30, maxTokensPerDay: 120}}
---
apiVersion: clrk.apoxy.dev/v1alpha1
kind: CredentialInjectionPolicy
metadata: {{name: anthropic-key}}
spec:
  parentRefs: [{{name: main}}]
  destinationHostnames: [llm.test]
  secretRef: {{name: anthropic}}
  headerName: x-api-key
---
apiVersion: clrk.apoxy.dev/v1alpha1
kind: EgressGateway
metadata: {{name: open}}
spec:
  defaultPolicy: allow-all
  # Nothing listens there: exports fail and are retried, agents must not notice.
  otlp: {{endpoint: "http://127.0.0.1:1"}}
  upstreamTLS:
    additionalTrustBundle: |
{bundle}
---
apiVersion: clrk.apoxy.dev/v1alpha1
kind: TaskAgent
metadata: {{name: caller}}
spec:
  timeout: 90s
  egressRefs: [{{gatewayRef: main}}]
  template:
    spec:
      image: "host:"
      command: ["python3", "-c", {agent}]
      env: [{{name: ANTHROPIC_API_KEY, value: {PLACEHOLDER}}}]
---
apiVersion: clrk.apoxy.dev/v1alpha1
kind: TaskAgent
metadata: {{name: warm-caller}}
spec:
  timeout: 90s
  warmPoolSize: 1
  egressRefs: [{{gatewayRef: main}}]
  template:
    spec:
      image: "host:"
      command: ["python3", "-c", {agent}]
---
apiVersion: clrk.apoxy.dev/v1alpha1
kind: TaskAgent
metadata: {{name: reused-caller}}
spec:
  timeout: 90s
  warmPoolSize: 1
  sandboxReuse: {{maxExecutions: 10}}
  egressRefs: [{{gatewayRef: main}}]
  template:
    spec:
      image: "host:"
      command: ["python3", "-c", {agent}]
---
apiVersion: clrk.apoxy.dev/v1alpha1
kind: EgressGateway
metadata: {{name: pass}}
spec: {{tls: {{mode: Passthrough}}}}
---
apiVersion: clrk.apoxy.dev/v1alpha1
kind: EgressL4Route
metadata: {{name: pass-llm}}
spec:
  parentRefs: [{{name: pass}}]
  rules: [{{destinationHostnames: [llm.test], ports: [443]}}]
---
apiVersion: clrk.apoxy.dev/v1alpha1
kind: TaskAgent
metadata: {{name: passer}}
spec:
  timeout: 90s
  egressRefs: [{{gatewayRef: pass}}]
  template:
    spec:
      image: "host:"
      command: ["python3", "-c", {agent}]
      env: [{{name: SSL_CERT_FILE, value: "{ca_file}"}}]
---
apiVersion: clrk.apoxy.dev/v1alpha1
kind: DaemonAgent
metadata: {{name: watcher}}
spec:
  egressRefs: [{{gatewayRef: main}}]
  template:
    spec:
      image: "host:"
      command: ["python3", "-c", {daemon}]
---
apiVersion: clrk.apoxy.dev/v1alpha1
kind: TaskAgent
metadata: {{name: roamer}}
spec:
  timeout: 90s
  egressRefs: [{{gatewayRef: open}}]
  template:
    spec:
      image: "host:"
      command: ["python3", "-c", {agent}]
---
apiVersion: clrk.apoxy.dev/v1alpha1
kind: TaskAgent
metadata: {{name: isolated}}
spec:
  timeout: 90s
  template:
    spec:
      image: "host:"
      command: ["python3", "-c", {agent}]
"#,
        bundle = indent(ca_pem, 6),
        daemon = serde_json::to_string(DAEMON).unwrap(),
    )
}

/// Invokes `agent` with `data`; returns the agent's report.
async fn call(dev: &Dev, agent: &str, data: Value) -> (String, Value) {
    let response = dev
        .invoke(
            &[
                ("X-Clrk-TaskAgent", &format!("default/{agent}")),
                ("content-type", "application/json"),
            ],
            data.to_string(),
        )
        .await;
    if response.status != 200 {
        let logs = dev.clrk(&["agents", "logs", agent]);
        panic!(
            "{agent}: {} {}\nagent logs:\n{}\nserver log:\n{}",
            response.status,
            response.text(),
            common::text(&logs.stdout),
            dev.server_log()
        );
    }
    let report: Value = serde_json::from_str(response.text().trim()).unwrap();
    let execution = dev.invocations(agent).await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    (execution, report)
}

fn message(stream: bool) -> Value {
    json!({
        "method": "POST",
        "url": "https://llm.test/v1/messages",
        "headers": {
            "content-type": "application/json",
            "x-api-key": PLACEHOLDER,
            "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        },
        "body": {"model": "claude-test", "max_tokens": 10, "stream": stream,
                 "messages": [{"role": "user", "content": "hi"}]},
    })
}

async fn records(dev: &Dev, agent: &str) -> Vec<Value> {
    let r = dev
        .api_get(&format!("/v1/agents/default/{agent}/egress?limit=100"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["items"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hidden_credentials_budgets_records_and_spans() {
    let upstream = Upstream::start();
    let dns = dns_server(upstream.ip, upstream.ip6).await;
    let (otlp, spans) = otlp_receiver().await;
    let mut dev = dev_with_key(dns);
    let applied = dev.apply(&manifests(&upstream.ca_pem, &upstream.ca_file, otlp));
    assert!(
        applied.contains("credentialinjectionpolicy/anthropic-key created"),
        "{applied}"
    );

    // The guide's story: the placeholder goes in, the real key reaches the provider, the
    // agent never holds it; JSON and streamed usage are both counted.
    let data = json!({
        "calls": [message(false), message(true), message(false)],
        "search": SECRET,
        "dirs": [dev.clrk_dir().to_string_lossy(), dev.data_dir().to_string_lossy()],
        "unreadable": [dev.data_dir().join("egress/default/main/ca.key").to_string_lossy()],
    });
    let (first, report) = call(&dev, "caller", data).await;
    let ca_key = dev.data_dir().join("egress/default/main/ca.key");
    assert!(
        ca_key.exists(),
        "the gateway CA's key is at {}",
        ca_key.display()
    );
    let results = report["results"].as_array().unwrap();
    assert_eq!(results[0]["status"], 200, "{report}");
    let seen: Value = serde_json::from_str(results[0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(
        seen["headers"]["x-api-key"], SECRET,
        "the upstream must get the real key"
    );
    let traceparent = seen["headers"]["traceparent"].as_str().unwrap();
    assert!(
        traceparent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "{traceparent}"
    );
    assert!(
        !traceparent.contains("00f067aa0ba902b7"),
        "the gateway's own span is the parent upstream"
    );
    assert_eq!(results[1]["status"], 200, "{report}");
    assert!(
        results[1]["body"]
            .as_str()
            .unwrap()
            .contains("message_delta")
    );
    // 25 + 25 tokens used, over the per-execution budget of 30: refused by the gateway.
    assert_eq!(results[2]["status"], 429, "{report}");
    let refusal = results[2]["body"].as_str().unwrap();
    assert!(
        refusal.contains("aiproviderroute llm allows 30 tokens per execution"),
        "{refusal}"
    );
    assert_eq!(
        report["found"],
        json!([]),
        "the secret is visible in the sandbox: {report}"
    );

    let recorded = records(&dev, "caller").await;
    let mine: Vec<&Value> = recorded
        .iter()
        .filter(|r| r["executionId"] == first.as_str())
        .collect();
    assert_eq!(mine.len(), 3, "{recorded:#?}");
    let ok = mine
        .iter()
        .find(|r| r["status"] == 200 && r["outputTokens"] == 15)
        .unwrap();
    assert_eq!(ok["inputTokens"], 10);
    assert_eq!(ok["destinationName"], "llm.test");
    assert_eq!(ok["allowed"], true);
    assert_eq!(ok["model"], "claude-test");
    assert!(
        ok["injectedHeader"]
            .as_str()
            .unwrap()
            .starts_with("x-api-key"),
        "{ok}"
    );
    assert!(!serde_json::to_string(&recorded).unwrap().contains(SECRET));
    let refused = mine.iter().find(|r| r["status"] == 429).unwrap();
    assert_eq!(refused["allowed"], false);

    // The span carries the execution and the usage, continuing the agent's trace.
    let span = eventually("the span at the OTLP receiver", || async {
        spans
            .lock()
            .unwrap()
            .iter()
            .find(|s| {
                s.attributes.get("invocation.id").map(String::as_str) == Some(first.as_str())
                    && s.attributes
                        .get("gen_ai.usage.output_tokens")
                        .map(String::as_str)
                        == Some("15")
            })
            .cloned()
    })
    .await;
    assert_eq!(span.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(span.parent_span_id, "00f067aa0ba902b7");
    assert_eq!(span.header.as_deref(), Some("otlp-key-123"));
    for (key, value) in [
        ("agent.kind", "TaskAgent"),
        ("agent.namespace", "default"),
        ("agent.name", "caller"),
        ("clrk.dst.name", "llm.test"),
        ("gen_ai.system", "anthropic"),
        ("gen_ai.request.model", "claude-test"),
        ("gen_ai.usage.input_tokens", "10"),
    ] {
        assert_eq!(
            span.attributes.get(key).map(String::as_str),
            Some(value),
            "{key}: {span:?}"
        );
    }
    assert!(span.attributes["agent.revision"].starts_with("caller-"));
    for key in ["clrk.req.bytes", "clrk.resp.bytes", "clrk.duration_ms"] {
        assert!(span.attributes.contains_key(key), "{key}: {span:?}");
    }

    // Refusals, each recorded with its reason: a name no route names (DNS), the upstream's
    // address dialled directly, a port the route does not list, an untrusted certificate.
    let ip = upstream.ip;
    let data = json!({"calls": [
        {"url": "https://denied.test/"},
        {"url": format!("https://{ip}/")},
        {"url": "http://llm.test:8080/"},
        {"url": "https://bad.test:8443/"},
    ]});
    let (second, report) = call(&dev, "caller", data).await;
    let results = report["results"].as_array().unwrap();
    assert_eq!(
        results[0]["status"], 0,
        "denied.test must not resolve: {report}"
    );
    assert_eq!(results[1]["status"], 403, "{report}");
    assert!(
        results[1]["body"]
            .as_str()
            .unwrap()
            .contains("no route of egressgateway main allows")
    );
    assert_ne!(results[2]["status"], 200, "{report}");
    assert_eq!(results[3]["status"], 502, "{report}");
    let recorded = records(&dev, "caller").await;
    let of_second: Vec<&Value> = recorded
        .iter()
        .filter(|r| r["executionId"] == second.as_str())
        .collect();
    let reasons = serde_json::to_string(&of_second).unwrap();
    assert!(
        of_second.iter().any(|r| r["protocol"] == "dns"
            && r["destinationName"] == "denied.test"
            && r["allowed"] == false),
        "{reasons}"
    );
    assert!(
        of_second
            .iter()
            .any(|r| r["destinationAddr"] == format!("{ip}:443") && r["allowed"] == false),
        "{reasons}"
    );
    assert!(
        of_second
            .iter()
            .any(|r| r["destinationAddr"] == format!("{ip}:8080") && r["allowed"] == false),
        "{reasons}"
    );
    let bad = of_second
        .iter()
        .find(|r| r["destinationName"] == "bad.test")
        .expect(&reasons);
    assert!(
        bad["reason"]
            .as_str()
            .unwrap()
            .contains("upstream TLS with bad.test failed"),
        "{bad}"
    );

    // A daemon's calls belong to its run and are exported as a DaemonAgent's. (Done before
    // the reuse check below, so that no other call shares the gateway's upstream connection.)
    let recorded = eventually("the daemon's call", || async {
        let r = records(&dev, "watcher").await;
        (!r.is_empty()).then_some(r)
    })
    .await;
    assert_eq!(recorded[0]["status"], 200, "{recorded:#?}");
    let run = dev.invocations("watcher").await[0]["id"].clone();
    assert_eq!(recorded[0]["executionId"], run);
    eventually("the daemon's span", || async {
        spans
            .lock()
            .unwrap()
            .iter()
            .any(|s| {
                s.attributes.get("agent.name").map(String::as_str) == Some("watcher")
                    && s.attributes.get("agent.kind").map(String::as_str) == Some("DaemonAgent")
                    && s.attributes.get("invocation.id").map(String::as_str) == run.as_str()
            })
            .then_some(())
    })
    .await;

    // The daemon's connection stays open while it runs, and is gone with its sandbox.
    assert!(
        gateway_connections() >= 1,
        "the daemon's connection is open"
    );
    let out = dev.clrk(&["agents", "delete", "watcher"]);
    assert!(out.status.success(), "{}", common::text(&out.stderr));
    eventually("the daemon's gateway connection closed", || async {
        (gateway_connections() == 0).then_some(())
    })
    .await;

    // Allow-all still refuses the worker itself; no gateway means nothing leaves at all.
    let host = upstream.host_ip;
    let data = json!({"calls": [
        {"url": "https://llm.test/v1/plain"},
        {"url": format!("http://{host}:{}/", dev.api.rsplit(':').next().unwrap())},
        {"url": "https://llm.test/v1/plain"},
    ]});
    let (_, report) = call(&dev, "roamer", data).await;
    let results = report["results"].as_array().unwrap();
    assert_eq!(results[0]["status"], 200, "{report}");
    let seen: Value = serde_json::from_str(results[0]["body"].as_str().unwrap()).unwrap();
    assert!(
        seen["headers"].get("x-api-key").is_none(),
        "no policy on gateway open: {seen}"
    );
    assert_eq!(results[1]["status"], 403, "{report}");
    assert!(
        results[1]["body"]
            .as_str()
            .unwrap()
            .contains("address of this worker"),
        "{report}"
    );
    // A protocol switch (a WebSocket, say) goes through and is relayed both ways.
    let (_, report) = call(
        &dev,
        "roamer",
        json!({"calls": [{"upgrade": "llm.test", "send": "hello"}]}),
    )
    .await;
    assert_eq!(report["results"][0]["status"], 101, "{report}");
    assert_eq!(report["results"][0]["body"], "HELLO\n", "{report}");
    let upgraded = eventually("the upgrade's record", || async {
        records(&dev, "roamer")
            .await
            .into_iter()
            .find(|r| r["status"] == 101)
    })
    .await;
    assert_eq!(upgraded["requestBytes"], 6, "{upgraded}");
    assert_eq!(upgraded["responseBytes"], 6, "{upgraded}");

    // IPv6: a name only an AAAA record gives is reached the same way, through the gateway.
    let (_, report) = call(
        &dev,
        "roamer",
        json!({"calls": [{"url": "https://v6.test/v1/plain"}]}),
    )
    .await;
    assert_eq!(report["results"][0]["status"], 200, "{report}");
    let recorded = records(&dev, "roamer").await;
    let v6 = recorded
        .iter()
        .find(|r| r["destinationName"] == "v6.test")
        .expect("a v6.test record");
    assert_eq!(
        v6["destinationAddr"],
        format!("[{}]:443", upstream.ip6),
        "{v6}"
    );

    // The gateway kept an upstream connection for the next request to the same server.
    let again: Value = serde_json::from_str(results[2]["body"].as_str().unwrap()).unwrap();
    assert_eq!(
        again["peer"], seen["peer"],
        "a new upstream connection per request"
    );
    let (_, report) = call(
        &dev,
        "isolated",
        json!({"calls": [{"url": "https://llm.test/"}, {"url": format!("http://{ip}/")}]}),
    )
    .await;
    for result in report["results"].as_array().unwrap() {
        assert_eq!(
            result["status"], 0,
            "an agent without egressRefs reached out: {report}"
        );
    }

    // Passthrough: the agent's TLS goes to the upstream untouched (it trusts the upstream's
    // CA itself), only the server name is checked and recorded.
    let (_, report) = call(&dev, "passer", json!({"calls": [{"url": "https://llm.test/v1/plain", "headers": {"x-api-key": PLACEHOLDER}}]})).await;
    assert_eq!(report["results"][0]["status"], 200, "{report}");
    let seen: Value = serde_json::from_str(report["results"][0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(
        seen["headers"]["x-api-key"], PLACEHOLDER,
        "nothing is injected through passthrough"
    );
    let recorded = records(&dev, "passer").await;
    assert_eq!(
        (
            recorded[0]["protocol"].as_str(),
            recorded[0]["destinationName"].as_str()
        ),
        (Some("tls"), Some("llm.test")),
        "{recorded:#?}"
    );
    assert_eq!(recorded[0]["allowed"], true);

    // The CLI shows the same records.
    let out = dev.clrk(&["agents", "egress", "caller"]);
    let table = common::text(&out.stdout);
    assert!(
        out.status.success()
            && table.contains("denied")
            && table.contains("llm.test")
            && table.contains("10/15"),
        "{table}"
    );

    // A warm sandbox, started before its execution existed, is attributed to the execution
    // that takes it.
    eventually("a warm sandbox of warm-caller", || async {
        let r = dev.api_get("/v1/agents/default/warm-caller").await;
        (r.json()["status"]["warm"].as_u64() == Some(1)).then_some(())
    })
    .await;
    let (warm, report) = call(
        &dev,
        "warm-caller",
        json!({"calls": [{"url": "https://llm.test/v1/plain"}]}),
    )
    .await;
    assert_eq!(report["results"][0]["status"], 200, "{report}");
    assert_eq!(dev.invocations("warm-caller").await[0]["start"], "warm");
    let recorded = records(&dev, "warm-caller").await;
    assert_eq!(recorded[0]["executionId"], warm.as_str(), "{recorded:#?}");
    assert!(
        recorded[0]["injectedHeader"]
            .as_str()
            .unwrap()
            .starts_with("x-api-key")
    );

    // One reused sandbox, one execution after the other: each execution's call is its own.
    let mut ran = Vec::new();
    for _ in 0..2 {
        eventually("a ready sandbox of reused-caller", || async {
            let r = dev.api_get("/v1/agents/default/reused-caller").await;
            (r.json()["status"]["warm"].as_u64() == Some(1)).then_some(())
        })
        .await;
        let (id, report) = call(
            &dev,
            "reused-caller",
            json!({"calls": [{"url": "https://llm.test/v1/plain"}]}),
        )
        .await;
        assert_eq!(report["results"][0]["status"], 200, "{report}");
        ran.push(id);
    }
    let recorded = records(&dev, "reused-caller").await;
    let ids: Vec<_> = recorded.iter().map(|r| r["executionId"].clone()).collect();
    assert_eq!(ids, [ran[1].as_str(), ran[0].as_str()], "{recorded:#?}");

    // Daily budget of 120: the first execution used 50; 50 more, then 25 more reach 125,
    // after which the day is over budget, also after a restart.
    let (_, report) = call(
        &dev,
        "caller",
        json!({"calls": [message(false), message(false)]}),
    )
    .await;
    let results = report["results"].as_array().unwrap();
    assert_eq!(results[0]["status"], 200, "{report}");
    assert_eq!(results[1]["status"], 200, "{report}");
    let (_, report) = call(&dev, "caller", json!({"calls": [message(false)]})).await;
    assert_eq!(report["results"][0]["status"], 200, "{report}");
    let (_, report) = call(&dev, "caller", json!({"calls": [message(false)]})).await;
    let refusal = &report["results"][0];
    assert_eq!(refusal["status"], 429, "{report}");
    assert!(
        refusal["body"]
            .as_str()
            .unwrap()
            .contains("allows 120 tokens per day"),
        "{report}"
    );
    dev.stop();
    dev.spawn(&["--dns-upstream", &dns.to_string()]);
    let (_, report) = call(&dev, "caller", json!({"calls": [message(false)]})).await;
    assert_eq!(
        report["results"][0]["status"], 429,
        "the day's count was lost in a restart: {report}"
    );
    let get = dev.clrk(&["agents", "get", "caller", "-o", "json"]);
    let get: Value = serde_json::from_slice(&get.stdout).unwrap();
    assert_eq!(get["status"]["tokenUsage"]["today"], 125, "{get}");
}

/// Applies a shipped example's `egress.yaml` (plus the test upstream's CA) and
/// `taskagent-host.yaml`, after checking scripts/setup.sh installed its agent and the SDKs.
fn apply_example(dev: &Dev, upstream: &Upstream, example: &str) {
    apply_example_as(dev, upstream, example, "agent.py", "taskagent-host.yaml");
}

/// Applies the example's `egress.yaml`, trusting `upstream`, then its manifest `agent` that runs
/// the installed `script`.
fn apply_example_as(dev: &Dev, upstream: &Upstream, example: &str, script: &str, agent: &str) {
    let installed = format!("/usr/local/share/clrk/examples/{example}/{script}");
    assert_eq!(
        std::fs::read(&installed).ok(),
        std::fs::read(repo_path(&format!("examples/{example}/{script}"))).ok(),
        "{installed} is missing or stale: run scripts/setup.sh"
    );
    assert!(
        std::path::Path::new(SDK_PYTHON).exists(),
        "{SDK_PYTHON} is missing: run scripts/setup.sh"
    );
    let egress =
        std::fs::read_to_string(repo_path(&format!("examples/{example}/egress.yaml"))).unwrap();
    let egress = egress.replacen(
        "  defaultPolicy: deny-all\n",
        &format!(
            "  defaultPolicy: deny-all\n  upstreamTLS:\n    additionalTrustBundle: |\n{}",
            indent(&upstream.ca_pem, 6)
        ),
        1,
    );
    dev.apply(&egress);
    dev.apply(&std::fs::read_to_string(repo_path(&format!("examples/{example}/{agent}"))).unwrap());
}

/// Where scripts/setup.sh installs the provider SDKs the examples use.
const SDK_PYTHON: &str = "/usr/local/share/clrk/venv/bin/python3";

/// Invokes the example agent `agent` with a prompt, streamed or not; returns its answer.
async fn ask_example(dev: &Dev, agent: &str, stream: bool) -> Value {
    let response = dev
        .invoke(
            &[
                ("X-Clrk-TaskAgent", &format!("default/{agent}")),
                ("content-type", "application/json"),
            ],
            json!({"prompt": "hi?", "stream": stream}).to_string(),
        )
        .await;
    assert_eq!(
        response.status,
        200,
        "{}\nagent logs:\n{}",
        response.text(),
        common::text(&dev.clrk(&["agents", "logs", agent]).stdout)
    );
    response.json()
}

/// What a provider must have received from an SDK through `ProviderAuth`: the real key in the
/// header it documents (`header: value`), no placeholder in any header or the query, and no
/// other header that carries a key.
fn assert_only_the_documented_key(requests: &[Value], header: &str, value: &str) {
    assert!(!requests.is_empty());
    for request in requests {
        assert_eq!(request["headers"][header], value, "{request}");
        assert!(
            !carries(request, PLACEHOLDER),
            "a placeholder went upstream: {request}"
        );
        for other in ["authorization", "x-api-key", "api-key", "x-goog-api-key"] {
            if other != header {
                assert!(
                    request["headers"].get(other).is_none(),
                    "{other}: {request}"
                );
            }
        }
        assert!(
            !request["path"].as_str().unwrap().contains("key="),
            "{request}"
        );
    }
}

/// The shipped llm-agent example, applied as a user would (plus the test upstream's CA): the
/// anthropic SDK with the placeholder key gets the provider's answer, JSON and streamed, the
/// provider having received only the real key, in `x-api-key`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_llm_example_answers_with_the_key_it_never_holds() {
    let upstream = Upstream::start();
    let dns = dns_server(upstream.ip, upstream.ip6).await;
    let dev = dev_with_key(dns);
    apply_example(&dev, &upstream, "llm-agent");
    for stream in [false, true] {
        let answer = ask_example(&dev, "llm-agent", stream).await;
        assert_eq!(answer["answer"], "hi", "{answer}");
        assert_eq!(answer["usage"]["output_tokens"], 15, "{answer}");
    }
    let seen = upstream.requests();
    assert_eq!(seen.len(), 2, "{seen:#?}");
    assert_only_the_documented_key(&seen, "x-api-key", SECRET);
    assert!(
        seen.iter().all(|r| r["headers"]["user-agent"]
            .as_str()
            .unwrap()
            .starts_with("Anthropic/Python")),
        "the real SDK made the calls: {seen:#?}"
    );
    let recorded = records(&dev, "llm-agent").await;
    assert_eq!(recorded.len(), 2, "{recorded:#?}");
    for record in &recorded {
        assert_eq!(record["destinationName"], "api.anthropic.com", "{record}");
        assert_eq!(record["provider"], "anthropic");
        assert_eq!(
            record["reason"],
            "aiproviderroute anthropic allows api.anthropic.com:443"
        );
        let injected = record["injectedHeader"].as_str().unwrap();
        assert!(
            injected.starts_with("x-api-key (anthropic key; replaced the agent's "),
            "{injected}"
        );
        assert_eq!(record["inputTokens"], 10);
        assert_eq!(record["outputTokens"], 15);
    }
}

/// The shipped openai-bot example: the openai SDK's calls, JSON and streamed, reach the
/// provider with only the real key, as `Authorization: Bearer`, and are metered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_example_answers_with_the_key_it_never_holds() {
    let upstream = Upstream::start();
    let dns = dns_server(upstream.ip, upstream.ip6).await;
    let dev = dev_with_key(dns);
    set_secret(&dev, "openai", OPENAI_SECRET);
    apply_example(&dev, &upstream, "openai-bot");
    for stream in [false, true] {
        let answer = ask_example(&dev, "openai-bot", stream).await;
        assert_eq!(answer["answer"], "hi", "{answer}");
        assert_eq!(answer["usage"]["completion_tokens"], 15, "{answer}");
    }
    let seen = upstream.requests();
    assert_eq!(seen.len(), 2, "{seen:#?}");
    assert_only_the_documented_key(&seen, "authorization", &format!("Bearer {OPENAI_SECRET}"));
    assert!(
        seen.iter().all(|r| r["headers"]["user-agent"]
            .as_str()
            .unwrap()
            .starts_with("OpenAI/Python")),
        "the real SDK made the calls: {seen:#?}"
    );
    let recorded = records(&dev, "openai-bot").await;
    assert_eq!(recorded.len(), 2, "{recorded:#?}");
    for record in &recorded {
        assert_eq!(record["destinationName"], "api.openai.com", "{record}");
        assert_eq!(record["provider"], "openai");
        assert_eq!(
            record["injectedHeader"],
            "authorization (openai key; replaced the agent's authorization)"
        );
        assert_eq!(record["outputTokens"], 15, "{record}");
    }
}

/// The guide calls openai-bot a DaemonAgent: applied verbatim, it asks on its own as soon as
/// it starts, the provider gets the real key, the log has the answer, each call is recorded.
#[tokio::test(flavor = "multi_thread")]
async fn the_openai_daemon_example_asks_on_its_own_with_the_key_it_never_holds() {
    let upstream = Upstream::start();
    let dns = dns_server(upstream.ip, upstream.ip6).await;
    let dev = dev_with_key(dns);
    set_secret(&dev, "openai", OPENAI_SECRET);
    apply_example_as(
        &dev,
        &upstream,
        "openai-bot",
        "daemon.py",
        "daemonagent.yaml",
    );
    let logs = dev.wait_for("the daemon's first answer in its log", || {
        let out = dev.clrk(&["agents", "logs", "openai-bot"]);
        let logs = common::text(&out.stdout);
        logs.contains(r#"{"ask": 1, "answer": "hi""#)
            .then_some(logs)
    });
    assert!(logs.contains(r#""completion_tokens": 15"#), "{logs}");
    let seen = upstream.requests();
    assert!(!seen.is_empty(), "the provider was called");
    assert_only_the_documented_key(&seen, "authorization", &format!("Bearer {OPENAI_SECRET}"));
    let recorded = records(&dev, "openai-bot").await;
    assert!(!recorded.is_empty(), "each call is recorded");
    assert_eq!(recorded[0]["provider"], "openai", "{:#?}", recorded[0]);
    let out = dev.clrk(&["agents", "get", "openai-bot"]);
    assert!(
        common::text(&out.stdout).contains("Running"),
        "{}",
        common::text(&out.stdout)
    );
    let out = dev.clrk(&["agents", "delete", "openai-bot"]);
    assert!(out.status.success(), "{}", common::text(&out.stderr));
}

const OPENAI_SECRET: &str = "sk-openai-real-41d0b2";
const MAPS_SECRET: &str = "maps real/key+1";

/// Gateway, provider routes for two providers on one address, and one policy of each target.
fn credential_manifests(upstream: &Upstream, otlp: SocketAddr) -> String {
    format!(
        r#"apiVersion: clrk.apoxy.dev/v1alpha1
kind: EgressGateway
metadata: {{name: keys}}
spec:
  upstreamTLS:
    additionalTrustBundle: |
{bundle}  otlp: {{endpoint: "http://{otlp}"}}
---
apiVersion: clrk.apoxy.dev/v1alpha1
kind: AIProviderRoute
metadata: {{name: claude}}
spec:
  parentRefs: [{{name: keys}}]
  matches: [{{provider: anthropic, hostnames: [llm.test]}}]
---
apiVersion: clrk.apoxy.dev/v1alpha1
kind: AIProviderRoute
metadata: {{name: gpt}}
spec:
  parentRefs: [{{name: keys}}]
  matches: [{{provider: openai, hostnames: [gpt.test]}}]
---
apiVersion: clrk.apoxy.dev/v1alpha1
kind: AIProviderRoute
metadata: {{name: azure}}
spec:
  parentRefs: [{{name: keys}}]
  matches: [{{provider: azure-openai, hostnames: [azure.test]}}]
---
apiVersion: clrk.apoxy.dev/v1alpha1
kind: CredentialInjectionPolicy
metadata: {{name: anthropic-key}}
spec:
  parentRefs: [{{name: keys}}]
  destinationHostnames: [llm.test]
  secretRef: {{name: anthropic}}
  target: ProviderAuth
---
apiVersion: clrk.apoxy.dev/v1alpha1
kind: CredentialInjectionPolicy
metadata: {{name: openai-key}}
spec:
  parentRefs: [{{name: keys}}]
  destinationHostnames: [gpt.test, azure.test]
  secretRef: {{name: openai}}
  target: ProviderAuth
---
apiVersion: clrk.apoxy.dev/v1alpha1
kind: EgressL4Route
metadata: {{name: maps}}
spec:
  parentRefs: [{{name: keys}}]
  rules: [{{destinationHostnames: [maps.test], ports: [443]}}]
---
apiVersion: clrk.apoxy.dev/v1alpha1
kind: CredentialInjectionPolicy
metadata: {{name: maps-key}}
spec:
  parentRefs: [{{name: keys}}]
  destinationHostnames: [maps.test]
  secretRef: {{name: maps}}
  target: QueryParam
  paramName: key
---
apiVersion: clrk.apoxy.dev/v1alpha1
kind: CredentialInjectionPolicy
metadata: {{name: maps-bearer}}
spec:
  parentRefs: [{{name: keys}}]
  destinationHostnames: [maps.test]
  secretRef: {{name: openai}}
  headerName: Authorization
  valuePrefix: "Bearer "
---
apiVersion: clrk.apoxy.dev/v1alpha1
kind: TaskAgent
metadata: {{name: keyless}}
spec:
  timeout: 90s
  egressRefs: [{{gatewayRef: keys}}]
  template:
    spec:
      image: "host:"
      command: ["python3", "-c", {agent}]
"#,
        bundle = indent(&upstream.ca_pem, 6),
        agent = serde_json::to_string(AGENT).unwrap(),
    )
}

/// `clrk secret set NAME --from-literal token=VALUE`.
fn set_secret(dev: &Dev, name: &str, value: &str) {
    let out = dev.clrk(&[
        "secret",
        "set",
        name,
        "--from-literal",
        &format!("token={value}"),
    ]);
    assert!(out.status.success(), "{}", common::text(&out.stderr));
}

/// Whether any header value or the path of `request` holds `text`.
fn carries(request: &Value, text: &str) -> bool {
    request["path"].as_str().unwrap_or("").contains(text)
        || request["headers"]
            .as_object()
            .unwrap()
            .values()
            .any(|v| v.as_str().unwrap_or("").contains(text))
}

/// `ProviderAuth` sends each provider's key in the header it documents (Anthropic, OpenAI and
/// Azure OpenAI here), whichever header the agent's client put its placeholder in (Anthropic SDKs have sent both `x-api-key` and
/// `Authorization: Bearer`); `QueryParam` puts a key in the URL, redacted in records and spans;
/// a `Header` takes a `valuePrefix`. Two providers on one address are each recorded under
/// their own route.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_auth_query_params_and_shared_addresses() {
    let upstream = Upstream::start();
    let dns = dns_server(upstream.ip, upstream.ip6).await;
    let (otlp, spans) = otlp_receiver().await;
    let dev = dev_with_key(dns);
    set_secret(&dev, "openai", OPENAI_SECRET);
    set_secret(&dev, "maps", MAPS_SECRET);
    dev.apply(&credential_manifests(&upstream, otlp));

    let bearer = format!("Bearer {PLACEHOLDER}");
    let post = |url: &str, headers: Value| {
        json!({"method": "POST", "url": url, "headers": headers,
               "body": {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}})
    };
    let calls = json!([
        // What anthropic 2.15 sends: the key as a bearer token.
        post("https://llm.test/v1/messages", json!({"content-type": "application/json", "authorization": bearer})),
        // Placeholders everywhere a provider could look.
        post(&format!("https://gpt.test/v1/chat/completions?key={PLACEHOLDER}"), json!({
            "content-type": "application/json", "authorization": bearer,
            "x-api-key": PLACEHOLDER, "api-key": PLACEHOLDER, "x-goog-api-key": PLACEHOLDER})),
        {"url": format!("https://maps.test/geo?q=a%20b&key={PLACEHOLDER}"), "headers": {"authorization": bearer}},
        post("https://azure.test/openai/deployments/d/chat/completions?api-version=2024-10-21", json!({
            "content-type": "application/json", "authorization": bearer, "api-key": PLACEHOLDER})),
    ]);
    let (execution, report) = call(&dev, "keyless", json!({ "calls": calls })).await;
    let results = report["results"].as_array().unwrap();
    for result in results {
        assert_eq!(result["status"], 200, "{report}");
    }
    let seen = upstream.requests();
    assert_eq!(seen.len(), 4, "{seen:#?}");
    let by_path = |prefix: &str| {
        seen.iter()
            .find(|r| r["path"].as_str().unwrap().starts_with(prefix))
            .unwrap_or_else(|| panic!("no request to {prefix}: {seen:#?}"))
    };
    let anthropic = by_path("/v1/messages");
    assert_eq!(anthropic["headers"]["x-api-key"], SECRET, "{anthropic}");
    assert!(
        anthropic["headers"].get("authorization").is_none(),
        "{anthropic}"
    );
    let openai = by_path("/v1/chat/completions");
    assert_eq!(
        openai["headers"]["authorization"],
        format!("Bearer {OPENAI_SECRET}"),
        "{openai}"
    );
    assert_eq!(openai["path"], "/v1/chat/completions", "{openai}");
    for gone in ["x-api-key", "api-key", "x-goog-api-key"] {
        assert!(openai["headers"].get(gone).is_none(), "{gone}: {openai}");
    }
    let azure = by_path("/openai/deployments/d/chat/completions");
    assert_eq!(azure["headers"]["api-key"], OPENAI_SECRET, "{azure}");
    assert!(azure["headers"].get("authorization").is_none(), "{azure}");
    assert_eq!(
        azure["path"],
        "/openai/deployments/d/chat/completions?api-version=2024-10-21"
    );
    let maps = by_path("/geo");
    assert_eq!(
        maps["path"], "/geo?q=a%20b&key=maps%20real%2Fkey%2B1",
        "{maps}"
    );
    assert_eq!(
        maps["headers"]["authorization"],
        format!("Bearer {OPENAI_SECRET}"),
        "{maps}"
    );
    for request in &seen {
        assert!(
            !carries(request, PLACEHOLDER),
            "a placeholder went upstream: {request}"
        );
    }
    assert!(!carries(anthropic, OPENAI_SECRET) && !carries(openai, SECRET));

    // Each record names its own route, although both names resolved to one address, and says
    // which places were written, never the keys.
    let recorded = records(&dev, "keyless").await;
    let mine: Vec<&Value> = recorded
        .iter()
        .filter(|r| r["executionId"] == execution.as_str() && r["protocol"] == "https")
        .collect();
    let record = |name: &str| {
        *mine
            .iter()
            .find(|r| r["destinationName"] == name)
            .unwrap_or_else(|| panic!("no record of {name}: {recorded:#?}"))
    };
    let ip = upstream.ip;
    let (llm, gpt, geo) = (record("llm.test"), record("gpt.test"), record("maps.test"));
    assert_eq!(llm["destinationAddr"], gpt["destinationAddr"]);
    assert_eq!(llm["destinationAddr"], format!("{ip}:443"));
    assert_eq!(llm["reason"], "aiproviderroute claude allows llm.test:443");
    assert_eq!(gpt["reason"], "aiproviderroute gpt allows gpt.test:443");
    assert_eq!(
        (llm["provider"].as_str(), gpt["provider"].as_str()),
        (Some("anthropic"), Some("openai"))
    );
    assert_eq!(
        llm["injectedHeader"],
        "x-api-key (anthropic key; replaced the agent's authorization)"
    );
    assert_eq!(
        gpt["injectedHeader"],
        "authorization (openai key; replaced the agent's authorization, x-api-key, api-key, x-goog-api-key, ?key)"
    );
    assert_eq!(
        geo["injectedHeader"],
        "authorization (replaced the agent's), ?key (replaced the agent's)"
    );
    assert_eq!(geo["path"], "/geo?q=a%20b&key=redacted");
    let azure = record("azure.test");
    assert_eq!(
        azure["reason"],
        "aiproviderroute azure allows azure.test:443"
    );
    assert_eq!(azure["provider"], "az.ai.openai");
    assert_eq!(
        azure["injectedHeader"],
        "api-key (az.ai.openai key; replaced the agent's authorization, api-key)"
    );
    assert_eq!(azure["outputTokens"], 15, "{azure}");
    assert_eq!(
        geo["reason"],
        "egressl4route maps rules[0] allows maps.test:443"
    );
    let everything = serde_json::to_string(&recorded).unwrap();
    for secret in [SECRET, OPENAI_SECRET, MAPS_SECRET, "maps%20real"] {
        assert!(!everything.contains(secret), "{secret} in a record");
    }

    // The spans say the same.
    let span = |name: &'static str| {
        let spans = Arc::clone(&spans);
        let execution = execution.clone();
        async move {
            eventually("the span", || async {
                spans
                    .lock()
                    .unwrap()
                    .iter()
                    .find(|s| {
                        s.attributes.get("invocation.id") == Some(&execution)
                            && s.attributes.get("clrk.dst.name").map(String::as_str) == Some(name)
                    })
                    .cloned()
            })
            .await
        }
    };
    let gpt_span = span("gpt.test").await;
    assert_eq!(
        gpt_span.attributes["clrk.reason"],
        "aiproviderroute gpt allows gpt.test:443"
    );
    assert_eq!(gpt_span.attributes["gen_ai.system"], "openai");
    let llm_span = span("llm.test").await;
    assert_eq!(
        llm_span.attributes["clrk.reason"],
        "aiproviderroute claude allows llm.test:443"
    );
    let geo_span = span("maps.test").await;
    assert_eq!(geo_span.attributes["url.path"], "/geo?q=a%20b&key=redacted");
    let exported = format!("{:?}", spans.lock().unwrap());
    for secret in [SECRET, OPENAI_SECRET, MAPS_SECRET, "maps%20real"] {
        assert!(!exported.contains(secret), "{secret} in a span");
    }
}

/// A child process killed when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `python3 -c script` (with `args`) in the upstream's namespace and waits until
/// `port` at the upstream's address accepts connections.
fn start_in_upstream(upstream: &Upstream, port: u16, script: &str, args: &[&str]) -> Killed {
    let child = Killed(
        Command::new("ip")
            .args(["netns", "exec", &upstream.netns, "python3", "-c", script])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let started = std::time::Instant::now();
    while std::net::TcpStream::connect((upstream.ip, port)).is_err() {
        assert!(
            started.elapsed() < common::DEADLINE,
            "nothing listens on {}:{port}",
            upstream.ip
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    child
}

/// A request the agent writes by hand to the address `connect` resolves to.
fn raw(connect: &str, port: u16, sni: Option<&str>, host: &str, path: &str) -> Value {
    let mut raw = json!({"connect": connect, "port": port, "host": host, "path": path,
                         "headers": {"x-api-key": PLACEHOLDER}});
    if let Some(sni) = sni {
        raw["sni"] = json!(sni);
    }
    json!({ "raw": raw })
}

/// The gateway sends a request only to the name it verified, and that name must be allowed
/// and resolved through clrk: an agent that resolves an allowed name and then sends another
/// TLS name or `Host` to its address reaches nothing, the key never leaves, and the record
/// says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_sent_upstream_are_the_allowed_ones() {
    let upstream = Upstream::start();
    let dns = dns_server(upstream.ip, upstream.ip6).await;
    let (otlp, _spans) = otlp_receiver().await;
    // A plain HTTP server at the upstream's address, which answers any Host.
    let _plain = start_in_upstream(
        &upstream,
        80,
        "import http.server, sys; http.server.ThreadingHTTPServer((sys.argv[1], 80), http.server.SimpleHTTPRequestHandler).serve_forever()",
        &[&upstream.ip.to_string()],
    );
    let dev = dev_with_gateways(dns, &upstream, otlp);

    // Terminated TLS (gateway main: llm.test is allowed and gets the key).
    // A second `Host` after the allowed one: a server that reads the last would route to it.
    let mut two_hosts = raw("llm.test", 443, Some("llm.test"), "llm.test", "/v1/plain");
    two_hosts["raw"]["headers"]["host"] = json!("other.test");
    let (execution, report) = call(
        &dev,
        "caller",
        json!({"calls": [
            raw("llm.test", 443, Some("llm.test"), "llm.test", "/v1/plain"),
            raw("llm.test", 443, Some("llm.test"), "other.test", "/v1/plain"),
            raw("llm.test", 443, Some("api.anthropic.com"), "api.anthropic.com", "/v1/plain"),
            raw("llm.test", 80, None, "other.test", "/"),
            raw("llm.test", 80, None, "llm.test", "/"),
            two_hosts,
        ]}),
    )
    .await;
    let results = report["results"].as_array().unwrap();
    assert_eq!(results[0]["status"], 200, "{report}");
    let seen: Value = serde_json::from_str(results[0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(seen["headers"]["x-api-key"], SECRET, "{report}");
    let refused = |i: usize, why: &str| {
        assert_eq!(results[i]["status"], 403, "call {i}: {report}");
        let body = results[i]["body"].as_str().unwrap();
        assert!(body.contains(why), "call {i}: {body}");
        assert!(!body.contains(SECRET), "call {i}: {body}");
    };
    refused(1, "Host other.test does not match TLS name llm.test");
    refused(
        2,
        &format!(
            "TLS name api.anthropic.com was not resolved to {}",
            upstream.ip
        ),
    );
    refused(
        3,
        &format!("Host other.test was not resolved to {}", upstream.ip),
    );
    refused(4, "only over TLS");
    assert_eq!(results[5]["status"], 400, "call 5: {report}");
    let body = results[5]["body"].as_str().unwrap();
    assert!(body.contains("2 Host headers"), "call 5: {body}");
    assert!(!body.contains(SECRET), "call 5: {body}");

    let recorded = records(&dev, "caller").await;
    let mine: Vec<&Value> = recorded
        .iter()
        .filter(|r| r["executionId"] == execution.as_str())
        .collect();
    let all = serde_json::to_string_pretty(&mine).unwrap();
    let find = |name: &str, why: &str| {
        mine.iter()
            .find(|r| {
                r["destinationName"] == name
                    && r["reason"].as_str().unwrap_or_default().contains(why)
            })
            .unwrap_or_else(|| panic!("no record of {name} saying {why}: {all}"))
    };
    let ok = find("llm.test", "aiproviderroute llm allows llm.test:443");
    assert_eq!(ok["allowed"], true, "{ok}");
    for (name, why) in [
        ("llm.test", "does not match TLS name llm.test"),
        ("api.anthropic.com", "was not resolved"),
        ("other.test", "was not resolved"),
        ("llm.test", "only over TLS"),
        ("llm.test", "2 Host headers"),
    ] {
        let r = find(name, why);
        assert_eq!(r["allowed"], false, "{r}");
        assert!(r["injectedHeader"].is_null(), "{r}");
    }

    // Passthrough (gateway pass: llm.test only): another TLS name opens nothing.
    let (_, report) = call(
        &dev,
        "passer",
        json!({"calls": [
            raw("llm.test", 443, Some("llm.test"), "llm.test", "/v1/plain"),
            raw("llm.test", 443, Some("api.anthropic.com"), "api.anthropic.com", "/v1/plain"),
        ]}),
    )
    .await;
    assert_eq!(report["results"][0]["status"], 200, "{report}");
    assert_eq!(
        report["results"][1]["status"], 0,
        "the upstream was reached under a name no route allows: {report}"
    );
    let recorded = records(&dev, "passer").await;
    let denied = recorded
        .iter()
        .find(|r| r["destinationName"] == "api.anthropic.com")
        .unwrap_or_else(|| panic!("{recorded:#?}"));
    assert_eq!(denied["allowed"], false, "{denied}");
    assert!(
        denied["reason"]
            .as_str()
            .unwrap()
            .contains("TLS name api.anthropic.com was not resolved"),
        "{denied}"
    );
}

/// Under a route with only `destinationCIDRs`, a name no rule names is not asked of the DNS
/// server (an agent could otherwise carry data out in the names it looks up), unless the
/// gateway opts in with `spec.dns.forwardAll`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_no_rule_names_are_not_forwarded() {
    let (dns, asked) = dns_server_asked(Ipv4Addr::new(192, 0, 2, 1), Ipv6Addr::LOCALHOST).await;
    let dev = Dev::start_with(&["--dns-upstream", &dns.to_string()]);
    let lookup = serde_json::to_string(
        "import socket\ntry:\n    socket.getaddrinfo('c2VjcmV0.exfil.test', 443)\nexcept OSError as e:\n    print(e)\nprint('done')",
    )
    .unwrap();
    let agent = |name: &str, gateway: &str| {
        format!(
            r#"---
apiVersion: clrk.apoxy.dev/v1alpha1
kind: TaskAgent
metadata: {{name: {name}}}
spec:
  timeout: 60s
  egressRefs: [{{gatewayRef: {gateway}}}]
  template:
    spec:
      image: "host:"
      command: ["python3", "-c", {lookup}]
"#
        )
    };
    let gateways = format!(
        r#"apiVersion: clrk.apoxy.dev/v1alpha1
kind: EgressGateway
metadata: {{name: ranges}}
---
apiVersion: clrk.apoxy.dev/v1alpha1
kind: EgressGateway
metadata: {{name: ranges-by-name}}
spec: {{dns: {{forwardAll: true}}}}
---
apiVersion: clrk.apoxy.dev/v1alpha1
kind: EgressL4Route
metadata: {{name: net}}
spec:
  parentRefs: [{{name: ranges}}, {{name: ranges-by-name}}]
  rules: [{{destinationCIDRs: [192.0.2.0/24]}}]
{}{}"#,
        agent("quiet", "ranges"),
        agent("chatty", "ranges-by-name")
    );
    dev.apply(&gateways);
    let ask = |agent: &'static str| {
        let dev = &dev;
        async move {
            let r = dev
                .invoke(&[("X-Clrk-TaskAgent", &format!("default/{agent}"))], "x")
                .await;
            assert_eq!(r.status, 200, "{agent}: {}", r.text());
            assert!(r.text().contains("done"), "{agent}: {}", r.text());
        }
    };
    ask("quiet").await;
    assert!(
        !asked
            .lock()
            .unwrap()
            .iter()
            .any(|n| n.contains("exfil.test")),
        "a name no rule names reached the DNS server: {:?}",
        asked.lock().unwrap()
    );
    let recorded = records(&dev, "quiet").await;
    let denied = recorded
        .iter()
        .find(|r| r["protocol"] == "dns" && r["destinationName"] == "c2vjcmv0.exfil.test")
        .unwrap_or_else(|| panic!("{recorded:#?}"));
    assert_eq!(denied["allowed"], false, "{denied}");
    assert!(
        denied["reason"]
            .as_str()
            .unwrap()
            .contains("dns.forwardAll"),
        "{denied}"
    );
    // With the opt-in, the name is asked and its answer checked against the ranges.
    ask("chatty").await;
    assert!(
        asked
            .lock()
            .unwrap()
            .iter()
            .any(|n| n.eq_ignore_ascii_case("c2VjcmV0.exfil.test")),
        "{:?}",
        asked.lock().unwrap()
    );
}

/// Opens `connections` TCP connections to `host`:`port` from a few processes, holds them
/// `hold` seconds and reports how many opened.
const FLOOD: &str = r#"
import json, os, socket, sys, time
data = json.load(sys.stdin)["data"]
procs, hold = 8, data["hold"]
each = data["connections"] // procs
pipes = []
for _ in range(procs):
    r, w = os.pipe()
    if os.fork() == 0:
        held = []
        for _ in range(each):
            try:
                held.append(socket.create_connection((data["host"], data["port"]), timeout=20))
            except OSError:
                pass
        os.write(w, f"{len(held)}\n".encode())
        time.sleep(hold)
        os._exit(0)
    pipes.append(r)
opened = sum(int(os.read(r, 64)) for r in pipes)
for _ in pipes:
    os.wait()
print(json.dumps({"opened": opened}), flush=True)
"#;

/// An agent opening connections through the gateway as fast as it can holds at most its
/// share of clrk's descriptors: beyond the cap its connections are closed at once (and that
/// is recorded), while another agent's egress and the control API answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_flood_is_capped_per_sandbox() {
    const CONNECTIONS: usize = 2400;
    let upstream = Upstream::start();
    let dns = dns_server(upstream.ip, upstream.ip6).await;
    let (otlp, _spans) = otlp_receiver().await;
    // Accepts and keeps every connection, answering nothing.
    let _sink = start_in_upstream(
        &upstream,
        9000,
        "import socket, sys\ns = socket.socket()\ns.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\ns.bind((sys.argv[1], 9000))\ns.listen(4096)\nheld = []\nwhile True:\n    held.append(s.accept()[0])",
        &[&upstream.ip.to_string()],
    );
    let dev = dev_with_gateways(dns, &upstream, otlp);
    dev.apply(&format!(
        r#"apiVersion: clrk.apoxy.dev/v1alpha1
kind: EgressL4Route
metadata: {{name: sink}}
spec:
  parentRefs: [{{name: main}}]
  rules: [{{destinationHostnames: [llm.test], ports: [9000]}}]
---
apiVersion: clrk.apoxy.dev/v1alpha1
kind: TaskAgent
metadata: {{name: flooder}}
spec:
  timeout: 300s
  egressRefs: [{{gatewayRef: main}}]
  template:
    spec:
      image: "host:"
      command: ["python3", "-c", {}]
"#,
        serde_json::to_string(FLOOD).unwrap()
    ));
    // The other agent's sandbox is started once before, so that its own descriptors count in
    // the baseline.
    let (_, report) = call(
        &dev,
        "caller",
        json!({"calls": [{"url": "https://llm.test/v1/plain"}]}),
    )
    .await;
    assert_eq!(report["results"][0]["status"], 200, "{report}");
    let pid = dev.pid();
    let baseline = open_fds(pid);

    let most = Peak::sample(std::time::Duration::from_millis(50), move || {
        open_fds(pid) as u64
    });
    let ingress = dev.ingress.clone();
    let flood = tokio::spawn(async move {
        common::request(
            "POST",
            &format!("{ingress}/"),
            &[
                ("X-Clrk-TaskAgent", "default/flooder"),
                ("content-type", "application/json"),
            ],
            Bytes::from(
                json!({"connections": CONNECTIONS, "host": "llm.test", "port": 9000, "hold": 60})
                    .to_string(),
            ),
        )
        .await
    });

    // While the flood is held (clrk holds more descriptors, or refuses), another agent's
    // egress and the control API answer.
    eventually("the flood to begin", || async {
        let started = open_fds(pid) > baseline + 200 || !limit_records(&dev).await.is_empty();
        started.then_some(())
    })
    .await;
    let (_, report) = call(
        &dev,
        "caller",
        json!({"calls": [{"url": "https://llm.test/v1/plain"}]}),
    )
    .await;
    assert_eq!(report["results"][0]["status"], 200, "{report}");
    let api = dev.api_get("/v1/agents").await;
    assert_eq!(api.status, 200, "{}", api.text());

    let flooded = flood.await.unwrap();
    let most = most.stop() as usize;
    assert_eq!(flooded.status, 200, "{}", flooded.text());
    let opened = serde_json::from_str::<Value>(flooded.text().trim()).unwrap()["opened"]
        .as_u64()
        .unwrap();
    eprintln!(
        "flood: {opened} connections opened; clrk held {baseline} descriptors before, at most {most} during"
    );
    assert!(
        opened as usize >= CONNECTIONS * 9 / 10,
        "the agent opened only {opened}"
    );
    // Two descriptors per relayed connection (the agent's, the upstream's), plus slack for
    // the other agent's sandbox and the API.
    assert!(
        most <= baseline + 2 * 256 + 200,
        "clrk held {most} descriptors during the flood, {baseline} before"
    );
    // A record says the cap was reached; refusals are recorded about once a second, not
    // once per connection.
    let refusals = limit_records(&dev).await;
    assert!(!refusals.is_empty(), "no record of the connection limit");
    assert_eq!(refusals[0]["allowed"], false, "{}", refusals[0]);
    assert!(refusals.len() < 100, "{} refusal records", refusals.len());
}

/// The flooder's records saying its connection limit was reached.
async fn limit_records(dev: &Dev) -> Vec<Value> {
    records(dev, "flooder")
        .await
        .into_iter()
        .filter(|r| {
            r["reason"]
                .as_str()
                .is_some_and(|s| s.contains("connection limit 256 reached"))
        })
        .collect()
}

/// Three slow clients at once, each timed until the gateway closes on it: headers trickled a
/// byte every 5 s, a kept-alive connection left idle, a provider request body that stops
/// after its first byte (a body trickled steadily is bounded by its total deadline instead). Each reports the seconds until the gateway gave up (None if it never did
/// within `limit`) and the status it answered, if any.
const SLOW: &str = r#"
import http.client, json, socket, ssl, sys, threading, time
limit = json.load(sys.stdin)["data"]["limit"]
report = {}

def closed_within(sock, start, trickle):
    sock.settimeout(5)
    while time.time() - start < limit:
        try:
            if trickle:
                sock.sendall(b"x")
            if sock.recv(65536) == b"":
                return round(time.time() - start)
        except socket.timeout:
            continue
        except OSError:
            return round(time.time() - start)
    return None

def headers():
    sock = ssl.create_default_context().wrap_socket(
        socket.create_connection(("llm.test", 443), timeout=30), server_hostname="llm.test")
    sock.sendall(b"GET /v1/plain HTTP/1.1\r\nHost: llm.test\r\nX-Slow: ")
    report["headers"] = {"after": closed_within(sock, time.time(), True)}

def idle():
    conn = http.client.HTTPSConnection("llm.test", timeout=30)
    conn.request("GET", "/v1/plain")
    conn.getresponse().read()
    report["idle"] = {"after": closed_within(conn.sock, time.time(), False)}

def body():
    sock = ssl.create_default_context().wrap_socket(
        socket.create_connection(("llm.test", 443), timeout=30), server_hostname="llm.test")
    sock.sendall(b"POST /v1/messages HTTP/1.1\r\nHost: llm.test\r\n"
                 b"content-type: application/json\r\ncontent-length: 1000\r\n\r\n")
    sock.settimeout(5)
    start, after, status = time.time(), None, 0
    sock.sendall(b" ")
    while time.time() - start < limit:
        try:
            got = sock.recv(65536)
        except socket.timeout:
            continue
        except OSError:
            after = round(time.time() - start)
            break
        after = round(time.time() - start)
        if got:
            status = int(got.split(b" ", 2)[1])
        break
    report["body"] = {"after": after, "status": status}

threads = [threading.Thread(target=f) for f in (headers, idle, body)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(json.dumps(report), flush=True)
"#;

/// A client trickling its headers, stalling its body, or leaving a kept-alive connection idle,
/// is cut off by the gateway instead of holding the connection (and clrk's descriptors) for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_clients_are_cut_off() {
    let upstream = Upstream::start();
    let dns = dns_server(upstream.ip, upstream.ip6).await;
    let (otlp, _spans) = otlp_receiver().await;
    let dev = dev_with_gateways(dns, &upstream, otlp);
    dev.apply(&format!(
        r#"apiVersion: clrk.apoxy.dev/v1alpha1
kind: TaskAgent
metadata: {{name: slow}}
spec:
  timeout: 150s
  egressRefs: [{{gatewayRef: main}}]
  template:
    spec:
      image: "host:"
      command: ["python3", "-c", {}]
"#,
        serde_json::to_string(SLOW).unwrap()
    ));
    let (_, report) = call(&dev, "slow", json!({"limit": 90})).await;
    eprintln!("slow clients: {report}");
    // The gateway gives 30 s; a loaded machine may add some.
    for probe in ["headers", "idle", "body"] {
        let after = report[probe]["after"].as_u64();
        assert!(
            after.is_some_and(|s| (25..=60).contains(&s)),
            "{probe}: {report}"
        );
    }
    assert_eq!(report["body"]["status"], 408, "{report}");
}

/// The value of one series (`name{labels}`) in an OpenMetrics text.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(|value| value.trim().parse().unwrap())
}

/// `/metrics` of the control API, with the token.
async fn scrape(dev: &Dev) -> String {
    let r = dev.api_get("/metrics").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.header("content-type")
            .is_some_and(|t| t.starts_with("application/openmetrics-text")),
        "{:?}",
        r.headers
    );
    r.text()
}

/// Waits until every series has its value in one scrape; returns that scrape.
async fn scrape_until(dev: &Dev, expected: &[(&str, f64)]) -> String {
    let started = std::time::Instant::now();
    loop {
        let text = scrape(dev).await;
        let wrong: Vec<_> = expected
            .iter()
            .filter(|(series, value)| sample(&text, series) != Some(*value))
            .map(|(series, value)| (series, value, sample(&text, series)))
            .collect();
        if wrong.is_empty() {
            return text;
        }
        assert!(
            started.elapsed() < common::DEADLINE,
            "series (expected, found): {wrong:?}\n{text}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// Every family of SPECIFICATION §18 scraped from a `clrk dev` and checked against what the
/// test did: executions (one failing, one with a caller's trigger), their durations and first
/// bytes (stdout, a Metadata-mode answer) cold and warm, sandbox starts, a warm pool, a
/// queued invocation and a 429, allowed and denied egress, an LLM call's tokens, a daemon's
/// restarts; 401 without the token, and the same text without one on `--metrics`, which cuts
/// a silent connection off as the API does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_what_each_part_did() {
    use tokio::io::AsyncReadExt as _;

    let upstream = Upstream::start();
    let dns = dns_server(upstream.ip, upstream.ip6).await;
    let (otlp, _spans) = otlp_receiver().await;
    let dev = Dev::start_with(&[
        "--dns-upstream",
        &dns.to_string(),
        "--metrics",
        "127.0.0.1:0",
    ]);
    set_secret(&dev, "anthropic", SECRET);
    let endpoints: Value =
        serde_json::from_str(&std::fs::read_to_string(dev.clrk_dir().join("dev.json")).unwrap())
            .unwrap();
    let metrics_url = endpoints["metrics"].as_str().unwrap().to_string();
    let mut silent = tokio::net::TcpStream::connect(metrics_url.trim_start_matches("http://"))
        .await
        .unwrap();

    dev.apply(&manifests(&upstream.ca_pem, &upstream.ca_file, otlp));
    // "fail" is ZmFpbA== and "slow" c2xvdw== in the envelope's data_base64.
    dev.apply(&common::sh_agent(
        "counter",
        "read -r event; case \"$event\" in *ZmFpbA*) echo failing; exit 1;; esac; echo fine",
        "",
    ));
    dev.apply(
        "apiVersion: clrk.apoxy.dev/v1alpha1\nkind: WorkerPool\nmetadata:\n  name: narrow\nspec:\n  maxExecutionsPerWorker: 1\n",
    );
    dev.apply(&common::sh_agent(
        "gate",
        "read -r event; case \"$event\" in *c2xvdw*) sleep 10;; esac; echo through",
        "  workerPoolRef: narrow\n  maxConcurrent: 2",
    ));
    dev.apply(&common::metadata_py_agent(
        "answerer",
        "import os, urllib.request\nreq = urllib.request.Request(os.environ['CLRK_METADATA_URL'] + '/response', data=b'answer', method='POST')\nurllib.request.urlopen(req, timeout=30).read()\n",
    ));
    dev.apply(&common::sh_manifest(
        "DaemonAgent",
        "flapper",
        "exit 1",
        "  maxRestarts: 2",
    ));

    // Without the token: 401, as every control API route.
    let r = common::request("GET", &format!("{}/metrics", dev.api), &[], Bytes::new()).await;
    assert_eq!(r.status, 401, "{}", r.text());

    // Three executions, one of them failing and triggered by a caller's own name.
    let invoke = |body: &'static str, trigger: Option<&'static str>| {
        let mut headers = vec![("X-Clrk-TaskAgent", "default/counter")];
        if let Some(t) = trigger {
            headers.push(("X-Clrk-Trigger", t));
        }
        let dev = &dev;
        async move { dev.invoke(&headers, body).await }
    };
    for (body, trigger) in [("ok", None), ("ok", None), ("fail", Some("nightly-42"))] {
        let r = invoke(body, trigger).await;
        let expected = if body == "ok" {
            (200, "fine\n")
        } else {
            (500, "agent exited with code 1\n")
        };
        assert_eq!((r.status, r.text().as_str()), expected);
    }

    // A Metadata-mode execution: its first byte is its answer.
    let r = dev
        .invoke(&[("X-Clrk-TaskAgent", "default/answerer")], "")
        .await;
    assert_eq!((r.status, r.text()), (200, "answer".to_string()));

    // A warm pool filled, and an execution taken from it.
    let warm = r#"{namespace="default",agent="warm-caller"}"#;
    scrape_until(
        &dev,
        &[
            (&format!("clrk_warm_sandboxes_ready{warm}"), 1.0),
            (&format!("clrk_warm_sandboxes_wanted{warm}"), 1.0),
        ],
    )
    .await;
    call(&dev, "warm-caller", json!({"calls": []})).await;

    // One LLM call (10 + 15 tokens); then, from a sandbox that resolved no name, the
    // upstream's address dialled directly: refused.
    let (_, report) = call(&dev, "caller", json!({"calls": [message(false)]})).await;
    assert_eq!(report["results"][0]["status"], 200, "{report}");
    let ip = upstream.ip;
    let (_, report) = call(
        &dev,
        "caller",
        json!({"calls": [{"url": format!("https://{ip}/")}]}),
    )
    .await;
    assert_eq!(report["results"][0]["status"], 403, "{report}");

    // The narrow pool's only slot held, a second invocation queued, a third refused (429)
    // at the agent's maxConcurrent of 2.
    let spawn = |body: &'static str| {
        let ingress = dev.ingress.clone();
        tokio::spawn(async move {
            common::request(
                "POST",
                &format!("{ingress}/"),
                &[("X-Clrk-TaskAgent", "default/gate")],
                Bytes::from(body),
            )
            .await
        })
    };
    let slow = spawn("slow");
    eventually("the slow gate holding the pool's slot", || async {
        (dev.invocations("gate").await.len() == 1).then_some(())
    })
    .await;
    let queued = spawn("quick");
    scrape_until(&dev, &[(r#"clrk_pool_queue_depth{pool="narrow"}"#, 1.0)]).await;
    let r = dev
        .invoke(&[("X-Clrk-TaskAgent", "default/gate")], "quick")
        .await;
    assert_eq!(r.status, 429, "{}", r.text());
    for held in [slow, queued] {
        let r = held.await.unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
    }

    // The daemon stopped after its two restarts.
    dev.wait_for("flapper stopped at maxRestarts", || {
        let out = dev.clrk(&["agents", "get", "flapper", "-o", "json"]);
        let agent: Value = serde_json::from_slice(&out.stdout).ok()?;
        (agent["status"]["phase"] == "Stopped").then_some(())
    });

    let counter = r#"namespace="default",agent="counter""#;
    let text = scrape_until(
        &dev,
        &[
            (
                &format!(r#"clrk_executions_total{{{counter},trigger="http",outcome="succeeded"}}"#),
                2.0,
            ),
            (
                &format!(r#"clrk_executions_total{{{counter},trigger="other",outcome="failed"}}"#),
                1.0,
            ),
            (
                &format!(r#"clrk_execution_duration_seconds_count{{{counter},start="cold"}}"#),
                3.0,
            ),
            (
                &format!(r#"clrk_execution_first_byte_seconds_count{{{counter},start="cold"}}"#),
                3.0,
            ),
            (
                r#"clrk_execution_first_byte_seconds_count{namespace="default",agent="answerer",start="cold"}"#,
                1.0,
            ),
            (
                r#"clrk_executions_total{namespace="default",agent="warm-caller",trigger="http",outcome="succeeded"}"#,
                1.0,
            ),
            (
                r#"clrk_execution_duration_seconds_count{namespace="default",agent="warm-caller",start="warm"}"#,
                1.0,
            ),
            (
                r#"clrk_executions_total{namespace="default",agent="gate",trigger="http",outcome="succeeded"}"#,
                2.0,
            ),
            (r#"clrk_pool_queue_depth{pool="narrow"}"#, 0.0),
            (
                r#"clrk_pool_refusals_total{pool="narrow",reason="max_concurrent"}"#,
                1.0,
            ),
            (
                r#"clrk_egress_transactions_total{gateway="main",decision="denied"}"#,
                1.0,
            ),
            (
                r#"clrk_llm_tokens_total{namespace="default",agent="caller",provider="anthropic",model="claude-test",kind="input"}"#,
                10.0,
            ),
            (
                r#"clrk_llm_tokens_total{namespace="default",agent="caller",provider="anthropic",model="claude-test",kind="output"}"#,
                15.0,
            ),
            (
                r#"clrk_daemon_restarts_total{namespace="default",agent="flapper"}"#,
                2.0,
            ),
        ],
    )
    .await;
    assert!(
        sample(
            &text,
            r#"clrk_egress_transactions_total{gateway="main",decision="allowed"}"#
        )
        .is_some_and(|n| n >= 1.0),
        "{text}"
    );
    // Every cold execution, warm refill and daemon run started a sandbox, each timed.
    let started = sample(
        &text,
        r#"clrk_sandbox_starts_total{runtime="runsc",result="started"}"#,
    )
    .unwrap();
    assert!(started >= 10.0, "{text}");
    assert!(
        sample(
            &text,
            r#"clrk_sandbox_start_duration_seconds_count{runtime="runsc"}"#
        )
        .is_some_and(|n| n >= started),
        "{text}"
    );
    assert!(
        !text.contains("execution_id") && !text.contains("nightly-42"),
        "{text}"
    );

    // The same families on --metrics, without a token.
    let r = common::request("GET", &format!("{metrics_url}/metrics"), &[], Bytes::new()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.text()
            .contains(r#"clrk_daemon_restarts_total{namespace="default",agent="flapper"} 2"#),
        "{}",
        r.text()
    );
    // A connection that never sent a request has been cut off (the API's 20 s deadline).
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(common::DEADLINE, silent.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0) | Err(_))),
        "the silent connection is still open: {read:?}"
    );
}

/// The spans of `execution` from `clrk agents traces AGENT --execution ID -o json`, once the
/// ones named in `names` are all stored.
async fn stored_trace(dev: &Dev, agent: &str, execution: &str, names: &[&str]) -> Value {
    eventually("the execution's spans", || async {
        let out = dev.clrk(&[
            "agents",
            "traces",
            agent,
            "--execution",
            execution,
            "-o",
            "json",
        ]);
        assert!(out.status.success(), "{}", common::text(&out.stderr));
        let trace: Value = serde_json::from_slice(&out.stdout).unwrap();
        let spans = trace["spans"].as_array().unwrap();
        names
            .iter()
            .all(|n| spans.iter().any(|s| s["name"] == *n))
            .then_some(trace)
    })
    .await
}

/// The one span named `name` in `trace`.
fn span_named<'a>(trace: &'a Value, name: &str) -> &'a Value {
    let spans = trace["spans"].as_array().unwrap();
    let found: Vec<&Value> = spans.iter().filter(|s| s["name"] == name).collect();
    assert_eq!(found.len(), 1, "one {name} span in {trace:#}");
    found[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_show_a_waterfall_of_an_egress_calling_execution() {
    const CALLER_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
    const CALLER_SPAN: &str = "b7ad6b7169203331";
    let upstream = Upstream::start();
    let dns = dns_server(upstream.ip, upstream.ip6).await;
    let (otlp, exported) = otlp_receiver().await;
    let dev = dev_with_gateways(dns, &upstream, otlp);

    // A cold execution continuing the caller's trace, with one call through the gateway.
    let traceparent = format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01");
    let data = json!({"calls": [{"url": "https://llm.test/v1/plain"}]});
    let response = dev
        .invoke(
            &[
                ("X-Clrk-TaskAgent", "default/caller"),
                ("content-type", "application/json"),
                ("traceparent", &traceparent),
            ],
            data.to_string(),
        )
        .await;
    assert_eq!(response.status, 200, "{}", response.text());
    let execution = response.header("x-clrk-execution-id").unwrap().to_string();
    let names = [
        "execution",
        "admission",
        "sandbox start",
        "image prepare",
        "runtime start",
        "run",
        "GET llm.test",
    ];
    let trace = stored_trace(&dev, "caller", &execution, &names).await;
    assert_eq!(trace["traceId"], CALLER_TRACE, "{trace:#}");
    assert_eq!(trace["executionId"], execution.as_str());
    for span in trace["spans"].as_array().unwrap() {
        assert_eq!(span["traceId"], CALLER_TRACE, "{span:#}");
    }
    let id = |name: &str| span_named(&trace, name)["spanId"].clone();
    let parent = |name: &str| span_named(&trace, name)["parentSpanId"].clone();
    assert_eq!(parent("execution"), CALLER_SPAN);
    for child in ["admission", "sandbox start", "run"] {
        assert_eq!(parent(child), id("execution"), "{child} under the root");
    }
    for step in ["image prepare", "runtime start"] {
        assert_eq!(parent(step), id("sandbox start"), "{step} under the start");
    }
    assert_eq!(parent("GET llm.test"), id("run"), "the call under the run");
    let egress = span_named(&trace, "GET llm.test");
    assert_eq!(egress["attributes"]["invocation.id"], execution.as_str());
    assert_eq!(egress["attributes"]["http.response.status_code"], 200);
    assert_eq!(
        span_named(&trace, "execution")["attributes"]["clrk.start"],
        "cold"
    );

    // The waterfall: the latest execution by default, children indented under parents.
    let out = dev.clrk(&["agents", "traces", "caller"]);
    assert!(out.status.success(), "{}", common::text(&out.stderr));
    let text = common::text(&out.stdout);
    assert!(
        text.starts_with(&format!(
            "execution {execution}  Succeeded  trace {CALLER_TRACE}\n"
        )),
        "{text}"
    );
    for line in [
        "execution ",
        "  admission ",
        "  sandbox start ",
        "    image prepare ",
        "    runtime start ",
        "  run ",
        "    GET llm.test ",
    ] {
        assert!(
            text.lines()
                .any(|l| l.starts_with(line) && l.ends_with('|')),
            "no line {line:?} in\n{text}"
        );
    }
    // Not a terminal: 60 columns of bar between the pipes.
    let bar = text.lines().nth(2).unwrap().split('|').nth(1).unwrap();
    assert_eq!(bar.chars().count(), 60, "{text}");

    // The execution's own spans go to the gateway's collector too, in the caller's trace.
    eventually("the execution's root span at the OTLP receiver", || async {
        exported
            .lock()
            .unwrap()
            .iter()
            .any(|s| {
                s.attributes.get("invocation.id") == Some(&execution)
                    && s.attributes.contains_key("clrk.trigger")
                    && s.trace_id == CALLER_TRACE
                    && s.parent_span_id == CALLER_SPAN
            })
            .then_some(())
    })
    .await;

    // An unknown execution says where the ids are.
    let out = dev.clrk(&["agents", "traces", "caller", "--execution", "nope"]);
    assert!(!out.status.success());
    let error = common::text(&out.stderr);
    assert!(error.contains("clrk agents invocations caller"), "{error}");

    // A warm execution: a warm take instead of a sandbox start, and without a caller's trace
    // a trace of its own; the warm sandbox's calls still nest under its run.
    eventually("a warm sandbox of warm-caller", || async {
        let r = dev.api_get("/v1/agents/default/warm-caller").await;
        (r.json()["status"]["warm"].as_u64() == Some(1)).then_some(())
    })
    .await;
    let (warm, report) = call(&dev, "warm-caller", data).await;
    assert_eq!(report["results"][0]["status"], 200, "{report}");
    let trace = stored_trace(
        &dev,
        "warm-caller",
        &warm,
        &["execution", "warm take", "run", "GET llm.test"],
    )
    .await;
    let spans = trace["spans"].as_array().unwrap();
    assert!(
        !spans.iter().any(|s| s["name"] == "sandbox start"),
        "{trace:#}"
    );
    assert_ne!(trace["traceId"], CALLER_TRACE);
    assert_eq!(span_named(&trace, "execution")["parentSpanId"], Value::Null);
    assert_eq!(
        span_named(&trace, "GET llm.test")["parentSpanId"],
        span_named(&trace, "run")["spanId"]
    );
    let out = dev.clrk(&["agents", "traces", "warm-caller"]);
    let text = common::text(&out.stdout);
    assert!(
        text.lines().any(|l| l.starts_with("  warm take ")),
        "{text}"
    );
}
