//! `clrk egress list|get`: the gateways, routes and policies `clrk apply` stored.

use anyhow::{Context as _, bail};
use chrono::{DateTime, Utc};
use clrk_api::Kind;
use serde_json::Value;

use crate::cli::{EgressGetArgs, EgressListArgs, ObjectFormat};
use crate::commands::Session;
use crate::output::{self, Table, age_of};
use clrk_wire::EgressObject;

/// Prints the egress objects of one namespace (or all) as a table, JSON or YAML.
pub async fn list(args: EgressListArgs, session: &Session) -> anyhow::Result<()> {
    let scope = &args.scope;
    let answer: Value = session
        .api()?
        .get(&["v1", "egress"], &scope.query())
        .await?;
    let empty = if scope.all_namespaces {
        "no egress objects found".to_string()
    } else {
        format!("no egress objects found in namespace {}", scope.namespace)
    };
    output::print_list(
        answer,
        args.output,
        &empty,
        |objects: &[EgressObject], wide| {
            egress_table(objects, scope.all_namespaces, wide, Utc::now())
        },
    )
}

/// Prints one object's manifest, YAML unless JSON is asked for.
pub async fn get(args: EgressGetArgs, session: &Session) -> anyhow::Result<()> {
    let (kind, name) = parse_object(&args.object)?;
    let path = [
        "v1",
        "egress",
        args.namespace.as_str(),
        kind.as_str(),
        name.as_str(),
    ];
    let object: EgressObject = session.api()?.get(&path, &[]).await?;
    match args.output {
        Some(ObjectFormat::Json) => output::print_json(&manifest(&object)),
        Some(ObjectFormat::Yaml) | None => output::print_yaml(&manifest(&object)),
    }
}

/// An object's manifest as `apply` takes it back, with `status.conditions` after it when a
/// condition is false (a route naming a gateway that does not exist).
///
/// ```
/// let object: clrk_wire::EgressObject = serde_json::from_value(serde_json::json!({
///     "kind": "EgressL4Route", "namespace": "default", "name": "r",
///     "manifest": {"kind": "EgressL4Route", "spec": {"parentRefs": [{"name": "gone"}]}},
///     "conditions": [{"type": "ReferencesResolved", "status": "False",
///                     "reason": "Unresolved", "message": "no EgressGateway default/gone"}]})).unwrap();
/// let manifest = clrk::commands::egress::manifest(&object);
/// assert_eq!(manifest["status"]["conditions"][0]["type"], "ReferencesResolved");
/// assert_eq!(manifest["spec"]["parentRefs"][0]["name"], "gone");
/// ```
pub fn manifest(object: &EgressObject) -> Value {
    let mut manifest = object.manifest.clone();
    if !object.conditions.is_empty()
        && let Some(fields) = manifest.as_object_mut()
    {
        fields.insert(
            "status".into(),
            serde_json::json!({"conditions": object.conditions}),
        );
    }
    manifest
}

/// `KIND/NAME` with KIND an egress kind in either spelling.
///
/// ```
/// use clrk::commands::egress::parse_object;
/// let (kind, name) = parse_object("egressgateway/main").unwrap();
/// assert_eq!((kind.as_str(), name.as_str()), ("EgressGateway", "main"));
/// assert!(parse_object("taskagent/word-count").is_err());
/// ```
pub fn parse_object(text: &str) -> anyhow::Result<(Kind, String)> {
    let usage = "write it as KIND/NAME, e.g. egressgateway/main";
    let Some((kind, name)) = text.split_once('/') else {
        bail!("{text:?} names no kind: {usage}");
    };
    if name.is_empty() {
        bail!("{text:?} names no object: {usage}");
    }
    let kind: Kind = kind.parse().with_context(|| format!("{text:?}: {usage}"))?;
    if !kind.is_egress() {
        bail!(
            "{text:?}: clrk egress shows EgressGateway, EgressL4Route, CredentialInjectionPolicy \
             and AIProviderRoute objects; for a {kind} use clrk agents get or clrk pools list"
        );
    }
    Ok((kind, name.to_string()))
}

/// The `egress list` table as of `now`.
/// `wide` adds a CONDITIONS column: the types of the object's conditions that do not hold.
pub fn egress_table(
    objects: &[EgressObject],
    with_namespace: bool,
    wide: bool,
    now: DateTime<Utc>,
) -> Table {
    let mut headers = vec!["KIND", "NAME"];
    if with_namespace {
        headers.push("NAMESPACE");
    }
    headers.extend(["SUMMARY", "AGE"]);
    if wide {
        headers.push("CONDITIONS");
    }
    let mut table = Table::new(headers);
    for object in objects {
        let mut row = vec![object.kind.clone(), object.key.name.clone()];
        if with_namespace {
            row.push(object.key.namespace.clone());
        }
        row.extend([
            summary(&object.kind, &object.manifest),
            age_of(Some(object.created_at.as_str()), now),
        ]);
        if wide {
            row.push(output::conditions_column(&object.conditions));
        }
        table.row(row);
    }
    table
}

/// What an object does, in one line: a gateway's policy, TLS mode and OTLP endpoint; a
/// route's destinations and ports; a policy's header and secret; a provider route's hosts
/// and budget.
pub fn summary(kind: &str, manifest: &Value) -> String {
    let spec = manifest.get("spec").unwrap_or(&Value::Null);
    match kind {
        "EgressGateway" => gateway_summary(spec),
        "EgressL4Route" => route_summary(spec),
        "CredentialInjectionPolicy" => policy_summary(spec),
        "AIProviderRoute" => ai_route_summary(spec),
        _ => "-".to_string(),
    }
}

fn gateway_summary(spec: &Value) -> String {
    let mut parts = vec![
        text_at(spec, "/defaultPolicy")
            .unwrap_or("deny-all")
            .to_string(),
        text_at(spec, "/tls/mode")
            .unwrap_or("Terminate")
            .to_string(),
    ];
    if let Some(endpoint) = text_at(spec, "/otlp/endpoint") {
        parts.push(format!("otlp → {endpoint}"));
    }
    parts.join(", ")
}

fn route_summary(spec: &Value) -> String {
    let rules: Vec<String> = items(spec, "/rules")
        .iter()
        .map(|rule| {
            let mut destinations = texts(rule, "/destinationHostnames");
            destinations.extend(texts(rule, "/destinationCIDRs"));
            let ports: Vec<String> = items(rule, "/ports")
                .iter()
                .map(std::string::ToString::to_string)
                .collect();
            let ports = match ports.len() {
                0 => "any port".to_string(),
                1 => format!("port {}", ports[0]),
                _ => format!("ports {}", ports.join(",")),
            };
            format!("{} {ports}", destinations.join(","))
        })
        .collect();
    or_dash_text(rules.join("; "))
}

/// Where the key goes, from which secret, for which names.
///
/// ```
/// # use clrk::commands::egress::policy_summary;
/// let spec = serde_json::json!({"target": "ProviderAuth", "secretRef": {"name": "openai"},
///     "destinationHostnames": ["api.openai.com"]});
/// assert_eq!(policy_summary(&spec), "provider's key header ← secret openai/token for api.openai.com");
/// let spec = serde_json::json!({"target": "QueryParam", "paramName": "key",
///     "secretRef": {"name": "maps"}, "destinationHostnames": ["maps.test"]});
/// assert_eq!(policy_summary(&spec), "?key= ← secret maps/token for maps.test");
/// ```
pub fn policy_summary(spec: &Value) -> String {
    let place = match text_at(spec, "/target").unwrap_or("Header") {
        "ProviderAuth" => "provider's key header".to_string(),
        "QueryParam" => format!("?{}=", text_at(spec, "/paramName").unwrap_or("-")),
        _ => text_at(spec, "/headerName").unwrap_or("-").to_string(),
    };
    format!(
        "{place} ← secret {}/{} for {}",
        text_at(spec, "/secretRef/name").unwrap_or("-"),
        text_at(spec, "/secretKey").unwrap_or("token"),
        texts(spec, "/destinationHostnames").join(","),
    )
}

fn ai_route_summary(spec: &Value) -> String {
    let matches: Vec<String> = items(spec, "/matches")
        .iter()
        .map(|m| {
            let provider = text_at(m, "/provider").unwrap_or("-");
            let mut hosts = texts(m, "/hostnames");
            if hosts.is_empty() {
                hosts = match provider {
                    "openai" => vec!["api.openai.com".to_string()],
                    "anthropic" => vec!["api.anthropic.com".to_string()],
                    _ => Vec::new(),
                };
            }
            format!("{provider} @ {}", hosts.join(","))
        })
        .collect();
    let mut text = matches.join("; ");
    let mut budgets = Vec::new();
    for filter in items(spec, "/filters") {
        let Some(budget) = filter.get("tokenBudget") else {
            continue;
        };
        if let Some(n) = budget.get("maxTokensPerExecution").and_then(Value::as_u64) {
            budgets.push(format!("{n}/execution"));
        }
        if let Some(n) = budget.get("maxTokensPerDay").and_then(Value::as_u64) {
            budgets.push(format!("{n}/day"));
        }
    }
    if !budgets.is_empty() {
        text.push_str(&format!(", budget {}", budgets.join(", ")));
    }
    or_dash_text(text)
}

fn text_at<'a>(value: &'a Value, pointer: &str) -> Option<&'a str> {
    value.pointer(pointer).and_then(Value::as_str)
}

fn items<'a>(value: &'a Value, pointer: &str) -> &'a [Value] {
    value
        .pointer(pointer)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn texts(value: &Value, pointer: &str) -> Vec<String> {
    items(value, pointer)
        .iter()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect()
}

fn or_dash_text(text: String) -> String {
    if text.is_empty() {
        "-".to_string()
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clrk_wire::List;

    fn objects() -> Vec<EgressObject> {
        let list: List<EgressObject> = serde_json::from_str(
            r#"{"items": [
              {"kind": "AIProviderRoute", "namespace": "default", "name": "llm", "createdAt": "2026-01-01T11:58:00Z",
               "manifest": {"spec": {"parentRefs": [{"name": "main"}],
                 "matches": [{"provider": "anthropic", "hostnames": ["llm.test"]}, {"provider": "openai"}],
                 "filters": [{"type": "TokenBudget", "tokenBudget": {"maxTokensPerExecution": 1000, "maxTokensPerDay": 50000}}]}}},
              {"kind": "CredentialInjectionPolicy", "namespace": "default", "name": "anthropic", "createdAt": "2026-01-01T11:58:00Z",
               "manifest": {"spec": {"parentRefs": [{"name": "main"}], "destinationHostnames": ["llm.test"],
                 "secretRef": {"name": "anthropic"}, "secretKey": "token", "target": "Header", "headerName": "x-api-key"}}},
              {"kind": "EgressGateway", "namespace": "default", "name": "main", "createdAt": "2026-01-01T11:58:00Z",
               "manifest": {"spec": {"defaultPolicy": "deny-all", "tls": {"mode": "Terminate"},
                 "otlp": {"endpoint": "http://collector:4318", "headers": {"x-key": "<redacted>"}}}}},
              {"kind": "EgressL4Route", "namespace": "team", "name": "github", "createdAt": "2026-01-01T10:00:00Z",
               "manifest": {"spec": {"parentRefs": [{"name": "main"}], "rules": [
                 {"destinationHostnames": ["*.github.com", "github.com"], "ports": [443]},
                 {"destinationCIDRs": ["10.0.0.0/8"], "ports": []},
                 {"destinationHostnames": ["ssh.example.com"], "destinationCIDRs": ["2001:db8::/32"], "ports": [22, 2222]}]}}}
            ]}"#,
        )
        .unwrap();
        list.items
    }

    #[test]
    fn objects_render_with_summaries() {
        let now = DateTime::parse_from_rfc3339("2026-01-01T12:00:00Z")
            .unwrap()
            .to_utc();
        assert_eq!(
            egress_table(&objects(), false, false, now).render(),
            "KIND                        NAME        SUMMARY                                                                                              AGE\n\
             AIProviderRoute             llm         anthropic @ llm.test; openai @ api.openai.com, budget 1000/execution, 50000/day                      2m\n\
             CredentialInjectionPolicy   anthropic   x-api-key ← secret anthropic/token for llm.test                                                      2m\n\
             EgressGateway               main        deny-all, Terminate, otlp → http://collector:4318                                                    2m\n\
             EgressL4Route               github      *.github.com,github.com port 443; 10.0.0.0/8 any port; ssh.example.com,2001:db8::/32 ports 22,2222   2h\n"
        );
    }

    #[test]
    fn all_namespaces_adds_the_namespace_after_the_name() {
        let now = DateTime::parse_from_rfc3339("2026-01-01T12:00:00Z")
            .unwrap()
            .to_utc();
        let text = egress_table(&objects()[2..3], true, false, now).render();
        assert_eq!(
            text,
            "KIND            NAME   NAMESPACE   SUMMARY                                             AGE\n\
             EgressGateway   main   default     deny-all, Terminate, otlp → http://collector:4318   2m\n"
        );
    }

    #[test]
    fn a_gateway_without_otlp_shows_policy_and_mode() {
        let spec = serde_json::json!({"spec": {"defaultPolicy": "allow-all", "tls": {"mode": "Passthrough"}}});
        assert_eq!(summary("EgressGateway", &spec), "allow-all, Passthrough");
    }

    #[test]
    fn objects_are_named_kind_slash_name() {
        assert_eq!(
            parse_object("AIProviderRoute/llm").unwrap().0,
            Kind::AIProviderRoute
        );
        assert!(
            parse_object("main")
                .unwrap_err()
                .to_string()
                .contains("KIND/NAME")
        );
        assert!(parse_object("egressgateway/").is_err());
        let err = format!("{:#}", parse_object("gateway/main").unwrap_err());
        assert!(err.contains("unknown kind \"gateway\""), "{err}");
        assert!(
            parse_object("workerpool/gpu")
                .unwrap_err()
                .to_string()
                .contains("clrk pools list")
        );
    }
}
