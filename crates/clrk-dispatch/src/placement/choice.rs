//! Which worker an execution goes to (issue: warm first, then least loaded): a pure function
//! of what placement knows of the workers of the agent's pool.

use crate::link::remote::WorkerAddress;

/// One Ready worker of the agent's pool as placement sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub worker: WorkerAddress,
    /// Executions it may run at once.
    pub capacity: u32,
    /// Executions it runs now: its last report, plus what this server sent it since.
    pub running: u32,
    /// Warm sandboxes it holds of the revision to run.
    pub warm: u32,
}

/// The worker to run on: one holding a warm sandbox of the revision (the least loaded of
/// those), else the least loaded with room; `None` when every worker is full. Ties go to the
/// first in `candidates`, which placement keeps in a stable order.
pub fn choose(candidates: &[Candidate]) -> Option<&Candidate> {
    let room = |c: &&Candidate| c.running < c.capacity;
    candidates
        .iter()
        .filter(room)
        .filter(|c| c.warm > 0)
        .min_by_key(|c| c.running)
        .or_else(|| candidates.iter().filter(room).min_by_key(|c| c.running))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(name: &str, capacity: u32, running: u32, warm: u32) -> Candidate {
        Candidate {
            worker: WorkerAddress {
                name: name.into(),
                addr: "127.0.0.1:1".parse().unwrap(),
            },
            capacity,
            running,
            warm,
        }
    }

    fn chosen(candidates: &[Candidate]) -> Option<&str> {
        choose(candidates).map(|c| c.worker.name.as_str())
    }

    #[test]
    fn a_warm_worker_wins_over_an_idle_one() {
        let workers = [candidate("a", 8, 0, 0), candidate("b", 8, 5, 1)];
        assert_eq!(chosen(&workers), Some("b"));
    }

    #[test]
    fn among_warm_workers_the_least_loaded_wins() {
        let workers = [
            candidate("a", 8, 3, 2),
            candidate("b", 8, 1, 1),
            candidate("c", 8, 0, 0),
        ];
        assert_eq!(chosen(&workers), Some("b"));
    }

    #[test]
    fn without_warm_sandboxes_the_least_loaded_with_room_wins() {
        let workers = [
            candidate("a", 4, 4, 0),
            candidate("b", 8, 6, 0),
            candidate("c", 8, 2, 0),
        ];
        assert_eq!(chosen(&workers), Some("c"));
    }

    #[test]
    fn a_full_worker_is_skipped_even_when_warm() {
        let workers = [candidate("a", 2, 2, 3), candidate("b", 2, 1, 0)];
        assert_eq!(chosen(&workers), Some("b"));
    }

    #[test]
    fn nobody_when_all_are_full_or_there_are_none() {
        assert_eq!(chosen(&[candidate("a", 1, 1, 0)]), None);
        assert_eq!(chosen(&[]), None);
    }

    #[test]
    fn ties_go_to_the_first() {
        let workers = [candidate("a", 8, 1, 0), candidate("b", 8, 1, 0)];
        assert_eq!(chosen(&workers), Some("a"));
    }
}
