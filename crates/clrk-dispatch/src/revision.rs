//! What a revision pins: the sandbox-shaping part of the manifest and the resolved image.
//! Stored as the revision's shape, so two applies that would run the same sandbox compare
//! equal and in-flight executions keep running what they started on.

use clrk_api::{Delivery, DeliveryMode, EgressRef, Resources, SandboxReuse, Template};
use clrk_image::ResolvedImage;
use clrk_store::Revision;
use serde::{Deserialize, Serialize};

use crate::error::DispatchError;

/// The immutable content of a revision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RevisionShape {
    pub template: Template,
    pub resources: Resources,
    /// TaskAgents only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<Delivery>,
    #[serde(default)]
    pub egress_refs: Vec<EgressRef>,
    /// TaskAgents only: its sandboxes run under clrk's init, one execution after another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox_reuse: Option<SandboxReuse>,
    pub image: ResolvedImage,
}

impl RevisionShape {
    /// The shape of a TaskAgent or DaemonAgent with its image resolved; `None` for kinds
    /// without revisions.
    pub fn of(resource: &clrk_api::Resource, image: ResolvedImage) -> Option<RevisionShape> {
        match resource {
            clrk_api::Resource::TaskAgent(t) => Some(RevisionShape {
                template: t.spec.template.clone(),
                resources: t.spec.resources.clone(),
                delivery: Some(t.spec.delivery),
                egress_refs: t.spec.egress_refs.clone(),
                sandbox_reuse: t.spec.sandbox_reuse,
                image,
            }),
            clrk_api::Resource::DaemonAgent(d) => Some(RevisionShape {
                template: d.spec.template.clone(),
                resources: d.spec.resources.clone(),
                delivery: None,
                egress_refs: d.spec.egress_refs.clone(),
                sandbox_reuse: None,
                image,
            }),
            _ => None,
        }
    }

    /// Reads the shape stored with a revision.
    pub fn from_revision(revision: &Revision) -> Result<RevisionShape, DispatchError> {
        serde_json::from_value(revision.shape.clone()).map_err(|e| {
            DispatchError::Internal(format!("revision {} is unreadable: {e}", revision.name))
        })
    }

    /// The JSON stored in the revision.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("a revision shape is always serialisable")
    }

    pub fn delivery_mode(&self) -> DeliveryMode {
        self.delivery.as_ref().map(|d| d.mode).unwrap_or_default()
    }
}
