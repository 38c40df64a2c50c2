//! The worker side of an execution: everything that happens on the host whose sandboxes run
//! it. [`Worker::execute`] takes an [`ExecutionOrder`] from placement — in-process under
//! `clrk dev`, over the cluster link under `clrk worker` — records the execution, runs it in
//! a warm or fresh sandbox and streams its events back.
//!
//! The worker also keeps its warm pools filled (`warm_pool`, `warm_reconciler`), serves the
//! metadata service its sandboxes talk to (`metadata`) and starts daemon sandboxes through the
//! same [`Launcher`].

pub mod launch;
pub mod launch_error;
pub mod launcher;
mod loan;
pub mod metadata;
pub mod order;
mod run;
mod warm_pool;
mod warm_reconciler;
pub mod warm_share;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use clrk_api::DeliveryMode;
use clrk_egress::Registration;
use clrk_sandbox::{Network, Sandbox};
use clrk_store::{NewExecution, Start, Store, WarmCount};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::body::{BodyBudget, BodyPermit};
use crate::error::DispatchError;
use crate::logs::LogBus;
use crate::pools::worker_pool;
use crate::revision::RevisionShape;
use crate::trace::{TraceSpans, WARM_TAKE};
use crate::worker::launcher::{Launcher, SandboxRequest};
use crate::worker::loan::Loan;
use crate::worker::metadata::MetadataService;
use crate::worker::order::{ExecutionOrder, Started};
use crate::worker::run::{Handover, Run};
use crate::worker::warm_pool::{Generation, WarmPools};
use crate::worker::warm_share::WorkerIdentity;

pub use run::{NO_RESPONSE, STOP_GRACE};

/// What placement holds for an execution (its place under `maxConcurrent` and in its worker
/// pool): released once the execution's end is recorded, before its sandbox is deleted.
pub type Places = Box<dyn std::any::Any + Send>;

/// Chunks buffered between the agent and a slow caller before the agent's writes block.
const STDOUT_QUEUE: usize = 8;
/// How long an execution of a `sandboxReuse` agent waits for one of its pool's busy sandboxes
/// to come back before it starts a fresh one (SPECIFICATION §3.6).
const REUSE_WAIT: Duration = Duration::from_secs(1);
/// Longest wait, from a warm take, before the pool starts its replacement: starting a sandbox
/// keeps a core busy for a while, and an execution ending sooner does without that contention.
const REFILL_AFTER: Duration = Duration::from_millis(250);
/// How long after an execution's end is recorded its pool's replacement waits, for the end of
/// the response to reach the caller first.
const REFILL_AFTER_END: Duration = Duration::from_millis(5);

/// Runs executions and warm pools on this host. Cloning shares the same worker.
#[derive(Clone)]
pub struct Worker {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) store: Store,
    pub(crate) launcher: Launcher,
    logs: LogBus,
    /// Executions in flight: id → (namespace, agent, how to stop it).
    live: Mutex<HashMap<String, (String, String, CancellationToken)>>,
    /// Why an execution was stopped, recorded as its failure reason.
    stop_reasons: Mutex<HashMap<String, String>>,
    pub(crate) shutdown: CancellationToken,
    drained: Notify,
    metadata: MetadataService,
    pub(crate) warm: WarmPools,
    /// Bodies held in memory: orders arriving over the link, Metadata-mode answers.
    bodies: BodyBudget,
    /// Its name and pool in the registry: executions record the name, warm pools take the
    /// worker's share of its pool's agents.
    identity: OnceLock<WorkerIdentity>,
}

impl Worker {
    /// A worker starting sandboxes with `launcher`, recording executions in `store` and their
    /// lines on `logs`. Metadata-mode answers count against `bodies`.
    pub fn new(store: Store, launcher: Launcher, logs: LogBus, bodies: BodyBudget) -> Worker {
        Worker {
            inner: Arc::new(Inner {
                store,
                launcher,
                logs,
                live: Mutex::new(HashMap::new()),
                stop_reasons: Mutex::new(HashMap::new()),
                shutdown: CancellationToken::new(),
                drained: Notify::new(),
                metadata: MetadataService::new(bodies.clone()),
                warm: WarmPools::new(),
                bodies,
                identity: OnceLock::new(),
            }),
        }
    }

    /// The metadata service its Metadata-mode executions are registered with; it is served on
    /// the metadata addresses.
    pub fn metadata(&self) -> &MetadataService {
        &self.inner.metadata
    }

    /// Bodies held in memory by this worker (shared with placement under `clrk dev`).
    pub fn body_budget(&self) -> &BodyBudget {
        &self.inner.bodies
    }

    /// How its sandboxes are started (daemon runs use it too).
    pub fn launcher(&self) -> &Launcher {
        &self.inner.launcher
    }

    /// The log bus its executions and daemon runs write to.
    pub fn logs(&self) -> &LogBus {
        &self.inner.logs
    }

    /// Starts the sandbox of daemon run `run_id` of `namespace/name` (revision `revision`,
    /// worker pool `pool`) for a caller that supervises the process itself. The caller owns
    /// the sandbox: it must stop or remove it. Errors say why, for users.
    pub async fn start_daemon(
        &self,
        namespace: &str,
        name: &str,
        pool: &str,
        revision: &str,
        shape: &RevisionShape,
        run_id: &str,
    ) -> Result<Sandbox, String> {
        let pool = worker_pool(&self.inner.store, namespace, name, pool)
            .await
            .map_err(|e| e.to_string())?;
        self.inner
            .launcher
            .start(SandboxRequest {
                kind: "DaemonAgent",
                namespace,
                agent: name,
                revision,
                run: Some(run_id),
                id_base: run_id,
                shape,
                runtime: pool.runtime,
                pids_limit: pool.pids_limit(),
                runtime_flags: &pool.runtime_flags(),
                network: Network::None,
                run_span: None,
                steps: None,
            })
            .await
            .map_err(|e| e.to_string())
    }

    /// Sandboxes of this agent ready in its warm pool.
    pub fn warm(&self, namespace: &str, name: &str) -> u32 {
        self.inner.warm.ready_count(namespace, name)
    }

    /// Names the worker and its pool as the registry knows them: its executions are recorded
    /// with the name (so a lost worker's are found), and its warm pools keep its share of the
    /// pool's agents' `warmPoolSize`. Set once, before the first execution; a worker without
    /// one fills every agent's whole pool.
    pub fn set_identity(&self, identity: WorkerIdentity) {
        let _ = self.inner.identity.set(identity);
    }

    /// What [`Worker::set_identity`] set.
    pub fn identity(&self) -> Option<&WorkerIdentity> {
        self.inner.identity.get()
    }

    /// Executions running now.
    pub fn in_flight(&self) -> usize {
        self.inner.live.lock().expect("live map").len()
    }

    /// Waits until an execution ends, or `deadline`.
    pub async fn wait_drained(&self, deadline: tokio::time::Instant) {
        let notified = self.inner.drained.notified();
        if self.in_flight() == 0 {
            return;
        }
        let _ = tokio::time::timeout_at(deadline, notified).await;
    }

    /// Its warm sandboxes, per agent and revision, for its heartbeats.
    pub fn warm_counts(&self) -> Vec<WarmCount> {
        self.inner
            .warm
            .ready_counts()
            .into_iter()
            .map(|(namespace, agent, revision, ready)| WarmCount {
                namespace,
                agent,
                revision,
                ready,
            })
            .collect()
    }

    /// Sets the warm-pool gauges to what the pools hold now (SPECIFICATION §18), before a
    /// scrape.
    pub fn publish_metrics(&self) {
        clrk_metrics::global().set_warm_pools(self.inner.warm.sizes());
    }

    /// Tells the worker that stored agents, revisions or worker pools changed: its warm pools
    /// reconcile soon.
    pub fn agents_changed(&self) {
        self.inner.warm.reconcile_soon();
    }

    /// Records the execution (`Running`, warm or cold) and runs it in the background inside
    /// the current span. `body` is the envelope's share of the body budget and `places` what
    /// placement holds for it; both are released once the end is recorded.
    pub async fn execute(
        &self,
        order: ExecutionOrder,
        body: Option<BodyPermit>,
        places: Option<Places>,
    ) -> Result<Started, DispatchError> {
        if self.inner.shutdown.is_cancelled() {
            return Err(DispatchError::ShuttingDown);
        }
        let inner = &self.inner;
        let mode = order.shape.delivery_mode();
        let key = (order.namespace.clone(), order.agent.clone());
        let trace = TraceSpans::from_order(order.trace.as_ref());
        let take_began = SystemTime::now();
        let generation = Generation::of(
            &order.revision,
            inner.launcher.runtime(order.runtime),
            order.pids_limit,
            &order.runtime_flags,
            order.shape.sandbox_reuse,
        );
        let warm = match mode {
            DeliveryMode::Stdin => {
                inner
                    .warm
                    .take_returning(&key, &generation, REUSE_WAIT)
                    .await
            }
            _ => None,
        };
        // A reused sandbox taken from the pool is lent: it goes back, or the pool is told.
        let loan = warm
            .as_ref()
            .filter(|sandbox| sandbox.reusable())
            .map(|sandbox| Loan::new(self.clone(), key.clone(), generation.clone(), sandbox));
        // A reused agent's take may have waited for a sandbox to come back, found or not.
        if warm.is_some() || generation.reuse.is_some() {
            trace.add(WARM_TAKE, None, take_began, SystemTime::now(), Vec::new());
        }
        let record = NewExecution {
            id: order.execution_id.clone(),
            namespace: order.namespace.clone(),
            agent: order.agent.clone(),
            revision: order.revision.clone(),
            trigger: order.trigger.clone(),
            started_at: order.started_at,
            start: if warm.is_some() {
                Start::Warm
            } else {
                Start::Cold
            },
            worker: inner.identity.get().map(|i| i.name.clone()),
        };
        // The store holds `maxConcurrent` again: under a cluster other servers place
        // executions of the same agent.
        let started = inner
            .store
            .start_execution_within(&record, order.max_concurrent)
            .await;
        if let Err(error) = started {
            // A refused execution never ran: a reused sandbox goes back untouched, any other
            // warm sandbox it took is deleted and the pool refills.
            if let Some(sandbox) = warm {
                let unwanted = match loan {
                    Some(loan) => loan.give_back(sandbox),
                    None => Some(sandbox),
                };
                if let Some(sandbox) = unwanted {
                    inner.warm.tasks.spawn(warm_pool::remove(sandbox));
                }
                inner.warm.reconcile_soon();
            }
            return Err(match error {
                clrk_store::StoreError::DuplicateExecution(id) => {
                    DispatchError::DuplicateExecution(id)
                }
                clrk_store::StoreError::TooManyExecutions { limit } => {
                    DispatchError::TooManyExecutions {
                        namespace: order.namespace,
                        name: order.agent,
                        limit,
                    }
                }
                other => DispatchError::Store(other),
            });
        }

        let cancel = inner.shutdown.child_token();
        inner.live.lock().expect("live map").insert(
            order.execution_id.clone(),
            (order.namespace.clone(), order.agent.clone(), cancel.clone()),
        );
        // A warm sandbox learns whose execution it now serves.
        if let Some(registration) = warm.as_ref().and_then(|s| s.attachment::<Registration>()) {
            registration.identity().set_run_span(trace.run_context());
            registration.identity().set_execution(&order.execution_id);
        }
        let (tx, rx) = mpsc::channel(STDOUT_QUEUE);
        let source = format!("clrk://{}/{}", order.namespace, order.agent);
        let started = Started {
            execution_id: order.execution_id.clone(),
            revision: order.revision.clone(),
            source,
            events: rx,
        };
        let run = Run {
            worker: self.clone(),
            execution_id: order.execution_id,
            revision: order.revision,
            namespace: order.namespace,
            agent: order.agent,
            trigger: order.trigger,
            mode,
            envelope: Handover::new(mode, order.envelope, body),
            shape: order.shape,
            runtime: order.runtime,
            pids_limit: order.pids_limit,
            runtime_flags: order.runtime_flags,
            timeout: order.timeout,
            log_limit: order.log_limit,
            cancel,
            trace,
            generation,
            loan,
        };
        let places = match warm {
            Some(_) => Some(self.refill_after(places)),
            None => places,
        };
        tokio::spawn(run.run(tx, places, warm).in_current_span());
        Ok(started)
    }

    /// Wraps the places of an execution that took a warm sandbox: its pool refills just after
    /// they are released (its end is recorded, [`REFILL_AFTER_END`]), or [`REFILL_AFTER`] after
    /// the take if that comes first.
    fn refill_after(&self, places: Option<Places>) -> Places {
        let (released, done) = oneshot::channel::<()>();
        let worker = self.clone();
        tokio::spawn(async move {
            if tokio::time::timeout(REFILL_AFTER, done).await.is_ok() {
                tokio::time::sleep(REFILL_AFTER_END).await;
            }
            worker.inner.warm.reconcile_soon();
        });
        Box::new((places, released))
    }

    /// Stops every execution in flight (their sandboxes are stopped and deleted) and refuses
    /// new ones; returns when all are recorded and the warm pools drained, or after
    /// `deadline`.
    pub async fn shutdown(&self, deadline: Duration) {
        self.inner.shutdown.cancel();
        let wait = async {
            loop {
                let notified = self.inner.drained.notified();
                if self.inner.live.lock().expect("live map").is_empty() {
                    break;
                }
                notified.await;
            }
            // The warm pools drain once their loop sees the shutdown.
            self.inner.warm.tasks.close();
            self.inner.warm.tasks.wait().await;
        };
        if tokio::time::timeout(deadline, wait).await.is_err() {
            tracing::warn!("some executions were still stopping at shutdown");
        }
    }

    /// Stops every execution of an agent (its sandboxes are stopped and deleted), each
    /// recorded as failed with `reason` (e.g. "stopped: the agent was deleted"). Returns how
    /// many were stopped.
    pub fn stop_agent(&self, namespace: &str, name: &str, reason: &str) -> usize {
        self.stop_where(reason, |ns, agent| ns == namespace && agent == name)
    }

    /// Stops every execution in flight, each recorded as failed with `reason` unless the
    /// cluster recorded its end already (a worker the registry declared lost).
    pub fn stop_all(&self, reason: &str) -> usize {
        self.stop_where(reason, |_, _| true)
    }

    fn stop_where(&self, reason: &str, matches: impl Fn(&str, &str) -> bool) -> usize {
        let live = self.inner.live.lock().expect("live map");
        let mut reasons = self.inner.stop_reasons.lock().expect("stop reasons");
        let mut stopped = 0;
        for (id, (ns, agent, cancel)) in live.iter() {
            if matches(ns, agent) {
                reasons.insert(id.clone(), reason.to_string());
                cancel.cancel();
                stopped += 1;
            }
        }
        stopped
    }
}
