//! Cron times of scheduled TaskAgents, the claims of their ticks, and supervision state of
//! DaemonAgents (SPECIFICATION §8).

use super::{Store, dispatch};
use chrono::{DateTime, Utc};

use crate::{DaemonState, ScheduleTimes, StoreError};

impl Store {
    /// Replaces the daemon's state. The agent must exist.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = clrk_store::Store::open(&dir.path().join("clrk.db")).unwrap();
    /// use clrk_store::{DaemonPhase, DaemonState};
    /// let state = DaemonState {
    ///     revision: "bot-00001".into(), phase: DaemonPhase::Pending, restart_count: 0,
    ///     up_since: None, run_id: None, last_exit_code: None, reason: None,
    ///     restart_delay_ms: None, next_restart_at: None,
    /// };
    /// // No agent `bot` has been applied yet.
    /// assert!(store.set_daemon_state("default", "bot", &state).await.is_err());
    /// assert_eq!(store.daemon_state("default", "bot").await.unwrap(), None);
    /// # }
    /// ```
    pub async fn set_daemon_state(
        &self,
        namespace: &str,
        name: &str,
        state: &DaemonState,
    ) -> Result<(), StoreError> {
        dispatch!(self.set_daemon_state(namespace, name, state))
    }

    /// The daemon's state, or `None` when the supervisor never ran it (or it does not exist).
    pub async fn daemon_state(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<DaemonState>, StoreError> {
        dispatch!(self.daemon_state(namespace, name))
    }

    /// Replaces the agent's cron times. The agent must exist.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = clrk_store::Store::open(&dir.path().join("clrk.db")).unwrap();
    /// let times = clrk_store::ScheduleTimes::default();
    /// assert!(store.set_schedule_times("default", "nightly", &times).await.is_err());
    /// # }
    /// ```
    pub async fn set_schedule_times(
        &self,
        namespace: &str,
        name: &str,
        times: &ScheduleTimes,
    ) -> Result<(), StoreError> {
        dispatch!(self.set_schedule_times(namespace, name, times))
    }

    /// The agent's cron times; all `None` when it never had a schedule or does not exist.
    pub async fn schedule_times(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<ScheduleTimes, StoreError> {
        dispatch!(self.schedule_times(namespace, name))
    }

    /// Claims cron tick `tick` of the agent before it fires: `true` when this call is the
    /// first to claim it (the caller fires it), `false` when the tick was claimed already (by
    /// another server that leads cron, or leads it too for a moment). So a tick fires at most
    /// once across every process sharing the store. Claims older than
    /// [`CRON_CLAIMS_KEPT`](crate::CRON_CLAIMS_KEPT) before `tick` are deleted on the way; all
    /// of an agent's go with it. The agent must exist.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = clrk_store::Store::open(&dir.path().join("clrk.db")).unwrap();
    /// let tick = "2026-01-01T10:00:00Z".parse().unwrap();
    /// // No agent `nightly` has been applied yet.
    /// assert!(store.claim_cron_tick("default", "nightly", tick).await.is_err());
    /// # }
    /// ```
    pub async fn claim_cron_tick(
        &self,
        namespace: &str,
        name: &str,
        tick: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        dispatch!(self.claim_cron_tick(namespace, name, tick))
    }
}
