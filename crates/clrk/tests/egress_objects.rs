//! Egress gateways, routes and policies as a user manages them: apply, list, get (secrets in
//! them redacted), validation naming the field, delete; and an agent's egress records and
//! token count.

mod common;

use common::*;

/// An OTLP header value; the API must never return it.
const OTLP_KEY: &str = "otlp-key-7c1d0e55";

const HEAD: &str = "apiVersion: clrk.apoxy.dev/v1alpha1";

fn egress_manifests() -> String {
    format!(
        r#"{HEAD}
kind: EgressGateway
metadata:
  name: main
spec:
  defaultPolicy: deny-all
  tls:
    mode: Terminate
  otlp:
    endpoint: http://127.0.0.1:4318
    headers:
      x-otlp-key: {OTLP_KEY}
---
{HEAD}
kind: EgressL4Route
metadata:
  name: github
spec:
  parentRefs: [{{name: main}}]
  rules:
    - destinationHostnames: ["*.github.com"]
      ports: [443]
    - destinationCIDRs: [10.0.0.0/8]
---
{HEAD}
kind: CredentialInjectionPolicy
metadata:
  name: anthropic
spec:
  parentRefs: [{{name: main}}]
  destinationHostnames: [llm.test]
  secretRef:
    name: anthropic
  headerName: x-api-key
---
{HEAD}
kind: AIProviderRoute
metadata:
  name: llm
spec:
  parentRefs: [{{name: main}}]
  matches:
    - provider: anthropic
      hostnames: [llm.test]
  filters:
    - type: TokenBudget
      tokenBudget:
        maxTokensPerExecution: 1000
"#
    )
}

fn lines(out: &std::process::Output) -> Vec<String> {
    text(&out.stdout).lines().map(str::to_string).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn egress_objects_are_applied_listed_shown_redacted_and_deleted() {
    let dev = Dev::start();
    let file = dev.clrk_dir().join("egress.yaml");
    std::fs::write(&file, egress_manifests()).unwrap();
    let file = file.to_str().unwrap();

    let out = dev.clrk(&["apply", "-f", file]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        lines(&out),
        [
            "egressgateway/main created",
            "egressl4route/github created",
            "credentialinjectionpolicy/anthropic created",
            "aiproviderroute/llm created",
        ]
    );
    let out = dev.clrk(&["apply", "-f", file]);
    assert_eq!(
        lines(&out),
        [
            "egressgateway/main unchanged",
            "egressl4route/github unchanged",
            "credentialinjectionpolicy/anthropic unchanged",
            "aiproviderroute/llm unchanged",
        ]
    );
    let changed = egress_manifests().replace("ports: [443]", "ports: [443, 8443]");
    let out = dev.apply(&changed);
    assert!(
        out.lines().any(|l| l == "egressl4route/github configured"),
        "{out}"
    );
    dev.apply(&egress_manifests());

    let out = dev.clrk(&["egress", "list"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    for (kind, name, summary) in [
        (
            "AIProviderRoute",
            "llm",
            "anthropic @ llm.test, budget 1000/execution",
        ),
        (
            "CredentialInjectionPolicy",
            "anthropic",
            "x-api-key ← secret anthropic/token for llm.test",
        ),
        (
            "EgressGateway",
            "main",
            "deny-all, Terminate, otlp → http://127.0.0.1:4318",
        ),
        (
            "EgressL4Route",
            "github",
            "*.github.com port 443; 10.0.0.0/8 any port",
        ),
    ] {
        assert!(
            table.lines().any(|l| l.starts_with(kind)
                && l.split_whitespace().nth(1) == Some(name)
                && l.contains(summary)),
            "no {kind}/{name} row with {summary:?} in\n{table}"
        );
    }
    assert!(table.starts_with("KIND "), "{table}");
    let out = dev.clrk(&["egress", "list", "-A"]);
    assert!(
        text(&out.stdout).starts_with("KIND ")
            && text(&out.stdout)
                .lines()
                .next()
                .unwrap()
                .contains(" NAMESPACE "),
        "{}",
        text(&out.stdout)
    );

    let out = dev.clrk(&["egress", "get", "egressgateway/main", "-o", "json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let manifest: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(manifest["kind"], "EgressGateway");
    assert_eq!(manifest["spec"]["defaultPolicy"], "deny-all");
    assert_eq!(
        manifest["spec"]["otlp"]["headers"]["x-otlp-key"],
        "<redacted>"
    );
    let yaml = dev.clrk(&["egress", "get", "EgressGateway/main"]);
    assert!(
        text(&yaml.stdout).contains("defaultPolicy: deny-all"),
        "{}",
        text(&yaml.stdout)
    );
    let api_list = dev.api_get("/v1/egress?namespace=default").await;
    assert_eq!(api_list.status, 200, "{}", api_list.text());
    assert_eq!(api_list.json()["items"].as_array().unwrap().len(), 4);
    let api_one = dev.api_get("/v1/egress/default/egressgateway/main").await;
    assert_eq!(
        api_one.json()["manifest"]["spec"]["tls"]["mode"],
        "Terminate"
    );
    let everything = dev.clrk(&["egress", "list", "-A", "-o", "yaml"]);
    for shown in [
        text(&out.stdout),
        text(&yaml.stdout),
        table.clone(),
        text(&everything.stdout),
        api_list.text(),
        api_one.text(),
    ] {
        assert!(!shown.contains(OTLP_KEY), "the OTLP header leaked: {shown}");
    }

    let out = dev.clrk(&["egress", "get", "egressgateway/absent"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("egressgateway default/absent not found"),
        "{}",
        text(&out.stderr)
    );
    let out = dev.clrk(&["egress", "get", "taskagent/main"]);
    assert!(!out.status.success());
    let missing = dev.api_get("/v1/egress/default/workerpool/main").await;
    assert_eq!(missing.status, 404, "{}", missing.text());

    // Invalid: refused by the CLI's own parse and by the server, both naming the field.
    let bad = egress_manifests().replace("10.0.0.0/8", "10.0.0.0/33");
    let out = dev.try_apply(&bad);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("spec.rules[1].destinationCIDRs[0]") && stderr.contains("10.0.0.0/33"),
        "{stderr}"
    );
    let only_route = format!(
        "{HEAD}\nkind: EgressL4Route\nmetadata: {{name: bad}}\nspec:\n  parentRefs: [{{name: main}}]\n  rules: [{{destinationCIDRs: [10.0.0.0/33]}}]\n"
    );
    let out = dev.try_apply(&only_route);
    assert!(
        text(&out.stderr).contains("spec.rules[0].destinationCIDRs[0]"),
        "{}",
        text(&out.stderr)
    );
    let manifest: serde_json::Value = serde_json::json!({
        "apiVersion": "clrk.apoxy.dev/v1alpha1", "kind": "EgressL4Route",
        "metadata": {"name": "bad"},
        "spec": {"parentRefs": [{"name": "main"}], "rules": [{"destinationCIDRs": ["10.0.0.0/33"]}]},
    });
    let body = serde_json::json!({"documents": [{"source": "bad.yaml", "index": 1, "manifest": manifest}]});
    let r = request(
        "POST",
        &format!("{}/v1/apply", dev.api),
        &[
            ("authorization", &format!("Bearer {}", dev.token)),
            ("content-type", "application/json"),
        ],
        serde_json::to_vec(&body).unwrap().into(),
    )
    .await;
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(
        r.text().contains("spec.rules[0].destinationCIDRs[0]"),
        "{}",
        r.text()
    );
    let listed = dev.api_get("/v1/egress").await.json();
    assert_eq!(
        listed["items"].as_array().unwrap().len(),
        4,
        "an invalid apply stored something: {listed}"
    );

    let out = dev.clrk(&["delete", "-f", file]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        lines(&out),
        [
            "egressgateway/main deleted",
            "egressl4route/github deleted",
            "credentialinjectionpolicy/anthropic deleted",
            "aiproviderroute/llm deleted",
        ]
    );
    let out = dev.clrk(&["egress", "list"]);
    assert!(out.status.success());
    assert_eq!(text(&out.stdout), "");
    assert!(
        text(&out.stderr).contains("no egress objects found"),
        "{}",
        text(&out.stderr)
    );
    let out = dev.clrk(&["delete", "-f", file]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("egressgateway default/main not found"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agents_egress_records_and_token_count_are_shown() {
    let dev = Dev::start();
    dev.apply(&sh_agent("quiet", "cat", ""));

    let out = dev.clrk(&["agents", "egress", "quiet"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "");
    assert!(
        text(&out.stderr).contains("agent default/quiet has no egress transactions recorded"),
        "{}",
        text(&out.stderr)
    );
    let out = dev.clrk(&["agents", "egress", "quiet", "-o", "json", "--limit", "5"]);
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer, serde_json::json!({"items": []}));

    let out = dev.clrk(&["agents", "egress", "absent"]);
    assert!(!out.status.success());
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("agent default/absent not found"),
        "{}",
        text(&out.stderr)
    );

    let agent = dev.api_get("/v1/agents/default/quiet").await.json();
    let today = chrono::Utc::now().date_naive().to_string();
    assert_eq!(agent["tokenUsage"]["today"], 0, "{agent}");
    assert_eq!(agent["tokenUsage"]["day"], today.as_str(), "{agent}");
    let out = dev.clrk(&["agents", "get", "quiet"]);
    assert!(
        text(&out.stdout)
            .lines()
            .any(|l| l.starts_with("Tokens today:") && l.ends_with(" 0")),
        "{}",
        text(&out.stdout)
    );
}
