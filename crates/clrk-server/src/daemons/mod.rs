//! The DaemonAgent supervisor (SPECIFICATION §8). A reconcile loop in the style of kube-rs
//! controllers: given the stored agents (desired) and the supervisions it runs (actual), it
//! starts, replaces and stops daemons until the two agree. It is idempotent, so a trigger
//! too many or a restart of the server in the middle does no harm.

pub mod policy;
mod run;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clrk_api::ObjectKey;
use clrk_dispatch::Worker;
use clrk_store::{DaemonPhase, Revision, RevisionState, Store};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use run::DAEMON_TRIGGER;
use run::Daemon;

/// A reconcile happens at least this often, even without a trigger.
const RESYNC: Duration = Duration::from_secs(30);

/// Runs every DaemonAgent that should run. Cloning shares the same supervisor.
#[derive(Clone)]
pub struct Supervisor {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    worker: Worker,
    wake: Notify,
    shutdown: CancellationToken,
    supervised: Mutex<HashMap<ObjectKey, Supervised>>,
}

/// One daemon's supervision task and the revision it runs. The entry stays after the task
/// ended by itself (policy said stop), so a daemon that stopped is not started again until
/// a new revision arrives.
struct Supervised {
    revision: String,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

impl Supervisor {
    /// Starts the reconcile loop; the first reconcile runs at once.
    pub fn start(store: Store, worker: Worker) -> Supervisor {
        let supervisor = Supervisor {
            inner: Arc::new(Inner {
                store,
                worker,
                wake: Notify::new(),
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
    /// `deadline`. Their stored state is left as it was, so the next start runs them again.
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
            if let Err(error) = self.reconcile().await {
                tracing::error!(%error, "daemon reconcile failed; retrying");
            }
            tokio::select! {
                () = self.inner.wake.notified() => {}
                () = tokio::time::sleep(RESYNC) => {}
                () = self.inner.shutdown.cancelled() => return,
            }
        }
    }

    /// One pass: every DaemonAgent with a ready revision is supervised on that revision;
    /// nothing else is.
    async fn reconcile(&self) -> Result<(), clrk_store::StoreError> {
        let inner = &self.inner;
        if inner.shutdown.is_cancelled() {
            return Ok(());
        }
        let desired: HashMap<ObjectKey, Revision> = inner
            .store
            .list_agents(None)
            .await?
            .into_iter()
            .filter(|a| a.kind == "DaemonAgent")
            .filter_map(|a| {
                let revision = a.latest_revision?;
                (revision.state == RevisionState::Ready)
                    .then_some((ObjectKey::new(a.namespace, a.name), revision))
            })
            .collect();
        // Read before taking the lock (it cannot be held across the store's await): which
        // daemons not supervised yet had already stopped for good on their revision.
        let unsupervised: Vec<(ObjectKey, Revision)> = {
            let supervised = inner.supervised.lock().expect("supervised map");
            desired
                .iter()
                .filter(|(key, _)| !supervised.contains_key(*key))
                .map(|(key, revision)| (key.clone(), revision.clone()))
                .collect()
        };
        let mut stopped = HashSet::new();
        for (key, revision) in unsupervised {
            if self.stopped_for_good(&key, &revision).await {
                stopped.insert(key);
            }
        }
        let mut supervised = inner.supervised.lock().expect("supervised map");
        // Gone or no longer a daemon: stop it; the entry goes once its task has ended.
        supervised.retain(|key, s| {
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
            let previous = match supervised.remove(&key) {
                Some(s) if s.revision == revision.name && !s.cancel.is_cancelled() => {
                    supervised.insert(key, s);
                    continue;
                }
                Some(s) => {
                    s.cancel.cancel();
                    Some(s.task)
                }
                None => None,
            };
            let cancel = inner.shutdown.child_token();
            let task = if previous.is_none() && stopped.contains(&key) {
                // Started after a restart: it had already stopped for good on this revision.
                tokio::spawn(async {})
            } else {
                tracing::info!(namespace = %key.namespace, daemon = %key.name, revision = %revision.name, "supervising daemon");
                let daemon = Daemon {
                    store: inner.store.clone(),
                    worker: inner.worker.clone(),
                    namespace: key.namespace.clone(),
                    name: key.name.clone(),
                    revision: revision.clone(),
                    cancel: cancel.clone(),
                    shutdown: inner.shutdown.clone(),
                };
                tokio::spawn(daemon.supervise(previous))
            };
            supervised.insert(
                key,
                Supervised {
                    revision: revision.name,
                    cancel,
                    task,
                },
            );
        }
        Ok(())
    }

    /// Whether the stored state says this revision's daemon stopped per its policy.
    async fn stopped_for_good(&self, key: &ObjectKey, revision: &Revision) -> bool {
        matches!(
            self.inner.store.daemon_state(&key.namespace, &key.name).await,
            Ok(Some(state)) if state.revision == revision.name && state.phase == DaemonPhase::Stopped
        )
    }
}
