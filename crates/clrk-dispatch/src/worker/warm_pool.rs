//! Warm pools (SPECIFICATION §3 `warmPoolSize`): sandboxes of an agent's latest revision started ahead
//! of requests, the agent already running and blocked reading stdin, so neither the sandbox's
//! boot nor the interpreter's start is on the request path. Each is used by one execution.
//!
//! This module holds the pools and decides what a reconcile pass does: [`plan`] is a pure
//! function of what the pools hold, what the stored agents ask for and the time. It refills
//! what was taken, recycles sandboxes idle past `warmPoolIdleTTL` or found dead, drains pools
//! whose revision (or runtime) is no longer the one to serve, and holds refills back after a
//! sandbox failed to start. The loop that reads the store and starts and removes sandboxes is
//! in `warm_reconciler`.
//!
//! With `spec.sandboxReuse` a sandbox comes back after its execution ([`WarmPools::give_back`])
//! until it has served `maxExecutions` or is `maxAge` old; while it serves one it is lent,
//! and counts as present, so that no refill replaces it. Only Stdin-mode agents are pooled: a Metadata-mode agent asks for
//! its event as soon as it starts, before any request exists.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use clrk_api::SandboxReuse;
use clrk_sandbox::{Runtime, RuntimeKind, Sandbox};
use tokio::sync::{Notify, Semaphore};
use tokio_util::task::TaskTracker;

/// How often pools are checked even when nothing calls for it (dead sandboxes, new agents).
pub(crate) const RECHECK: Duration = Duration::from_secs(2);
/// Refill back-off after a sandbox failed to start: `min(MAX, 1 s · 2^failures)`.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// (namespace, name).
pub(crate) type AgentKey = (String, String);

/// What a pool serves: the revision, and the runtime and process limit of the agent's worker
/// pool. A warm sandbox is only handed to an execution of the same generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Generation {
    pub(crate) revision: String,
    pub(crate) runtime: RuntimeKind,
    pub(crate) pids_limit: u32,
    pub(crate) runtime_flags: Vec<String>,
    /// The revision's `sandboxReuse`.
    pub(crate) reuse: Option<SandboxReuse>,
}

impl Generation {
    pub(crate) fn of(
        revision: &str,
        runtime: &Runtime,
        pids_limit: u32,
        runtime_flags: &[String],
        reuse: Option<SandboxReuse>,
    ) -> Self {
        Generation {
            revision: revision.to_string(),
            runtime: runtime.kind(),
            pids_limit,
            runtime_flags: runtime_flags.to_vec(),
            reuse,
        }
    }

    /// Whether `sandbox`, which just served an execution that ended by itself, may serve
    /// another of this generation: under `maxExecutions` and `maxAge`.
    pub(crate) fn serves_again(&self, sandbox: &Sandbox) -> bool {
        self.reuse.is_some_and(|reuse| {
            sandbox.reusable()
                && sandbox.executions() < reuse.max_executions
                && sandbox.age() < reuse.max_age.0
        })
    }
}

/// What the stored agents ask of one pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DesiredPool {
    pub(crate) generation: Generation,
    pub(crate) size: usize,
    pub(crate) idle_ttl: Duration,
}

/// One ready sandbox as a pass finds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ObservedSandbox {
    /// When it became ready.
    pub(crate) since: Instant,
    /// Its process is gone: it can serve nobody.
    pub(crate) exited: bool,
}

/// One pool as a pass finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ObservedPool {
    pub(crate) generation: Generation,
    /// Its ready sandboxes, oldest first.
    pub(crate) ready: Vec<ObservedSandbox>,
    /// Refills in flight.
    pub(crate) starting: usize,
    /// Reused sandboxes serving an execution, which come back after it.
    pub(crate) lent: usize,
    /// Set after a failed start: no refill before then.
    pub(crate) retry_at: Option<Instant>,
}

/// What to do to one wanted pool.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PoolPlan {
    /// Positions (in [`ObservedPool::ready`]) of the sandboxes to remove: idle past the TTL,
    /// or exited.
    pub(crate) discard: Vec<usize>,
    /// Sandboxes to start.
    pub(crate) start: usize,
    /// Its back-off is over and is forgotten.
    pub(crate) retry_over: bool,
}

/// What one pass does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Pools removed with all their ready sandboxes: the agent no longer wants one, or wants
    /// it for another generation (a new revision, another runtime). A wanted key is then
    /// planned from an empty pool of the new generation.
    pub(crate) drain: Vec<AgentKey>,
    /// Every wanted pool.
    pub(crate) pools: HashMap<AgentKey, PoolPlan>,
    /// When the next pass is due at the latest.
    pub(crate) next: Duration,
}

/// Decides one pass: given the pools as they are (`observed`), the pools the stored agents
/// want (`desired`) and `now`, what to drain, discard and start, and when to look again.
/// Idempotent: refills in flight count as present, so planning twice starts nothing twice.
pub(crate) fn plan(
    observed: &HashMap<AgentKey, ObservedPool>,
    desired: &HashMap<AgentKey, DesiredPool>,
    now: Instant,
) -> Plan {
    let mut drain: Vec<AgentKey> = observed
        .iter()
        .filter(|(key, pool)| {
            desired
                .get(*key)
                .is_none_or(|want| want.generation != pool.generation)
        })
        .map(|(key, _)| key.clone())
        .collect();
    drain.sort();
    let mut next = RECHECK;
    let mut pools = HashMap::new();
    for (key, want) in desired {
        let current = observed
            .get(key)
            .filter(|pool| pool.generation == want.generation);
        let mut step = PoolPlan::default();
        let (ready, starting, retry_at) = match current {
            Some(pool) => (
                pool.ready.as_slice(),
                pool.starting + pool.lent,
                pool.retry_at,
            ),
            None => (&[][..], 0, None),
        };
        let mut kept = 0;
        for (i, sandbox) in ready.iter().enumerate() {
            let idle = now.saturating_duration_since(sandbox.since);
            if idle >= want.idle_ttl || sandbox.exited {
                step.discard.push(i);
            } else {
                next = next.min(want.idle_ttl.checked_sub(idle).unwrap());
                kept += 1;
            }
        }
        match retry_at {
            Some(at) if at > now => next = next.min(at - now),
            _ => {
                step.retry_over = retry_at.is_some();
                step.start = want.size.saturating_sub(kept + starting);
            }
        }
        pools.insert(key.clone(), step);
    }
    Plan { drain, pools, next }
}

/// How long refills of a pool wait after its `failures`-th consecutive failed start
/// (0-based): `min(60 s, 1 s · 2^failures)`.
pub(crate) fn backoff(failures: u32) -> Duration {
    Duration::from_secs(1 << failures.min(6)).min(MAX_BACKOFF)
}

struct Ready {
    sandbox: Sandbox,
    since: Instant,
}

struct Pool {
    generation: Generation,
    /// Ready sandboxes the last pass wanted.
    wanted: usize,
    ready: VecDeque<Ready>,
    /// Refills in flight.
    starting: usize,
    /// Ids of its reused sandboxes serving an execution: a sandbox lent by a pool since
    /// drained counts for no other.
    lent: HashSet<String>,
    failures: u32,
    retry_at: Option<Instant>,
}

impl Pool {
    fn new(generation: Generation) -> Pool {
        Pool {
            generation,
            wanted: 0,
            ready: VecDeque::new(),
            starting: 0,
            lent: HashSet::new(),
            failures: 0,
            retry_at: None,
        }
    }
}

/// How a refill ended, for [`WarmPools::refilled`].
pub(crate) enum Refill {
    Started(Box<Sandbox>),
    Failed(String),
    /// Not attempted: clrk is shutting down.
    Skipped,
}

/// The warm sandboxes of every agent.
pub(crate) struct WarmPools {
    pools: Mutex<HashMap<AgentKey, Pool>>,
    pub(crate) wake: Notify,
    /// Signalled when a reused sandbox comes back ([`WarmPools::take_returning`]).
    returned: Notify,
    /// Refills starting at once: at most one per core, so that they cannot starve live
    /// requests.
    pub(crate) refills: Semaphore,
    /// The loop, refills and removals: shutdown waits for all of them.
    pub(crate) tasks: TaskTracker,
}

impl WarmPools {
    pub(crate) fn new() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        WarmPools {
            pools: Mutex::new(HashMap::new()),
            wake: Notify::new(),
            returned: Notify::new(),
            refills: Semaphore::new(cores),
            tasks: TaskTracker::new(),
        }
    }

    /// Takes the oldest ready sandbox of `generation` for this agent; dead ones met on the
    /// way are discarded, and so are reused ones past `maxAge`. An empty pool refills now;
    /// once a sandbox is taken, the caller asks for its replacement
    /// ([`WarmPools::reconcile_soon`]). A reused sandbox is lent: it counts as present until
    /// it comes back through [`WarmPools::give_back`] or [`WarmPools::loan_ended`].
    pub(crate) fn take(&self, key: &AgentKey, generation: &Generation) -> Option<Sandbox> {
        let mut dead = Vec::new();
        let taken = {
            let mut pools = self.pools.lock().expect("warm pools");
            let pool = pools.get_mut(key).filter(|p| &p.generation == generation)?;
            loop {
                let Some(mut ready) = pool.ready.pop_front() else {
                    break None;
                };
                let expired = generation
                    .reuse
                    .is_some_and(|reuse| ready.sandbox.age() >= reuse.max_age.0);
                if !ready.sandbox.has_exited() && !expired {
                    if ready.sandbox.reusable() {
                        pool.lent.insert(ready.sandbox.id.clone());
                    }
                    break Some(ready.sandbox);
                }
                dead.push(ready.sandbox);
            }
        };
        for sandbox in dead {
            tracing::info!(sandbox = %sandbox.id, "warm sandbox had exited or aged out, discarded");
            self.tasks.spawn(remove(sandbox));
        }
        if taken.is_none() {
            self.wake.notify_one();
        }
        taken
    }

    /// Puts a reused sandbox back into `key`'s pool after an execution that ended by itself,
    /// whether the pool lent it or it was started for the execution. Returns it when the pool
    /// does not want it (drained, of another generation, full, or clrk is shutting down), to
    /// be removed.
    pub(crate) fn give_back(
        &self,
        key: &AgentKey,
        generation: &Generation,
        sandbox: Sandbox,
        shutting_down: bool,
    ) -> Option<Sandbox> {
        let mut pools = self.pools.lock().expect("warm pools");
        let Some(pool) = pools.get_mut(key).filter(|p| &p.generation == generation) else {
            return Some(sandbox);
        };
        pool.lent.remove(&sandbox.id);
        if shutting_down || pool.ready.len() + pool.starting + pool.lent.len() >= pool.wanted {
            drop(pools);
            self.wake.notify_one();
            return Some(sandbox);
        }
        pool.ready.push_back(Ready {
            sandbox,
            since: Instant::now(),
        });
        drop(pools);
        self.returned.notify_waiters();
        None
    }

    /// [`WarmPools::take`], waiting up to `wait` for a reused sandbox to come back while the
    /// pool has lent some: one busy for a moment serves sooner, and for less, than a fresh
    /// sandbox would start.
    pub(crate) async fn take_returning(
        &self,
        key: &AgentKey,
        generation: &Generation,
        wait: Duration,
    ) -> Option<Sandbox> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let returned = self.returned.notified();
            tokio::pin!(returned);
            returned.as_mut().enable();
            if let Some(sandbox) = self.take(key, generation) {
                return Some(sandbox);
            }
            if generation.reuse.is_none() || self.lent(key, generation) == 0 {
                return None;
            }
            if tokio::time::timeout_at(deadline, returned).await.is_err() {
                return self.take(key, generation);
            }
        }
    }

    /// Reused sandboxes of `key`'s pool serving an execution.
    fn lent(&self, key: &AgentKey, generation: &Generation) -> usize {
        let pools = self.pools.lock().expect("warm pools");
        pools
            .get(key)
            .filter(|p| &p.generation == generation)
            .map_or(0, |p| p.lent.len())
    }

    /// Sandbox `id`, lent by `key`'s pool, will not come back (its execution timed out, was
    /// stopped or broke it, or it has served enough): the pool refills.
    pub(crate) fn loan_ended(&self, key: &AgentKey, generation: &Generation, id: &str) {
        let mut pools = self.pools.lock().expect("warm pools");
        if let Some(pool) = pools.get_mut(key).filter(|p| &p.generation == generation) {
            pool.lent.remove(id);
        }
        drop(pools);
        self.wake.notify_one();
        // Waiters stop waiting for it.
        self.returned.notify_waiters();
    }

    /// Ready sandboxes of this agent.
    pub(crate) fn ready_count(&self, namespace: &str, name: &str) -> u32 {
        let pools = self.pools.lock().expect("warm pools");
        pools
            .get(&(namespace.to_string(), name.to_string()))
            .map_or(0, |p| p.ready.len() as u32)
    }

    /// Asks the loop to reconcile now (agents applied or deleted).
    /// Every pool's ready sandboxes: (namespace, agent, revision, ready).
    pub(crate) fn ready_counts(&self) -> Vec<(String, String, String, u32)> {
        let pools = self.pools.lock().expect("warm pools");
        pools
            .iter()
            .filter(|(_, pool)| !pool.ready.is_empty())
            .map(|((namespace, agent), pool)| {
                (
                    namespace.clone(),
                    agent.clone(),
                    pool.generation.revision.clone(),
                    u32::try_from(pool.ready.len()).unwrap_or(u32::MAX),
                )
            })
            .collect()
    }

    /// Every pool's ready and wanted sandboxes: (namespace, agent, ready, wanted).
    pub(crate) fn sizes(&self) -> Vec<(String, String, i64, i64)> {
        let pools = self.pools.lock().expect("warm pools");
        pools
            .iter()
            .map(|((namespace, agent), pool)| {
                let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
                (
                    namespace.clone(),
                    agent.clone(),
                    count(pool.ready.len()),
                    count(pool.wanted),
                )
            })
            .collect()
    }

    pub(crate) fn reconcile_soon(&self) {
        self.wake.notify_one();
    }

    /// Plans a pass against `desired` and carries out its bookkeeping at once, under one
    /// lock: drained pools and discarded sandboxes leave the pools, refills count as
    /// starting. Returns the plan, the sandboxes to remove and the refills to start.
    pub(crate) fn reconcile(
        &self,
        desired: &HashMap<AgentKey, DesiredPool>,
        now: Instant,
    ) -> (Plan, Vec<Sandbox>) {
        let mut pools = self.pools.lock().expect("warm pools");
        let observed = pools
            .iter_mut()
            .map(|(key, pool)| {
                let ready = pool
                    .ready
                    .iter_mut()
                    .map(|r| ObservedSandbox {
                        since: r.since,
                        exited: r.sandbox.has_exited(),
                    })
                    .collect();
                let observed = ObservedPool {
                    generation: pool.generation.clone(),
                    ready,
                    starting: pool.starting,
                    lent: pool.lent.len(),
                    retry_at: pool.retry_at,
                };
                (key.clone(), observed)
            })
            .collect();
        let plan = plan(&observed, desired, now);
        let mut discard = Vec::new();
        for key in &plan.drain {
            if let Some(mut pool) = pools.remove(key) {
                discard.extend(pool.ready.drain(..).map(|r| r.sandbox));
            }
        }
        for (key, step) in &plan.pools {
            let pool = pools
                .entry(key.clone())
                .or_insert_with(|| Pool::new(desired[key].generation.clone()));
            let mut kept = VecDeque::with_capacity(pool.ready.len());
            for (position, ready) in pool.ready.drain(..).enumerate() {
                if step.discard.contains(&position) {
                    discard.push(ready.sandbox);
                } else {
                    kept.push_back(ready);
                }
            }
            pool.ready = kept;
            if step.retry_over {
                pool.retry_at = None;
            }
            pool.starting += step.start;
            pool.wanted = desired[key].size;
        }
        (plan, discard)
    }

    /// Records how a refill for `key`'s pool of `generation` ended. Returns a started sandbox
    /// the pool no longer wants (drained meanwhile, or clrk is shutting down), to be removed.
    pub(crate) fn refilled(
        &self,
        key: &AgentKey,
        generation: &Generation,
        refill: Refill,
        shutting_down: bool,
    ) -> Option<Sandbox> {
        let mut pools = self.pools.lock().expect("warm pools");
        let pool = pools.get_mut(key).filter(|p| &p.generation == generation);
        let Some(pool) = pool else {
            return match refill {
                Refill::Started(sandbox) => Some(*sandbox),
                _ => None,
            };
        };
        pool.starting -= 1;
        match refill {
            Refill::Started(sandbox) if !shutting_down => {
                pool.failures = 0;
                pool.ready.push_back(Ready {
                    sandbox: *sandbox,
                    since: Instant::now(),
                });
                drop(pools);
                self.returned.notify_waiters();
                None
            }
            Refill::Started(sandbox) => Some(*sandbox),
            Refill::Failed(reason) => {
                let wait = backoff(pool.failures);
                pool.failures += 1;
                pool.retry_at = Some(Instant::now() + wait);
                tracing::warn!(agent = %key.1, namespace = %key.0, %reason,
                    retry_in_s = wait.as_secs(), "a warm sandbox did not start");
                None
            }
            Refill::Skipped => None,
        }
    }

    /// Removes every pool; returns their ready sandboxes (at shutdown).
    pub(crate) fn drain_all(&self) -> Vec<Sandbox> {
        let mut pools = self.pools.lock().expect("warm pools");
        pools
            .drain()
            .flat_map(|(_, pool)| pool.ready.into_iter().map(|r| r.sandbox))
            .collect()
    }
}

/// A warm sandbox is blocked on stdin with nothing to lose: it is deleted outright.
pub(crate) async fn remove(mut sandbox: Sandbox) {
    if let Err(error) = sandbox.remove().await {
        tracing::warn!(%error, sandbox = %sandbox.id, "could not delete a warm sandbox");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(300);

    fn key(name: &str) -> AgentKey {
        ("default".to_string(), name.to_string())
    }

    fn generation(revision: &str) -> Generation {
        Generation {
            revision: revision.to_string(),
            runtime: RuntimeKind::Runsc,
            pids_limit: 0,
            runtime_flags: Vec::new(),
            reuse: None,
        }
    }

    fn want(revision: &str, size: usize) -> DesiredPool {
        DesiredPool {
            generation: generation(revision),
            size,
            idle_ttl: TTL,
        }
    }

    fn pool(revision: &str, ready: &[ObservedSandbox], starting: usize) -> ObservedPool {
        ObservedPool {
            generation: generation(revision),
            ready: ready.to_vec(),
            starting,
            lent: 0,
            retry_at: None,
        }
    }

    #[test]
    fn lent_reused_sandboxes_count_as_present() {
        let now = Instant::now();
        let mut observed = HashMap::new();
        let mut with_loans = pool("r1", &[fresh(now)], 0);
        with_loans.lent = 2;
        observed.insert(key("a"), with_loans);
        let desired = HashMap::from([(key("a"), want("r1", 4))]);
        // One ready, two serving executions and coming back: one more to start.
        assert_eq!(plan(&observed, &desired, now).pools[&key("a")].start, 1);
    }

    fn fresh(since: Instant) -> ObservedSandbox {
        ObservedSandbox {
            since,
            exited: false,
        }
    }

    #[test]
    fn a_new_pool_starts_its_whole_size() {
        let now = Instant::now();
        let desired = HashMap::from([(key("a"), want("a-1", 3))]);
        let plan = plan(&HashMap::new(), &desired, now);
        assert!(plan.drain.is_empty());
        assert_eq!(plan.pools[&key("a")].start, 3);
        assert_eq!(plan.next, RECHECK);
    }

    #[test]
    fn refills_in_flight_count_so_planning_twice_starts_nothing_twice() {
        let now = Instant::now();
        let desired = HashMap::from([(key("a"), want("a-1", 3))]);
        let observed = HashMap::from([(key("a"), pool("a-1", &[fresh(now)], 2))]);
        let plan = plan(&observed, &desired, now);
        assert_eq!(plan.pools[&key("a")], PoolPlan::default());
    }

    #[test]
    fn scaling_up_starts_the_difference() {
        let now = Instant::now();
        let desired = HashMap::from([(key("a"), want("a-1", 5))]);
        let observed = HashMap::from([(key("a"), pool("a-1", &[fresh(now), fresh(now)], 1))]);
        assert_eq!(plan(&observed, &desired, now).pools[&key("a")].start, 2);
    }

    #[test]
    fn scaling_down_starts_nothing_and_keeps_what_is_ready_until_idle() {
        let now = Instant::now();
        let desired = HashMap::from([(key("a"), want("a-1", 1))]);
        let observed = HashMap::from([(key("a"), pool("a-1", &[fresh(now), fresh(now)], 0))]);
        let plan = plan(&observed, &desired, now);
        assert_eq!(plan.pools[&key("a")], PoolPlan::default());
        assert!(plan.drain.is_empty());
    }

    #[test]
    fn a_pool_no_longer_wanted_is_drained() {
        let now = Instant::now();
        let observed = HashMap::from([(key("a"), pool("a-1", &[fresh(now)], 0))]);
        let plan = plan(&observed, &HashMap::new(), now);
        assert_eq!(plan.drain, vec![key("a")]);
        assert!(plan.pools.is_empty());
    }

    #[test]
    fn a_new_revision_drains_the_old_sandboxes_and_fills_from_empty() {
        let now = Instant::now();
        let desired = HashMap::from([(key("a"), want("a-2", 2))]);
        let observed = HashMap::from([(key("a"), pool("a-1", &[fresh(now), fresh(now)], 1))]);
        let plan = plan(&observed, &desired, now);
        assert_eq!(plan.drain, vec![key("a")]);
        let step = &plan.pools[&key("a")];
        assert!(
            step.discard.is_empty(),
            "drained sandboxes are not discarded twice"
        );
        assert_eq!(
            step.start, 2,
            "old refills in flight do not count for the new revision"
        );
    }

    #[test]
    fn another_runtime_is_another_generation() {
        let now = Instant::now();
        let mut runc = want("a-1", 1);
        runc.generation.runtime = RuntimeKind::Runc;
        let desired = HashMap::from([(key("a"), runc)]);
        let observed = HashMap::from([(key("a"), pool("a-1", &[fresh(now)], 0))]);
        let plan = plan(&observed, &desired, now);
        assert_eq!(plan.drain, vec![key("a")]);
        assert_eq!(plan.pools[&key("a")].start, 1);
    }

    #[test]
    fn idle_and_exited_sandboxes_are_replaced_and_the_next_pass_comes_at_the_next_expiry() {
        let now = Instant::now() + TTL + Duration::from_secs(10);
        let idle = fresh(now.checked_sub(TTL).unwrap());
        let dead = ObservedSandbox {
            since: now,
            exited: true,
        };
        let young = fresh(
            now.checked_sub(Duration::from_millis(TTL.as_millis() as u64 - 500))
                .unwrap(),
        );
        let desired = HashMap::from([(key("a"), want("a-1", 3))]);
        let observed = HashMap::from([(key("a"), pool("a-1", &[idle, dead, young], 0))]);
        let plan = plan(&observed, &desired, now);
        let step = &plan.pools[&key("a")];
        assert_eq!(step.discard, vec![0, 1]);
        assert_eq!(step.start, 2);
        assert_eq!(plan.next, Duration::from_millis(500));
    }

    #[test]
    fn failures_hold_refills_back_until_the_backoff_is_over() {
        let now = Instant::now();
        let desired = HashMap::from([(key("a"), want("a-1", 2))]);
        let mut backing_off = pool("a-1", &[], 0);
        backing_off.retry_at = Some(now + Duration::from_millis(700));
        let observed = HashMap::from([(key("a"), backing_off)]);

        let waiting = plan(&observed, &desired, now);
        assert_eq!(waiting.pools[&key("a")], PoolPlan::default());
        assert_eq!(waiting.next, Duration::from_millis(700));

        let later = plan(&observed, &desired, now + Duration::from_millis(700));
        let step = &later.pools[&key("a")];
        assert_eq!(step.start, 2);
        assert!(step.retry_over);
    }

    #[test]
    fn backoff_doubles_from_one_second_up_to_a_minute() {
        let secs: Vec<u64> = (0..9).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }
}
