//! How a cluster's workers split an agent's `warmPoolSize` (issue: warm pools are per cluster):
//! the Ready workers serving the agent's pool, in name order, take the size in turns, so
//! `warmPoolSize: 4` over three workers is 2, 1 and 1. A worker that is lost or draining drops
//! out of the order and the others' shares grow on their next pass; one not in the order (not
//! registered yet, draining) keeps none.

use clrk_store::{EVERY_POOL, WorkerRecord, WorkerState};

/// Who this worker is in the registry, and which pool's agents it serves (`*`: every pool).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerIdentity {
    pub name: String,
    pub pool: String,
}

impl WorkerIdentity {
    /// Whether it runs agents of `pool`.
    pub fn serves(&self, pool: &str) -> bool {
        self.pool == pool || self.pool == EVERY_POOL
    }
}

/// This worker's part of `size` warm sandboxes of an agent of `pool`, among `workers` (the
/// registry as last read).
pub fn share(size: usize, pool: &str, me: &str, workers: &[WorkerRecord]) -> usize {
    let mut serving: Vec<&str> = workers
        .iter()
        .filter(|w| w.state == WorkerState::Ready)
        .filter(|w| w.pool == pool || w.pool == EVERY_POOL)
        .map(|w| w.name.as_str())
        .collect();
    serving.sort_unstable();
    let Some(position) = serving.iter().position(|name| *name == me) else {
        return 0;
    };
    let n = serving.len();
    size / n + usize::from(position < size % n)
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;

    fn worker(name: &str, pool: &str, state: WorkerState) -> WorkerRecord {
        WorkerRecord {
            name: name.into(),
            pool: pool.into(),
            address: format!("{name}:7071"),
            capacity: 8,
            state,
            incarnation: "i".into(),
            started_at: Utc::now(),
            heartbeat_at: Utc::now(),
            running: 0,
            warm: 0,
        }
    }

    #[test]
    fn four_over_three_workers_is_two_one_one_and_sums_to_four() {
        let workers = [
            worker("c", "default", WorkerState::Ready),
            worker("a", "default", WorkerState::Ready),
            worker("b", "default", WorkerState::Ready),
        ];
        let shares: Vec<usize> = ["a", "b", "c"]
            .iter()
            .map(|me| share(4, "default", me, &workers))
            .collect();
        assert_eq!(shares, [2, 1, 1]);
    }

    #[test]
    fn a_lost_or_draining_worker_drops_out_and_the_rest_cover_its_share() {
        let workers = [
            worker("a", "default", WorkerState::Ready),
            worker("b", "default", WorkerState::Lost),
            worker("c", "default", WorkerState::Draining),
        ];
        assert_eq!(share(4, "default", "a", &workers), 4);
        assert_eq!(share(4, "default", "b", &workers), 0);
        assert_eq!(share(4, "default", "c", &workers), 0);
    }

    #[test]
    fn only_workers_of_the_pool_or_of_every_pool_share_it() {
        let workers = [
            worker("a", "gpu", WorkerState::Ready),
            worker("b", "default", WorkerState::Ready),
            worker("dev", EVERY_POOL, WorkerState::Ready),
        ];
        assert_eq!(share(3, "gpu", "a", &workers), 2);
        assert_eq!(share(3, "gpu", "dev", &workers), 1);
        assert_eq!(share(3, "gpu", "b", &workers), 0);
    }

    #[test]
    fn an_unregistered_worker_keeps_none_and_a_lone_one_keeps_all() {
        assert_eq!(share(4, "default", "a", &[]), 0);
        let alone = [worker("a", "default", WorkerState::Ready)];
        assert_eq!(share(4, "default", "a", &alone), 4);
        assert_eq!(share(0, "default", "a", &alone), 0);
    }
}
