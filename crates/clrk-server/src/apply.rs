//! Applying manifests: validate every document, resolve and prepare images, then create or
//! update agents and their revisions (SPECIFICATION §3), worker pools and egress objects (SPECIFICATION §9).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use clrk_api::{Document, Kind, Resource};
use clrk_dispatch::launch::command_line;
use clrk_image::{ImageRef, Progress, ResolvedImage};
use clrk_store::AgentApply;
use clrk_wire::{ApplyDocument, ApplyRequest, ApplyResult, PullProgress};

use crate::apply_outcome::{result, revision_shape};
use crate::error::ServerError;
use crate::state::AppState;

/// Where apply reports pulls; `None` when nobody watches.
pub type ProgressSink = Option<tokio::sync::mpsc::UnboundedSender<PullProgress>>;

/// A layer's download is reported at most this often (and always when it completes).
const PROGRESS_INTERVAL: Duration = Duration::from_millis(100);

/// Validates every document first (nothing is applied if one is invalid), then applies them
/// in order, reporting image pulls to `progress`.
pub async fn apply(
    state: &AppState,
    request: ApplyRequest,
    progress: &ProgressSink,
) -> Result<Vec<ApplyResult>, ServerError> {
    let mut documents = Vec::with_capacity(request.documents.len());
    for doc in &request.documents {
        let parsed = clrk_api::parse_value(&doc.source, doc.index, &doc.manifest)
            .map_err(|e| ServerError::Apply(e.to_string()))?;
        documents.push((doc.source.clone(), parsed));
    }
    // References nothing satisfies yet are warned about, not refused: the object may come next.
    let docs: Vec<&Document> = documents.iter().map(|(_, doc)| doc).collect();
    let more = crate::references::unsatisfied(&state.store, &docs).await?;
    for ((source, doc), more) in documents.iter_mut().zip(more) {
        let at = format!("{source}: document {}: ", doc.index);
        doc.warnings
            .extend(more.into_iter().map(|warning| format!("{at}{warning}")));
        match crate::runtime_check::check(doc).await {
            Ok(None) => {}
            Ok(Some(warning)) => doc.warnings.push(format!("{at}{warning}")),
            Err((field, reason)) => {
                return Err(ServerError::Apply(format!("{at}{field}: {reason}")));
            }
        }
    }
    let mut images = Vec::with_capacity(documents.len());
    // Held until the revisions are stored: meanwhile a new agent answers 503, not 404.
    let mut pulls = Vec::new();
    for (source, doc) in &documents {
        if let Some(container) = container(&doc.resource)
            && !request.dry_run
        {
            let meta = doc.resource.metadata();
            pulls.push(
                state
                    .dispatcher
                    .pulling(&meta.namespace, &meta.name, &container.image),
            );
        }
        images.push(resolve_image(state, source, doc, progress).await?);
    }
    let mut results = Vec::with_capacity(documents.len());
    for ((_, doc), image) in documents.into_iter().zip(images) {
        results.push(if request.dry_run {
            crate::apply_preview::preview_one(state, doc, image).await?
        } else {
            apply_one(state, doc, image).await?
        });
    }
    Ok(results)
}

/// Applies documents parsed locally (`clrk dev -f`).
pub async fn apply_documents(
    state: &AppState,
    source: &str,
    documents: &[Document],
) -> Result<Vec<ApplyResult>, ServerError> {
    let request = ApplyRequest {
        documents: documents
            .iter()
            .map(|d| ApplyDocument {
                source: source.to_string(),
                index: d.index,
                manifest: d.resource.to_stored(),
            })
            .collect(),
        dry_run: false,
    };
    apply(state, request, &None).await
}

pub(crate) fn container(resource: &Resource) -> Option<&clrk_api::ContainerSpec> {
    match resource {
        Resource::TaskAgent(t) => Some(&t.spec.template.spec),
        Resource::DaemonAgent(d) => Some(&d.spec.template.spec),
        _ => None,
    }
}

/// Resolves the image of an agent and makes its root filesystem ready, so a revision is
/// only created once it can run.
async fn resolve_image(
    state: &AppState,
    source: &str,
    doc: &Document,
    progress: &ProgressSink,
) -> Result<Option<ResolvedImage>, ServerError> {
    let Some(container) = container(&doc.resource) else {
        return Ok(None);
    };
    let at = |msg: String| {
        ServerError::Apply(format!(
            "{source}: document {}: spec.template.spec.image: {msg}",
            doc.index
        ))
    };
    let reference: ImageRef = container
        .image
        .parse()
        .map_err(|e: clrk_image::ImageError| at(e.to_string()))?;
    if reference.is_host() && !state.allow_host_rootfs {
        return Err(at(
            "host: images run on the host's root filesystem and are refused by this server; start it with --allow-host-rootfs (clrk dev does) or use an OCI image".into(),
        ));
    }
    let images = state.images.clone();
    let r = reference.clone();
    let report = reporter(container.image.clone(), progress.clone());
    let resolved = tokio::task::spawn_blocking(move || {
        let resolved = images.resolve(&r)?;
        let rootfs = images.prepare_with_progress(&resolved, &r, &report)?;
        if let Some(user) = &resolved.config.user {
            rootfs.user_ids(user)?;
        }
        Ok::<_, clrk_image::ImageError>(resolved)
    })
    .await
    .map_err(|e| ServerError::Internal(e.to_string()))?
    .map_err(|e| at(e.to_string()))?;
    if command_line(container, &resolved.config).is_none() {
        return Err(ServerError::Apply(format!(
            "{source}: document {}: spec.template.spec.command: required because image {} has no ENTRYPOINT",
            doc.index, container.image
        )));
    }
    Ok(Some(resolved))
}

/// Turns the image store's per-layer progress into [`PullProgress`] events, at most one per
/// layer every [`PROGRESS_INTERVAL`] while it downloads.
fn reporter(image: String, sink: ProgressSink) -> impl Fn(Progress) + Send + 'static {
    let last_sent: Mutex<HashMap<String, Instant>> = Mutex::default();
    move |p: Progress| {
        let Some(sink) = &sink else { return };
        if p.done < p.total {
            let mut last_sent = last_sent.lock().expect("progress lock");
            let now = Instant::now();
            match last_sent.get(&p.layer) {
                Some(at) if now.duration_since(*at) < PROGRESS_INTERVAL => return,
                _ => last_sent.insert(p.layer.clone(), now),
            };
        }
        // The receiver is gone when the client disconnected; the pull goes on regardless.
        let _ = sink.send(PullProgress {
            image: image.clone(),
            layer: p.layer,
            done: p.done,
            total: p.total,
            cached: p.cached,
        });
    }
}

async fn apply_one(
    state: &AppState,
    doc: Document,
    image: Option<ResolvedImage>,
) -> Result<ApplyResult, ServerError> {
    let meta = doc.resource.metadata().clone();
    let kind = doc.resource.kind();
    let outcome = match (kind, image) {
        (Kind::WorkerPool, _) => {
            state
                .store
                .apply_pool(&meta.namespace, &meta.name, &doc.resource.to_stored())
                .await?
        }
        (kind, _) if kind.is_egress() => {
            state
                .store
                .apply_egress_object(
                    &meta.namespace,
                    kind.as_str(),
                    &meta.name,
                    &doc.resource.to_stored(),
                )
                .await?
        }
        (_, Some(image)) => {
            let shape = revision_shape(&doc.resource, &image)?;
            state
                .store
                .apply_agent(&AgentApply {
                    namespace: meta.namespace.clone(),
                    name: meta.name.clone(),
                    kind: kind.to_string(),
                    spec: doc.resource.to_stored(),
                    shape,
                    image_ref: image.reference.clone(),
                    image_digest: image.digest.clone(),
                })
                .await?
        }
        (_, None) => {
            return Err(ServerError::Internal(format!(
                "{kind} {} has no image",
                meta.name
            )));
        }
    };
    let result = result(doc, outcome);
    tracing::info!(kind = %kind, namespace = %meta.namespace, name = %meta.name,
        outcome = %result.outcome, revision = ?result.revision, "applied");
    Ok(result)
}
