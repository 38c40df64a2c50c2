//! The TaskAgent kind: one run per trigger.

use serde::{Deserialize, Serialize};

use crate::container::{EgressRef, Template};
use crate::duration::GoDuration;
use crate::meta::ObjectMeta;
use crate::quantity::{LogLimit, Resources};

/// A TaskAgent manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TaskAgent {
    /// Name, namespace, labels.
    pub metadata: ObjectMeta,
    /// Desired behaviour.
    pub spec: TaskAgentSpec,
}

/// `spec` of a TaskAgent, with the defaults of SPECIFICATION §3 filled in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TaskAgentSpec {
    /// Pool that runs it; default `default`.
    #[serde(default = "crate::worker_pool::default_pool_ref")]
    pub worker_pool_ref: String,
    /// What runs in the sandbox.
    pub template: Template,
    /// Sandbox limits.
    #[serde(default)]
    pub resources: Resources,
    /// Wall-clock cap per execution; default `100s`.
    #[serde(default = "default_timeout")]
    pub timeout: GoDuration,
    /// Executions in flight at once; 0 means unlimited.
    #[serde(default)]
    pub max_concurrent: u32,
    /// Sandboxes kept ready for the latest revision.
    #[serde(default)]
    pub warm_pool_size: u32,
    /// An idle warm sandbox older than this is recycled; default `10m`.
    #[serde(default = "default_warm_pool_idle_ttl", rename = "warmPoolIdleTTL")]
    pub warm_pool_idle_ttl: GoDuration,
    /// Lets executions of one revision run one after another in one sandbox
    /// (SPECIFICATION §3.2); without it (the default) each execution gets a fresh sandbox.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox_reuse: Option<SandboxReuse>,
    /// How the event reaches the agent.
    #[serde(default)]
    pub delivery: Delivery,
    /// Whether stdout is streamed to the caller as it is written, or held until the agent
    /// exits so that a failure can still be a 5xx.
    #[serde(default)]
    pub streaming: Streaming,
    /// Cron schedule (5 fields or `@hourly`, `@every 5m`…); HTTP still works with one set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// `.data` of every cron-fired event, verbatim; default `{}`.
    #[serde(default = "empty_object")]
    pub schedule_input: serde_json::Value,
    /// IANA zone the schedule is read in; default `UTC`.
    #[serde(default = "default_time_zone")]
    pub time_zone: String,
    /// What a cron tick does while the previous run is still going.
    #[serde(default)]
    pub concurrency_policy: ConcurrencyPolicy,
    /// Egress gateways that govern its traffic.
    #[serde(default)]
    pub egress_refs: Vec<EgressRef>,
    /// Log text one execution keeps; past it lines are counted and dropped. Default `1Mi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_limit: Option<LogLimit>,
}

/// `spec.sandboxReuse`: how long one sandbox keeps serving executions. A fresh agent process
/// runs each execution; the sandbox (gVisor's kernel, its page cache, the root overlay but
/// `/tmp`) is what they share.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SandboxReuse {
    /// Executions one sandbox runs before it is replaced; default 100.
    #[serde(default = "default_max_executions")]
    pub max_executions: u32,
    /// Age past which a sandbox takes no further execution; default `10m`.
    #[serde(default = "default_max_age")]
    pub max_age: GoDuration,
}

/// The most `spec.sandboxReuse.maxExecutions` may say.
pub const MAX_REUSE_EXECUTIONS: u32 = 100_000;

fn default_max_executions() -> u32 {
    100
}

fn default_max_age() -> GoDuration {
    GoDuration::from_secs(600)
}

/// `spec.delivery`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Delivery {
    /// How the event reaches the agent; default `Stdin`.
    #[serde(default)]
    pub mode: DeliveryMode,
}

/// `spec.streaming` (SPECIFICATION §4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Streaming {
    /// `true`: stdout reaches the caller as it is written, with a 200 once the first bytes
    /// are out and the exit code in a trailer. `false` (default): stdout is held, up to a cap,
    /// until the agent exits, so that a non-zero exit or a timeout is a 5xx.
    #[serde(default)]
    pub enabled: bool,
}

/// `spec.delivery.mode` (SPECIFICATION §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum DeliveryMode {
    /// The envelope is written to stdin, then stdin is closed.
    #[default]
    Stdin,
    /// The agent fetches the event from the metadata service and posts its reply there.
    Metadata,
}

/// `spec.concurrencyPolicy`: what a cron tick does while the previous run is still going.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum ConcurrencyPolicy {
    /// Start another run.
    #[default]
    Allow,
    /// Skip the tick.
    Forbid,
    /// Stop the running one and start a new one.
    Replace,
}

fn default_timeout() -> GoDuration {
    GoDuration::from_secs(100)
}

fn default_warm_pool_idle_ttl() -> GoDuration {
    GoDuration::from_secs(600)
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

fn default_time_zone() -> String {
    "UTC".to_owned()
}
