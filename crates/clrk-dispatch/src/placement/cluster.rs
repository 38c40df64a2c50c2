//! The cluster's workers as placement sees them (`clrk server`): the Ready workers of each
//! pool and the warm sandboxes they reported, read from the store at most once a second, plus
//! what this server sent each since; and the choice of one for each execution.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clrk_link::LinkClient;
use clrk_store::{EVERY_POOL, Store, WorkerRecord, WorkerState};

use crate::body::BodyPermit;
use crate::error::DispatchError;
use crate::link::remote::{self, NotStarted, Sendable, WorkerAddress};
use crate::placement::choice::{Candidate, choose};
use crate::worker::Places;
use crate::worker::order::{ExecutionOrder, Started};

/// How old a view of the workers placement acts on may be.
const FRESH: Duration = Duration::from_secs(1);

/// Workers reached over the link. Cloning shares the same view.
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

struct Inner {
    client: LinkClient,
    store: Store,
    view: tokio::sync::Mutex<View>,
    /// Executions this server has in flight on each worker.
    sent: Mutex<HashMap<String, u32>>,
}

#[derive(Default)]
struct View {
    read_at: Option<Instant>,
    workers: Vec<WorkerRecord>,
    /// (worker, namespace, agent, revision) → ready warm sandboxes.
    warm: HashMap<(String, String, String, String), u32>,
}

/// What placement holds back from a worker that could not be reached.
fn take_places(held: Places) -> Places {
    match held.downcast::<(Places, InFlight)>() {
        Ok(pair) => pair.0,
        Err(other) => other,
    }
}

/// One execution in flight on a worker, counted until dropped.
struct InFlight {
    cluster: Cluster,
    worker: String,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut sent = self.cluster.inner.sent.lock().expect("sent map");
        if let Some(count) = sent.get_mut(&self.worker) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                sent.remove(&self.worker);
            }
        }
    }
}

impl Cluster {
    /// Placement onto the workers registered in `store`, reached with `client`.
    pub fn new(client: LinkClient, store: Store) -> Cluster {
        Cluster {
            inner: Arc::new(Inner {
                client,
                store,
                view: tokio::sync::Mutex::new(View::default()),
                sent: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Ready workers serving `pool` now.
    pub(crate) async fn ready_in_pool(&self, pool: &str) -> Result<u32, DispatchError> {
        let view = self.view().await?;
        let count = view
            .workers
            .iter()
            .filter(|w| w.state == WorkerState::Ready && serves(w, pool))
            .count();
        Ok(u32::try_from(count).unwrap_or(u32::MAX))
    }

    /// Warm sandboxes of the agent on every worker.
    pub(crate) fn warm(&self, namespace: &str, name: &str) -> u32 {
        let Ok(view) = self.inner.view.try_lock() else {
            return 0;
        };
        view.warm
            .iter()
            .filter(|((_, ns, agent, _), _)| ns == namespace && agent == name)
            .map(|(_, ready)| *ready)
            .sum()
    }

    /// Sends `order` to the best worker of `pool`, running at most `per_worker` executions
    /// on each (0: as many as each announced).
    pub(crate) async fn execute(
        &self,
        pool: &str,
        per_worker: u32,
        order: ExecutionOrder,
        body: Option<BodyPermit>,
        places: Places,
    ) -> Result<Started, DispatchError> {
        let sendable = Sendable::new(&order);
        drop(order);
        let mut places = places;
        let mut unreachable: Vec<String> = Vec::new();
        loop {
            let chosen = self
                .choose(pool, per_worker, &sendable, &unreachable)
                .await
                .map_err(|error| match (error, unreachable.last()) {
                    // Every worker with room was out of reach: say so, not that they are full.
                    (DispatchError::WorkerBusy { .. }, Some(worker)) => {
                        DispatchError::WorkerUnreachable {
                            worker: worker.clone(),
                            reason: "and no other worker of the pool has room".to_string(),
                        }
                    }
                    (error, _) => error,
                })?;
            *self
                .inner
                .sent
                .lock()
                .expect("sent map")
                .entry(chosen.name.clone())
                .or_insert(0) += 1;
            let in_flight = InFlight {
                cluster: self.clone(),
                worker: chosen.name.clone(),
            };
            let held: Places = Box::new((places, in_flight));
            match remote::execute(
                &self.inner.client,
                &self.inner.store,
                &chosen,
                &sendable,
                held,
            )
            .await
            {
                Ok(started) => {
                    // The worker has the order: the request body's memory is free.
                    drop(body);
                    return Ok(started);
                }
                Err((NotStarted::Undelivered(error), held)) => {
                    tracing::warn!(worker = %chosen.name, %error, "worker out of reach, trying another");
                    unreachable.push(chosen.name.clone());
                    places = take_places(held);
                }
                Err((NotStarted::Refused(error), _)) => return Err(error),
            }
        }
    }

    /// The worker for `order` among the Ready workers of `pool` not in `skip`.
    async fn choose(
        &self,
        pool: &str,
        per_worker: u32,
        order: &Sendable,
        skip: &[String],
    ) -> Result<WorkerAddress, DispatchError> {
        let view = self.view().await?;
        let sent = self.inner.sent.lock().expect("sent map").clone();
        let candidates: Vec<Candidate> = view
            .workers
            .iter()
            .filter(|w| w.state == WorkerState::Ready && serves(w, pool))
            .filter(|w| !skip.contains(&w.name))
            .filter_map(|w| {
                let addr: SocketAddr = w.address.parse().ok()?;
                let key = (
                    w.name.clone(),
                    order.namespace().to_string(),
                    order.agent().to_string(),
                    order.revision().to_string(),
                );
                Some(Candidate {
                    worker: WorkerAddress {
                        name: w.name.clone(),
                        addr,
                    },
                    // The pool's `maxExecutionsPerWorker` (0: none) holds below what the
                    // worker announced.
                    capacity: match per_worker {
                        0 => w.capacity,
                        limit => w.capacity.min(limit),
                    },
                    running: w.running.max(sent.get(&w.name).copied().unwrap_or(0)),
                    warm: view.warm.get(&key).copied().unwrap_or(0),
                })
            })
            .collect();
        if candidates.is_empty() && skip.is_empty() {
            return Err(DispatchError::NoWorker {
                pool: pool.to_string(),
            });
        }
        choose(&candidates)
            .map(|c| c.worker.clone())
            .ok_or_else(|| DispatchError::WorkerBusy {
                pool: pool.to_string(),
                limit: per_worker,
                why: "every worker is at it".to_string(),
            })
    }

    /// Asks every worker not lost to stop the agent's executions; returns how many stopped.
    pub(crate) async fn stop_agent(&self, namespace: &str, name: &str, reason: &str) -> usize {
        let workers: Vec<WorkerAddress> = match self.view().await {
            Ok(view) => view
                .workers
                .iter()
                .filter_map(|w| {
                    Some(WorkerAddress {
                        name: w.name.clone(),
                        addr: w.address.parse().ok()?,
                    })
                })
                .collect(),
            Err(_) => Vec::new(),
        };
        let stops = workers
            .iter()
            .map(|worker| remote::stop_agent(&self.inner.client, worker, namespace, name, reason));
        futures::future::join_all(stops)
            .await
            .into_iter()
            .filter_map(Result::ok)
            .sum()
    }

    /// The view, read again when older than [`FRESH`].
    async fn view(&self) -> Result<tokio::sync::MutexGuard<'_, View>, DispatchError> {
        let mut view = self.inner.view.lock().await;
        if view.read_at.is_none_or(|at| at.elapsed() >= FRESH) {
            let workers = self.inner.store.list_workers().await?;
            let warm = self.inner.store.warm_sandboxes().await?;
            // Lost workers run nothing; draining ones still finish what they run.
            view.workers = workers
                .into_iter()
                .filter(|w| w.state != WorkerState::Lost)
                .collect();
            view.warm = warm
                .into_iter()
                .map(|(worker, w)| ((worker, w.namespace, w.agent, w.revision), w.ready))
                .collect();
            view.read_at = Some(Instant::now());
        }
        Ok(view)
    }
}

/// Whether a worker takes executions of `pool`.
fn serves(worker: &WorkerRecord, pool: &str) -> bool {
    worker.pool == pool || worker.pool == EVERY_POOL
}
