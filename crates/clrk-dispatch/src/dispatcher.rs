//! The dispatcher: turns an invocation into an execution on the agent's latest ready
//! revision, runs it in a fresh sandbox and reports its stdout and outcome as events.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use clrk_api::{DeliveryMode, Resource, RuntimeName, WorkerPoolSpec};
use clrk_egress::{Egress, Registration, SandboxIdentity};
use clrk_image::ImageStore;
use clrk_sandbox::{Network, Runtime, Sandbox};
use clrk_store::{
    ExecutionEnd, ExecutionStatus, NewExecution, Revision, RevisionState, Start, Store,
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::{Notify, OwnedSemaphorePermit, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::agent_cache::{AgentCache, ResolvedAgent};
use crate::body::{BodyBudget, BodyPermit};
use crate::envelope::{RequestData, Trigger};
use crate::error::DispatchError;
use crate::launch::{self, EgressLaunch, sandbox_id};
use crate::logs::{ExecutionLog, LogBus, LogLimit};
use crate::metadata::{AgentResponse, MetadataService};
use crate::revision::RevisionShape;
use crate::warm_pool::{Generation, WarmPools};
use crate::worker_capacity::{QUEUE_WAIT, Refused, WorkerCapacity};

/// Why a Metadata-mode execution that exited 0 without answering failed (and what its
/// caller's 502 says).
pub const NO_RESPONSE: &str =
    "the agent exited 0 without posting a response to $CLRK_METADATA_URL/response";
/// SIGTERM-to-SIGKILL grace when an execution is stopped (SPECIFICATION §4).
pub const STOP_GRACE: Duration = Duration::from_secs(5);
const STDOUT_CHUNK: usize = 64 * 1024;
/// Bytes of request bodies (and Metadata-mode answers) held in memory at once, all executions
/// together; beyond it new bodies are refused with 503 until some are released.
const BODY_BUDGET: usize = 256 * 1024 * 1024;
/// Chunks buffered between the agent and a slow caller before the agent's writes block.
const STDOUT_QUEUE: usize = 8;

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
}

/// What happens during an execution, in order: stdout chunks, then one `Finished`.
#[derive(Debug)]
pub enum ExecEvent {
    Stdout(Bytes),
    /// Metadata mode: what the agent posted to `/v1/response`.
    Response(AgentResponse),
    Finished(Outcome),
}

/// How an execution ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Exited(i32),
    /// Stopped at its timeout; the duration is the timeout that applied.
    TimedOut(Duration),
    /// It never ran or was stopped by clrk (sandbox failure, shutdown).
    Failed(String),
    /// Metadata mode: it exited 0 without posting a response.
    NoResponse,
}

/// An execution that has been accepted; its events arrive on `events`.
pub struct Started {
    pub execution_id: String,
    pub revision: String,
    pub source: String,
    pub events: mpsc::Receiver<ExecEvent>,
}

/// Settings of the dispatcher.
#[derive(Clone)]
pub struct DispatcherConfig {
    /// Host paths masked inside host-rootfs sandboxes.
    pub masked_paths: Vec<PathBuf>,
    /// The egress gateway agents with `egressRefs` go through; without one they reach nothing.
    pub egress: Option<Egress>,
}

/// Runs executions. Cloning shares the same dispatcher.
#[derive(Clone)]
pub struct Dispatcher {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) store: Store,
    pub(crate) images: Arc<ImageStore>,
    runsc: Runtime,
    runc: Runtime,
    logs: LogBus,
    pub(crate) config: DispatcherConfig,
    active: Mutex<HashMap<(String, String), u32>>,
    /// Executions in flight: id → (namespace, agent, how to stop it).
    live: Mutex<HashMap<String, (String, String, CancellationToken)>>,
    /// Why an execution was stopped, recorded as its failure reason.
    stop_reasons: Mutex<HashMap<String, String>>,
    pub(crate) shutdown: CancellationToken,
    drained: Notify,
    metadata: MetadataService,
    pub(crate) warm: WarmPools,
    agents: AgentCache,
    capacity: WorkerCapacity,
    /// Agents whose image an apply is pulling before their first revision exists: (namespace,
    /// name) → image. Invocations of them get 503, not 404.
    pulls: Mutex<HashMap<(String, String), String>>,
    /// Request bodies held in memory at once (ingress requests and agents' responses).
    bodies: BodyBudget,
}

impl Dispatcher {
    pub fn new(
        store: Store,
        images: Arc<ImageStore>,
        runsc: Runtime,
        runc: Runtime,
        logs: LogBus,
        config: DispatcherConfig,
    ) -> Dispatcher {
        let bodies = BodyBudget::new(BODY_BUDGET);
        Dispatcher {
            inner: Arc::new(Inner {
                store,
                images,
                runsc,
                runc,
                logs,
                config,
                active: Mutex::new(HashMap::new()),
                live: Mutex::new(HashMap::new()),
                stop_reasons: Mutex::new(HashMap::new()),
                shutdown: CancellationToken::new(),
                drained: Notify::new(),
                metadata: MetadataService::new(bodies.clone()),
                pulls: Mutex::new(HashMap::new()),
                warm: WarmPools::new(),
                agents: AgentCache::default(),
                capacity: WorkerCapacity::default(),
                bodies,
            }),
        }
    }

    /// The metadata service Metadata-mode executions are registered with; the server serves
    /// its router on the metadata addresses.
    pub fn metadata(&self) -> &MetadataService {
        &self.inner.metadata
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
        self.inner.warm.ready_count(namespace, name)
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
        self.inner.warm.reconcile_soon();
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
                let Ok(Resource::TaskAgent(task)) = Resource::from_stored(&agent.spec) else {
                    return Err(not_found());
                };
                let revision = ready_revision(namespace, name, agent.latest_revision)?;
                let shape = RevisionShape::from_revision(&revision)?;
                let (runtime, pool) = self
                    .pool_for(namespace, name, &task.spec.worker_pool_ref)
                    .await?;
                let resolved = Arc::new(ResolvedAgent {
                    spec: task.spec,
                    revision,
                    shape,
                    runtime,
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
        let mut slot = dispatcher.acquire(&namespace, &name, agent.spec.max_concurrent)?;
        slot.worker = dispatcher
            .inner
            .capacity
            .admit(pool_name, agent.pool.max_executions_per_worker, QUEUE_WAIT)
            .await
            .map_err(|refused| {
                let (limit, why) = match refused {
                    Refused::QueueFull { limit, queue } => {
                        (limit, format!("its queue of {queue} is full"))
                    }
                    Refused::Waited { limit } => (
                        limit,
                        format!("no slot freed within {}s", QUEUE_WAIT.as_secs()),
                    ),
                };
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
        let this = &dispatcher;
        let (task, revision, pool) = (&agent.spec, &agent.revision, &agent.pool);
        let (shape, runtime) = (agent.shape.clone(), agent.runtime.clone());
        let warm = match shape.delivery_mode() {
            DeliveryMode::Stdin => this.inner.warm.take(
                &(inv.namespace.clone(), inv.name.clone()),
                &Generation::of(&revision.name, &runtime, pool.pids_limit()),
            ),
            _ => None,
        };

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

        this.inner
            .store
            .start_execution(&NewExecution {
                id: inv.execution_id.clone(),
                namespace: inv.namespace.clone(),
                agent: inv.name.clone(),
                revision: revision.name.clone(),
                trigger: inv.trigger.clone().unwrap_or_else(|| "http".to_string()),
                started_at: trigger.time,
                start: if warm.is_some() {
                    Start::Warm
                } else {
                    Start::Cold
                },
                worker: None,
            })
            .await
            .map_err(|e| match e {
                clrk_store::StoreError::DuplicateExecution(id) => {
                    DispatchError::DuplicateExecution(id)
                }
                other => DispatchError::Store(other),
            })?;

        let spec_timeout = task.timeout.0;
        let timeout = inv.timeout.map_or(spec_timeout, |t| t.min(spec_timeout));
        let cancel = this.inner.shutdown.child_token();
        this.inner.live.lock().expect("live map").insert(
            inv.execution_id.clone(),
            (inv.namespace.clone(), inv.name.clone(), cancel.clone()),
        );

        // A warm sandbox learns whose execution it now serves.
        if let Some(registration) = warm.as_ref().and_then(|s| s.attachment::<Registration>()) {
            registration.identity().set_execution(&inv.execution_id);
        }
        let (tx, rx) = mpsc::channel(STDOUT_QUEUE);
        let shape_mode = shape.delivery_mode();
        let run = Run {
            revision: revision.name.clone(),
            dispatcher: this.clone(),
            execution_id: inv.execution_id.clone(),
            namespace: inv.namespace.clone(),
            agent: inv.name.clone(),
            mode: shape.delivery_mode(),
            shape,
            runtime,
            pids_limit: pool.pids_limit(),
            envelope: Handover::new(shape_mode, envelope, body),
            timeout,
            log_limit: LogLimit::from_spec(task.log_limit.as_ref()),
            cancel,
        };
        tokio::spawn(run.run(tx, slot, warm).in_current_span());
        Ok(Started {
            execution_id: inv.execution_id,
            revision: revision.name.clone(),
            source: trigger.source(),
            events: rx,
        })
    }
}

impl Dispatcher {
    /// Stops every execution in flight (their sandboxes are stopped and deleted) and refuses
    /// new ones; returns when all are recorded or after `deadline`.
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
        let live = self.inner.live.lock().expect("live map");
        let mut reasons = self.inner.stop_reasons.lock().expect("stop reasons");
        let mut stopped = 0;
        for (id, (ns, agent, cancel)) in live.iter() {
            if ns == namespace && agent == name {
                reasons.insert(id.clone(), reason.to_string());
                cancel.cancel();
                stopped += 1;
            }
        }
        stopped
    }

    /// Starts a sandbox running `shape` on the runtime of worker pool `pool`, for a caller
    /// that supervises the process itself (the daemon supervisor). The caller owns the
    /// sandbox: it must stop or remove it. Errors say why, for users.
    #[allow(clippy::too_many_arguments)]
    pub async fn start_sandbox(
        &self,
        namespace: &str,
        name: &str,
        pool: &str,
        revision: &str,
        shape: &RevisionShape,
        run_id: &str,
    ) -> Result<Sandbox, String> {
        let (runtime, pool) = self
            .pool_for(namespace, name, pool)
            .await
            .map_err(|e| e.to_string())?;
        let identity = SandboxIdentity::new(
            "DaemonAgent",
            namespace,
            name,
            revision,
            launch::gateways(shape),
            Some(run_id.to_owned()),
        );
        launch::start_sandbox(
            &self.inner.images,
            &runtime,
            pool.pids_limit(),
            shape,
            sandbox_id(run_id),
            &self.inner.config.masked_paths,
            Network::None,
            self.egress_launch(identity),
        )
        .await
    }

    /// The egress side of a launch, when this dispatcher has a gateway.
    pub(crate) fn egress_launch(&self, identity: SandboxIdentity) -> Option<EgressLaunch<'_>> {
        self.inner
            .config
            .egress
            .as_ref()
            .map(|egress| EgressLaunch { egress, identity })
    }

    /// The agent's worker pool and its runtime (`runsc` unless the pool says `runc`).
    pub(crate) async fn pool_for(
        &self,
        namespace: &str,
        name: &str,
        pool_name: &str,
    ) -> Result<(Runtime, WorkerPoolSpec), DispatchError> {
        let pool = match self.inner.store.get_pool(pool_name).await? {
            Some(pool) => serde_json::from_value::<WorkerPoolSpec>(
                pool.spec.get("spec").cloned().unwrap_or(pool.spec.clone()),
            )
            .unwrap_or_default(),
            None if pool_name == "default" => WorkerPoolSpec::default(),
            None => {
                return Err(DispatchError::NotReady {
                    namespace: namespace.to_string(),
                    name: name.to_string(),
                    reason: format!(
                        "worker pool {pool_name:?} does not exist: apply a WorkerPool named {pool_name}"
                    ),
                });
            }
        };
        let runtime = match pool.runtime {
            RuntimeName::Runc => self.inner.runc.clone(),
            _ => self.inner.runsc.clone(),
        };
        Ok((runtime, pool))
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

/// How an execution's envelope reaches its agent, with the request body's share of the body
/// budget, released when the envelope is.
enum Handover {
    /// Stdin mode: the newline-terminated JSON, taken once by the writer, so it is freed as
    /// soon as the agent has read it.
    Stdin(Mutex<Option<(Vec<u8>, Option<BodyPermit>)>>),
    /// Metadata mode: served on request until the execution ends.
    Metadata {
        envelope: serde_json::Value,
        _body: Option<BodyPermit>,
    },
}

impl Handover {
    fn new(mode: DeliveryMode, envelope: serde_json::Value, body: Option<BodyPermit>) -> Handover {
        match mode {
            DeliveryMode::Metadata => Handover::Metadata {
                envelope,
                _body: body,
            },
            _ => {
                let mut bytes = serde_json::to_vec(&envelope).expect("an envelope serialises");
                bytes.push(b'\n');
                Handover::Stdin(Mutex::new(Some((bytes, body))))
            }
        }
    }

    /// The stdin bytes, once; `None` in Metadata mode or when already taken.
    fn take_stdin(&self) -> Option<(Vec<u8>, Option<BodyPermit>)> {
        match self {
            Handover::Stdin(bytes) => bytes.lock().expect("stdin envelope").take(),
            Handover::Metadata { .. } => None,
        }
    }

    /// The envelope the metadata service serves (`null` in Stdin mode, which has none).
    fn metadata(&self) -> &serde_json::Value {
        static NONE: serde_json::Value = serde_json::Value::Null;
        match self {
            Handover::Metadata { envelope, .. } => envelope,
            Handover::Stdin(_) => &NONE,
        }
    }
}

struct Run {
    dispatcher: Dispatcher,
    execution_id: String,
    revision: String,
    namespace: String,
    agent: String,
    shape: RevisionShape,
    runtime: Runtime,
    pids_limit: u32,
    mode: DeliveryMode,
    envelope: Handover,
    timeout: Duration,
    log_limit: LogLimit,
    cancel: CancellationToken,
}

impl Run {
    /// Runs the execution in `warm` (a sandbox taken from the pool) or a new sandbox.
    async fn run(self, tx: mpsc::Sender<ExecEvent>, slot: Slot, warm: Option<Sandbox>) {
        let started = tokio::time::Instant::now();
        let (outcome, sandbox) = self.execute(&tx, started + self.timeout, warm).await;
        self.record(&outcome).await;
        // The execution is over for the caller: a next request must not be refused while this
        // sandbox is being deleted.
        drop(slot);
        tracing::info!(outcome = ?outcome,
            elapsed_ms = started.elapsed().as_millis() as u64, "execution finished");
        let _ = tx.send(ExecEvent::Finished(outcome)).await;
        if let Some(mut sandbox) = sandbox
            && let Err(error) = sandbox.remove().await
        {
            tracing::warn!(%error, sandbox = %sandbox.id, "could not delete sandbox");
        }
        let inner = &self.dispatcher.inner;
        inner
            .live
            .lock()
            .expect("live map")
            .remove(&self.execution_id);
        // A stop that came too late to matter leaves its reason behind.
        inner
            .stop_reasons
            .lock()
            .expect("stop reasons")
            .remove(&self.execution_id);
        inner.drained.notify_waiters();
    }

    /// Runs the sandbox to its end; returns the outcome and, when it exited by itself, the
    /// sandbox still to be deleted (deleted after the caller has its answer).
    async fn execute(
        &self,
        tx: &mpsc::Sender<ExecEvent>,
        deadline: tokio::time::Instant,
        warm: Option<Sandbox>,
    ) -> (Outcome, Option<Sandbox>) {
        let mut sandbox = match warm {
            Some(sandbox) => sandbox,
            None => match self.start().await {
                Ok(sandbox) => sandbox,
                Err(reason) => return (Outcome::Failed(reason), None),
            },
        };
        let metadata = self.mode == DeliveryMode::Metadata;
        let stdin = sandbox.take_stdin();
        let envelope = self.envelope.take_stdin();
        tokio::spawn(
            async move {
                // Metadata mode closes stdin at once; an agent that exits without reading its
                // input closes the pipe: not an error. The envelope and its body's share of the
                // budget are released once written.
                if let (Some(mut stdin), Some((envelope, _permit))) = (stdin, envelope) {
                    let _ = stdin.write_all(&envelope).await;
                    let _ = stdin.shutdown().await;
                }
            }
            .in_current_span(),
        );
        // Its streams share one limit; the marker is written once both have ended.
        let log = self.log();
        let mut pumps = Vec::new();
        if let Some(stderr) = sandbox.take_stderr() {
            pumps.push(log.pump(stderr, "stderr"));
        }
        let mut stdout = sandbox.take_stdout();
        if metadata && let Some(out) = stdout.take() {
            pumps.push(log.pump(out, "stdout"));
        }
        let (registration, responder) = match (metadata, sandbox.addresses()) {
            (true, Some(addresses)) => {
                let (registration, answer) = self.dispatcher.inner.metadata.register(
                    &[IpAddr::V4(addresses.v4), IpAddr::V6(addresses.v6)],
                    self.envelope.metadata().clone(),
                );
                let tx = tx.clone();
                let responder = tokio::spawn(async move {
                    match answer.await {
                        Ok(response) => {
                            let _ = tx.send(ExecEvent::Response(response)).await;
                            true
                        }
                        Err(_) => false,
                    }
                });
                (Some(registration), Some(responder))
            }
            _ => (None, None),
        };

        enum End {
            Exited(i32),
            Deadline,
            Cancelled,
            Broken(String),
        }
        let end = tokio::select! {
            result = async {
                if let Some(stdout) = stdout {
                    forward_stdout(stdout, tx).await;
                }
                sandbox.wait().await
            } => match result {
                Ok(code) => End::Exited(code),
                Err(e) => End::Broken(e.to_string()),
            },
            () = tokio::time::sleep_until(deadline) => End::Deadline,
            () = self.cancel.cancelled() => End::Cancelled,
        };
        let outcome = match end {
            End::Exited(code) => Outcome::Exited(code),
            End::Deadline => {
                self.stop(&mut sandbox).await;
                Outcome::TimedOut(self.timeout)
            }
            End::Cancelled => {
                self.stop(&mut sandbox).await;
                let reason = self
                    .dispatcher
                    .inner
                    .stop_reasons
                    .lock()
                    .expect("stop reasons")
                    .remove(&self.execution_id);
                Outcome::Failed(reason.unwrap_or_else(|| "stopped: clrk is shutting down".into()))
            }
            End::Broken(reason) => {
                self.stop(&mut sandbox).await;
                Outcome::Failed(format!("lost track of the sandbox: {reason}"))
            }
        };
        for pump in pumps {
            // Output reaches EOF once every process of the sandbox is gone.
            let _ = tokio::time::timeout(Duration::from_secs(5), pump).await;
        }
        drop(log);
        // Once unregistered the responder learns whether an answer came.
        drop(registration);
        let responded = match responder {
            Some(responder) => responder.await.unwrap_or(false),
            None => !metadata,
        };
        let outcome = match outcome {
            Outcome::Exited(0) if !responded => Outcome::NoResponse,
            other => other,
        };
        match outcome {
            Outcome::Exited(_) | Outcome::NoResponse => (outcome, Some(sandbox)),
            _ => (outcome, None),
        }
    }

    async fn start(&self) -> Result<Sandbox, String> {
        let inner = &self.dispatcher.inner;
        // Only Metadata-mode agents and agents with egress need a network: the others stay
        // at `--network=none`, which is both safer and faster to start.
        let network = match self.mode {
            DeliveryMode::Metadata => Network::Metadata,
            _ => Network::None,
        };
        let identity = SandboxIdentity::new(
            "TaskAgent",
            &self.namespace,
            &self.agent,
            &self.revision,
            launch::gateways(&self.shape),
            Some(self.execution_id.clone()),
        );
        launch::start_sandbox(
            &inner.images,
            &self.runtime,
            self.pids_limit,
            &self.shape,
            sandbox_id(&self.execution_id),
            &inner.config.masked_paths,
            network,
            self.dispatcher.egress_launch(identity),
        )
        .await
    }

    /// The execution's log, under the agent's `spec.logLimit`.
    fn log(&self) -> ExecutionLog {
        self.dispatcher.inner.logs.execution(
            &self.namespace,
            &self.agent,
            &self.execution_id,
            self.log_limit.clone(),
        )
    }

    async fn stop(&self, sandbox: &mut Sandbox) {
        if let Err(error) = sandbox.stop(STOP_GRACE).await {
            tracing::error!(%error, sandbox = %sandbox.id, "could not stop sandbox");
        }
    }

    async fn record(&self, outcome: &Outcome) {
        let (status, exit_code, reason) = match outcome {
            Outcome::Exited(0) => (ExecutionStatus::Succeeded, Some(0), None),
            Outcome::Exited(code) => (
                ExecutionStatus::Failed,
                Some(*code),
                Some(format!("agent exited with code {code}")),
            ),
            Outcome::TimedOut(after) => (
                ExecutionStatus::TimedOut,
                None,
                Some(format!(
                    "execution timed out after {}",
                    clrk_api::GoDuration(*after)
                )),
            ),
            Outcome::Failed(reason) => (ExecutionStatus::Failed, None, Some(reason.clone())),
            Outcome::NoResponse => (ExecutionStatus::Failed, Some(0), Some(NO_RESPONSE.into())),
        };
        let end = ExecutionEnd {
            status,
            exit_code,
            reason,
            ended_at: Utc::now(),
        };
        if let Err(error) = self
            .dispatcher
            .inner
            .store
            .finish_execution(&self.execution_id, &end)
            .await
        {
            tracing::error!(%error, "could not record the end of an execution");
        }
    }
}

/// Copies stdout to the caller as it is written. A caller that went away does not stop the
/// agent: the rest of its output is read and dropped so it never blocks on a full pipe.
async fn forward_stdout(
    mut stdout: impl tokio::io::AsyncRead + Unpin,
    tx: &mpsc::Sender<ExecEvent>,
) {
    let mut caller_gone = false;
    loop {
        let mut buf = vec![0u8; STDOUT_CHUNK];
        match stdout.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                buf.truncate(n);
                if !caller_gone && tx.send(ExecEvent::Stdout(Bytes::from(buf))).await.is_err() {
                    caller_gone = true;
                }
            }
        }
    }
}
