//! clrk's manifest kinds (TaskAgent, DaemonAgent, WorkerPool and the egress kinds): their fields, defaults
//! (SPECIFICATION §3) and validation, and the parsing of YAML or JSON manifest files into them.
//!
//! This crate is pure: it does no I/O, spawns nothing, and has no async code. Callers read
//! files and pass the text in; errors come back as [`ManifestError`] with messages that name
//! the file, document and field at fault.

mod checks;
mod container;
mod daemon_agent;
mod duration;
mod egress;
mod egress_validate;
mod error;
mod field_error;
mod kind;
mod meta;
mod object_key;
mod parse;
mod quantity;
mod resource;
mod runtime_options;
mod schedule;
mod task_agent;
mod validate;
mod worker_pool;

pub use container::{ContainerSpec, EgressRef, EnvVar, Template};
pub use daemon_agent::{DaemonAgent, DaemonAgentSpec, RestartPolicy};
pub use duration::GoDuration;
pub use egress::{
    AIProviderRoute, AIProviderRouteSpec, AiProvider, CredentialInjectionPolicy,
    CredentialInjectionPolicySpec, CredentialTarget, DefaultPolicy, EgressGateway,
    EgressGatewaySpec, EgressL4Route, EgressL4RouteSpec, EgressRule, FilterType, GatewayDns,
    GatewayTls, Otlp, ParentRef, ProviderMatch, RouteFilter, SecretRef, TlsMode, TokenBudget,
    UpstreamTls, hostname_matches, normal_name, parse_cidr,
};
pub use error::ManifestError;
pub use ipnet::IpNet;
pub use kind::{Kind, UnknownKind};
pub use meta::{DEFAULT_NAMESPACE, ObjectMeta, validate_name};
pub use object_key::ObjectKey;
pub use parse::{Document, parse_manifests, parse_value};
pub use quantity::{
    Cpu, DEFAULT_LOG_LIMIT_BYTES, LogLimit, MAX_LOG_LIMIT_BYTES, Memory, Resources,
};
pub use resource::Resource;
pub use runtime_options::{FLAGS as RUNTIME_FLAGS, FlagValue, Platform, RuntimeOptions};
pub use schedule::Schedule;
pub use task_agent::{
    ConcurrencyPolicy, Delivery, DeliveryMode, MAX_REUSE_EXECUTIONS, SandboxReuse, Streaming,
    TaskAgent, TaskAgentSpec,
};
pub use worker_pool::{DEFAULT_POOL, RuntimeName, WorkerPool, WorkerPoolSpec};

/// The `apiVersion` every clrk manifest carries.
pub const API_VERSION: &str = "clrk.apoxy.dev/v1alpha1";
