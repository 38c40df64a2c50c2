//! The DaemonAgent kind: one supervised long-lived process.

use serde::{Deserialize, Serialize};

use crate::container::{EgressRef, Template};
use crate::meta::ObjectMeta;
use crate::quantity::{LogLimit, Resources};

/// A DaemonAgent manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DaemonAgent {
    /// Name, namespace, labels.
    pub metadata: ObjectMeta,
    /// Desired behaviour.
    pub spec: DaemonAgentSpec,
}

/// `spec` of a DaemonAgent, with the defaults of SPECIFICATION §3 filled in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DaemonAgentSpec {
    /// Pool that runs it; default `default`.
    #[serde(default = "crate::worker_pool::default_pool_ref")]
    pub worker_pool_ref: String,
    /// What runs in the sandbox.
    pub template: Template,
    /// Sandbox limits.
    #[serde(default)]
    pub resources: Resources,
    /// When the process is restarted after it exits.
    #[serde(default)]
    pub restart_policy: RestartPolicy,
    /// Restarts before giving up; 0 means unlimited.
    #[serde(default)]
    pub max_restarts: u32,
    /// Past this many seconds the process gets SIGTERM and is restarted per policy; 0 = forever.
    #[serde(default)]
    pub max_lifetime_seconds: u64,
    /// Egress gateways that govern its traffic.
    #[serde(default)]
    pub egress_refs: Vec<EgressRef>,
    /// Log text one run keeps; past it lines are counted and dropped. Default `1Mi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_limit: Option<LogLimit>,
}

/// `spec.restartPolicy` of a DaemonAgent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum RestartPolicy {
    /// Restart after every exit.
    #[default]
    Always,
    /// Restart only after a non-zero exit.
    OnFailure,
    /// Never restart.
    Never,
}
