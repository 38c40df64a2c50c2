//! What an apply answers for one object, shared by the apply itself and its dry run
//! (`apply_preview`): the revision shape it compares and the result it reports.

use clrk_api::{Document, Resource};
use clrk_dispatch::RevisionShape;
use clrk_image::ResolvedImage;
use clrk_store::ApplyOutcome;
use clrk_wire::{ApplyResult, ObjectKey};

use crate::error::ServerError;

/// What a revision of this agent on `image` stores as its shape.
pub(crate) fn revision_shape(
    resource: &Resource,
    image: &ResolvedImage,
) -> Result<serde_json::Value, ServerError> {
    RevisionShape::of(resource, image.clone())
        .map(|shape| shape.to_json())
        .ok_or_else(|| ServerError::Internal(format!("{} has no revisions", resource.kind())))
}

/// The answer for one applied (or previewed) object.
pub(crate) fn result(doc: Document, outcome: ApplyOutcome) -> ApplyResult {
    let meta = doc.resource.metadata();
    let (outcome, revision) = match outcome {
        ApplyOutcome::Created { revision } => ("created", revision),
        ApplyOutcome::Configured { revision } => ("configured", revision),
        ApplyOutcome::Unchanged => ("unchanged", None),
    };
    ApplyResult {
        kind: doc.resource.kind().to_string(),
        key: ObjectKey::new(&meta.namespace, &meta.name),
        outcome: outcome.to_string(),
        revision,
        warnings: doc.warnings,
    }
}
