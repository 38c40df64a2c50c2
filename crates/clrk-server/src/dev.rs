//! `clrk dev`: control API, ingress and an embedded worker in one process, with the store
//! under the data dir and every agent's log lines on the terminal.

use std::io::{IsTerminal as _, Write as _};
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clrk_dispatch::worker::warm_share::WorkerIdentity;
use clrk_dispatch::{Dispatcher, LogBus, Workers};
use clrk_metrics::Role;
use clrk_store::Store;

use tokio::net::TcpListener;

use crate::cron::Cron;
use crate::daemons::Supervisor;
use crate::error::ServerError;
use crate::host::{Host, HostSettings};
use crate::listener::{self, ConnectionLimits};
use crate::metrics::Exposition;
use crate::recovery::Recovery;
use crate::registry::{HEARTBEAT, LostWorkerSweep, Registration};
use crate::state::AppState;

/// How `clrk dev` runs.
#[derive(Debug, Clone)]
pub struct DevOptions {
    /// Store, images and sandbox state (`$CLRK_DIR/dev` by default).
    pub data_dir: PathBuf,
    /// Where `dev.json` is written (`$CLRK_DIR`, `~/.clrk` by default).
    pub clrk_dir: PathBuf,
    pub ingress_addr: SocketAddr,
    pub api_addr: SocketAddr,
    /// Applied at start (`-f FILE`), with the file each came from.
    pub manifests: Vec<(String, Vec<clrk_api::Document>)>,
    pub allow_host_rootfs: bool,
    /// Registries pulled from over plain HTTP (`--insecure-registry`).
    pub insecure_registries: Vec<String>,
    /// Print every agent log line to stdout.
    pub log_to_terminal: bool,
    /// Where agents' allowed DNS questions go; default the host's first nameserver.
    pub dns_upstream: Option<SocketAddr>,
    /// Connections the ingress holds open at once, in all and per client address.
    pub ingress_connections: usize,
    pub ingress_connections_per_client: usize,
    /// `--metrics`: `/metrics` without a token on this address too.
    pub metrics_addr: Option<SocketAddr>,
}

/// What `dev.json` holds: how the other commands find this server.
pub type Endpoints = clrk_wire::DevFile;

/// Runs until Ctrl-C or SIGTERM, then stops every sandbox and returns.
pub async fn run(opts: DevOptions) -> Result<(), ServerError> {
    let server = start(opts).await?;
    shutdown_signal().await;
    eprintln!("clrk: shutting down, stopping sandboxes…");
    server.stop().await;
    Ok(())
}

/// A started server.
pub struct Running {
    pub endpoints: Endpoints,
    dispatcher: Dispatcher,
    host: Host,
    cron: Cron,
    daemons: Supervisor,
    /// The embedded worker's place in the registry, and the sweep of lost workers.
    registration: Registration,
    sweep: LostWorkerSweep,
    endpoints_file: PathBuf,
    _lock: std::fs::File,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Stops cron, daemons and executions (sandboxes deleted), the listeners, and removes
    /// `dev.json`.
    pub async fn stop(self) {
        self.cron.shutdown();
        // Daemons first, while the worker still runs; then placement refuses new
        // executions and the host stops what runs.
        tokio::join!(
            self.sweep.stop(),
            self.registration.stop(),
            self.daemons.shutdown(Duration::from_secs(15)),
        );
        self.dispatcher.shutdown(Duration::from_secs(15)).await;
        self.host.stop(Duration::from_secs(15)).await;
        for task in &self.tasks {
            task.abort();
        }
        let _ = std::fs::remove_file(&self.endpoints_file);
    }
}

/// Starts everything and returns once both listeners accept connections.
pub async fn start(opts: DevOptions) -> Result<Running, ServerError> {
    let data_dir = &opts.data_dir;
    let fd_limit = crate::fd_limit::raise();
    create_private_dir(data_dir)?;
    create_private_dir(&opts.clrk_dir)?;
    let lock = lock_data_dir(data_dir)?;

    let store = Store::open(&data_dir.join("clrk.db"))?;
    let masked_paths = crate::host::masked_paths(&[&opts.clrk_dir, data_dir]);
    // The embedded worker and the placement in front of it share one budget of bodies held
    // in memory.
    let bodies = Dispatcher::default_body_budget();
    let host = Host::start(
        &store,
        HostSettings {
            data_dir: data_dir.clone(),
            masked_paths,
            insecure_registries: opts.insecure_registries.clone(),
            dns_upstream: dns_upstream(&opts),
            recovery: Recovery::Everything,
            allow_host_rootfs: opts.allow_host_rootfs,
        },
        bodies.clone(),
    )
    .await?;
    let (images, worker, logs) = (host.images.clone(), host.worker.clone(), host.logs.clone());
    let dispatcher = Dispatcher::new(
        store.clone(),
        logs.clone(),
        Workers::Local(worker.clone()),
        bodies,
    );
    // Recovery killed every sandbox left behind (they are deleted in the background), so the
    // supervisor starts from nothing running and cannot duplicate a daemon.
    let daemons = Supervisor::start(store.clone(), worker.clone());
    let cron = Cron::start(store.clone(), dispatcher.clone());
    let registration = {
        let embedded = crate::registry::embedded_worker();
        worker.set_identity(WorkerIdentity {
            name: embedded.name.clone(),
            pool: embedded.pool.clone(),
        });
        let worker = worker.clone();
        Registration::start(
            store.clone(),
            embedded,
            move || worker.warm_counts(),
            HEARTBEAT,
        )
    };
    let sweep = LostWorkerSweep::start(store.clone(), HEARTBEAT);
    let state = AppState {
        store,
        images,
        dispatcher: dispatcher.clone(),
        cron: Some(cron.clone()),
        daemons: Some(daemons.clone()),
        allow_host_rootfs: opts.allow_host_rootfs,
    };

    for (source, documents) in &opts.manifests {
        for result in crate::apply::apply_documents(&state, source, documents).await? {
            eprintln!(
                "{}/{} {}{}",
                result.kind.to_lowercase(),
                result.key.name,
                result.outcome,
                result
                    .revision
                    .map(|r| format!(" (revision {r})"))
                    .unwrap_or_default()
            );
        }
    }
    state.agents_changed();

    let ingress = bind(opts.ingress_addr).await?;
    let api = bind(opts.api_addr).await?;
    let mut tasks = Vec::new();
    // One process places and runs: it exposes both sides' families.
    let metrics = {
        let worker = worker.clone();
        Exposition::new(&[Role::Placement, Role::Worker], move || {
            worker.publish_metrics();
        })
    };
    let metrics_url = match opts.metrics_addr {
        Some(addr) => {
            let listener = bind(addr).await?;
            let url = format!("http://{}", local_addr(&listener)?);
            tasks.push(metrics.serve(listener));
            Some(url)
        }
        None => None,
    };
    let endpoints = Endpoints {
        ingress: format!("http://{}", local_addr(&ingress)?),
        api: format!("http://{}", local_addr(&api)?),
        token: new_token()?,
        metrics: metrics_url,
    };
    let endpoints_file = opts.clrk_dir.join("dev.json");
    write_endpoints(&endpoints_file, &endpoints)?;

    let ingress_app = clrk_dispatch::ingress::router(dispatcher.clone());
    let ingress_limits = ConnectionLimits::ingress(
        ingress_connections(opts.ingress_connections, fd_limit),
        opts.ingress_connections_per_client,
    );
    tasks.push(tokio::spawn(listener::serve(
        ingress,
        ingress_app,
        ingress_limits,
    )));
    // The control API's listener is plain HTTP: the console's cookie is not `Secure`.
    let api_app = crate::api::router(state.clone(), endpoints.token.clone(), &metrics).merge(
        crate::console::router(state, endpoints.token.clone(), false),
    );
    tasks.push(tokio::spawn(listener::serve(
        api,
        api_app,
        ConnectionLimits::control_api(),
    )));
    if opts.log_to_terminal {
        tasks.push(tokio::spawn(print_logs(logs)));
    }
    eprintln!(
        "clrk dev: ingress {} · api {} · data {}\n  endpoints and token in {}",
        endpoints.ingress,
        endpoints.api,
        data_dir.display(),
        endpoints_file.display()
    );
    eprintln!("  console {}{}", endpoints.api, crate::console::PREFIX);
    if let Some(url) = &endpoints.metrics {
        eprintln!("  metrics {url}/metrics");
    }
    Ok(Running {
        endpoints,
        dispatcher,
        cron,
        daemons,
        registration,
        sweep,
        endpoints_file,
        host,
        _lock: lock,
        tasks,
    })
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, ServerError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Listen { addr, source })
}

fn local_addr(listener: &TcpListener) -> Result<SocketAddr, ServerError> {
    listener
        .local_addr()
        .map_err(|e| ServerError::Internal(format!("reading a listener's address: {e}")))
}

/// The ingress's connection cap: as asked, but at most a quarter of the descriptors the
/// process may open, so that sandboxes, the store and the other listeners keep theirs.
pub(crate) fn ingress_connections(asked: usize, fd_limit: Option<u64>) -> usize {
    let Some(most) = fd_limit.map(|l| usize::try_from(l / 4).unwrap_or(usize::MAX)) else {
        return asked;
    };
    if asked > most {
        tracing::warn!(
            asked,
            used = most,
            "--max-connections lowered to a quarter of the file-descriptor limit; raise `ulimit -Hn` to allow more"
        );
    }
    asked.min(most)
}

/// Prints `[namespace/agent execution-id] line` for every agent log line, its control
/// characters escaped on a terminal.
async fn print_logs(logs: LogBus) {
    let mut events = logs.subscribe();
    let terminal = std::io::stdout().is_terminal();
    loop {
        match events.recv().await {
            Ok(e) => {
                let line = if terminal {
                    crate::terminal::escape_controls(&e.line)
                } else {
                    e.line.as_str().into()
                };
                let mut out = std::io::stdout().lock();
                let _ = writeln!(
                    out,
                    "[{}/{} {}] {line}",
                    e.namespace, e.agent, e.execution_id
                );
            }
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                println!(
                    "[clrk] {n} log lines skipped on the terminal (all are in clrk agents logs)"
                );
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// The data dir and `$CLRK_DIR` hold the store, every agent's logs and the API token: a
/// sandbox on the host's root filesystem must never see them.
/// The resolver agents' allowed questions go to: `--dns-upstream`, else the host's first
/// nameserver. None (with a warning) when there is neither: agents then resolve nothing.
fn dns_upstream(opts: &DevOptions) -> Option<SocketAddr> {
    if let Some(addr) = opts.dns_upstream {
        return Some(addr);
    }
    let text = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let found = clrk_egress::dns::nameserver_from_resolv_conf(&text);
    if found.is_none() {
        tracing::warn!(
            "no nameserver in /etc/resolv.conf: agents' DNS questions will fail; pass --dns-upstream ADDR:53"
        );
    }
    found
}

pub(crate) fn create_private_dir(dir: &Path) -> Result<(), ServerError> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| ServerError::DataDir {
            path: dir.to_path_buf(),
            source,
        })
}

/// One server per data dir: two would delete each other's sandboxes at start.
fn lock_data_dir(dir: &Path) -> Result<std::fs::File, ServerError> {
    let path = dir.join("lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .map_err(|source| ServerError::DataDir {
            path: path.clone(),
            source,
        })?;
    rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive)
        .map_err(|_| ServerError::DataDirBusy(dir.to_path_buf()))?;
    Ok(file)
}

/// A 256-bit random token from the OS generator, as 64 hex digits.
fn new_token() -> Result<String, ServerError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| ServerError::Internal(format!("the OS random generator failed: {e}")))?;
    Ok(hex::encode(bytes))
}

/// Written to a temporary file and renamed, mode 0600: readers never see half a file.
fn write_endpoints(path: &Path, endpoints: &Endpoints) -> Result<(), ServerError> {
    let err = |source| ServerError::Endpoints {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension("json.tmp");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(err)?;
    let text = serde_json::to_string_pretty(endpoints).expect("endpoints serialise");
    file.write_all(text.as_bytes()).map_err(err)?;
    file.sync_all().map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

pub(crate) async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn tokens_are_256_random_bits_in_hex() {
        let tokens: Vec<String> = (0..64).map(|_| super::new_token().unwrap()).collect();
        for token in &tokens {
            assert_eq!(token.len(), 64);
            assert!(token.bytes().all(|b| b.is_ascii_hexdigit()), "{token}");
        }
        // No fixed digits, as UUIDs would have (their version nibble).
        for position in 0..64 {
            let first = tokens[0].as_bytes()[position];
            assert!(
                tokens.iter().any(|t| t.as_bytes()[position] != first),
                "digit {position} is the same in 64 tokens"
            );
        }
    }
}
