//! `WorkerPool.spec.maxExecutionsPerWorker`: how many TaskAgent executions of a pool's agents
//! this worker runs at once. An invocation over it waits in a bounded queue for a slot; when
//! the queue is full, or the wait runs out, it is refused (429) rather than piling up.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Waiting invocations per slot of the pool.
const QUEUE_PER_SLOT: usize = 4;
/// How long a queued invocation waits for a slot.
pub(crate) const QUEUE_WAIT: Duration = Duration::from_secs(30);

struct PoolSlots {
    limit: u32,
    slots: Arc<Semaphore>,
    waiting: Arc<AtomicUsize>,
}

/// Why an invocation did not get a slot.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    QueueFull { limit: u32, queue: usize },
    Waited { limit: u32 },
}

/// The execution slots of every worker pool on this worker.
#[derive(Default)]
pub(crate) struct WorkerCapacity {
    pools: Mutex<HashMap<String, PoolSlots>>,
}

impl WorkerCapacity {
    /// A slot of `pool`, whose limit is `limit` (0: unlimited, no slot needed), waiting up to
    /// `wait` in the queue.
    pub(crate) async fn admit(
        &self,
        pool: &str,
        limit: u32,
        wait: Duration,
    ) -> Result<Option<OwnedSemaphorePermit>, Refused> {
        if limit == 0 {
            return Ok(None);
        }
        let (slots, waiting) = {
            let mut pools = self.pools.lock().expect("worker capacity");
            let entry = pools.entry(pool.to_string()).or_insert_with(|| PoolSlots {
                limit,
                slots: Arc::new(Semaphore::new(limit as usize)),
                waiting: Arc::default(),
            });
            if entry.limit != limit {
                // A re-applied pool: new executions count against the new limit; the ones
                // running release their slots into the old one.
                *entry = PoolSlots {
                    limit,
                    slots: Arc::new(Semaphore::new(limit as usize)),
                    waiting: Arc::default(),
                };
            }
            (entry.slots.clone(), entry.waiting.clone())
        };
        if let Ok(permit) = slots.clone().try_acquire_owned() {
            return Ok(Some(permit));
        }
        let queue = limit as usize * QUEUE_PER_SLOT;
        if waiting.fetch_add(1, Ordering::SeqCst) >= queue {
            waiting.fetch_sub(1, Ordering::SeqCst);
            return Err(Refused::QueueFull { limit, queue });
        }
        let queued = clrk_metrics::global().queued(pool);
        let permit = tokio::time::timeout(wait, slots.acquire_owned()).await;
        drop(queued);
        waiting.fetch_sub(1, Ordering::SeqCst);
        match permit {
            Ok(Ok(permit)) => Ok(Some(permit)),
            _ => Err(Refused::Waited { limit }),
        }
    }
}

impl WorkerCapacity {
    /// Executions running under the pool's limit, and invocations queued for a slot.
    pub(crate) fn usage(&self, pool: &str) -> (u32, usize) {
        let pools = self.pools.lock().expect("worker capacity");
        pools.get(pool).map_or((0, 0), |p| {
            let free = p.slots.available_permits() as u32;
            (
                p.limit.saturating_sub(free),
                p.waiting.load(Ordering::SeqCst),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn excess_waits_in_a_bounded_queue_then_is_refused() {
        let capacity = Arc::new(WorkerCapacity::default());
        let long = Duration::from_secs(60);
        assert_eq!(
            capacity.admit("p", 0, long).await.unwrap().map(|_| ()),
            None
        );
        let first = capacity.admit("p", 1, long).await.unwrap().unwrap();
        // Four may wait for the one slot; the fifth is refused at once.
        let mut queued = Vec::new();
        for _ in 0..QUEUE_PER_SLOT {
            let capacity = capacity.clone();
            queued.push(tokio::spawn(async move {
                capacity.admit("p", 1, long).await.map(drop)
            }));
        }
        while capacity.pools.lock().unwrap()["p"]
            .waiting
            .load(Ordering::SeqCst)
            < QUEUE_PER_SLOT
        {
            tokio::task::yield_now().await;
        }
        assert_eq!(
            capacity.admit("p", 1, long).await.map(drop),
            Err(Refused::QueueFull {
                limit: 1,
                queue: QUEUE_PER_SLOT
            })
        );
        // Each released slot lets one waiter in.
        drop(first);
        for waiter in queued {
            assert_eq!(waiter.await.unwrap(), Ok(()));
        }
        // A wait that runs out is refused too.
        let held = capacity.admit("p", 1, long).await.unwrap();
        assert_eq!(
            capacity
                .admit("p", 1, Duration::from_millis(10))
                .await
                .map(drop),
            Err(Refused::Waited { limit: 1 })
        );
        drop(held);
    }
}
