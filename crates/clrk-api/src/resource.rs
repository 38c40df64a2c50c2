//! One object of any kind, and its stored and revision-shaping forms.

use serde::Serialize;
use serde_json::{Value, json};

use crate::API_VERSION;
use crate::container::{EgressRef, Template};
use crate::daemon_agent::DaemonAgent;
use crate::egress::{AIProviderRoute, CredentialInjectionPolicy, EgressGateway, EgressL4Route};
use crate::kind::Kind;
use crate::meta::ObjectMeta;
use crate::quantity::Resources;
use crate::task_agent::TaskAgent;
use crate::worker_pool::WorkerPool;

/// One validated object of any kind, defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resource {
    /// A TaskAgent.
    TaskAgent(TaskAgent),
    /// A DaemonAgent.
    DaemonAgent(DaemonAgent),
    /// A WorkerPool.
    WorkerPool(WorkerPool),
    /// An EgressGateway.
    EgressGateway(EgressGateway),
    /// An EgressL4Route.
    EgressL4Route(EgressL4Route),
    /// A CredentialInjectionPolicy.
    CredentialInjectionPolicy(CredentialInjectionPolicy),
    /// An AIProviderRoute.
    AIProviderRoute(AIProviderRoute),
}

impl Resource {
    /// The object's kind.
    pub fn kind(&self) -> Kind {
        match self {
            Resource::TaskAgent(_) => Kind::TaskAgent,
            Resource::DaemonAgent(_) => Kind::DaemonAgent,
            Resource::WorkerPool(_) => Kind::WorkerPool,
            Resource::EgressGateway(_) => Kind::EgressGateway,
            Resource::EgressL4Route(_) => Kind::EgressL4Route,
            Resource::CredentialInjectionPolicy(_) => Kind::CredentialInjectionPolicy,
            Resource::AIProviderRoute(_) => Kind::AIProviderRoute,
        }
    }

    /// The object's metadata.
    pub fn metadata(&self) -> &ObjectMeta {
        match self {
            Resource::TaskAgent(r) => &r.metadata,
            Resource::DaemonAgent(r) => &r.metadata,
            Resource::WorkerPool(r) => &r.metadata,
            Resource::EgressGateway(r) => &r.metadata,
            Resource::EgressL4Route(r) => &r.metadata,
            Resource::CredentialInjectionPolicy(r) => &r.metadata,
            Resource::AIProviderRoute(r) => &r.metadata,
        }
    }

    /// The fields that shape the sandbox (SPECIFICATION §3 Revisions), as canonical JSON: a new
    /// revision is due exactly when this value changes (or the image digest does).
    ///
    /// TaskAgent: template, resources, delivery, egressRefs. DaemonAgent: template,
    /// resources, egressRefs (restart settings do not shape the sandbox). Other kinds: `None`.
    /// Resources appear as `cpuMillis`/`memoryBytes`, so `1` and `1000m` shape alike.
    ///
    /// ```
    /// let docs = clrk_api::parse_manifests("a.yaml", "apiVersion: clrk.apoxy.dev/v1alpha1\n\
    ///     kind: TaskAgent\nmetadata: {name: a}\nspec: {template: {spec: {image: x}}}\n").unwrap();
    /// let shape = docs[0].resource.revision_shape().unwrap();
    /// assert_eq!(shape["template"]["spec"]["image"], "x");
    /// ```
    pub fn revision_shape(&self) -> Option<Value> {
        match self {
            Resource::TaskAgent(agent) => {
                let spec = &agent.spec;
                let mut shape = common_shape(&spec.template, &spec.resources, &spec.egress_refs);
                shape["delivery"] = to_json(&spec.delivery);
                Some(shape)
            }
            Resource::DaemonAgent(agent) => {
                let spec = &agent.spec;
                Some(common_shape(
                    &spec.template,
                    &spec.resources,
                    &spec.egress_refs,
                ))
            }
            _ => None,
        }
    }

    /// The normalised manifest (apiVersion, kind, metadata, spec; defaults filled in,
    /// camelCase names) for storage. [`Resource::from_stored`] reads it back.
    ///
    /// ```
    /// let docs = clrk_api::parse_manifests("p.yaml", "apiVersion: clrk.apoxy.dev/v1alpha1\n\
    ///     kind: WorkerPool\nmetadata: {name: gpu}\n").unwrap();
    /// let stored = docs[0].resource.to_stored();
    /// assert_eq!(stored["spec"]["replicas"], 1);
    /// assert_eq!(clrk_api::Resource::from_stored(&stored).unwrap(), docs[0].resource);
    /// ```
    pub fn to_stored(&self) -> Value {
        let (metadata, spec) = match self {
            Resource::TaskAgent(r) => (to_json(&r.metadata), to_json(&r.spec)),
            Resource::DaemonAgent(r) => (to_json(&r.metadata), to_json(&r.spec)),
            Resource::WorkerPool(r) => (to_json(&r.metadata), to_json(&r.spec)),
            Resource::EgressGateway(r) => (to_json(&r.metadata), to_json(&r.spec)),
            Resource::EgressL4Route(r) => (to_json(&r.metadata), to_json(&r.spec)),
            Resource::CredentialInjectionPolicy(r) => (to_json(&r.metadata), to_json(&r.spec)),
            Resource::AIProviderRoute(r) => (to_json(&r.metadata), to_json(&r.spec)),
        };
        json!({
            "apiVersion": API_VERSION,
            "kind": self.kind().as_str(),
            "metadata": metadata,
            "spec": spec,
        })
    }
}

fn common_shape(template: &Template, resources: &Resources, egress_refs: &[EgressRef]) -> Value {
    json!({
        "template": to_json(template),
        "resources": {
            "cpuMillis": resources.cpu.millis(),
            "memoryBytes": resources.memory.bytes(),
        },
        "egressRefs": to_json(egress_refs),
    })
}

/// Serializes one of this crate's types, whose `Serialize` impls cannot fail: they hold
/// only strings, numbers, JSON values and string-keyed maps.
fn to_json<T: Serialize + ?Sized>(value: &T) -> Value {
    serde_json::to_value(value).expect("manifest types always serialize to JSON")
}
