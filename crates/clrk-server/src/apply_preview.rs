//! A dry run of apply (`clrk apply --dry-run=server`, `clrk diff`): what applying a validated
//! document, its image resolved, would do to the store, decided as the store's apply decides
//! it, with nothing written.

use clrk_api::{Document, Kind};
use clrk_image::ResolvedImage;
use clrk_store::{ApplyOutcome, revision_name};
use clrk_wire::ApplyResult;

use crate::apply_outcome::{result, revision_shape};
use crate::error::ServerError;
use crate::state::AppState;

/// What applying `doc` would answer: `created`, `configured` (with the revision it would
/// make) or `unchanged`.
pub(crate) async fn preview_one(
    state: &AppState,
    doc: Document,
    image: Option<ResolvedImage>,
) -> Result<ApplyResult, ServerError> {
    let meta = doc.resource.metadata().clone();
    let kind = doc.resource.kind();
    let stored = doc.resource.to_stored();
    let outcome = match (kind, image) {
        (Kind::WorkerPool, _) => match state.store.get_pool(&meta.name).await? {
            None => ApplyOutcome::Created { revision: None },
            Some(pool) if pool.namespace == meta.namespace && pool.spec == stored => {
                ApplyOutcome::Unchanged
            }
            Some(_) => ApplyOutcome::Configured { revision: None },
        },
        (kind, _) if kind.is_egress() => {
            let objects = state.store.egress_objects(Some(&meta.namespace)).await?;
            let current = objects
                .into_iter()
                .find(|o| o.kind == kind.as_str() && o.name == meta.name);
            match current {
                None => ApplyOutcome::Created { revision: None },
                Some(object) if object.spec == stored => ApplyOutcome::Unchanged,
                Some(_) => ApplyOutcome::Configured { revision: None },
            }
        }
        (_, Some(image)) => {
            let shape = revision_shape(&doc.resource, &image)?;
            match state.store.get_agent(&meta.namespace, &meta.name).await? {
                None => ApplyOutcome::Created {
                    revision: Some(revision_name(&meta.name, 1)),
                },
                Some(agent) => {
                    let next = match &agent.latest_revision {
                        Some(r) if r.shape == shape && r.image_digest == image.digest => None,
                        Some(r) => Some(r.number + 1),
                        None => Some(1),
                    };
                    match next {
                        None if agent.kind == kind.as_str() && agent.spec == stored => {
                            ApplyOutcome::Unchanged
                        }
                        next => ApplyOutcome::Configured {
                            revision: next.map(|n| revision_name(&meta.name, n)),
                        },
                    }
                }
            }
        }
        (_, None) => {
            return Err(ServerError::Internal(format!(
                "{kind} {} has no image",
                meta.name
            )));
        }
    };
    Ok(result(doc, outcome))
}
