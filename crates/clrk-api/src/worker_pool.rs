//! The WorkerPool kind: where sandboxes run and with which OCI runtime.

use serde::{Deserialize, Serialize};

use crate::meta::ObjectMeta;
use crate::runtime_options::RuntimeOptions;

/// The pool every agent uses unless it names another; it always exists.
pub const DEFAULT_POOL: &str = "default";
/// Processes and threads one sandbox may have at once when its pool does not say.
pub const DEFAULT_PIDS_LIMIT: u32 = 512;

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
    /// Processes and threads each of the pool's sandboxes may have at once; at least 1.
    /// Unset means [`DEFAULT_PIDS_LIMIT`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids_limit: Option<u32>,
    /// runsc's platform and allowlisted flags for the pool's sandboxes; `runsc` pools only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_options: Option<RuntimeOptions>,
}

impl WorkerPoolSpec {
    /// `spec.pidsLimit`, or the default.
    ///
    /// ```
    /// let mut spec = clrk_api::WorkerPoolSpec::default();
    /// assert_eq!(spec.pids_limit(), 512);
    /// spec.pids_limit = Some(64);
    /// assert_eq!(spec.pids_limit(), 64);
    /// ```
    pub fn pids_limit(&self) -> u32 {
        self.pids_limit.unwrap_or(DEFAULT_PIDS_LIMIT)
    }

    /// The runtime's extra command-line flags for the pool's sandboxes (`spec.runtimeOptions`).
    pub fn runtime_flags(&self) -> Vec<String> {
        self.runtime_options
            .as_ref()
            .map(RuntimeOptions::command_flags)
            .unwrap_or_default()
    }
}

impl Default for WorkerPoolSpec {
    fn default() -> Self {
        WorkerPoolSpec {
            runtime: RuntimeName::default(),
            max_executions_per_worker: 0,
            replicas: default_replicas(),
            pids_limit: None,
            runtime_options: None,
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
