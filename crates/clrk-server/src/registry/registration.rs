//! A worker's membership in the registry: it registers, heartbeats every interval with the
//! warm sandboxes it holds, follows what the heartbeat answers (ready, draining, replaced),
//! and removes itself when it stops.
//!
//! A database that fails is logged and tried again at the next interval: a worker keeps
//! running its sandboxes through a database outage, and the registry catches up after it.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use clrk_store::{Heartbeat, Store, WarmCount, WorkerRegistration};
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

/// How often a worker heartbeats by default; the sweep calls a worker lost after three
/// missed ones.
pub const HEARTBEAT: Duration = Duration::from_secs(2);

/// What the worker reports with each heartbeat.
type WarmCounts = Arc<dyn Fn() -> Vec<WarmCount> + Send + Sync>;

/// A running registration. Stop it with [`Registration::stop`] to leave the registry.
pub struct Registration {
    state: watch::Receiver<Heartbeat>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

/// A fresh incarnation: one per start of a worker (and per registration after being
/// replaced), so the store tells a worker's current start from an older one.
pub fn new_incarnation() -> String {
    uuid::Uuid::new_v4().to_string()
}

impl Registration {
    /// Starts registering `worker` and heartbeating every `interval` with `warm()`'s counts.
    ///
    /// [`Registration::state`] starts `Ready` and follows the heartbeats' answers. On
    /// `Replaced` (the registry no longer holds this start: marked lost, or the name taken
    /// by another start) it stays `Replaced` for one interval, for the worker to delete what
    /// it ran, then the registration joins again under a new incarnation and goes back to
    /// `Ready`.
    pub fn start(
        store: Store,
        worker: WorkerRegistration,
        warm: impl Fn() -> Vec<WarmCount> + Send + Sync + 'static,
        interval: Duration,
    ) -> Registration {
        let (state_tx, state) = watch::channel(Heartbeat::Ready);
        let stop = CancellationToken::new();
        let task = tokio::spawn(
            Member {
                store,
                worker,
                warm: Arc::new(warm),
                interval,
                state: state_tx,
            }
            .run(stop.clone()),
        );
        Registration { state, stop, task }
    }

    /// What the registry last said: `Ready`, `Draining` (take nothing new) or `Replaced`.
    pub fn state(&self) -> watch::Receiver<Heartbeat> {
        self.state.clone()
    }

    /// Stops heartbeating and removes the worker's row (a clean exit, not a lost worker).
    pub async fn stop(self) {
        self.stop.cancel();
        if let Err(error) = self.task.await {
            tracing::warn!(%error, "worker registration ended abnormally");
        }
    }
}

/// The loop's state: who it registers and what it last told the worker.
struct Member {
    store: Store,
    worker: WorkerRegistration,
    warm: WarmCounts,
    interval: Duration,
    state: watch::Sender<Heartbeat>,
}

impl Member {
    async fn run(mut self, stop: CancellationToken) {
        let mut ticks = tokio::time::interval(self.interval);
        // After a slow database call, beat once and carry on rather than catch up.
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut registered = false;
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                _ = ticks.tick() => {}
            }
            registered = if registered {
                self.heartbeat().await
            } else {
                self.register().await
            };
        }
        if registered {
            self.leave().await;
        }
    }

    /// Returns whether the worker is registered now.
    async fn register(&mut self) -> bool {
        match self.store.register_worker(&self.worker, Utc::now()).await {
            Ok(()) => {
                self.publish(Heartbeat::Ready);
                true
            }
            Err(error) => {
                tracing::warn!(worker = %self.worker.name, %error, "cannot register the worker; retrying");
                false
            }
        }
    }

    /// Returns whether the worker is still registered.
    async fn heartbeat(&mut self) -> bool {
        let warm = (self.warm)();
        let answer = self
            .store
            .heartbeat_worker(
                &self.worker.name,
                &self.worker.incarnation,
                &warm,
                Utc::now(),
            )
            .await;
        match answer {
            Ok(Heartbeat::Replaced) => {
                tracing::warn!(worker = %self.worker.name, incarnation = %self.worker.incarnation, "worker replaced in the registry (marked lost or registered by another start); joining again");
                self.publish(Heartbeat::Replaced);
                self.worker.incarnation = new_incarnation();
                false
            }
            Ok(answer) => {
                self.publish(answer);
                true
            }
            Err(error) => {
                // Still registered as far as anyone knows; the next beat tries again.
                tracing::warn!(worker = %self.worker.name, %error, "worker heartbeat failed; retrying");
                true
            }
        }
    }

    async fn leave(&self) {
        if let Err(error) = self
            .store
            .remove_worker(&self.worker.name, &self.worker.incarnation)
            .await
        {
            tracing::warn!(worker = %self.worker.name, %error, "cannot remove the worker from the registry; it will be marked lost");
        }
    }

    /// Tells the worker, waking its watchers only on a change.
    fn publish(&self, state: Heartbeat) {
        self.state.send_if_modified(|current| {
            let changed = *current != state;
            *current = state;
            changed
        });
    }
}
