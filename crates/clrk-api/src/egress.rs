//! The egress kinds (SPECIFICATION §9): a gateway, the routes that allow destinations through it, the
//! credentials it injects and the LLM providers it meters.
//!
//! Routes and policies attach to a gateway with `spec.parentRefs`; agents name gateways with
//! `spec.egressRefs`. The proxy reads them when a connection arrives, so changing one takes
//! effect at once, without a new agent revision.

use std::collections::BTreeMap;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::duration::GoDuration;
use crate::meta::ObjectMeta;

/// An EgressGateway manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EgressGateway {
    /// Name, namespace, labels.
    pub metadata: ObjectMeta,
    /// Desired behaviour; every field has a default.
    #[serde(default)]
    pub spec: EgressGatewaySpec,
}

/// `spec` of an EgressGateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EgressGatewaySpec {
    /// What happens to a destination no route allows; default `deny-all`.
    #[serde(default)]
    pub default_policy: DefaultPolicy,
    /// How HTTPS is handled.
    #[serde(default)]
    pub tls: GatewayTls,
    /// How the proxy verifies the servers it connects to.
    #[serde(default, rename = "upstreamTLS")]
    pub upstream_tls: UpstreamTls,
    /// Where each transaction is exported as a span.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub otlp: Option<Otlp>,
    /// Longest a proxied HTTP request may take; default `5m`.
    #[serde(default = "default_request_timeout")]
    pub request_timeout: GoDuration,
    /// What the resolver does with names no route names.
    #[serde(default, skip_serializing_if = "GatewayDns::is_default")]
    pub dns: GatewayDns,
}

impl Default for EgressGatewaySpec {
    fn default() -> Self {
        EgressGatewaySpec {
            default_policy: DefaultPolicy::default(),
            tls: GatewayTls::default(),
            upstream_tls: UpstreamTls::default(),
            otlp: None,
            request_timeout: default_request_timeout(),
            dns: GatewayDns::default(),
        }
    }
}

/// `spec.dns` of an EgressGateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GatewayDns {
    /// Forward questions for names no route names to the upstream resolver, for their
    /// answers to be checked against `destinationCIDRs`. Off by default: such a question
    /// carries whatever the agent put in the name to whoever serves that domain.
    #[serde(default)]
    pub forward_all: bool,
}

impl GatewayDns {
    fn is_default(&self) -> bool {
        *self == GatewayDns::default()
    }
}

/// `spec.defaultPolicy` of an EgressGateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DefaultPolicy {
    /// Only what a route allows leaves.
    #[default]
    DenyAll,
    /// Everything leaves, except addresses of the worker itself.
    AllowAll,
}

/// `spec.tls` of an EgressGateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GatewayTls {
    /// Default `Terminate`.
    #[serde(default)]
    pub mode: TlsMode,
}

/// `spec.tls.mode` of an EgressGateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum TlsMode {
    /// The proxy answers TLS with a certificate from the gateway's CA (which sandboxes trust),
    /// so it can inject credentials, meter tokens and record paths.
    #[default]
    Terminate,
    /// TLS goes through untouched; only the server name (SNI) is checked and recorded.
    Passthrough,
}

/// `spec.upstreamTLS` of an EgressGateway.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UpstreamTls {
    /// PEM certificates trusted for upstream servers besides the system's roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub additional_trust_bundle: Option<String>,
}

/// `spec.otlp` of an EgressGateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Otlp {
    /// OTLP/HTTP base URL; spans go to `<endpoint>/v1/traces`.
    pub endpoint: String,
    /// Headers sent with every export (an API key, say).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

/// One entry of `spec.parentRefs`: the gateway a route or policy belongs to, in its own
/// namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ParentRef {
    /// Name of the EgressGateway.
    pub name: String,
}

/// An EgressL4Route manifest: destinations a gateway lets through.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EgressL4Route {
    /// Name, namespace, labels.
    pub metadata: ObjectMeta,
    /// Desired behaviour.
    pub spec: EgressL4RouteSpec,
}

/// `spec` of an EgressL4Route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EgressL4RouteSpec {
    /// Gateways the rules apply to.
    pub parent_refs: Vec<ParentRef>,
    /// Allow rules; a connection passes when one rule matches it.
    pub rules: Vec<EgressRule>,
}

/// One allow rule: a destination matches when its name or address matches and its port is
/// listed (an empty `ports` allows every port).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EgressRule {
    /// Exact names (`api.openai.com`) or suffixes (`*.example.com`, which does not match
    /// `example.com` itself).
    #[serde(default)]
    pub destination_hostnames: Vec<String>,
    /// Address ranges (`203.0.113.0/24`, `2001:db8::/32`, or one address).
    #[serde(default, rename = "destinationCIDRs")]
    pub destination_cidrs: Vec<String>,
    /// Destination ports; empty means any.
    #[serde(default, deserialize_with = "ports")]
    pub ports: Vec<u16>,
}

/// A list of ports, each one refused with the range ports have (not "expected u16").
fn ports<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<u16>, D::Error> {
    struct Port(u16);
    impl<'de> Deserialize<'de> for Port {
        fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Port, D::Error> {
            let n = i64::deserialize(deserializer)?;
            u16::try_from(n).map(Port).map_err(|_| {
                serde::de::Error::custom(format!("{n} is not a port: use one between 1 and 65535"))
            })
        }
    }
    Ok(Vec::<Port>::deserialize(deserializer)?
        .into_iter()
        .map(|p| p.0)
        .collect())
}

/// A CredentialInjectionPolicy manifest: a header the proxy sets from a secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CredentialInjectionPolicy {
    /// Name, namespace, labels.
    pub metadata: ObjectMeta,
    /// Desired behaviour.
    pub spec: CredentialInjectionPolicySpec,
}

/// `spec` of a CredentialInjectionPolicy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CredentialInjectionPolicySpec {
    /// Gateways whose requests it applies to.
    pub parent_refs: Vec<ParentRef>,
    /// Requests to these names get the credential (exact or `*.suffix`).
    pub destination_hostnames: Vec<String>,
    /// The secret, in the policy's namespace (`clrk secret set NAME …`).
    pub secret_ref: SecretRef,
    /// Key within the secret; default `token`.
    #[serde(default = "default_secret_key")]
    pub secret_key: String,
    /// Where the credential goes; default `Header`.
    #[serde(default)]
    pub target: CredentialTarget,
    /// With `target: Header`: the header set (replacing any the agent sent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header_name: Option<String>,
    /// With `target: QueryParam`: the query parameter set (replacing any the agent sent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub param_name: Option<String>,
    /// With `Header` or `QueryParam`: written before the secret's value, e.g. `"Bearer "`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub value_prefix: String,
}

/// `spec.secretRef` of a CredentialInjectionPolicy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SecretRef {
    /// Secret name.
    pub name: String,
}

/// `spec.target` of a CredentialInjectionPolicy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum CredentialTarget {
    /// The HTTP request header `headerName`.
    #[default]
    Header,
    /// The URL query parameter `paramName`, for APIs that take keys in the URL.
    QueryParam,
    /// Where the provider an AIProviderRoute names for the destination documents its key
    /// (`x-api-key` for Anthropic, `Authorization: Bearer` for OpenAI); every other place a
    /// provider reads a key from is cleared of what the agent put there.
    ProviderAuth,
}

/// An AIProviderRoute manifest: LLM provider traffic the gateway lets through, meters and
/// holds to token budgets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AIProviderRoute {
    /// Name, namespace, labels.
    pub metadata: ObjectMeta,
    /// Desired behaviour.
    pub spec: AIProviderRouteSpec,
}

/// `spec` of an AIProviderRoute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AIProviderRouteSpec {
    /// Gateways it applies to.
    pub parent_refs: Vec<ParentRef>,
    /// Which providers, at which names.
    pub matches: Vec<ProviderMatch>,
    /// Budgets.
    #[serde(default)]
    pub filters: Vec<RouteFilter>,
}

/// One entry of `spec.matches` of an AIProviderRoute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ProviderMatch {
    /// The API dialect spoken, which says how usage is reported.
    pub provider: AiProvider,
    /// Where the provider is reached; default its public API host
    /// (`api.openai.com`, `api.anthropic.com`); required for `azure-openai`, whose hosts are
    /// per resource.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hostnames: Vec<String>,
}

impl ProviderMatch {
    /// The names this match covers: `hostnames`, or the provider's public API host.
    pub fn effective_hostnames(&self) -> Vec<String> {
        if self.hostnames.is_empty() {
            self.provider
                .default_hostname()
                .map(str::to_owned)
                .into_iter()
                .collect()
        } else {
            self.hostnames.clone()
        }
    }
}

/// `matches[].provider` of an AIProviderRoute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AiProvider {
    /// OpenAI's API (and compatible ones).
    Openai,
    /// Anthropic's API.
    Anthropic,
    /// Azure OpenAI: OpenAI's dialect at a resource's own host, keyed by `api-key`.
    #[serde(rename = "azure-openai")]
    AzureOpenai,
}

impl AiProvider {
    /// The public API host; Azure OpenAI has none, each resource its own.
    ///
    /// ```
    /// use clrk_api::AiProvider;
    /// assert_eq!(AiProvider::Anthropic.default_hostname(), Some("api.anthropic.com"));
    /// assert_eq!(AiProvider::AzureOpenai.default_hostname(), None);
    /// ```
    pub fn default_hostname(&self) -> Option<&'static str> {
        match self {
            AiProvider::Openai => Some("api.openai.com"),
            AiProvider::Anthropic => Some("api.anthropic.com"),
            AiProvider::AzureOpenai => None,
        }
    }
}

/// One entry of `spec.filters` of an AIProviderRoute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RouteFilter {
    /// The filter's type; only `TokenBudget` exists.
    #[serde(rename = "type")]
    pub filter_type: FilterType,
    /// The budget, with `type: TokenBudget`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_budget: Option<TokenBudget>,
}

/// `filters[].type` of an AIProviderRoute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FilterType {
    /// Caps the tokens an agent spends.
    TokenBudget,
}

/// `filters[].tokenBudget`: a request made once a cap is reached is answered 429.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TokenBudget {
    /// Input plus output tokens one execution may use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens_per_execution: Option<u64>,
    /// Input plus output tokens an agent may use per UTC day.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens_per_day: Option<u64>,
}

/// `name` as names are compared everywhere (routes, resolver, proxy): lower case, without a
/// trailing dot.
///
/// ```
/// assert_eq!(clrk_api::normal_name("LLM.Test."), "llm.test");
/// ```
pub fn normal_name(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// Whether `name` matches `pattern`: equal ignoring case, or, for `*.suffix`, ending in
/// `.suffix` with at least one label before it.
///
/// ```
/// use clrk_api::hostname_matches;
/// assert!(hostname_matches("*.openai.com", "API.openai.com"));
/// assert!(!hostname_matches("*.openai.com", "openai.com"));
/// assert!(hostname_matches("llm.test", "llm.test."));
/// ```
pub fn hostname_matches(pattern: &str, name: &str) -> bool {
    let name = normal_name(name);
    let pattern = pattern.to_ascii_lowercase();
    match pattern.strip_prefix("*.") {
        Some(suffix) => name
            .strip_suffix(suffix)
            .is_some_and(|head| head.len() > 1 && head.ends_with('.')),
        None => name == pattern,
    }
}

/// A `destinationCIDRs` entry as a network; a bare address is a /32 or /128.
///
/// ```
/// let net = clrk_api::parse_cidr("10.0.0.0/8").unwrap();
/// assert!(net.contains(&"10.1.2.3".parse::<std::net::IpAddr>().unwrap()));
/// assert_eq!(clrk_api::parse_cidr("203.0.113.7").unwrap().prefix_len(), 32);
/// ```
pub fn parse_cidr(text: &str) -> Option<IpNet> {
    text.parse::<IpNet>()
        .ok()
        .or_else(|| text.parse::<std::net::IpAddr>().ok().map(IpNet::from))
        .map(|n| n.trunc())
}

fn default_request_timeout() -> GoDuration {
    GoDuration::from_secs(300)
}

fn default_secret_key() -> String {
    "token".to_owned()
}
