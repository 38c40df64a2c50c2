//! `clrk server`: the control API, the ingress and apply over the shared PostgreSQL store,
//! placing every execution on a registered worker over the link, and cron while it leads.
//! It holds no sandboxes and nothing that is not in the store (an image cache for apply
//! aside): run as many as needed behind a load balancer; any of them may be killed.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clrk_dispatch::placement::cluster::Cluster;
use clrk_dispatch::{Dispatcher, LogBus, Workers};
use clrk_image::{ImageStore, StoreOptions};
use clrk_link::{ClusterSecret, LinkClient};
use clrk_metrics::Role;
use clrk_store::Store;
use tokio::net::TcpListener;

use crate::cluster::health;
use crate::cron::Cron;
use crate::error::ServerError;
use crate::listener::{self, ConnectionLimits};
use crate::metrics::Exposition;
use crate::registry::{HEARTBEAT, LostWorkerSweep};
use crate::state::AppState;

/// How `clrk server` runs.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// `postgres://USER@HOST:PORT/DB`.
    pub database: String,
    pub ingress_addr: SocketAddr,
    pub api_addr: SocketAddr,
    /// The control API token, created (0600) when missing.
    pub token_file: PathBuf,
    /// The secret servers and workers prove to each other.
    pub cluster_secret_file: PathBuf,
    /// The image cache apply resolves images with.
    pub data_dir: PathBuf,
    pub allow_host_rootfs: bool,
    pub insecure_registries: Vec<String>,
    pub ingress_connections: usize,
    pub ingress_connections_per_client: usize,
    /// `--metrics`: `/metrics` without a token on this address too.
    pub metrics_addr: Option<SocketAddr>,
}

/// A started server.
pub struct RunningServer {
    pub ingress: SocketAddr,
    pub api: SocketAddr,
    /// The `--metrics` listener's address, when it has one.
    pub metrics: Option<SocketAddr>,
    dispatcher: Dispatcher,
    cron: Cron,
    sweep: LostWorkerSweep,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl RunningServer {
    /// Refuses new invocations and stops listening. Executions in flight go on on their
    /// workers, which record their ends.
    pub async fn stop(self) {
        self.cron.shutdown();
        self.dispatcher.shutdown(Duration::from_secs(1)).await;
        self.sweep.stop().await;
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Runs until SIGTERM or Ctrl-C.
pub async fn run(opts: ServerOptions) -> Result<(), ServerError> {
    let server = start(opts).await?;
    crate::dev::shutdown_signal().await;
    eprintln!("clrk server: shutting down");
    server.stop().await;
    Ok(())
}

/// Connects to the store, reads the token and the cluster secret, and starts listening.
pub async fn start(opts: ServerOptions) -> Result<RunningServer, ServerError> {
    let fd_limit = crate::fd_limit::raise();
    crate::dev::create_private_dir(&opts.data_dir)?;
    let token = crate::cluster::token_file::load_or_create(&opts.token_file)?;
    let existed = opts.cluster_secret_file.exists();
    let secret = ClusterSecret::load_or_create(&opts.cluster_secret_file)
        .map_err(|e| ServerError::Internal(e.to_string()))?;
    if !existed {
        eprintln!(
            "clrk server: created the cluster secret {} (fingerprint {}): copy it to every worker and server",
            opts.cluster_secret_file.display(),
            secret.fingerprint()
        );
    }
    let store = Store::connect(&opts.database).await?;
    let images = Arc::new(ImageStore::open_with(
        &opts.data_dir.join("images"),
        StoreOptions {
            insecure_registries: opts.insecure_registries.clone(),
            docker_config: None,
        },
    )?);
    let client = LinkClient::new(secret).map_err(|e| ServerError::Internal(e.to_string()))?;
    let logs = LogBus::new(store.clone());
    let dispatcher = Dispatcher::new(
        store.clone(),
        logs,
        Workers::Cluster(Cluster::new(client, store.clone())),
        Dispatcher::default_body_budget(),
    );
    // Every server runs cron; it fires only while it leads (see `cron`).
    let cron = Cron::start_in_cluster(store.clone(), dispatcher.clone());
    let state = AppState {
        store: store.clone(),
        images,
        dispatcher: dispatcher.clone(),
        cron: Some(cron.clone()),
        daemons: None,
        allow_host_rootfs: opts.allow_host_rootfs,
    };
    let sweep = LostWorkerSweep::start(store.clone(), HEARTBEAT);

    let ingress = bind(opts.ingress_addr).await?;
    let api = bind(opts.api_addr).await?;
    let (ingress_addr, api_addr) = (local_addr(&ingress)?, local_addr(&api)?);
    let metrics_listener = match opts.metrics_addr {
        Some(addr) => Some(bind(addr).await?),
        None => None,
    };
    let metrics_addr = metrics_listener.as_ref().map(local_addr).transpose()?;
    let mut tasks = Vec::new();
    let ingress_limits = ConnectionLimits::ingress(
        crate::dev::ingress_connections(opts.ingress_connections, fd_limit),
        opts.ingress_connections_per_client,
    );
    tasks.push(tokio::spawn(listener::serve(
        ingress,
        clrk_dispatch::ingress::router(dispatcher.clone()),
        ingress_limits,
    )));
    let ready_store = store.clone();
    let ready: health::Readiness = Arc::new(move || {
        let store = ready_store.clone();
        Box::pin(async move { health::database(&store).await })
    });
    // A server places executions and runs none: placement's families only.
    let metrics = Exposition::new(&[Role::Placement], || {});
    if let Some(listener) = metrics_listener {
        tasks.push(metrics.serve(listener));
    }
    // The control API's listener is plain HTTP: the console's cookie is not `Secure`.
    let api_app = crate::api::router(state.clone(), token.clone(), &metrics)
        .merge(crate::console::router(state, token, false))
        .merge(health::router(ready));
    tasks.push(tokio::spawn(listener::serve(
        api,
        api_app,
        ConnectionLimits::control_api(),
    )));
    eprintln!("clrk server: ingress http://{ingress_addr} · api http://{api_addr}");
    eprintln!("  console http://{api_addr}{}", crate::console::PREFIX);
    if let Some(addr) = metrics_addr {
        eprintln!("  metrics http://{addr}/metrics");
    }
    Ok(RunningServer {
        ingress: ingress_addr,
        api: api_addr,
        metrics: metrics_addr,
        dispatcher,
        cron,
        sweep,
        tasks,
    })
}

pub(crate) async fn bind(addr: SocketAddr) -> Result<TcpListener, ServerError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Listen { addr, source })
}

pub(crate) fn local_addr(listener: &TcpListener) -> Result<SocketAddr, ServerError> {
    listener
        .local_addr()
        .map_err(|e| ServerError::Internal(format!("reading a listener's address: {e}")))
}
