//! The WorkerPool kind: where sandboxes run and with which OCI runtime.

use serde::{Deserialize, Serialize};

use crate::meta::ObjectMeta;

/// The pool every agent uses unless it names another; it always exists.
pub const DEFAULT_POOL: &str = "default";

/// A WorkerPool manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WorkerPool {
    /// Name, namespace, labels.
    pub metadata: ObjectMeta,
    /// Desired behaviour; every field has a default, so `spec` may be left out.
    #[serde(default)]
    pub spec: WorkerPoolSpec,
}

/// `spec` of a WorkerPool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WorkerPoolSpec {
    /// OCI runtime of the pool's sandboxes; default `runsc`.
    #[serde(default)]
    pub runtime: RuntimeName,
    /// Executions a worker runs before it is replaced; 0 means unlimited.
    #[serde(default)]
    pub max_executions_per_worker: u32,
    /// Workers wanted, where a deployment engine scales them; default 1.
    #[serde(default = "default_replicas")]
    pub replicas: u32,
}

impl Default for WorkerPoolSpec {
    fn default() -> Self {
        WorkerPoolSpec {
            runtime: RuntimeName::default(),
            max_executions_per_worker: 0,
            replicas: default_replicas(),
        }
    }
}

/// `spec.runtime` of a WorkerPool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuntimeName {
    /// gVisor.
    #[default]
    Runsc,
    /// The plain OCI runtime, without gVisor's isolation.
    Runc,
}

impl RuntimeName {
    /// The runtime's binary name, as written in manifests.
    pub fn as_str(&self) -> &'static str {
        match self {
            RuntimeName::Runsc => "runsc",
            RuntimeName::Runc => "runc",
        }
    }
}

fn default_replicas() -> u32 {
    1
}

pub(crate) fn default_pool_ref() -> String {
    DEFAULT_POOL.to_owned()
}
