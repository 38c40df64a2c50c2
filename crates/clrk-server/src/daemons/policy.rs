//! The pure rules of daemon supervision (SPECIFICATION §8): whether an exited process (or one
//! whose worker was lost) is restarted, and after what back-off.

use std::time::Duration;

use clrk_api::RestartPolicy;

/// A run at least this long resets the back-off.
pub const BACKOFF_RESET_AFTER: Duration = Duration::from_secs(10);
/// The longest back-off.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// What follows an exit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterExit {
    /// Start the process again.
    Restart,
    /// Stay down, for this reason.
    Stop(String),
}

/// `min(60 s, 1 s·2^n)` for the `n`-th consecutive short run (0-based).
///
/// ```
/// use clrk_server::daemons::policy::backoff;
/// assert_eq!(backoff(0).as_secs(), 1);
/// assert_eq!(backoff(3).as_secs(), 8);
/// assert_eq!(backoff(40).as_secs(), 60);
/// ```
pub fn backoff(short_runs: u32) -> Duration {
    let secs = 1u64.checked_shl(short_runs).unwrap_or(u64::MAX);
    Duration::from_secs(secs).min(MAX_BACKOFF)
}

/// Whether a process that exited with `exit_code` after `restarts` restarts is started again.
///
/// ```
/// use clrk_api::RestartPolicy;
/// use clrk_server::daemons::policy::{AfterExit, after_exit};
/// assert_eq!(after_exit(RestartPolicy::Always, 0, 5, 0), AfterExit::Restart);
/// assert!(matches!(after_exit(RestartPolicy::OnFailure, 0, 0, 0), AfterExit::Stop(_)));
/// ```
pub fn after_exit(
    policy: RestartPolicy,
    exit_code: i32,
    restarts: u32,
    max_restarts: u32,
) -> AfterExit {
    let exited = format!("exited with code {exit_code}");
    match policy {
        RestartPolicy::Never => {
            return AfterExit::Stop(format!("{exited}; restartPolicy is Never"));
        }
        RestartPolicy::OnFailure if exit_code == 0 => {
            return AfterExit::Stop(format!("{exited}; restartPolicy is OnFailure"));
        }
        RestartPolicy::OnFailure | RestartPolicy::Always => {}
    }
    if max_restarts > 0 && restarts >= max_restarts {
        return AfterExit::Stop(format!("{exited}; maxRestarts ({max_restarts}) reached"));
    }
    AfterExit::Restart
}

/// Whether a daemon whose worker was lost while it ran (taken over by another worker) is
/// started again: as after a failed exit, the restarts so far counting.
///
/// ```
/// use clrk_api::RestartPolicy;
/// use clrk_server::daemons::policy::{AfterExit, after_lost_worker};
/// assert_eq!(after_lost_worker(RestartPolicy::OnFailure, 3, 0), AfterExit::Restart);
/// assert!(matches!(after_lost_worker(RestartPolicy::Never, 0, 0), AfterExit::Stop(_)));
/// ```
pub fn after_lost_worker(policy: RestartPolicy, restarts: u32, max_restarts: u32) -> AfterExit {
    let lost = "the worker running it was lost";
    if policy == RestartPolicy::Never {
        return AfterExit::Stop(format!("{lost}; restartPolicy is Never"));
    }
    if max_restarts > 0 && restarts >= max_restarts {
        return AfterExit::Stop(format!("{lost}; maxRestarts ({max_restarts}) reached"));
    }
    AfterExit::Restart
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_one_second_up_to_a_minute() {
        let secs: Vec<u64> = (0..8).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }

    #[test]
    fn each_policy_decides_on_the_exit_code() {
        use RestartPolicy::*;
        assert_eq!(after_exit(Always, 0, 0, 0), AfterExit::Restart);
        assert_eq!(after_exit(Always, 1, 0, 0), AfterExit::Restart);
        assert_eq!(after_exit(OnFailure, 1, 0, 0), AfterExit::Restart);
        assert_eq!(
            after_exit(OnFailure, 0, 0, 0),
            AfterExit::Stop("exited with code 0; restartPolicy is OnFailure".into())
        );
        assert_eq!(
            after_exit(Never, 1, 0, 0),
            AfterExit::Stop("exited with code 1; restartPolicy is Never".into())
        );
    }

    #[test]
    fn max_restarts_stops_after_that_many_restarts() {
        use RestartPolicy::*;
        assert_eq!(after_exit(Always, 1, 1, 2), AfterExit::Restart);
        assert_eq!(
            after_exit(Always, 1, 2, 2),
            AfterExit::Stop("exited with code 1; maxRestarts (2) reached".into())
        );
        assert_eq!(after_exit(Always, 1, 1000, 0), AfterExit::Restart);
    }

    #[test]
    fn a_lost_worker_counts_as_a_failure() {
        use RestartPolicy::*;
        assert_eq!(after_lost_worker(Always, 5, 0), AfterExit::Restart);
        assert_eq!(after_lost_worker(OnFailure, 1, 2), AfterExit::Restart);
        assert_eq!(
            after_lost_worker(OnFailure, 2, 2),
            AfterExit::Stop("the worker running it was lost; maxRestarts (2) reached".into())
        );
        assert_eq!(
            after_lost_worker(Never, 0, 0),
            AfterExit::Stop("the worker running it was lost; restartPolicy is Never".into())
        );
    }
}
