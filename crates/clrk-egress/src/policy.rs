//! Decisions: may this connection leave, which credential does a request get, is this
//! provider call within its budget. Pure functions of the configuration and the destination.

use std::net::{IpAddr, SocketAddr};

use clrk_api::{
    AiProvider, CredentialTarget, DefaultPolicy, TokenBudget, hostname_matches, parse_cidr,
};

use crate::config::EgressConfig;
use crate::destination::{HostAddresses, forbidden_reason};
use crate::usage::Provider;

/// Ports an AIProviderRoute's hostnames are allowed on.
const PROVIDER_PORTS: [u16; 2] = [443, 80];

/// Whether a destination may be reached, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub allowed: bool,
    /// The rule that allowed it, or why it was refused.
    pub reason: String,
}

impl Verdict {
    fn allow(reason: String) -> Verdict {
        Verdict {
            allowed: true,
            reason,
        }
    }

    fn deny(reason: String) -> Verdict {
        Verdict {
            allowed: false,
            reason,
        }
    }
}

/// Decides whether a sandbox may reach `destination`, known by the names it resolved to
/// that address through clrk's resolver (`names`). A name the agent merely claims (SNI, Host)
/// does not count: it could send any name to any address.
///
/// The worker's own addresses are refused first, whatever the configuration says.
pub fn decide(
    config: &EgressConfig,
    destination: SocketAddr,
    names: &[String],
    host: &HostAddresses,
) -> Verdict {
    let (ip, port) = (destination.ip().to_canonical(), destination.port());
    if let Some(reason) = forbidden_reason(ip, host) {
        return Verdict::deny(format!(
            "{ip} is a {reason}: never reachable from a sandbox"
        ));
    }
    if config.gateways.is_empty() {
        return Verdict::deny(match config.missing.as_slice() {
            [] => "the agent has no egressRefs: nothing leaves its sandbox".to_owned(),
            missing => format!(
                "egress gateway {} does not exist: apply it, or fix the agent's egressRefs",
                missing.join(", ")
            ),
        });
    }
    for route in &config.routes {
        for (i, rule) in route.spec.rules.iter().enumerate() {
            if !rule.ports.is_empty() && !rule.ports.contains(&port) {
                continue;
            }
            let by_name = names.iter().find(|n| {
                rule.destination_hostnames
                    .iter()
                    .any(|pattern| hostname_matches(pattern, n))
            });
            let by_address = rule
                .destination_cidrs
                .iter()
                .find(|c| parse_cidr(c).is_some_and(|net| net.contains(&ip)));
            let matched = by_name.cloned().or_else(|| by_address.cloned());
            if let Some(what) = matched {
                return Verdict::allow(format!(
                    "egressl4route {} rules[{i}] allows {what}:{port}",
                    route.metadata.name
                ));
            }
        }
    }
    if PROVIDER_PORTS.contains(&port)
        && let Some((route, name)) = names
            .iter()
            .find_map(|n| provider_route(config, n).map(|(r, _)| (r, n)))
    {
        return Verdict::allow(format!("aiproviderroute {route} allows {name}:{port}"));
    }
    if let Some(g) = config
        .gateways
        .iter()
        .find(|g| g.spec.default_policy == DefaultPolicy::AllowAll)
    {
        return Verdict::allow(format!("egressgateway {} allows all", g.metadata.name));
    }
    let what = match names.first() {
        Some(name) => format!("{name} ({ip}):{port}"),
        None => format!("{ip}:{port}"),
    };
    Verdict::deny(format!(
        "no route of egressgateway {} allows {what}",
        gateway_names(config)
    ))
}

/// Decides for a TLS connection whose server name is not a DNS name (an IP literal, a label
/// starting with '-' or longer than 63 characters, other characters than letters, digits and
/// '-'): no hostname rule can vouch for such a name, so only what allows the bare address
/// (`destinationCIDRs`, allow-all) lets it through.
pub fn decide_unreadable_name(
    config: &EgressConfig,
    destination: SocketAddr,
    host: &HostAddresses,
) -> Verdict {
    let by_address = decide(config, destination, &[], host);
    if by_address.allowed || forbidden_reason(destination.ip().to_canonical(), host).is_some() {
        return by_address;
    }
    Verdict::deny(format!(
        "the TLS name the agent sent is not a DNS name (an IP literal, a label starting with '-' or longer than 63 characters, or characters other than letters, digits and '-'): only a destinationCIDRs rule or allow-all opens {} for it; send the name the agent resolved",
        destination.ip().to_canonical()
    ))
}

/// A name the agent sends with a connection or request, which the upstream will act on: the
/// TLS server name (SNI) or the HTTP `Host` (or absolute-form authority).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claimed<'a> {
    /// What carried it, for messages: `TLS name` or `Host`.
    pub carrier: &'static str,
    /// The name, lower case, without port or trailing dot.
    pub name: &'a str,
}

/// Decides like [`decide`], but for the name the upstream will be given: the upstream serves
/// whichever virtual host the agent names, so that name, not merely the address, must be
/// allowed. A claimed name counts only when the sandbox resolved it to this very address
/// through clrk; otherwise only what allows the bare address (`destinationCIDRs`, allow-all)
/// can let the connection through. Without a claimed name (or with an IP literal), the names
/// the sandbox resolved for the address decide, as for any other TCP connection.
pub fn decide_claimed(
    config: &EgressConfig,
    destination: SocketAddr,
    resolved: &[String],
    claimed: Option<Claimed<'_>>,
    host: &HostAddresses,
) -> Verdict {
    let Some(claimed) = claimed.filter(|c| c.name.parse::<IpAddr>().is_err()) else {
        return decide(config, destination, resolved, host);
    };
    if resolved.iter().any(|r| r == claimed.name) {
        return decide(config, destination, &[claimed.name.to_owned()], host);
    }
    let by_address = decide(config, destination, &[], host);
    if by_address.allowed || forbidden_reason(destination.ip().to_canonical(), host).is_some() {
        return by_address;
    }
    Verdict::deny(format!(
        "{} {} was not resolved to {} through clrk's resolver: a name the agent only sends opens no destination",
        claimed.carrier,
        claimed.name,
        destination.ip().to_canonical()
    ))
}

/// Whether a DNS question for `name` may be answered: some route or provider route names it,
/// or a gateway allows all (an address-range rule is checked on the answer instead).
pub fn name_allowed(config: &EgressConfig, name: &str) -> Option<String> {
    for route in &config.routes {
        if route.spec.rules.iter().any(|r| {
            r.destination_hostnames
                .iter()
                .any(|pattern| hostname_matches(pattern, name))
        }) {
            return Some(format!(
                "egressl4route {} names {name}",
                route.metadata.name
            ));
        }
    }
    if let Some((route, _)) = provider_route(config, name) {
        return Some(format!("aiproviderroute {route} names {name}"));
    }
    config
        .gateways
        .iter()
        .find(|g| g.spec.default_policy == DefaultPolicy::AllowAll)
        .map(|g| format!("egressgateway {} allows all", g.metadata.name))
}

/// Whether any route has address-range rules (then a name no route names may still be
/// resolved, for its answer to be checked against them).
pub fn has_address_rules(config: &EgressConfig) -> bool {
    config.routes.iter().any(|r| {
        r.spec
            .rules
            .iter()
            .any(|rule| !rule.destination_cidrs.is_empty())
    })
}

/// Whether a gateway asks for names no route names to be resolved (`spec.dns.forwardAll`),
/// for their answers to be checked against address-range rules.
pub fn forwards_all_names(config: &EgressConfig) -> bool {
    config.gateways.iter().any(|g| g.spec.dns.forward_all)
}

/// Whether some address-range rule allows `ip` (on any port).
pub fn address_allowed(config: &EgressConfig, ip: IpAddr) -> bool {
    config.routes.iter().any(|route| {
        route.spec.rules.iter().any(|rule| {
            rule.destination_cidrs
                .iter()
                .any(|c| parse_cidr(c).is_some_and(|net| net.contains(&ip)))
        })
    })
}

/// The provider route covering `name`: its name and provider.
pub fn provider_route<'a>(config: &'a EgressConfig, name: &str) -> Option<(&'a str, Provider)> {
    config.ai_routes.iter().find_map(|route| {
        route.spec.matches.iter().find_map(|m| {
            m.effective_hostnames()
                .iter()
                .any(|h| hostname_matches(h, name))
                .then(|| (route.metadata.name.as_str(), provider_of(m.provider)))
        })
    })
}

/// The budgets of the provider routes covering `name`.
pub fn budgets(config: &EgressConfig, name: &str) -> Vec<(String, TokenBudget)> {
    config
        .ai_routes
        .iter()
        .filter(|route| {
            route.spec.matches.iter().any(|m| {
                m.effective_hostnames()
                    .iter()
                    .any(|h| hostname_matches(h, name))
            })
        })
        .flat_map(|route| {
            route
                .spec
                .filters
                .iter()
                .filter_map(|f| f.token_budget)
                .map(|b| (route.metadata.name.clone(), b))
        })
        .collect()
}

/// A credential to set on requests to a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    /// The policy it comes from.
    pub policy: String,
    pub namespace: String,
    pub secret: String,
    pub key: String,
    pub place: CredentialPlace,
}

/// Where a credential goes in a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialPlace {
    /// A header (lower case), its value after `prefix`.
    Header { name: String, prefix: String },
    /// A query parameter, its value after `prefix`.
    Query { name: String, prefix: String },
    /// Where the destination's provider documents its key.
    ProviderAuth,
}

impl CredentialPlace {
    /// Whether two credentials would write the same place.
    fn same_slot(&self, other: &CredentialPlace) -> bool {
        match (self, other) {
            (CredentialPlace::Header { name: a, .. }, CredentialPlace::Header { name: b, .. })
            | (CredentialPlace::Query { name: a, .. }, CredentialPlace::Query { name: b, .. }) => {
                a == b
            }
            (CredentialPlace::ProviderAuth, CredentialPlace::ProviderAuth) => true,
            _ => false,
        }
    }
}

/// The credentials requests to `name` get, one per place (the first policy wins a header, a
/// parameter, or the provider's key). `ProviderAuth` comes first: it clears every place a
/// provider reads a key from, which must not undo a header another policy sets.
pub fn credentials(config: &EgressConfig, name: &str) -> Vec<Credential> {
    let mut out: Vec<Credential> = Vec::new();
    for policy in &config.credentials {
        let spec = &policy.spec;
        let applies = spec
            .destination_hostnames
            .iter()
            .any(|pattern| hostname_matches(pattern, name));
        let prefix = spec.value_prefix.clone();
        let place = match spec.target {
            CredentialTarget::Header => CredentialPlace::Header {
                name: spec
                    .header_name
                    .clone()
                    .unwrap_or_default()
                    .to_ascii_lowercase(),
                prefix,
            },
            CredentialTarget::QueryParam => CredentialPlace::Query {
                name: spec.param_name.clone().unwrap_or_default(),
                prefix,
            },
            CredentialTarget::ProviderAuth => CredentialPlace::ProviderAuth,
        };
        if applies && !out.iter().any(|c| c.place.same_slot(&place)) {
            out.push(Credential {
                policy: policy.metadata.name.clone(),
                namespace: policy.metadata.namespace.clone(),
                secret: spec.secret_ref.name.clone(),
                key: spec.secret_key.clone(),
                place,
            });
        }
    }
    out.sort_by_key(|c| c.place != CredentialPlace::ProviderAuth);
    out
}

fn provider_of(p: AiProvider) -> Provider {
    match p {
        AiProvider::Openai => Provider::OpenAi,
        AiProvider::Anthropic => Provider::Anthropic,
        AiProvider::AzureOpenai => Provider::AzureOpenAi,
    }
}

fn gateway_names(config: &EgressConfig) -> String {
    config
        .gateways
        .iter()
        .map(|g| g.metadata.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(yaml: &str) -> EgressConfig {
        let docs = clrk_api::parse_manifests("t.yaml", yaml).unwrap();
        let mut config = EgressConfig::default();
        for doc in docs {
            match doc.resource {
                clrk_api::Resource::EgressGateway(g) => config.gateways.push(g),
                clrk_api::Resource::EgressL4Route(r) => config.routes.push(r),
                clrk_api::Resource::CredentialInjectionPolicy(p) => config.credentials.push(p),
                clrk_api::Resource::AIProviderRoute(r) => config.ai_routes.push(r),
                _ => {}
            }
        }
        config
    }

    const MANIFESTS: &str = "apiVersion: clrk.apoxy.dev/v1alpha1
kind: EgressGateway
metadata: {name: main}
---
apiVersion: clrk.apoxy.dev/v1alpha1
kind: EgressL4Route
metadata: {name: web}
spec:
  parentRefs: [{name: main}]
  rules:
    - destinationHostnames: [api.example.test, '*.pypi.test']
      ports: [443]
    - destinationCIDRs: [203.0.113.0/24]
---
apiVersion: clrk.apoxy.dev/v1alpha1
kind: AIProviderRoute
metadata: {name: llm}
spec:
  parentRefs: [{name: main}]
  matches: [{provider: anthropic, hostnames: [llm.test]}]
  filters: [{type: TokenBudget, tokenBudget: {maxTokensPerExecution: 100}}]
---
apiVersion: clrk.apoxy.dev/v1alpha1
kind: CredentialInjectionPolicy
metadata: {name: key}
spec:
  parentRefs: [{name: main}]
  destinationHostnames: [llm.test]
  secretRef: {name: anthropic}
  headerName: X-Api-Key
";

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn names_learned_through_dns_and_ranges_allow_and_nothing_else_does() {
        let c = config(MANIFESTS);
        let host = HostAddresses::new();
        let names = |n: &[&str]| {
            n.iter()
                .map(std::string::ToString::to_string)
                .collect::<Vec<_>>()
        };
        let v = decide(
            &c,
            addr("198.51.100.7:443"),
            &names(&["api.example.test"]),
            &host,
        );
        assert!(
            v.allowed && v.reason.contains("egressl4route web rules[0]"),
            "{v:?}"
        );
        assert!(
            !decide(
                &c,
                addr("198.51.100.7:80"),
                &names(&["api.example.test"]),
                &host
            )
            .allowed
        );
        assert!(
            decide(
                &c,
                addr("198.51.100.7:443"),
                &names(&["files.pypi.test"]),
                &host
            )
            .allowed
        );
        assert!(!decide(&c, addr("198.51.100.7:443"), &names(&["pypi.test"]), &host).allowed);
        assert!(decide(&c, addr("203.0.113.9:5432"), &[], &host).allowed);
        let v = decide(&c, addr("198.51.100.7:443"), &[], &host);
        assert!(!v.allowed);
        assert_eq!(
            v.reason,
            "no route of egressgateway main allows 198.51.100.7:443"
        );
        let v = decide(&c, addr("198.51.100.8:443"), &names(&["llm.test"]), &host);
        assert!(
            v.allowed && v.reason.contains("aiproviderroute llm"),
            "{v:?}"
        );
    }

    #[test]
    fn a_tls_name_that_is_not_a_dns_name_passes_only_an_address_rule() {
        let c = config(MANIFESTS);
        let host = HostAddresses::new();
        let v = decide_unreadable_name(&c, addr("198.51.100.7:443"), &host);
        assert!(!v.allowed && v.reason.contains("not a DNS name"), "{v:?}");
        let v = decide_unreadable_name(&c, addr("203.0.113.9:443"), &host);
        assert!(v.allowed && v.reason.contains("rules[1]"), "{v:?}");
    }

    #[test]
    fn a_name_sent_upstream_must_be_allowed_and_resolved_to_the_address() {
        let c = config(MANIFESTS);
        let host = HostAddresses::new();
        let resolved = vec!["api.example.test".to_owned()];
        let to = addr("198.51.100.7:443");
        let claimed = |name| {
            Some(Claimed {
                carrier: "TLS name",
                name,
            })
        };
        let v = decide_claimed(&c, to, &resolved, claimed("api.example.test"), &host);
        assert!(
            v.allowed && v.reason.contains("allows api.example.test:443"),
            "{v:?}"
        );
        // Another name sent to the same address opens nothing, allowed elsewhere or not.
        for other in ["other.test", "llm.test"] {
            let v = decide_claimed(&c, to, &resolved, claimed(other), &host);
            assert!(!v.allowed, "{v:?}");
            assert_eq!(
                v.reason,
                format!(
                    "TLS name {other} was not resolved to 198.51.100.7 through clrk's resolver: a name the agent only sends opens no destination"
                )
            );
        }
        // An address range still allows its addresses whatever name is sent; no name, or an
        // address, leaves the decision to the resolved names.
        assert!(
            decide_claimed(&c, addr("203.0.113.9:5432"), &[], claimed("x.test"), &host).allowed
        );
        assert!(decide_claimed(&c, to, &resolved, None, &host).allowed);
        assert!(decide_claimed(&c, to, &resolved, claimed("198.51.100.7"), &host).allowed);
    }

    #[test]
    fn the_worker_itself_is_refused_even_under_allow_all() {
        let mut c = config(MANIFESTS);
        c.gateways[0].spec.default_policy = DefaultPolicy::AllowAll;
        let host = HostAddresses::new();
        assert!(decide(&c, addr("198.51.100.7:22"), &[], &host).allowed);
        for local in [
            "127.0.0.1:8080",
            "169.254.169.254:80",
            "0.0.0.0:1",
            "224.0.0.1:5353",
        ] {
            let v = decide(&c, addr(local), &["api.example.test".into()], &host);
            assert!(!v.allowed, "{local}: {v:?}");
            assert!(v.reason.contains("never reachable"), "{v:?}");
        }
    }

    #[test]
    fn without_gateways_nothing_leaves_and_the_reason_says_why() {
        let host = HostAddresses::new();
        let v = decide(
            &EgressConfig::default(),
            addr("198.51.100.7:443"),
            &[],
            &host,
        );
        assert!(v.reason.contains("no egressRefs"));
        let missing = EgressConfig {
            missing: vec!["nope".into()],
            ..EgressConfig::default()
        };
        let v = decide(&missing, addr("198.51.100.7:443"), &[], &host);
        assert!(
            v.reason.contains("egress gateway nope does not exist"),
            "{v:?}"
        );
    }

    #[test]
    fn each_name_on_a_shared_address_is_allowed_by_its_own_route() {
        let c = config(&format!(
            "{MANIFESTS}---
apiVersion: clrk.apoxy.dev/v1alpha1
kind: AIProviderRoute
metadata: {{name: gpt}}
spec:
  parentRefs: [{{name: main}}]
  matches: [{{provider: openai, hostnames: [gpt.test]}}]
"
        ));
        let host = HostAddresses::new();
        let to = addr("198.51.100.8:443");
        // Both names resolved to one address (a CDN), in either order.
        for resolved in [
            vec!["llm.test".to_owned(), "gpt.test".to_owned()],
            vec!["gpt.test".to_owned(), "llm.test".to_owned()],
        ] {
            for (name, route) in [("llm.test", "llm"), ("gpt.test", "gpt")] {
                let claimed = Some(Claimed {
                    carrier: "TLS name",
                    name,
                });
                let v = decide_claimed(&c, to, &resolved, claimed, &host);
                assert_eq!(
                    v.reason,
                    format!("aiproviderroute {route} allows {name}:443"),
                    "{resolved:?}"
                );
            }
        }
        assert_eq!(
            provider_route(&c, "gpt.test").unwrap(),
            ("gpt", Provider::OpenAi)
        );
    }

    #[test]
    fn provider_auth_comes_first_and_each_place_is_written_once() {
        let c = config(&format!(
            "{MANIFESTS}---
apiVersion: clrk.apoxy.dev/v1alpha1
kind: CredentialInjectionPolicy
metadata: {{name: again}}
spec:
  parentRefs: [{{name: main}}]
  destinationHostnames: [llm.test]
  secretRef: {{name: other}}
  headerName: x-api-key
---
apiVersion: clrk.apoxy.dev/v1alpha1
kind: CredentialInjectionPolicy
metadata: {{name: provider}}
spec:
  parentRefs: [{{name: main}}]
  destinationHostnames: ['*.test']
  secretRef: {{name: anthropic}}
  target: ProviderAuth
---
apiVersion: clrk.apoxy.dev/v1alpha1
kind: CredentialInjectionPolicy
metadata: {{name: param}}
spec:
  parentRefs: [{{name: main}}]
  destinationHostnames: [llm.test]
  secretRef: {{name: maps}}
  target: QueryParam
  paramName: key
"
        ));
        let creds = credentials(&c, "llm.test");
        let names: Vec<&str> = creds.iter().map(|c| c.policy.as_str()).collect();
        assert_eq!(names, ["provider", "key", "param"]);
        assert_eq!(
            creds[2].place,
            CredentialPlace::Query {
                name: "key".into(),
                prefix: String::new()
            }
        );
    }

    #[test]
    fn credentials_budgets_and_dns_follow_the_names() {
        let c = config(MANIFESTS);
        let creds = credentials(&c, "LLM.test");
        assert_eq!(creds.len(), 1);
        assert_eq!(creds[0].key, "token");
        assert_eq!(
            creds[0].place,
            CredentialPlace::Header {
                name: "x-api-key".into(),
                prefix: String::new()
            }
        );
        assert!(credentials(&c, "api.example.test").is_empty());
        assert_eq!(
            budgets(&c, "llm.test")[0].1.max_tokens_per_execution,
            Some(100)
        );
        assert_eq!(
            provider_route(&c, "llm.test").unwrap().1,
            Provider::Anthropic
        );
        assert!(name_allowed(&c, "x.pypi.test").is_some());
        assert!(name_allowed(&c, "evil.test").is_none());
        assert!(address_allowed(&c, "203.0.113.1".parse().unwrap()));
        assert!(has_address_rules(&c));
        assert!(!has_address_rules(&EgressConfig::default()));
    }
}
