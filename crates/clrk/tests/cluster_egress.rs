//! The egress story in the cluster: an agent on a worker (not a server's host) calls an LLM
//! provider through its worker's gateway, which injects the key the agent never holds and
//! counts tokens in the shared store, so a day's budget holds wherever the calls went.

mod common;

use std::io::BufRead as _;
use std::net::{IpAddr, SocketAddr};
use std::process::{Child, Stdio};

use common::cluster::*;
use common::*;
use serde_json::Value;

const SECRET: &str = "sk-ant-real-7f3a9c1e";

/// A provider stand-in answering as `api.anthropic.com` on a host of its own.
struct Upstream {
    child: Child,
    ca_pem: String,
    _dir: tempfile::TempDir,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_upstream(host: &common::hosts::Host) -> Upstream {
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["api.anthropic.com".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    let cert = dir.path().join("llm.crt");
    let key = dir.path().join("llm.key");
    std::fs::write(&cert, leaf.pem()).unwrap();
    std::fs::write(&key, leaf_key.serialize_pem()).unwrap();
    let mut child = host
        .command("python3")
        .arg(repo_path("crates/clrk/tests/fixtures/llm_upstream.py"))
        .args([&host.ip.to_string(), "443"])
        .arg(&cert)
        .arg(&key)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready", "the upstream did not start");
    Upstream {
        child,
        ca_pem: ca.pem(),
        _dir: dir,
    }
}

fn indent(text: &str, by: usize) -> String {
    text.lines()
        .map(|l| format!("{}{l}\n", " ".repeat(by)))
        .collect()
}

async fn ask(client: &Dev) -> HttpResponse {
    client
        .invoke(
            &[
                ("X-Clrk-TaskAgent", "default/llm-agent"),
                ("content-type", "application/json"),
            ],
            r#"{"prompt": "hi?"}"#,
        )
        .await
}

async fn records(client: &Dev) -> Vec<Value> {
    let r = client
        .api_get("/v1/agents/default/llm-agent/egress?limit=100")
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["items"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_injects_the_key_and_the_day_budget_holds_across_workers() {
    // Its DNS server listens on the hosts' gateway; the upstream gets the extra host.
    let dns_port = std::net::UdpSocket::bind("0.0.0.0:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cluster = Cluster::start_with(1, 2, 1, |hosts| {
        let dns = SocketAddr::from((hosts.gateway(), dns_port));
        Args {
            servers: Vec::new(),
            workers: vec!["--dns-upstream".to_string(), dns.to_string()],
        }
    })
    .await;
    let dns = SocketAddr::from((cluster.hosts.gateway(), dns_port));
    let upstream = start_upstream(cluster.extra_host(0));
    let names = vec![(
        "api.anthropic.com",
        vec![IpAddr::V4(cluster.extra_host(0).ip)],
    )];
    common::dns::dns_server_on(dns, names).await;

    let client = &cluster.clients[0];
    let out = client.clrk(&[
        "secret",
        "set",
        "anthropic",
        "--from-literal",
        &format!("token={SECRET}"),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let egress = std::fs::read_to_string(repo_path("examples/llm-agent/egress.yaml"))
        .unwrap()
        .replacen(
            "  defaultPolicy: deny-all\n",
            &format!(
                "  defaultPolicy: deny-all\n  upstreamTLS:\n    additionalTrustBundle: |\n{}",
                indent(&upstream.ca_pem, 6)
            ),
            1,
        )
        .replace("maxTokensPerDay: 200000", "maxTokensPerDay: 30");
    client.apply(&egress);
    client.apply(
        &std::fs::read_to_string(repo_path("examples/llm-agent/taskagent-host.yaml")).unwrap(),
    );

    // First call, on worker-0 (ties go to the first): the key was injected by its gateway.
    let r = ask(client).await;
    assert_eq!(r.status, 200, "{}\n{}", r.text(), cluster.logs());
    assert_eq!(r.json()["answer"], "hi");
    assert!(cluster.workers[0].log().contains("execution finished"));
    let recorded = records(client).await;
    // The example's ProviderAuth: the real key in x-api-key, whatever the SDK sent.
    let injected = recorded[0]["injectedHeader"].as_str().unwrap();
    assert!(
        injected.starts_with("x-api-key (anthropic key; replaced the agent's "),
        "{injected}"
    );
    assert_eq!(recorded[0]["destinationName"], "api.anthropic.com");
    assert!(!r.text().contains(SECRET));

    // The rest on worker-1: 25 tokens are under the day's 30, so one more call goes out…
    let out = client.clrk(&["workers", "drain", "worker-0"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    let r = ask(client).await;
    assert_eq!(r.status, 200, "{}\n{}", r.text(), cluster.logs());
    assert!(cluster.workers[1].log().contains("execution finished"));
    // …and then the day is over budget: worker-1 counted worker-0's tokens too.
    // The agent fails, and logs the gateway's refusal, which counts both workers' calls.
    let r = ask(client).await;
    assert_eq!(r.status, 500, "{}", r.text());
    assert_eq!(r.header("x-clrk-exit-code"), Some("1"));
    let out = client.clrk(&["agents", "logs", "llm-agent", "--tail", "1"]);
    let logged = text(&out.stdout);
    let report: Value = logged
        .find('{')
        .and_then(|at| serde_json::from_str(logged[at..].trim()).ok())
        .unwrap_or_else(|| panic!("no report in the agent's log: {logged}"));
    assert_eq!(report["error"], 429, "{report}");
    let reason = report["reason"].as_str().unwrap();
    assert!(
        reason.contains("allows 30 tokens per day") && reason.contains("used 50 today"),
        "{reason}"
    );
    let refused = records(client).await;
    let refusal = refused
        .iter()
        .find(|r| r["allowed"] == false)
        .unwrap_or_else(|| panic!("no refusal recorded: {refused:#?}"));
    assert!(
        refusal["reason"]
            .as_str()
            .unwrap()
            .contains("30 tokens per day"),
        "{refusal:#?}"
    );
}
