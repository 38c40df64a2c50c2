//! The launcher: what a worker needs to turn a revision into a running sandbox — its image
//! store, its two runtimes, the host paths its `host:` sandboxes must not see and its egress
//! gateway — and the one way to start a sandbox, shared by TaskAgent executions, warm pools
//! and daemon runs.

use std::path::PathBuf;
use std::sync::Arc;

use clrk_api::RuntimeName;
use clrk_egress::{Egress, SandboxIdentity, TraceContext};
use clrk_image::{ImageError, ImageRef, ImageStore};
use clrk_sandbox::{Network, Runtime, Sandbox};

use crate::revision::RevisionShape;
use crate::trace::{IMAGE_PREPARE, RUNTIME_START, StartSteps};
use crate::worker::launch::{Launch, gateways, sandbox_id};
use crate::worker::launch_error::LaunchError;

/// Starts sandboxes on one host.
#[derive(Clone)]
pub struct Launcher {
    images: Arc<ImageStore>,
    runsc: Runtime,
    runc: Runtime,
    /// Host paths masked inside `host:` sandboxes (data dir, `$CLRK_DIR`, registry logins).
    masked_paths: Arc<[PathBuf]>,
    /// The gateway agents with `egressRefs` go through; without one they reach nothing.
    egress: Option<Egress>,
    /// Whether `host:` images may run here.
    allow_host_rootfs: bool,
}

/// One sandbox to start: whose it is and what it runs.
pub struct SandboxRequest<'a> {
    /// `TaskAgent` or `DaemonAgent`, as the egress gateway records it.
    pub kind: &'static str,
    pub namespace: &'a str,
    pub agent: &'a str,
    pub revision: &'a str,
    /// The execution or daemon run it serves; `None` for a warm sandbox (set when taken).
    pub run: Option<&'a str>,
    /// What the sandbox id is derived from (the run id, or `warm-<agent>`).
    pub id_base: &'a str,
    pub shape: &'a RevisionShape,
    pub runtime: RuntimeName,
    /// The worker pool's `pidsLimit`.
    pub pids_limit: u32,
    /// The worker pool's runtime flags (`runtimeOptions`).
    pub runtime_flags: &'a [String],
    /// The network it needs without egress (`None`, or `Metadata` for Metadata mode).
    pub network: Network,
    /// The span of the execution's run, which the gateway's spans of its calls are children
    /// of; a warm sandbox gets it when taken.
    pub run_span: Option<TraceContext>,
    /// Where the steps of the start are timed, for the execution's trace.
    pub steps: Option<&'a StartSteps>,
}

impl Launcher {
    pub fn new(
        images: Arc<ImageStore>,
        runsc: Runtime,
        runc: Runtime,
        masked_paths: Vec<PathBuf>,
        egress: Option<Egress>,
        allow_host_rootfs: bool,
    ) -> Launcher {
        Launcher {
            images,
            runsc,
            runc,
            masked_paths: masked_paths.into(),
            egress,
            allow_host_rootfs,
        }
    }

    /// The runtime that runs a worker pool's sandboxes.
    pub fn runtime(&self, name: RuntimeName) -> &Runtime {
        match name {
            RuntimeName::Runc => &self.runc,
            RuntimeName::Runsc => &self.runsc,
        }
    }

    /// The egress gateway of agents with `egressRefs`, if this host has one.
    pub fn egress(&self) -> Option<&Egress> {
        self.egress.as_ref()
    }

    /// The image store sandboxes' root filesystems come from.
    pub fn images(&self) -> &Arc<ImageStore> {
        &self.images
    }

    /// Prepares the revision's root filesystem (fetching missing layers by digest) and starts
    /// its sandbox, stdio piped.
    ///
    /// An agent that names gateways gets an egress network, clrk's resolver and the
    /// gateways' CA, and is registered with the gateway for as long as its sandbox lives; an
    /// agent without `egressRefs` reaches nothing.
    pub async fn start(&self, request: SandboxRequest<'_>) -> Result<Sandbox, LaunchError> {
        let runtime = match request.runtime {
            RuntimeName::Runsc => "runsc",
            RuntimeName::Runc => "runc",
        };
        let began = std::time::Instant::now();
        let started = self.start_sandbox(request).await;
        clrk_metrics::global().sandbox_started(runtime, started.is_ok(), began.elapsed());
        started
    }

    async fn start_sandbox(&self, request: SandboxRequest<'_>) -> Result<Sandbox, LaunchError> {
        let shape = request.shape;
        let egress = self
            .egress
            .as_ref()
            .filter(|_| !shape.egress_refs.is_empty());
        let identity = egress.map(|_| {
            let identity = SandboxIdentity::new(
                request.kind,
                request.namespace,
                request.agent,
                request.revision,
                gateways(shape),
                request.run.map(str::to_owned),
            );
            if let Some(span) = request.run_span {
                identity.set_run_span(span);
            }
            identity
        });
        let network = if egress.is_some() {
            Network::Egress
        } else {
            request.network
        };
        let image = shape.image.clone();
        let reference: ImageRef =
            image
                .reference
                .parse()
                .map_err(|source| LaunchError::Reference {
                    reference: image.reference.clone(),
                    source,
                })?;
        if reference.is_host() && !self.allow_host_rootfs {
            return Err(LaunchError::HostRootfsRefused);
        }
        let images = Arc::clone(&self.images);
        let prepare_began = std::time::SystemTime::now();
        let rootfs = tokio::task::spawn_blocking(move || images.prepare(&image, &reference))
            .await
            .map_err(|e| LaunchError::Preparing(e.to_string()))?
            .map_err(|source| image_error(&shape.image.reference, source))?;
        if let Some(steps) = request.steps {
            steps.done(IMAGE_PREPARE, prepare_began);
        }
        let files = match (egress, &identity) {
            (Some(egress), Some(identity)) => egress
                .sandbox_files(&identity.namespace, &identity.gateways, &rootfs.path)
                .await
                .map_err(LaunchError::Egress)?,
            _ => Vec::new(),
        };
        let runtime = self.runtime(request.runtime);
        let launch = Launch {
            sandbox_id: sandbox_id(request.id_base),
            container: &shape.template.spec,
            resources: &shape.resources,
            image: &shape.image.config,
            rootfs: &rootfs,
            masked_paths: &self.masked_paths,
            network,
            files,
            runtime: runtime.kind(),
            pids_limit: request.pids_limit,
            runtime_flags: request.runtime_flags,
            // Only TaskAgent sandboxes serve one execution after another.
            reuse: request.kind == "TaskAgent" && shape.sandbox_reuse.is_some(),
        };
        let spec = launch.spec()?;
        let spawn_began = std::time::SystemTime::now();
        let mut sandbox = runtime.spawn(&spec).await.map_err(LaunchError::Spawn)?;
        if let Some(steps) = request.steps {
            steps.done(RUNTIME_START, spawn_began);
        }
        if let (Some(egress), Some(identity)) = (egress, identity)
            && let Some(addresses) = sandbox.addresses()
        {
            sandbox.attach(egress.register(addresses, identity));
        }
        Ok(sandbox)
    }
}

/// Sorts a failed prepare: the registry failing to hand over what is missing is a passing
/// condition of this worker (the caller gets a 503 to retry), anything else is the image's.
fn image_error(reference: &str, source: ImageError) -> LaunchError {
    match source {
        ImageError::RegistryUnreachable { .. }
        | ImageError::RegistryAccessDenied { .. }
        | ImageError::ImageNotFound { .. }
        | ImageError::RegistryFailed { .. } => LaunchError::ImageUnavailable {
            reference: reference.to_owned(),
            source,
        },
        source => LaunchError::Image(source),
    }
}
