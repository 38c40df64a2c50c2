//! The lost-worker sweep: one process of the cluster (the leader of [`SWEEP_LEADERSHIP`])
//! marks every worker that missed [`LOST_AFTER_HEARTBEATS`] heartbeats `Lost`, which fails
//! the executions it was running. The others try to lead every interval, so one takes over
//! within an interval of the leader going.
//!
//! Heartbeat times are written with the workers' clocks and compared with the leader's:
//! keep the machines' clocks synchronised (NTP) to well under the three intervals.

use std::time::Duration;

use chrono::{DateTime, Utc};
use clrk_store::Store;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

/// The leadership the sweep runs under.
pub const SWEEP_LEADERSHIP: &str = "clrk-sweep";
/// Heartbeat intervals a worker may miss before it is lost.
pub const LOST_AFTER_HEARTBEATS: u32 = 3;

/// A running sweep; [`LostWorkerSweep::stop`] ends it (and gives up leading).
pub struct LostWorkerSweep {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

/// Heartbeats older than this at `now` are a lost worker's: `now - 3 × interval`.
///
/// ```
/// use chrono::{TimeZone, Utc};
/// let now = Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 10).unwrap();
/// let cutoff = clrk_server::registry::lost_cutoff(now, std::time::Duration::from_secs(2));
/// assert_eq!(cutoff, Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 4).unwrap());
/// ```
pub fn lost_cutoff(now: DateTime<Utc>, interval: Duration) -> DateTime<Utc> {
    let grace = interval.saturating_mul(LOST_AFTER_HEARTBEATS);
    chrono::Duration::from_std(grace)
        .ok()
        .and_then(|grace| now.checked_sub_signed(grace))
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

impl LostWorkerSweep {
    /// Starts trying to lead [`SWEEP_LEADERSHIP`]; while leading, sweeps every `interval`
    /// (the workers' heartbeat interval).
    pub fn start(store: Store, interval: Duration) -> LostWorkerSweep {
        let stop = CancellationToken::new();
        let task = tokio::spawn(run(store, interval, stop.clone()));
        LostWorkerSweep { stop, task }
    }

    /// Stops sweeping and gives the leadership up.
    pub async fn stop(self) {
        self.stop.cancel();
        if let Err(error) = self.task.await {
            tracing::warn!(%error, "lost-worker sweep ended abnormally");
        }
    }
}

async fn run(store: Store, interval: Duration, stop: CancellationToken) {
    crate::leadership::while_leading(&store, SWEEP_LEADERSHIP, interval, &stop, |leading| {
        lead(&store, interval, leading)
    })
    .await;
}

/// Sweeps every interval until told to stop (stopped, or the leadership lost).
async fn lead(store: &Store, interval: Duration, leading: CancellationToken) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = leading.cancelled() => return,
            _ = ticks.tick() => sweep(store, interval).await,
        }
    }
}

async fn sweep(store: &Store, interval: Duration) {
    let cutoff = lost_cutoff(Utc::now(), interval);
    match store.mark_lost_workers(cutoff).await {
        Ok(lost) => {
            for worker in lost {
                tracing::warn!(%worker, heartbeat_before = %cutoff, reason = clrk_store::WORKER_LOST, "worker lost: no heartbeat; its running executions failed");
            }
        }
        Err(error) => tracing::warn!(%error, "lost-worker sweep failed; retrying"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cutoff_is_three_intervals_back_and_never_panics() {
        let now = DateTime::parse_from_rfc3339("2026-03-01T10:00:00.500Z")
            .unwrap()
            .to_utc();
        let cutoff = lost_cutoff(now, Duration::from_millis(2500));
        assert_eq!(cutoff.to_rfc3339(), "2026-03-01T09:59:53+00:00");
        assert_eq!(lost_cutoff(now, Duration::MAX), DateTime::<Utc>::MIN_UTC);
    }
}
