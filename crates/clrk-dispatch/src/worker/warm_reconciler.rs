//! The loop that keeps warm pools at their size: each pass reads what the stored agents ask
//! for, lets [`WarmPools::reconcile`] plan it against what the pools hold, and carries the
//! plan out (removes what it discards, starts its refills). It drains every pool at shutdown.

use std::collections::HashMap;
use std::time::Instant;

use clrk_api::{DeliveryMode, Resource, RuntimeName};
use clrk_sandbox::Network;
use clrk_store::RevisionState;

use crate::pools::worker_pool;
use crate::revision::RevisionShape;
use crate::worker::Worker;
use crate::worker::launcher::SandboxRequest;
use crate::worker::warm_pool::{AgentKey, DesiredPool, Generation, RECHECK, Refill, remove};
use crate::worker::warm_share::share;

/// What a pool needs to start one of its sandboxes, besides what the plan compares.
#[derive(Clone)]
struct Desired {
    pool: DesiredPool,
    shape: RevisionShape,
    runtime: RuntimeName,
}

impl Worker {
    /// Starts the loop that keeps warm pools filled; it drains them at shutdown.
    pub fn start_warm_pools(&self) {
        let worker = self.clone();
        self.inner.warm.tasks.spawn(async move {
            loop {
                let next = worker.reconcile_warm_pools().await;
                tokio::select! {
                    () = worker.inner.warm.wake.notified() => {}
                    () = tokio::time::sleep(next) => {}
                    () = worker.inner.shutdown.cancelled() => break,
                }
            }
            let warm = &worker.inner.warm;
            for sandbox in warm.drain_all() {
                warm.tasks.spawn(remove(sandbox));
            }
        });
    }

    /// One pass: drain, recycle and refill. Returns when the next pass is due at the latest.
    async fn reconcile_warm_pools(&self) -> std::time::Duration {
        let desired = match self.desired_pools().await {
            Ok(desired) => desired,
            Err(error) => {
                tracing::warn!(%error, "cannot read the agents' warm pools");
                return RECHECK;
            }
        };
        let wanted = desired
            .iter()
            .map(|(key, d)| (key.clone(), d.pool.clone()))
            .collect();
        let warm = &self.inner.warm;
        let (plan, discard) = warm.reconcile(&wanted, Instant::now());
        for sandbox in discard {
            warm.tasks.spawn(remove(sandbox));
        }
        for (key, step) in plan.pools {
            for _ in 0..step.start {
                let want = desired[&key].clone();
                warm.tasks.spawn(self.clone().refill(key.clone(), want));
            }
        }
        plan.next
    }

    /// Starts one sandbox for a pool and adds it if the pool still wants it.
    async fn refill(self, key: AgentKey, want: Desired) {
        let warm = &self.inner.warm;
        let generation = &want.pool.generation;
        let refill = match warm.refills.acquire().await {
            Ok(_permit) if !self.inner.shutdown.is_cancelled() => {
                let started = self
                    .inner
                    .launcher
                    .start(SandboxRequest {
                        kind: "TaskAgent",
                        namespace: &key.0,
                        agent: &key.1,
                        revision: &generation.revision,
                        run: None,
                        id_base: &format!("warm-{}", key.1),
                        shape: &want.shape,
                        runtime: want.runtime,
                        pids_limit: generation.pids_limit,
                        runtime_flags: &generation.runtime_flags,
                        network: Network::None,
                        run_span: None,
                        steps: None,
                    })
                    .await
                    .map_err(|e| e.to_string());
                match started {
                    Ok(sandbox) => Refill::Started(Box::new(sandbox)),
                    Err(reason) => Refill::Failed(reason),
                }
            }
            _ => Refill::Skipped,
        };
        let shutting_down = self.inner.shutdown.is_cancelled();
        if let Some(sandbox) = warm.refilled(&key, generation, refill, shutting_down) {
            remove(sandbox).await;
        }
        warm.wake.notify_one();
    }

    /// Every TaskAgent that wants a pool, with its latest revision if that one is ready.
    async fn desired_pools(&self) -> Result<HashMap<AgentKey, Desired>, String> {
        let mut desired = HashMap::new();
        let store = &self.inner.store;
        let agents = store.list_agents(None).await.map_err(|e| e.to_string())?;
        // A worker of a cluster keeps its share of the agents of its pool.
        let identity = self.inner.identity.get();
        let workers = match identity {
            Some(_) => store.list_workers().await.map_err(|e| e.to_string())?,
            None => Vec::new(),
        };
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
            let pool_name = &spec.worker_pool_ref;
            let size = match identity {
                Some(me) if !me.serves(pool_name) => continue,
                Some(me) => share(spec.warm_pool_size as usize, pool_name, &me.name, &workers),
                None => spec.warm_pool_size as usize,
            };
            // No share: the pool is not wanted here, and what it holds is drained.
            if size == 0 {
                continue;
            }
            let (Ok(shape), Ok(pool)) = (
                RevisionShape::from_revision(&revision),
                worker_pool(
                    &self.inner.store,
                    &agent.namespace,
                    &agent.name,
                    &spec.worker_pool_ref,
                )
                .await,
            ) else {
                continue;
            };
            let runtime = pool.runtime;
            desired.insert(
                (agent.namespace.clone(), agent.name.clone()),
                Desired {
                    pool: DesiredPool {
                        generation: Generation::of(
                            &revision.name,
                            self.inner.launcher.runtime(runtime),
                            pool.pids_limit(),
                            &pool.runtime_flags(),
                            shape.sandbox_reuse,
                        ),
                        size,
                        idle_ttl: spec.warm_pool_idle_ttl.0,
                    },
                    shape,
                    runtime,
                },
            );
        }
        Ok(desired)
    }
}
