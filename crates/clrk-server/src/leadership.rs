//! Work that one process of a cluster does at a time (the lost-worker sweep, cron, each
//! daemon): try to lead it every so often, do it while leading, and stop at once when the
//! leadership is lost, since another process may lead it already.
//!
//! The leadership itself is the store's ([`Store::try_lead`]): a PostgreSQL advisory lock on a
//! connection of its own, or always held on SQLite, where one process owns the store.

use std::future::Future;
use std::time::Duration;

use clrk_store::Store;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

/// Tries to lead `name` every `retry` (the first try at once) until `stop`; each time it
/// leads, runs `work` with a token that is cancelled when the leadership is lost or `stop`
/// is. `work` must return soon after its token is cancelled; the leadership is given up once
/// it has returned, so nobody else leads while it still works. `work` returning by itself
/// also gives the leadership up, and the next try comes `retry` later.
pub async fn while_leading<W, F>(
    store: &Store,
    name: &str,
    retry: Duration,
    stop: &CancellationToken,
    mut work: W,
) where
    W: FnMut(CancellationToken) -> F,
    F: Future<Output = ()>,
{
    let mut attempts = tokio::time::interval(retry);
    attempts.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = attempts.tick() => {}
        }
        let leadership = match store.try_lead(name).await {
            Ok(Some(leadership)) => leadership,
            Ok(None) => continue,
            Err(error) => {
                tracing::warn!(leadership = name, %error, "cannot try to lead; retrying");
                continue;
            }
        };
        tracing::info!(leadership = name, "leading");
        let leading = stop.child_token();
        let working = work(leading.clone());
        tokio::pin!(working);
        tokio::select! {
            () = &mut working => {}
            () = leadership.lost() => {
                tracing::warn!(leadership = name, "lost the lead; another process may take it");
                leading.cancel();
                working.await;
            }
        }
        drop(leadership);
        if !stop.is_cancelled() {
            tracing::debug!(leadership = name, "no longer leading");
        }
    }
}
