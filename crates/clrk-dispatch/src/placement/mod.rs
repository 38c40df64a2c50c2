//! Placement: turns an invocation into an execution order for a worker. It finds the agent's
//! latest ready revision, holds its places (`maxConcurrent`, its worker pool's
//! `maxExecutionsPerWorker` and bounded queue), builds the envelope and hands the order to a
//! worker, whose events it passes back to the caller.

mod agent_cache;
pub mod choice;
pub mod cluster;
mod worker_capacity;
pub mod workers;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use clrk_api::Resource;
use clrk_store::{Revision, RevisionState, Store};
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::body::{BodyBudget, BodyPermit};
use crate::envelope::{RequestData, Trigger};
use crate::error::DispatchError;
use crate::logs::{LogBus, LogLimit};
use crate::placement::agent_cache::{AgentCache, ResolvedAgent};
use crate::placement::worker_capacity::{QUEUE_WAIT, Refused, WorkerCapacity};
use crate::placement::workers::Workers;
use crate::pools::worker_pool;
use crate::revision::RevisionShape;
use crate::trace::ExecutionTrace;
use crate::worker::order::{ExecutionOrder, Started};

/// The `reason` of a 429 for an agent at its `maxConcurrent` (SPECIFICATION §18).
const MAX_CONCURRENT: &str = "max_concurrent";

/// Bytes of request bodies (and Metadata-mode answers) held in memory at once, all executions
/// together; beyond it new bodies are refused with 503 until some are released.
const BODY_BUDGET: usize = 256 * 1024 * 1024;

/// The span of one execution: every event of its admission, launch, stdin, stdout and end is
/// logged inside it, so they carry its id, agent, revision and trigger without repeating them.
/// The revision is recorded once the agent is resolved.
pub fn execution_span(
    execution_id: &str,
    namespace: &str,
    agent: &str,
    trigger: Option<&str>,
) -> tracing::Span {
    tracing::info_span!(
        "execution",
        execution = %execution_id,
        namespace = %namespace,
        agent = %agent,
        revision = tracing::field::Empty,
        trigger = %trigger.unwrap_or("http"),
    )
}

/// One request to run a TaskAgent.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub namespace: String,
    pub name: String,
    pub execution_id: String,
    /// `X-Clrk-Trigger`, recorded as the execution's trigger and used as `subject`.
    pub trigger: Option<String>,
    pub request: RequestData,
    /// A caller-requested cap, never longer than `spec.timeout`.
    pub timeout: Option<Duration>,
    /// Its trace so far: when it arrived, whose trace it continues (SPECIFICATION §9.7).
    pub trace: ExecutionTrace,
}

/// Places executions on workers. Cloning shares the same dispatcher.
#[derive(Clone)]
pub struct Dispatcher {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) store: Store,
    logs: LogBus,
    /// The workers executions are placed on.
    workers: Workers,
    active: Mutex<HashMap<(String, String), u32>>,
    pub(crate) shutdown: CancellationToken,
    agents: AgentCache,
    capacity: WorkerCapacity,
    /// Agents whose image an apply is pulling before their first revision exists: (namespace,
    /// name) → image. Invocations of them get 503, not 404.
    pulls: Mutex<HashMap<(String, String), String>>,
    /// Request bodies held in memory at once (ingress requests and agents' responses).
    bodies: BodyBudget,
}

impl Dispatcher {
    /// A dispatcher placing executions on `workers`, holding bodies under `bodies` (under
    /// `clrk dev` the budget is shared with the embedded worker).
    pub fn new(store: Store, logs: LogBus, workers: Workers, bodies: BodyBudget) -> Dispatcher {
        Dispatcher {
            inner: Arc::new(Inner {
                store,
                logs,
                workers,
                active: Mutex::new(HashMap::new()),
                shutdown: CancellationToken::new(),
                pulls: Mutex::new(HashMap::new()),
                agents: AgentCache::default(),
                capacity: WorkerCapacity::default(),
                bodies,
            }),
        }
    }

    /// A new body budget of the default size, for a dispatcher and its worker to share.
    pub fn default_body_budget() -> BodyBudget {
        BodyBudget::new(BODY_BUDGET)
    }

    /// The log bus executions write to.
    pub fn logs(&self) -> &LogBus {
        &self.inner.logs
    }

    /// Executions of this agent in flight right now.
    pub fn active(&self, namespace: &str, name: &str) -> u32 {
        let active = self.inner.active.lock().expect("active map");
        active
            .get(&(namespace.to_string(), name.to_string()))
            .copied()
            .unwrap_or(0)
    }

    /// Sandboxes of this agent ready in its warm pool.
    pub fn warm(&self, namespace: &str, name: &str) -> u32 {
        self.inner.workers.warm(namespace, name)
    }

    /// Of worker pool `pool`'s `maxExecutionsPerWorker`: executions holding a slot, and
    /// invocations waiting for one.
    pub fn pool_usage(&self, pool: &str) -> (u32, usize) {
        self.inner.capacity.usage(pool)
    }

    /// Tells the dispatcher that stored agents, revisions or worker pools changed (applied,
    /// deleted): invocations read them afresh, and warm pools reconcile.
    pub fn agents_changed(&self) {
        self.inner.agents.clear();
        self.inner.workers.agents_changed();
    }

    /// Records that an apply is pulling `image` for this agent until the returned guard is
    /// dropped, so an invocation of an agent not stored yet is told to wait (503), not that
    /// it does not exist.
    pub fn pulling(&self, namespace: &str, name: &str, image: &str) -> PullGuard {
        let key = (namespace.to_string(), name.to_string());
        self.inner
            .pulls
            .lock()
            .expect("pulls map")
            .insert(key.clone(), image.to_string());
        PullGuard {
            dispatcher: self.clone(),
            key,
        }
    }

    /// Accepts an invocation and starts its execution in the background, inside its
    /// [`execution_span`].
    pub async fn invoke(&self, inv: Invocation) -> Result<Started, DispatchError> {
        let span = execution_span(
            &inv.execution_id,
            &inv.namespace,
            &inv.name,
            inv.trigger.as_deref(),
        );
        async {
            self.admit(&inv.namespace, &inv.name)
                .await?
                .start(inv)
                .await
        }
        .instrument(span)
        .await
    }

    /// Bodies held in memory by the ingress and the metadata service, all together.
    pub fn body_budget(&self) -> &BodyBudget {
        &self.inner.bodies
    }

    /// Finds the agent's ready revision and takes its places (`maxConcurrent`, the worker
    /// pool's capacity, waiting in the pool's queue if need be).
    pub async fn admit(&self, namespace: &str, name: &str) -> Result<Admission, DispatchError> {
        self.route(namespace, name).await?.admit().await
    }

    /// Finds the agent's ready revision and checks, without taking it, that the agent has a
    /// place under `maxConcurrent`. Nothing of the request is needed yet: a request that
    /// cannot run (404, 503, 429) is refused before its body is read, and a slow body holds
    /// no place while it arrives.
    pub async fn route(&self, namespace: &str, name: &str) -> Result<Route, DispatchError> {
        if self.inner.shutdown.is_cancelled() {
            return Err(DispatchError::ShuttingDown);
        }
        let not_found = || {
            let key = (namespace.to_string(), name.to_string());
            match self.inner.pulls.lock().expect("pulls map").get(&key) {
                Some(image) => DispatchError::NotReady {
                    namespace: namespace.to_string(),
                    name: name.to_string(),
                    reason: format!("its image {image} is being pulled; retry shortly"),
                },
                None => DispatchError::AgentNotFound {
                    namespace: namespace.to_string(),
                    name: name.to_string(),
                },
            }
        };
        let key = (namespace.to_string(), name.to_string());
        let agent = match self.inner.agents.get(&key) {
            Ok(agent) => agent,
            Err(generation) => {
                let agent = self
                    .inner
                    .store
                    .get_agent(namespace, name)
                    .await?
                    .ok_or_else(not_found)?;
                let task = match Resource::from_stored(&agent.spec) {
                    Ok(Resource::TaskAgent(task)) => task,
                    Ok(Resource::DaemonAgent(_)) => {
                        return Err(DispatchError::NotATask {
                            namespace: namespace.to_string(),
                            name: name.to_string(),
                        });
                    }
                    _ => return Err(not_found()),
                };
                let revision = ready_revision(namespace, name, agent.latest_revision)?;
                let shape = RevisionShape::from_revision(&revision)?;
                let pool = worker_pool(
                    &self.inner.store,
                    namespace,
                    name,
                    &task.spec.worker_pool_ref,
                )
                .await?;
                let resolved = Arc::new(ResolvedAgent {
                    spec: task.spec,
                    revision,
                    shape,
                    pool,
                });
                self.inner
                    .agents
                    .put(key.clone(), generation, resolved.clone());
                resolved
            }
        };
        // Inside an execution's span, its events from here on name the revision too.
        tracing::Span::current().record("revision", tracing::field::display(&agent.revision.name));
        let limit = agent.spec.max_concurrent;
        if limit > 0 && self.active(namespace, name) >= limit {
            clrk_metrics::global().refused(&agent.spec.worker_pool_ref, MAX_CONCURRENT);
            return Err(too_many(namespace, name, limit));
        }
        Ok(Route {
            dispatcher: self.clone(),
            key,
            agent,
        })
    }
}

/// An agent found ready for an invocation; [`Route::admit`] takes its places.
pub struct Route {
    dispatcher: Dispatcher,
    key: (String, String),
    agent: Arc<ResolvedAgent>,
}

impl Route {
    /// Takes a place under the agent's `maxConcurrent` (429 when none is left) and one of its
    /// worker pool's (waiting in the pool's bounded queue, else 429).
    pub async fn admit(self) -> Result<Admission, DispatchError> {
        let Route {
            dispatcher,
            key: (namespace, name),
            agent,
        } = self;
        let pool_name = &agent.spec.worker_pool_ref;
        let mut slot = dispatcher
            .acquire(&namespace, &name, agent.spec.max_concurrent)
            .inspect_err(|_| clrk_metrics::global().refused(pool_name, MAX_CONCURRENT))?;
        let workers = dispatcher.inner.workers.workers_in_pool(pool_name).await?;
        let limit = agent
            .pool
            .max_executions_per_worker
            .saturating_mul(workers.max(1));
        slot.worker = dispatcher
            .inner
            .capacity
            .admit(pool_name, limit, QUEUE_WAIT)
            .await
            .map_err(|refused| {
                let (limit, why, reason) = match refused {
                    Refused::QueueFull { limit, queue } => {
                        (limit, format!("its queue of {queue} is full"), "queue_full")
                    }
                    Refused::Waited { limit } => (
                        limit,
                        format!("no slot freed within {}s", QUEUE_WAIT.as_secs()),
                        "queue_timeout",
                    ),
                };
                clrk_metrics::global().refused(pool_name, reason);
                DispatchError::WorkerBusy {
                    pool: pool_name.clone(),
                    limit,
                    why,
                }
            })?;
        Ok(Admission {
            dispatcher,
            agent,
            slot,
            body: None,
        })
    }
}

/// An invocation whose agent is known and whose places are held; [`Admission::start`] runs
/// it. Dropping it gives the places back.
pub struct Admission {
    dispatcher: Dispatcher,
    agent: Arc<ResolvedAgent>,
    slot: Slot,
    body: Option<BodyPermit>,
}

impl Admission {
    /// Keeps the request body's share of [`Dispatcher::body_budget`] as long as its envelope
    /// is held: until the agent has read it from stdin, or (Metadata mode, where the agent may
    /// fetch it any time) until the execution ends.
    pub fn hold_body(&mut self, permit: BodyPermit) {
        self.body = Some(permit);
    }

    /// Whether the agent's stdout goes to its caller as it is written
    /// (`spec.streaming.enabled`), rather than held until it exits.
    pub fn streams_output(&self) -> bool {
        self.agent.spec.streaming.enabled
    }

    /// Starts the execution of `inv` (for the agent admitted) in the background, in the
    /// current span (the caller's [`execution_span`]).
    pub async fn start(self, inv: Invocation) -> Result<Started, DispatchError> {
        let Admission {
            dispatcher,
            agent,
            slot,
            body,
        } = self;
        if dispatcher.inner.shutdown.is_cancelled() {
            return Err(DispatchError::ShuttingDown);
        }
        debug_assert_eq!((inv.namespace.clone(), inv.name.clone()), slot.key);
        let (task, revision, pool) = (&agent.spec, &agent.revision, &agent.pool);
        let trigger = Trigger {
            execution_id: inv.execution_id.clone(),
            namespace: inv.namespace.clone(),
            name: inv.name.clone(),
            revision: revision.name.clone(),
            subject: inv.trigger.clone(),
            request: inv.request,
            time: Utc::now(),
        };
        let envelope = trigger.envelope()?;
        let spec_timeout = task.timeout.0;
        let mut trace = inv.trace;
        trace.admitted();
        let order = ExecutionOrder {
            execution_id: inv.execution_id,
            namespace: inv.namespace,
            agent: inv.name,
            revision: revision.name.clone(),
            trigger: inv.trigger.unwrap_or_else(|| "http".to_string()),
            started_at: trigger.time,
            shape: agent.shape.clone(),
            runtime: pool.runtime,
            pids_limit: pool.pids_limit(),
            runtime_flags: pool.runtime_flags(),
            max_concurrent: task.max_concurrent,
            timeout: inv.timeout.map_or(spec_timeout, |t| t.min(spec_timeout)),
            log_limit: LogLimit::from_spec(task.log_limit.as_ref()),
            envelope,
            trace: Some(trace),
        };
        dispatcher
            .inner
            .workers
            .execute(&task.worker_pool_ref, pool, order, body, Box::new(slot))
            .await
    }
}

impl Dispatcher {
    /// Refuses new invocations and stops every execution in flight (their sandboxes are
    /// stopped and deleted); returns when all are recorded or after `deadline`.
    pub async fn shutdown(&self, deadline: Duration) {
        self.inner.shutdown.cancel();
        self.inner.workers.shutdown(deadline).await;
    }

    /// Stops every execution of an agent (its sandboxes are stopped and deleted), each
    /// recorded as failed with `reason` (e.g. "stopped: the agent was deleted"). Returns how
    /// many were stopped.
    pub async fn stop_agent(&self, namespace: &str, name: &str, reason: &str) -> usize {
        self.inner.workers.stop_agent(namespace, name, reason).await
    }

    fn acquire(&self, namespace: &str, name: &str, limit: u32) -> Result<Slot, DispatchError> {
        let key = (namespace.to_string(), name.to_string());
        let mut active = self.inner.active.lock().expect("active map");
        let count = active.entry(key.clone()).or_insert(0);
        if limit > 0 && *count >= limit {
            return Err(too_many(namespace, name, limit));
        }
        *count += 1;
        Ok(Slot {
            dispatcher: self.clone(),
            key,
            worker: None,
        })
    }
}

fn too_many(namespace: &str, name: &str, limit: u32) -> DispatchError {
    DispatchError::TooManyExecutions {
        namespace: namespace.to_string(),
        name: name.to_string(),
        limit,
    }
}

fn ready_revision(
    namespace: &str,
    name: &str,
    latest: Option<Revision>,
) -> Result<Revision, DispatchError> {
    let not_ready = |reason: String| DispatchError::NotReady {
        namespace: namespace.to_string(),
        name: name.to_string(),
        reason,
    };
    let revision = latest.ok_or_else(|| not_ready("it has no revision yet".into()))?;
    match revision.state {
        RevisionState::Ready => Ok(revision),
        state => Err(not_ready(format!(
            "revision {} is {state:?}{}",
            revision.name,
            revision
                .reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        ))),
    }
}

/// An image pull in progress for an agent, forgotten when dropped.
pub struct PullGuard {
    dispatcher: Dispatcher,
    key: (String, String),
}

impl Drop for PullGuard {
    fn drop(&mut self) {
        let mut pulls = self.dispatcher.inner.pulls.lock().expect("pulls map");
        pulls.remove(&self.key);
    }
}

/// One unit of an agent's `maxConcurrent` and of its worker pool's
/// `maxExecutionsPerWorker`, released when the execution ends.
struct Slot {
    dispatcher: Dispatcher,
    key: (String, String),
    worker: Option<OwnedSemaphorePermit>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut active = self.dispatcher.inner.active.lock().expect("active map");
        if let Some(count) = active.get_mut(&self.key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                active.remove(&self.key);
            }
        }
    }
}
