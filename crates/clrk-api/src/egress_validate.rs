//! Rules of the egress kinds serde cannot express: names, hostname patterns, address ranges,
//! ports, header names, URLs and PEM text.

use crate::checks::{name, positive};
use crate::egress::{
    AIProviderRouteSpec, CredentialInjectionPolicySpec, CredentialTarget, EgressGatewaySpec,
    EgressL4RouteSpec, FilterType, ParentRef, parse_cidr,
};
use crate::field_error::FieldError;

pub(crate) fn gateway(spec: &EgressGatewaySpec) -> Result<(), FieldError> {
    positive("spec.requestTimeout", spec.request_timeout)?;
    if let Some(bundle) = &spec.upstream_tls.additional_trust_bundle
        && !bundle.contains("-----BEGIN CERTIFICATE-----")
    {
        return Err(FieldError::new(
            "spec.upstreamTLS.additionalTrustBundle",
            "must hold PEM certificates (-----BEGIN CERTIFICATE----- …)",
        ));
    }
    if let Some(otlp) = &spec.otlp {
        let endpoint = otlp.endpoint.trim();
        let scheme_ok = endpoint.starts_with("http://") || endpoint.starts_with("https://");
        if !scheme_ok || endpoint.len() <= "https://".len() {
            return Err(FieldError::new(
                "spec.otlp.endpoint",
                format!(
                    "\"{endpoint}\" is not an OTLP/HTTP base URL: use one like http://collector:4318"
                ),
            ));
        }
        for header in otlp.headers.keys() {
            header_name(&format!("spec.otlp.headers.{header}"), header)?;
        }
    }
    Ok(())
}

pub(crate) fn l4_route(spec: &EgressL4RouteSpec) -> Result<(), FieldError> {
    parent_refs(&spec.parent_refs)?;
    if spec.rules.is_empty() {
        return Err(FieldError::new(
            "spec.rules",
            "must hold at least one rule with destinationHostnames or destinationCIDRs",
        ));
    }
    for (i, rule) in spec.rules.iter().enumerate() {
        let at = format!("spec.rules[{i}]");
        if rule.destination_hostnames.is_empty() && rule.destination_cidrs.is_empty() {
            return Err(FieldError::new(
                at,
                "must name destinationHostnames or destinationCIDRs (or both)",
            ));
        }
        hostnames(
            &format!("{at}.destinationHostnames"),
            &rule.destination_hostnames,
        )?;
        for (j, cidr) in rule.destination_cidrs.iter().enumerate() {
            if parse_cidr(cidr).is_none() {
                return Err(FieldError::new(
                    format!("{at}.destinationCIDRs[{j}]"),
                    format!("\"{cidr}\" is not an address range: use one like 203.0.113.0/24"),
                ));
            }
        }
        if let Some(j) = rule.ports.iter().position(|&p| p == 0) {
            return Err(FieldError::new(
                format!("{at}.ports[{j}]"),
                "must be a port between 1 and 65535",
            ));
        }
    }
    Ok(())
}

pub(crate) fn credential_policy(spec: &CredentialInjectionPolicySpec) -> Result<(), FieldError> {
    parent_refs(&spec.parent_refs)?;
    if spec.destination_hostnames.is_empty() {
        return Err(FieldError::new(
            "spec.destinationHostnames",
            "must name the hosts whose requests get the credential",
        ));
    }
    hostnames("spec.destinationHostnames", &spec.destination_hostnames)?;
    name("spec.secretRef.name", &spec.secret_ref.name)?;
    if spec.secret_key.is_empty() {
        return Err(FieldError::new(
            "spec.secretKey",
            "must not be empty (default: token)",
        ));
    }
    credential_target(spec)?;
    if spec.value_prefix.contains(['\r', '\n', '\0']) {
        return Err(FieldError::new(
            "spec.valuePrefix",
            "must not contain line breaks",
        ));
    }
    Ok(())
}

/// Each target takes its own fields and no other's.
fn credential_target(spec: &CredentialInjectionPolicySpec) -> Result<(), FieldError> {
    let forbid = |field: &str, set: bool, why: &str| {
        if set {
            Err(FieldError::new(format!("spec.{field}"), why.to_owned()))
        } else {
            Ok(())
        }
    };
    match spec.target {
        CredentialTarget::Header => {
            let Some(header) = &spec.header_name else {
                return Err(FieldError::new(
                    "spec.headerName",
                    "required with target: Header (e.g. x-api-key); for an LLM provider use target: ProviderAuth",
                ));
            };
            header_name("spec.headerName", header)?;
            forbid(
                "paramName",
                spec.param_name.is_some(),
                "only with target: QueryParam",
            )
        }
        CredentialTarget::QueryParam => {
            let Some(param) = &spec.param_name else {
                return Err(FieldError::new(
                    "spec.paramName",
                    "required with target: QueryParam (e.g. key)",
                ));
            };
            query_param_name("spec.paramName", param)?;
            forbid(
                "headerName",
                spec.header_name.is_some(),
                "only with target: Header",
            )
        }
        CredentialTarget::ProviderAuth => {
            let why = "not with target: ProviderAuth, where the provider of the AIProviderRoute covering the destination says where the key goes";
            forbid("headerName", spec.header_name.is_some(), why)?;
            forbid("paramName", spec.param_name.is_some(), why)?;
            forbid("valuePrefix", !spec.value_prefix.is_empty(), why)
        }
    }
}

pub(crate) fn ai_route(spec: &AIProviderRouteSpec) -> Result<(), FieldError> {
    parent_refs(&spec.parent_refs)?;
    if spec.matches.is_empty() {
        return Err(FieldError::new(
            "spec.matches",
            "must name at least one provider (openai, anthropic or azure-openai)",
        ));
    }
    for (i, m) in spec.matches.iter().enumerate() {
        if m.effective_hostnames().is_empty() {
            return Err(FieldError::new(
                format!("spec.matches[{i}].hostnames"),
                "required with provider: azure-openai, which has a host per resource: name yours, like myresource.openai.azure.com",
            ));
        }
        hostnames(&format!("spec.matches[{i}].hostnames"), &m.hostnames)?;
    }
    for (i, filter) in spec.filters.iter().enumerate() {
        match filter.filter_type {
            FilterType::TokenBudget => {
                let Some(budget) = filter.token_budget else {
                    return Err(FieldError::new(
                        format!("spec.filters[{i}].tokenBudget"),
                        "required with type: TokenBudget",
                    ));
                };
                if budget.max_tokens_per_execution.is_none() && budget.max_tokens_per_day.is_none()
                {
                    return Err(FieldError::new(
                        format!("spec.filters[{i}].tokenBudget"),
                        "must set maxTokensPerExecution or maxTokensPerDay",
                    ));
                }
            }
        }
    }
    Ok(())
}

fn parent_refs(refs: &[ParentRef]) -> Result<(), FieldError> {
    if refs.is_empty() {
        return Err(FieldError::new(
            "spec.parentRefs",
            "must name at least one EgressGateway, like [{name: main}]",
        ));
    }
    for (i, r) in refs.iter().enumerate() {
        name(&format!("spec.parentRefs[{i}].name"), &r.name)?;
    }
    Ok(())
}

/// Exact names or `*.suffix`; lowercase letters, digits, `-` and `.`.
fn hostnames(path: &str, names: &[String]) -> Result<(), FieldError> {
    for (i, pattern) in names.iter().enumerate() {
        let bare = pattern.strip_prefix("*.").unwrap_or(pattern);
        let labels_ok = !bare.is_empty()
            && bare.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                    && !label.starts_with('-')
            });
        if !labels_ok || bare.len() > 253 {
            return Err(FieldError::new(
                format!("{path}[{i}]"),
                format!(
                    "\"{pattern}\" is not a host name: use one like api.openai.com, or \
                     *.example.com for every name under example.com"
                ),
            ));
        }
    }
    Ok(())
}

/// An HTTP header name: a token of visible ASCII without separators.
fn header_name(path: &str, header: &str) -> Result<(), FieldError> {
    let ok = !header.is_empty()
        && header
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !ok {
        return Err(FieldError::new(
            path,
            format!("\"{header}\" is not an HTTP header name: use one like x-api-key"),
        ));
    }
    Ok(())
}

/// A query parameter name: unreserved URL characters only, so it needs no escaping.
fn query_param_name(path: &str, param: &str) -> Result<(), FieldError> {
    let ok = !param.is_empty()
        && param
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
    if !ok {
        return Err(FieldError::new(
            path,
            format!(
                "\"{param}\" is not a query parameter name: use letters, digits, '-', '.', '_' or '~', like key"
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::parse_manifests;

    fn error_of(yaml: &str) -> String {
        parse_manifests("e.yaml", yaml).unwrap_err().to_string()
    }

    const HEAD: &str = "apiVersion: clrk.apoxy.dev/v1alpha1\n";

    #[test]
    fn a_gateway_needs_no_spec_and_gets_the_defaults() {
        let docs = parse_manifests(
            "g.yaml",
            &format!("{HEAD}kind: EgressGateway\nmetadata: {{name: main}}\n"),
        )
        .unwrap();
        let stored = docs[0].resource.to_stored();
        assert_eq!(stored["spec"]["defaultPolicy"], "deny-all");
        assert_eq!(stored["spec"]["tls"]["mode"], "Terminate");
        assert_eq!(stored["spec"]["requestTimeout"], "5m0s");
    }

    #[test]
    fn bad_routes_name_the_field() {
        let route = |rules: &str| {
            error_of(&format!(
                "{HEAD}kind: EgressL4Route\nmetadata: {{name: r}}\nspec:\n  parentRefs: [{{name: main}}]\n  rules: {rules}\n"
            ))
        };
        assert!(route("[{destinationCIDRs: [10.0.0.0/33]}]").contains(
            "spec.rules[0].destinationCIDRs[0]: \"10.0.0.0/33\" is not an address range"
        ));
        assert!(
            route("[{destinationHostnames: [\"*\"]}]")
                .contains("spec.rules[0].destinationHostnames[0]: \"*\" is not a host name")
        );
        assert!(
            route("[{ports: [443]}]")
                .contains("spec.rules[0]: must name destinationHostnames or destinationCIDRs")
        );
        assert!(
            route("[{destinationHostnames: [a.b], ports: [0]}]").contains("spec.rules[0].ports[0]")
        );
        assert!(
            route("[{destinationHostnames: [a.b], ports: [443, 70000]}]").contains(
                "spec.rules[0].ports[1]: 70000 is not a port: use one between 1 and 65535"
            )
        );
        assert!(route("[]").contains("spec.rules: must hold at least one rule"));
    }

    #[test]
    fn bad_policies_name_the_field() {
        let policy = |extra: &str| {
            error_of(&format!(
                "{HEAD}kind: CredentialInjectionPolicy\nmetadata: {{name: p}}\nspec:\n  parentRefs: [{{name: main}}]\n  secretRef: {{name: anthropic}}\n{extra}"
            ))
        };
        assert!(
            policy("  destinationHostnames: [llm.test]\n  headerName: \"x api\"\n")
                .contains("spec.headerName: \"x api\" is not an HTTP header name")
        );
        assert!(
            policy("  destinationHostnames: [llm.test]\n  headerName: x-api-key\n  target: Body\n")
                .contains("spec.target")
        );
        assert!(policy("  headerName: x-api-key\n").contains("spec.destinationHostnames"));
        let gateway = error_of(&format!(
            "{HEAD}kind: EgressGateway\nmetadata: {{name: g}}\nspec: {{otlp: {{endpoint: collector:4318}}}}\n"
        ));
        assert!(
            gateway.contains("spec.otlp.endpoint: \"collector:4318\" is not an OTLP/HTTP base URL"),
            "{gateway}"
        );
        let gateway = error_of(&format!(
            "{HEAD}kind: EgressGateway\nmetadata: {{name: g}}\nspec: {{defaultPolicy: allow}}\n"
        ));
        assert!(gateway.contains("spec.defaultPolicy"), "{gateway}");
        let gateway = error_of(&format!(
            "{HEAD}kind: EgressGateway\nmetadata: {{name: g}}\nspec: {{dns: {{forwardAll: sometimes}}}}\n"
        ));
        assert!(gateway.contains("spec.dns.forwardAll"), "{gateway}");
        let gateway = error_of(&format!(
            "{HEAD}kind: EgressGateway\nmetadata: {{name: g}}\nspec: {{dns: {{forward: true}}}}\n"
        ));
        assert!(gateway.contains("spec.dns"), "{gateway}");
    }

    #[test]
    fn each_credential_target_takes_its_own_fields() {
        let policy = |extra: &str| {
            parse_manifests(
                "p.yaml",
                &format!(
                    "{HEAD}kind: CredentialInjectionPolicy\nmetadata: {{name: p}}\nspec:\n  parentRefs: [{{name: main}}]\n  secretRef: {{name: s}}\n  destinationHostnames: [llm.test]\n{extra}"
                ),
            )
            .map(|docs| docs[0].resource.to_stored())
            .map_err(|e| e.to_string())
        };
        let stored = policy("  target: ProviderAuth\n").unwrap();
        assert_eq!(stored["spec"]["target"], "ProviderAuth");
        assert!(stored["spec"].get("headerName").is_none(), "{stored}");
        let stored = policy("  target: QueryParam\n  paramName: key\n").unwrap();
        assert_eq!(stored["spec"]["paramName"], "key");
        let stored = policy("  headerName: authorization\n  valuePrefix: \"Bearer \"\n").unwrap();
        assert_eq!(stored["spec"]["target"], "Header");
        assert_eq!(stored["spec"]["valuePrefix"], "Bearer ");

        let error = |extra| policy(extra).unwrap_err();
        assert!(error("").contains("spec.headerName: required with target: Header"));
        assert!(
            error("  target: QueryParam\n")
                .contains("spec.paramName: required with target: QueryParam")
        );
        assert!(
            error("  target: QueryParam\n  paramName: \"a&b\"\n")
                .contains("spec.paramName: \"a&b\" is not a query parameter name")
        );
        assert!(
            error("  target: QueryParam\n  paramName: key\n  headerName: x-api-key\n")
                .contains("spec.headerName: only with target: Header")
        );
        assert!(
            error("  headerName: x-api-key\n  paramName: key\n")
                .contains("spec.paramName: only with target: QueryParam")
        );
        for extra in [
            "  target: ProviderAuth\n  headerName: x-api-key\n",
            "  target: ProviderAuth\n  paramName: key\n",
            "  target: ProviderAuth\n  valuePrefix: \"Bearer \"\n",
        ] {
            assert!(
                error(extra).contains("not with target: ProviderAuth"),
                "{extra}"
            );
        }
    }

    #[test]
    fn forwarding_all_names_is_opt_in_and_kept() {
        let parse = |spec: &str| {
            parse_manifests(
                "g.yaml",
                &format!("{HEAD}kind: EgressGateway\nmetadata: {{name: g}}\n{spec}"),
            )
            .unwrap()[0]
                .resource
                .to_stored()
        };
        assert!(parse("").get("spec").unwrap().get("dns").is_none());
        let stored = parse("spec: {dns: {forwardAll: true}}\n");
        assert_eq!(stored["spec"]["dns"]["forwardAll"], true);
    }

    #[test]
    fn a_budget_needs_a_cap() {
        let route = |filters: &str| {
            error_of(&format!(
                "{HEAD}kind: AIProviderRoute\nmetadata: {{name: a}}\nspec:\n  parentRefs: [{{name: main}}]\n  matches: [{{provider: anthropic}}]\n  filters: {filters}\n"
            ))
        };
        assert!(route("[{type: TokenBudget}]").contains("spec.filters[0].tokenBudget: required"));
        assert!(
            route("[{type: TokenBudget, tokenBudget: {}}]")
                .contains("must set maxTokensPerExecution or maxTokensPerDay")
        );
        assert!(route("[{type: Other}]").contains("spec.filters[0].type"));
        let azure = error_of(&format!(
            "{HEAD}kind: AIProviderRoute\nmetadata: {{name: a}}\nspec:\n  parentRefs: [{{name: main}}]\n  matches: [{{provider: azure-openai}}]\n"
        ));
        assert!(
            azure.contains("spec.matches[0].hostnames: required with provider: azure-openai"),
            "{azure}"
        );
        parse_manifests(
            "a.yaml",
            &format!(
                "{HEAD}kind: AIProviderRoute\nmetadata: {{name: a}}\nspec:\n  parentRefs: [{{name: main}}]\n  matches: [{{provider: azure-openai, hostnames: [r.openai.azure.com]}}]\n"
            ),
        )
        .unwrap();
        let missing_parent = error_of(&format!(
            "{HEAD}kind: AIProviderRoute\nmetadata: {{name: a}}\nspec:\n  parentRefs: []\n  matches: [{{provider: openai}}]\n"
        ));
        assert!(missing_parent.contains("spec.parentRefs: must name at least one EgressGateway"));
    }
}
