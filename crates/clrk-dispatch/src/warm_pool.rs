//! Warm pools (SPEC §3 `warmPoolSize`): sandboxes of an agent's latest revision started ahead
//! of requests, the agent already running and blocked reading stdin, so neither the sandbox's
//! boot nor the interpreter's start is on the request path. Each is used by one execution.
//!
//! One reconcile loop keeps every pool at its size, idempotently: given the stored agents and
//! what is ready, it refills what was taken, recycles sandboxes idle past `warmPoolIdleTTL`
//! or found dead, and drains pools whose revision (or runtime) is no longer the one to serve.
//! Refills start at most `REFILL_CONCURRENCY` sandboxes at once so that they cannot starve
//! live requests. Only Stdin-mode agents are pooled: a Metadata-mode agent asks for its event
//! as soon as it starts, before any request exists.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use clrk_api::{DeliveryMode, Resource};
use clrk_sandbox::{Network, Runtime, RuntimeKind, Sandbox};
use clrk_store::RevisionState;
use tokio::sync::{Notify, Semaphore};
use tokio_util::task::TaskTracker;

use crate::dispatcher::{Dispatcher, sandbox_id};
use crate::launch;
use crate::revision::RevisionShape;
use clrk_egress::SandboxIdentity;

/// How often pools are checked even when nothing calls for it (dead sandboxes, new agents).
const RECHECK: Duration = Duration::from_secs(2);
/// Refill back-off after a sandbox failed to start: `min(MAX, 1 s · 2^failures)`.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// (namespace, name).
type AgentKey = (String, String);

/// What a pool serves: the revision, and the runtime and process limit of the agent's worker
/// pool. A warm sandbox is only handed to an execution of the same generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Generation {
    pub(crate) revision: String,
    pub(crate) runtime: RuntimeKind,
    pub(crate) pids_limit: u32,
}

impl Generation {
    pub(crate) fn of(revision: &str, runtime: &Runtime, pids_limit: u32) -> Self {
        Generation {
            revision: revision.to_string(),
            runtime: runtime.kind(),
            pids_limit,
        }
    }
}

struct Ready {
    sandbox: Sandbox,
    since: Instant,
}

struct Pool {
    generation: Generation,
    ready: VecDeque<Ready>,
    /// Refills in flight.
    starting: usize,
    failures: u32,
    retry_at: Option<Instant>,
}

/// The warm sandboxes of every agent.
pub(crate) struct WarmPools {
    pools: Mutex<HashMap<AgentKey, Pool>>,
    wake: Notify,
    refills: Semaphore,
    /// The loop, refills and removals: shutdown waits for all of them.
    pub(crate) tasks: TaskTracker,
}

impl WarmPools {
    pub(crate) fn new() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        WarmPools {
            pools: Mutex::new(HashMap::new()),
            wake: Notify::new(),
            refills: Semaphore::new(cores),
            tasks: TaskTracker::new(),
        }
    }

    /// Takes the oldest ready sandbox of `generation` for this agent; dead ones met on the
    /// way are discarded. The pool is refilled in the background.
    pub(crate) fn take(&self, key: &AgentKey, generation: &Generation) -> Option<Sandbox> {
        let mut dead = Vec::new();
        let taken = {
            let mut pools = self.pools.lock().expect("warm pools");
            let pool = pools.get_mut(key).filter(|p| &p.generation == generation)?;
            loop {
                let Some(mut ready) = pool.ready.pop_front() else {
                    break None;
                };
                if !ready.sandbox.has_exited() {
                    break Some(ready.sandbox);
                }
                dead.push(ready.sandbox);
            }
        };
        for sandbox in dead {
            tracing::warn!(sandbox = %sandbox.id, agent = %key.1, "warm sandbox had exited, discarded");
            self.tasks.spawn(remove(sandbox));
        }
        self.wake.notify_one();
        taken
    }

    /// Ready sandboxes of this agent.
    pub(crate) fn ready_count(&self, namespace: &str, name: &str) -> u32 {
        let pools = self.pools.lock().expect("warm pools");
        pools
            .get(&(namespace.to_string(), name.to_string()))
            .map_or(0, |p| p.ready.len() as u32)
    }

    /// Asks the loop to reconcile now (agents applied or deleted).
    pub(crate) fn reconcile_soon(&self) {
        self.wake.notify_one();
    }
}

/// What the stored agents ask for.
#[derive(Clone)]
struct Desired {
    generation: Generation,
    shape: RevisionShape,
    runtime: Runtime,
    size: usize,
    idle_ttl: Duration,
}

impl Dispatcher {
    /// Starts the loop that keeps warm pools filled; it drains them at shutdown.
    pub fn start_warm_pools(&self) {
        let dispatcher = self.clone();
        self.inner.warm.tasks.spawn(async move {
            loop {
                let next = dispatcher.reconcile_warm_pools().await;
                tokio::select! {
                    _ = dispatcher.inner.warm.wake.notified() => {}
                    _ = tokio::time::sleep(next) => {}
                    _ = dispatcher.inner.shutdown.cancelled() => break,
                }
            }
            dispatcher.drain_warm_pools();
        });
    }

    /// One pass: drain, recycle and refill. Returns when the next pass is due at the latest.
    async fn reconcile_warm_pools(&self) -> Duration {
        let desired = match self.desired_pools().await {
            Ok(desired) => desired,
            Err(error) => {
                tracing::warn!(%error, "cannot read the agents' warm pools");
                return RECHECK;
            }
        };
        let warm = &self.inner.warm;
        let now = Instant::now();
        let mut next = RECHECK;
        let mut discard = Vec::new();
        let mut refills = Vec::new();
        {
            let mut pools = warm.pools.lock().expect("warm pools");
            pools.retain(|key, pool| {
                let keep = desired
                    .get(key)
                    .is_some_and(|d| d.generation == pool.generation);
                if !keep {
                    discard.extend(pool.ready.drain(..).map(|r| r.sandbox));
                }
                keep
            });
            for (key, want) in &desired {
                let pool = pools.entry(key.clone()).or_insert_with(|| Pool {
                    generation: want.generation.clone(),
                    ready: VecDeque::new(),
                    starting: 0,
                    failures: 0,
                    retry_at: None,
                });
                let mut kept = VecDeque::with_capacity(pool.ready.len());
                for mut ready in pool.ready.drain(..) {
                    let idle = now.duration_since(ready.since);
                    if idle >= want.idle_ttl || ready.sandbox.has_exited() {
                        discard.push(ready.sandbox);
                    } else {
                        next = next.min(want.idle_ttl - idle);
                        kept.push_back(ready);
                    }
                }
                pool.ready = kept;
                if let Some(at) = pool.retry_at {
                    if at > now {
                        next = next.min(at - now);
                        continue;
                    }
                    pool.retry_at = None;
                }
                let missing = want.size.saturating_sub(pool.ready.len() + pool.starting);
                pool.starting += missing;
                refills.extend(std::iter::repeat_n((key.clone(), want.clone()), missing));
            }
        }
        for sandbox in discard {
            warm.tasks.spawn(remove(sandbox));
        }
        for (key, want) in refills {
            warm.tasks.spawn(self.clone().refill(key, want));
        }
        next
    }

    /// Starts one sandbox for a pool and adds it if the pool still wants it.
    async fn refill(self, key: AgentKey, want: Desired) {
        let warm = &self.inner.warm;
        let started = match warm.refills.acquire().await {
            Ok(_permit) if !self.inner.shutdown.is_cancelled() => Some(
                launch::start_sandbox(
                    &self.inner.images,
                    &want.runtime,
                    want.generation.pids_limit,
                    &want.shape,
                    sandbox_id(&format!("warm-{}", key.1)),
                    &self.inner.config.masked_paths,
                    Network::None,
                    self.egress_launch(SandboxIdentity::new(
                        "TaskAgent",
                        &key.0,
                        &key.1,
                        &want.generation.revision,
                        launch::gateways(&want.shape),
                        None,
                    )),
                )
                .await,
            ),
            _ => None,
        };
        let leftover = {
            let mut pools = warm.pools.lock().expect("warm pools");
            let pool = pools
                .get_mut(&key)
                .filter(|p| p.generation == want.generation);
            match (pool, started) {
                (Some(pool), Some(Ok(sandbox))) if !self.inner.shutdown.is_cancelled() => {
                    pool.starting -= 1;
                    pool.failures = 0;
                    pool.ready.push_back(Ready {
                        sandbox,
                        since: Instant::now(),
                    });
                    None
                }
                (Some(pool), Some(Err(reason))) => {
                    pool.starting -= 1;
                    let backoff = Duration::from_secs(1 << pool.failures.min(6)).min(MAX_BACKOFF);
                    pool.failures += 1;
                    pool.retry_at = Some(Instant::now() + backoff);
                    tracing::warn!(agent = %key.1, namespace = %key.0, %reason,
                        retry_in_s = backoff.as_secs(), "a warm sandbox did not start");
                    None
                }
                (pool, started) => {
                    if let Some(pool) = pool {
                        pool.starting -= 1;
                    }
                    started.and_then(Result::ok)
                }
            }
        };
        if let Some(sandbox) = leftover {
            remove(sandbox).await;
        }
        warm.wake.notify_one();
    }

    /// Every TaskAgent that wants a pool, with its latest revision if that one is ready.
    async fn desired_pools(&self) -> Result<HashMap<AgentKey, Desired>, String> {
        let mut desired = HashMap::new();
        let agents = self
            .inner
            .store
            .list_agents(None)
            .await
            .map_err(|e| e.to_string())?;
        for agent in agents {
            let Ok(Resource::TaskAgent(task)) = Resource::from_stored(&agent.spec) else {
                continue;
            };
            let spec = &task.spec;
            let Some(revision) = agent.latest_revision else {
                continue;
            };
            if spec.warm_pool_size == 0
                || spec.delivery.mode != DeliveryMode::Stdin
                || revision.state != RevisionState::Ready
            {
                continue;
            }
            let (Ok(shape), Ok((runtime, pool))) = (
                RevisionShape::from_revision(&revision),
                self.pool_for(&agent.namespace, &agent.name, &spec.worker_pool_ref)
                    .await,
            ) else {
                continue;
            };
            desired.insert(
                (agent.namespace.clone(), agent.name.clone()),
                Desired {
                    generation: Generation::of(&revision.name, &runtime, pool.pids_limit()),
                    shape,
                    runtime,
                    size: spec.warm_pool_size as usize,
                    idle_ttl: spec.warm_pool_idle_ttl.0,
                },
            );
        }
        Ok(desired)
    }

    /// Removes every ready sandbox (at shutdown).
    fn drain_warm_pools(&self) {
        let warm = &self.inner.warm;
        let mut pools = warm.pools.lock().expect("warm pools");
        for (_, mut pool) in pools.drain() {
            for ready in pool.ready.drain(..) {
                warm.tasks.spawn(remove(ready.sandbox));
            }
        }
    }
}

/// A warm sandbox is blocked on stdin with nothing to lose: it is deleted outright.
async fn remove(mut sandbox: Sandbox) {
    if let Err(error) = sandbox.remove().await {
        tracing::warn!(%error, sandbox = %sandbox.id, "could not delete a warm sandbox");
    }
}
