//! The worker side of a process: everything that runs sandboxes on this host. `clrk dev`
//! starts one beside its control plane; `clrk worker` is one alone, reached over the link.
//!
//! It opens the image cache, listens on the metadata addresses (the metadata service and the
//! egress gateway), makes the two runtimes, cleans what a previous run on this data dir left,
//! and starts the [`Worker`] with its warm pools.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clrk_dispatch::body::BodyBudget;
use clrk_dispatch::{Launcher, LogBus, Worker};
use clrk_egress::{Egress, EgressSettings};
use clrk_image::{ImageStore, StoreOptions};
use clrk_sandbox::{Runtime, RuntimeConfig, RuntimeKind};
use clrk_store::Store;

use crate::error::ServerError;
use crate::listener::{self, ConnectionLimits};
use crate::recovery::Recovery;

/// What `host:` sandboxes hide: `paths` (the data dir, `$CLRK_DIR`, a worker's cluster
/// secret), and the dir of the docker `config.json` clrk pulls with (registry credentials);
/// a path inside another one is not listed twice.
pub fn masked_paths(paths: &[&Path]) -> Vec<PathBuf> {
    let docker = clrk_image::docker_config_path(None).and_then(|f| Some(f.parent()?.to_owned()));
    let mut masked = Vec::new();
    for path in paths.iter().map(|p| p.to_path_buf()).chain(docker) {
        let path = path.canonicalize().unwrap_or(path);
        if !masked.iter().any(|p: &PathBuf| path.starts_with(p)) {
            masked.push(path);
        }
    }
    masked
}

/// How a host runs its sandboxes.
#[derive(Debug, Clone)]
pub struct HostSettings {
    /// Images and sandbox state (the store may live elsewhere).
    pub data_dir: PathBuf,
    /// Host paths `host:` sandboxes must not see (data dir, `$CLRK_DIR`, registry logins).
    pub masked_paths: Vec<PathBuf>,
    /// Registries pulled from over plain HTTP.
    pub insecure_registries: Vec<String>,
    /// Where agents' allowed DNS questions go; none: they resolve nothing.
    pub dns_upstream: Option<SocketAddr>,
    /// Which executions in flight at the last stop are this host's to fail.
    pub recovery: Recovery,
    /// Whether `host:` images may run (the host's own root filesystem, read-only).
    pub allow_host_rootfs: bool,
}

/// A started host.
pub struct Host {
    pub images: Arc<ImageStore>,
    pub worker: Worker,
    pub logs: LogBus,
    /// Deletes what a previous run left; a stop waits for it.
    cleanup: tokio::task::JoinHandle<()>,
    /// This instance's paths in the host-wide record other instances' sandboxes mask.
    _instance: Option<clrk_sandbox::InstanceRecord>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Host {
    /// Makes the store consistent, kills what a previous run left and starts the worker (its
    /// warm pools included) with its metadata service and egress gateway. `bodies` bounds the
    /// bodies it holds in memory.
    pub async fn start(
        store: &Store,
        settings: HostSettings,
        bodies: BodyBudget,
    ) -> Result<Host, ServerError> {
        let data_dir = &settings.data_dir;
        let images = Arc::new(ImageStore::open_with(
            &data_dir.join("images"),
            StoreOptions {
                insecure_registries: settings.insecure_registries.clone(),
                docker_config: None,
            },
        )?);
        let (metadata_listeners, metadata_port) =
            crate::metadata_listener::bind().map_err(|e| {
                ServerError::Internal(format!(
                    "cannot listen on the metadata addresses 169.254.169.254 and fd00:ec2::254: {e}"
                ))
            })?;
        let egress = Egress::new(
            store.clone(),
            EgressSettings {
                ca_dir: data_dir.join("egress"),
                dns_upstream: settings.dns_upstream,
            },
        );
        let egress_listeners = egress.bind().map_err(|e| {
            ServerError::Internal(format!(
                "cannot listen for sandbox egress on 169.254.169.254: {e}"
            ))
        })?;
        let egress_ports = egress_listeners
            .ports()
            .map_err(|e| ServerError::Internal(format!("egress listeners: {e}")))?;
        let runtime = |kind, dir: &str| {
            Runtime::new(RuntimeConfig {
                kind,
                binary: match kind {
                    RuntimeKind::Runc => "runc".into(),
                    RuntimeKind::Runsc => "runsc".into(),
                },
                state_dir: data_dir.join(dir),
                metadata_port,
                egress_ports: Some(egress_ports),
            })
        };
        let runsc = runtime(RuntimeKind::Runsc, "sandboxes");
        let runc = runtime(RuntimeKind::Runc, "sandboxes-runc");
        // Leftovers are deleted while the host starts and serves.
        let cleanup = tokio::spawn(
            crate::recovery::recover(store, &settings.recovery, &[&runsc, &runc])
                .await?
                .run(),
        );
        let logs = LogBus::new(store.clone());
        let instance = clrk_sandbox::InstanceRecord::register(&settings.masked_paths)
            .inspect_err(|error| {
                tracing::warn!(%error, "other clrk instances' host: sandboxes will not mask this one's dirs");
            })
            .ok();
        let launcher = Launcher::new(
            images.clone(),
            runsc,
            runc,
            settings.masked_paths.clone(),
            Some(egress.clone()),
            settings.allow_host_rootfs,
        );
        let worker = Worker::new(store.clone(), launcher, logs.clone(), bodies);
        // Recovery killed every sandbox left behind (they are deleted in the background), so
        // the pools start from nothing.
        worker.start_warm_pools();
        let mut tasks = Vec::new();
        for metadata in metadata_listeners {
            // The service knows a sandbox by the source address of its connection.
            let app = worker.metadata().router();
            tasks.push(tokio::spawn(listener::serve(
                metadata,
                app,
                ConnectionLimits::metadata(),
            )));
        }
        tasks.push(tokio::spawn(egress.serve(
            egress_listeners,
            tokio_util::sync::CancellationToken::new(),
        )));
        Ok(Host {
            images,
            worker,
            logs,
            cleanup,
            _instance: instance,
            tasks,
        })
    }

    /// Stops every execution and warm sandbox, waits (within `deadline`) for the deletion of
    /// a previous run's leftovers, and closes the metadata and egress listeners.
    pub async fn stop(self, deadline: Duration) {
        tokio::join!(self.worker.shutdown(deadline), async {
            if tokio::time::timeout(deadline, self.cleanup).await.is_err() {
                tracing::warn!(
                    "still deleting sandboxes left by a previous run at shutdown; the next start finishes it"
                );
            }
        });
        for task in &self.tasks {
            task.abort();
        }
    }
}
