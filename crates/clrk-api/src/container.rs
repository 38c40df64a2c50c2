//! What runs in the sandbox: `spec.template.spec`.

use serde::{Deserialize, Serialize};

/// `spec.template` of an agent.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Template {
    /// The container to run.
    pub spec: ContainerSpec,
}

/// `spec.template.spec`: the image and how to start it.
///
/// `Default` gives an empty image, which validation refuses; it exists for building specs
/// in code and tests.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ContainerSpec {
    /// OCI image reference, or a transport-prefixed one (`oci:`, `host:`…).
    pub image: String,
    /// Program and leading arguments; unset means the image ENTRYPOINT.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// Arguments after `command`; the image CMD is never used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<String>>,
    /// Literal environment variables, applied after clrk's own.
    #[serde(default)]
    pub env: Vec<EnvVar>,
    /// Working directory; unset means the image's, else `/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
}

/// One entry of `spec.template.spec.env`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EnvVar {
    /// Variable name.
    pub name: String,
    /// Literal value; unset means the empty string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Accepted for compatibility with the guide and never used: clrk puts no secrets in a
    /// sandbox. Parsing warns when it is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from: Option<serde_json::Value>,
}

/// One entry of `spec.egressRefs`: an egress gateway that governs the agent's traffic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EgressRef {
    /// Name of the `EgressGateway`.
    pub gateway_ref: String,
}
