//! `clrk worker`: the sandboxes of one host. It registers in the shared store (name, pool,
//! advertised link address, capacity), heartbeats with its warm sandboxes, and runs what
//! servers send it over the link, which refuses any peer without the cluster secret.
//! It runs the DaemonAgents of its pool that it leads (one worker each).
//! SIGTERM drains it: its daemons move, no new placements, executions in flight finish,
//! then it leaves.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clrk_dispatch::worker::warm_share::WorkerIdentity;
use clrk_link::{ClusterSecret, LinkLimits, LinkServer};
use clrk_metrics::Role;
use clrk_store::{Heartbeat, Store, WorkerRegistration, WorkerState};
use tokio_util::sync::CancellationToken;

use crate::cluster::health;
use crate::cluster::server::{bind, local_addr};
use crate::daemons::{ClusterWorker, Supervisor};
use crate::error::ServerError;
use crate::host::{Host, HostSettings};
use crate::listener::{self, ConnectionLimits};
use crate::metrics::Exposition;
use crate::recovery::Recovery;
use crate::registry::{HEARTBEAT, Registration, new_incarnation};

/// How long a draining worker waits for its executions in flight.
pub const DRAIN_DEADLINE: Duration = Duration::from_secs(60);
/// How long stopping its daemons, and then its sandboxes, may take (each).
pub const STOP_DEADLINE: Duration = Duration::from_secs(15);
/// The longest a worker takes from SIGTERM to its exit: daemons stopped, executions in
/// flight drained, sandboxes stopped. An orchestrator's grace period must exceed it.
pub const LONGEST_STOP: Duration = Duration::from_secs(
    STOP_DEADLINE.as_secs() + DRAIN_DEADLINE.as_secs() + STOP_DEADLINE.as_secs(),
);

/// How `clrk worker` runs.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    pub database: String,
    /// The WorkerPool whose agents it runs.
    pub pool: String,
    /// Where the link listens.
    pub listen: SocketAddr,
    /// The address servers dial (default: `listen`).
    pub advertise: Option<SocketAddr>,
    /// `/healthz` and `/readyz`.
    pub health: SocketAddr,
    /// `--metrics`: the worker's `/metrics`, without a token.
    pub metrics: Option<SocketAddr>,
    pub data_dir: PathBuf,
    pub cluster_secret_file: PathBuf,
    /// Default: the host name.
    pub name: Option<String>,
    pub allow_host_rootfs: bool,
    pub insecure_registries: Vec<String>,
    pub dns_upstream: Option<SocketAddr>,
}

/// A started worker.
pub struct RunningWorker {
    pub name: String,
    pub link: SocketAddr,
    pub health: SocketAddr,
    /// The `--metrics` listener's address, when it has one.
    pub metrics: Option<SocketAddr>,
    store: Store,
    host: Host,
    daemons: Supervisor,
    registration: Registration,
    shutdown: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl RunningWorker {
    /// Drains (no new placements, executions in flight finish within a deadline), leaves the
    /// registry and stops.
    pub async fn stop(self) {
        // Daemons first: their leaderships are given up once they are down, and other
        // workers of the pool take them over.
        self.daemons.shutdown(STOP_DEADLINE).await;
        match self.store.drain_worker(&self.name).await {
            Ok(_) => {
                let deadline = tokio::time::Instant::now() + DRAIN_DEADLINE;
                while self.host.worker.in_flight() > 0 && tokio::time::Instant::now() < deadline {
                    self.host.worker.wait_drained(deadline).await;
                }
            }
            Err(error) => tracing::warn!(%error, "could not mark the worker draining"),
        }
        self.registration.stop().await;
        self.shutdown.cancel();
        self.host.stop(STOP_DEADLINE).await;
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Runs until SIGTERM or Ctrl-C, then drains.
pub async fn run(opts: WorkerOptions) -> Result<(), ServerError> {
    let worker = start(opts).await?;
    crate::dev::shutdown_signal().await;
    eprintln!("clrk worker: draining, then stopping");
    worker.stop().await;
    Ok(())
}

/// Connects, cleans what a previous run on this data dir left, listens and registers.
pub async fn start(opts: WorkerOptions) -> Result<RunningWorker, ServerError> {
    crate::fd_limit::raise();
    crate::dev::create_private_dir(&opts.data_dir)?;
    let secret = ClusterSecret::load(&opts.cluster_secret_file)
        .map_err(|e| ServerError::Internal(e.to_string()))?;
    let store = Store::connect(&opts.database).await?;
    let name = opts.name.clone().unwrap_or_else(crate::registry::host_name);
    let host = Host::start(
        &store,
        HostSettings {
            data_dir: opts.data_dir.clone(),
            masked_paths: crate::host::masked_paths(&[&opts.data_dir, &opts.cluster_secret_file]),
            insecure_registries: opts.insecure_registries.clone(),
            dns_upstream: opts.dns_upstream,
            recovery: Recovery::Worker(name.clone()),
            allow_host_rootfs: opts.allow_host_rootfs,
        },
        clrk_dispatch::Dispatcher::default_body_budget(),
    )
    .await?;
    host.worker.set_identity(WorkerIdentity {
        name: name.clone(),
        pool: opts.pool.clone(),
    });

    let link = bind(opts.listen).await?;
    let link_addr = local_addr(&link)?;
    let health_listener = bind(opts.health).await?;
    let health_addr = local_addr(&health_listener)?;
    let metrics_listener = match opts.metrics {
        Some(addr) => Some(bind(addr).await?),
        None => None,
    };
    let metrics_addr = metrics_listener.as_ref().map(local_addr).transpose()?;
    let shutdown = CancellationToken::new();
    let server = LinkServer::new(secret, LinkLimits::default())
        .map_err(|e| ServerError::Internal(e.to_string()))?;
    let mut tasks = vec![tokio::spawn(server.serve(
        link,
        clrk_dispatch::link::serve::router(host.worker.clone()),
        shutdown.clone(),
    ))];

    // Recovery killed this data dir's leftover sandboxes, so no daemon of a previous run
    // is still up here.
    let daemons = Supervisor::start_on_worker(
        store.clone(),
        host.worker.clone(),
        ClusterWorker {
            name: name.clone(),
            pool: opts.pool.clone(),
        },
    );
    let warm_worker = host.worker.clone();
    let registration = Registration::start(
        store.clone(),
        WorkerRegistration {
            name: name.clone(),
            pool: opts.pool.clone(),
            address: opts.advertise.unwrap_or(link_addr).to_string(),
            capacity: crate::registry::default_capacity(),
            incarnation: new_incarnation(),
        },
        move || warm_worker.warm_counts(),
        HEARTBEAT,
    );
    // Marked lost while alive (a partition, a stall): the cluster failed what it runs; stop it
    // all before joining again under a new incarnation.
    let mut replaced = registration.state();
    let stopping = host.worker.clone();
    tasks.push(tokio::spawn(async move {
        while replaced.changed().await.is_ok() {
            if *replaced.borrow_and_update() == Heartbeat::Replaced {
                let stopped = stopping.stop_all(clrk_store::WORKER_LOST);
                tracing::warn!(
                    stopped,
                    "the registry replaced this worker: its executions were stopped"
                );
            }
        }
    }));
    // Drained through the API (`clrk workers drain`): its daemons move as on SIGTERM.
    tasks.push({
        let (daemons, mut state) = (daemons.clone(), registration.state());
        tokio::spawn(async move {
            if state.wait_for(|s| *s == Heartbeat::Draining).await.is_ok() {
                tracing::info!("worker draining: handing its daemons over");
                daemons.shutdown(Duration::from_secs(15)).await;
            }
        })
    });
    // Ready when the registry, as servers read it, holds this worker Ready.
    let (ready_store, ready_name) = (store.clone(), name.clone());
    let ready: health::Readiness = Arc::new(move || {
        let (store, name) = (ready_store.clone(), ready_name.clone());
        Box::pin(async move {
            let workers = store
                .list_workers()
                .await
                .map_err(|e| format!("the database does not answer: {e}"))?;
            match workers.iter().find(|w| w.name == name).map(|w| w.state) {
                Some(WorkerState::Ready) => Ok(()),
                Some(WorkerState::Draining) => Err("draining".to_string()),
                Some(WorkerState::Lost) | None => Err("not registered (yet)".to_string()),
            }
        })
    });
    tasks.push(tokio::spawn(listener::serve(
        health_listener,
        health::router(ready),
        ConnectionLimits::control_api(),
    )));
    // A worker runs sandboxes and places nothing: the worker's families only.
    if let Some(listener) = metrics_listener {
        let worker = host.worker.clone();
        let metrics = Exposition::new(&[Role::Worker], move || worker.publish_metrics());
        tasks.push(metrics.serve(listener));
    }
    eprintln!(
        "clrk worker {name}: pool {} · link {link_addr} · health http://{health_addr}",
        opts.pool
    );
    if let Some(addr) = metrics_addr {
        eprintln!("  metrics http://{addr}/metrics");
    }
    Ok(RunningWorker {
        name,
        link: link_addr,
        health: health_addr,
        metrics: metrics_addr,
        store,
        host,
        daemons,
        registration,
        shutdown,
        tasks,
    })
}
