//! The DaemonAgent supervisor (SPECIFICATION §8). A reconcile loop in the style of kube-rs
//! controllers: given the stored agents (desired) and the supervisions it runs (actual), it
//! starts, replaces and stops daemons until the two agree. It is idempotent, so a trigger
//! too many or a restart of the server in the middle does no harm.
//!
//! A daemon runs on one worker of its pool at a time: a supervisor runs it only while it
//! leads the daemon's leadership ([`daemon_leadership`]), tried every [`LEAD_RETRY`] by every
//! worker of the pool. Losing it stops the process at once (another worker may start it
//! already); a worker that dies releases it with its connections, and one that stops hands
//! its daemons over. On PostgreSQL each held leadership is a connection of its own. `clrk
//! dev`'s embedded worker (SQLite) always leads.

pub mod policy;
mod run;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clrk_api::{ObjectKey, Resource};
use clrk_dispatch::Worker;
use clrk_store::{DaemonPhase, EVERY_POOL, Leadership, Revision, RevisionState, Store};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use run::DAEMON_TRIGGER;
use run::Daemon;

/// A reconcile happens at least this often, even without a trigger.
const RESYNC: Duration = Duration::from_secs(30);
/// How often a worker tries to lead a daemon of its pool that it does not run, so that it
/// takes the daemon over within this of its worker going.
pub const LEAD_RETRY: Duration = Duration::from_secs(2);

/// The leadership a daemon runs under: `clrk-daemon/<namespace>/<name>`.
///
/// ```
/// assert_eq!(clrk_server::daemons::daemon_leadership("default", "bot"), "clrk-daemon/default/bot");
/// ```
pub fn daemon_leadership(namespace: &str, name: &str) -> String {
    format!("clrk-daemon/{namespace}/{name}")
}

/// The cluster worker a supervisor runs on.
#[derive(Debug, Clone)]
pub struct ClusterWorker {
    /// Its name in the registry. Daemon runs are recorded with it, so that a lost worker's
    /// run ends `Failed` with the others of that worker.
    pub name: String,
    /// The WorkerPool whose daemons it runs ([`EVERY_POOL`]: all).
    pub pool: String,
}

/// Runs every DaemonAgent that should run. Cloning shares the same supervisor.
#[derive(Clone)]
pub struct Supervisor {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    worker: Worker,
    /// `None` for `clrk dev`'s embedded worker: every pool, and a run found `Running` in the
    /// store at start is run again as it was (it stopped with the process).
    cluster: Option<ClusterWorker>,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
    supervised: Mutex<HashMap<ObjectKey, Supervised>>,
}

/// One daemon's supervision task and the revision it runs. The entry stays after the task
/// ended by itself (policy said stop), so a daemon that stopped is not started again until
/// a new revision arrives; it goes once the task ended after losing the leadership, so the
/// daemon is tried again.
struct Supervised {
    revision: String,
    cancel: CancellationToken,
    /// Cancelled when the leadership was lost.
    lost: CancellationToken,
    /// The leadership, while the task holds it; a new revision's task takes it over.
    leadership: std::sync::Weak<Leadership>,
    task: JoinHandle<()>,
}

impl Supervisor {
    /// Starts the reconcile loop of `clrk dev`'s embedded worker, which runs the daemons of
    /// every pool; the first reconcile runs at once.
    pub fn start(store: Store, worker: Worker) -> Supervisor {
        Supervisor::start_with(store, worker, None)
    }

    /// Starts the reconcile loop of a cluster worker, which runs the daemons of its pool
    /// that it leads; the first reconcile runs at once.
    pub fn start_on_worker(store: Store, worker: Worker, on: ClusterWorker) -> Supervisor {
        Supervisor::start_with(store, worker, Some(on))
    }

    fn start_with(store: Store, worker: Worker, cluster: Option<ClusterWorker>) -> Supervisor {
        let supervisor = Supervisor {
            inner: Arc::new(Inner {
                store,
                worker,
                cluster,
                wake: Arc::new(Notify::new()),
                shutdown: CancellationToken::new(),
                supervised: Mutex::new(HashMap::new()),
            }),
        };
        tokio::spawn(supervisor.clone().control_loop());
        supervisor
    }

    /// Asks for a reconcile now (after an apply or a delete).
    pub fn reconcile_soon(&self) {
        self.inner.wake.notify_one();
    }

    /// Stops every daemon (SIGTERM, grace, SIGKILL) and returns when all are down or after
    /// `deadline`. Their stored state is left as it was, so the next start runs them again;
    /// on a cluster worker it says the daemon moves, and the leaderships are given up, so
    /// other workers of the pool take the daemons over.
    pub async fn shutdown(&self, deadline: Duration) {
        self.inner.shutdown.cancel();
        let tasks: Vec<JoinHandle<()>> = self
            .inner
            .supervised
            .lock()
            .expect("supervised map")
            .drain()
            .map(|(_, s)| s.task)
            .collect();
        let all = futures::future::join_all(tasks);
        if tokio::time::timeout(deadline, all).await.is_err() {
            tracing::warn!("some daemons were still stopping at shutdown");
        }
    }

    async fn control_loop(self) {
        loop {
            let next = match self.reconcile().await {
                // Applies reach a cluster worker only through the store (the API that took
                // them is another process's), so it reads the store more often.
                Ok(Pass::AllHeld) if self.inner.cluster.is_none() => RESYNC,
                Ok(_) => LEAD_RETRY,
                Err(error) => {
                    tracing::error!(%error, "daemon reconcile failed; retrying");
                    // A cluster worker may be the one to take daemons over.
                    match self.inner.cluster {
                        Some(_) => LEAD_RETRY,
                        None => RESYNC,
                    }
                }
            };
            tokio::select! {
                () = self.inner.wake.notified() => {}
                () = tokio::time::sleep(next) => {}
                () = self.inner.shutdown.cancelled() => return,
            }
        }
    }

    /// One pass: every DaemonAgent of this worker's pool with a ready revision is supervised
    /// on that revision when this worker leads it; nothing else is.
    async fn reconcile(&self) -> Result<Pass, clrk_store::StoreError> {
        let inner = &self.inner;
        if inner.shutdown.is_cancelled() {
            return Ok(Pass::AllHeld);
        }
        let desired: HashMap<ObjectKey, Revision> = inner
            .store
            .list_agents(None)
            .await?
            .into_iter()
            .filter(|a| a.kind == "DaemonAgent")
            .filter(|a| self.serves_pool_of(&a.spec))
            .filter_map(|a| {
                let revision = a.latest_revision?;
                (revision.state == RevisionState::Ready)
                    .then_some((ObjectKey::new(a.namespace, a.name), revision))
            })
            .collect();
        // Read before taking the lock (it cannot be held across the store's await): the
        // daemons not supervised yet, and of those, which this worker now leads and which had
        // already stopped for good on their revision. Stopped is read after leading: the
        // last holder records it before it lets go.
        let unsupervised: Vec<(ObjectKey, Revision)> = {
            let supervised = inner.supervised.lock().expect("supervised map");
            desired
                .iter()
                .filter(|(key, revision)| match supervised.get(*key) {
                    None => true,
                    // Ended after losing the lead, or stopped on an older revision.
                    Some(s) => {
                        s.task.is_finished()
                            && (s.lost.is_cancelled() || s.revision != revision.name)
                    }
                })
                .map(|(key, revision)| (key.clone(), revision.clone()))
                .collect()
        };
        let mut led = HashMap::new();
        let mut stopped = HashSet::new();
        let mut pass = Pass::AllHeld;
        for (key, revision) in unsupervised {
            let name = daemon_leadership(&key.namespace, &key.name);
            match inner.store.try_lead(&name).await {
                Ok(Some(leadership)) => {
                    if self.stopped_for_good(&key, &revision).await {
                        stopped.insert(key);
                    } else {
                        led.insert(key, Arc::new(leadership));
                    }
                }
                Ok(None) => pass = Pass::SomeLedElsewhere,
                Err(error) => {
                    tracing::warn!(%error, leadership = name, "cannot try to lead a daemon; retrying");
                    pass = Pass::SomeLedElsewhere;
                }
            }
        }
        let mut supervised = inner.supervised.lock().expect("supervised map");
        // Gone or no longer a daemon: stop it; the entry goes once its task has ended. An
        // entry whose task ended after losing the lead goes too.
        supervised.retain(|key, s| {
            if s.task.is_finished() && s.lost.is_cancelled() {
                return false;
            }
            if desired.contains_key(key) {
                return true;
            }
            if !s.cancel.is_cancelled() {
                tracing::info!(namespace = %key.namespace, daemon = %key.name, "stopping daemon: agent deleted");
                s.cancel.cancel();
            }
            !s.task.is_finished()
        });
        for (key, revision) in desired {
            let (previous, leadership) = match supervised.remove(&key) {
                Some(s) if s.revision == revision.name && !s.cancel.is_cancelled() => {
                    supervised.insert(key, s);
                    continue;
                }
                Some(s) => {
                    s.cancel.cancel();
                    // The task of the old revision hands its leadership on while it still
                    // holds it, so no other worker starts the new one before it is down.
                    let leadership = s.leadership.upgrade().or_else(|| led.remove(&key));
                    (Some(s.task), leadership)
                }
                None => (None, led.remove(&key)),
            };
            let cancel = inner.shutdown.child_token();
            let lost = CancellationToken::new();
            let (task, weak) = match leadership {
                None if stopped.contains(&key) => {
                    // It had already stopped for good on this revision (before a restart, or
                    // on another worker).
                    (tokio::spawn(async {}), std::sync::Weak::new())
                }
                // Led by another worker: tried again next pass.
                None => continue,
                Some(leadership) => {
                    tracing::info!(namespace = %key.namespace, daemon = %key.name, revision = %revision.name, "supervising daemon");
                    let daemon = Daemon {
                        store: inner.store.clone(),
                        worker: inner.worker.clone(),
                        namespace: key.namespace.clone(),
                        name: key.name.clone(),
                        revision: revision.clone(),
                        cancel: cancel.clone(),
                        lost: lost.clone(),
                        shutdown: inner.shutdown.clone(),
                        cluster_worker: inner.cluster.as_ref().map(|c| c.name.clone()),
                    };
                    let weak = Arc::downgrade(&leadership);
                    let wake = inner.wake.clone();
                    let task = tokio::spawn(async move {
                        daemon.supervise_leading(previous, leadership).await;
                        // Try again (or let another worker) without waiting for a resync.
                        wake.notify_one();
                    });
                    (task, weak)
                }
            };
            supervised.insert(
                key,
                Supervised {
                    revision: revision.name,
                    cancel,
                    lost,
                    leadership: weak,
                    task,
                },
            );
        }
        Ok(pass)
    }

    /// Whether this worker runs daemons of the pool `spec` names: a cluster worker those of
    /// its own pool, `clrk dev`'s embedded worker all.
    fn serves_pool_of(&self, spec: &serde_json::Value) -> bool {
        let Some(cluster) = &self.inner.cluster else {
            return true;
        };
        if cluster.pool == EVERY_POOL {
            return true;
        }
        match Resource::from_stored(spec) {
            Ok(Resource::DaemonAgent(daemon)) => daemon.spec.worker_pool_ref == cluster.pool,
            _ => false,
        }
    }

    /// Whether the stored state says this revision's daemon stopped per its policy.
    async fn stopped_for_good(&self, key: &ObjectKey, revision: &Revision) -> bool {
        matches!(
            self.inner.store.daemon_state(&key.namespace, &key.name).await,
            Ok(Some(state)) if state.revision == revision.name && state.phase == DaemonPhase::Stopped
        )
    }
}

/// What a reconcile pass found.
enum Pass {
    /// Every daemon this worker should run, it runs (or they stopped for good).
    AllHeld,
    /// Some are led by another worker (or could not be tried): try again soon.
    SomeLedElsewhere,
}
