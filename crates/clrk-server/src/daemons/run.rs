//! One daemon on one revision: start its process, feed its output to the logs, and restart
//! it per its policy until it is told to stop or this worker no longer leads it.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use clrk_api::{DaemonAgentSpec, Resource};
use clrk_dispatch::{LogLimit, RevisionShape, STOP_GRACE, Worker};
use clrk_sandbox::Sandbox;
use clrk_store::{
    DaemonPhase, DaemonState, ExecutionEnd, ExecutionStatus, Leadership, NewExecution, Revision,
    Store, StoreError,
};
use tokio_util::sync::CancellationToken;

use super::policy::{AfterExit, BACKOFF_RESET_AFTER, after_exit, after_lost_worker, backoff};

/// The trigger recorded on every daemon run.
pub const DAEMON_TRIGGER: &str = "daemon";
/// How long the log pumps may take to reach EOF once the process is gone.
const DRAIN_DEADLINE: Duration = Duration::from_secs(5);

/// The supervision of one daemon on one revision.
pub(crate) struct Daemon {
    pub store: Store,
    pub worker: Worker,
    pub namespace: String,
    pub name: String,
    pub revision: Revision,
    /// Cancelled when the agent is deleted, replaced by a new revision, or clrk stops.
    pub cancel: CancellationToken,
    /// Cancelled only when clrk stops, to tell that apart in the records.
    pub shutdown: CancellationToken,
    /// Cancelled (with `cancel`) when this worker lost the daemon's leadership: another
    /// worker may run it already, so the process is killed without grace and nothing but
    /// the run's own record is written.
    pub lost: CancellationToken,
    /// The worker's name on a cluster worker (`None` in `clrk dev`): runs are recorded with
    /// it, a run found `Running` in the store is a lost worker's and counts as a crash, and
    /// a stop hands the daemon over.
    pub cluster_worker: Option<String>,
}

/// How one process ended.
enum End {
    Exited(i32),
    /// Stopped at `maxLifetimeSeconds`; it exited with this code.
    Lifetime(i32),
    /// Stopped by clrk (delete, new revision, shutdown).
    Cancelled,
    /// Never started, or lost.
    Failed(String),
}

impl Daemon {
    /// [`Daemon::supervise`] while `leadership` holds; when it is lost, the daemon is stopped
    /// at once. The leadership is given up when this returns (unless a new revision's
    /// supervision took it over).
    pub async fn supervise_leading(
        self,
        previous: Option<tokio::task::JoinHandle<()>>,
        leadership: Arc<Leadership>,
    ) {
        let (cancel, lost) = (self.cancel.clone(), self.lost.clone());
        let (namespace, name) = (self.namespace.clone(), self.name.clone());
        let supervising = self.supervise(previous);
        tokio::pin!(supervising);
        tokio::select! {
            () = &mut supervising => {}
            () = leadership.lost() => {
                tracing::warn!(%namespace, daemon = %name, "lost the daemon's leadership; stopping it, another worker takes it over");
                lost.cancel();
                cancel.cancel();
                supervising.await;
            }
        }
    }

    /// Runs the daemon until its policy says it stays down or it is cancelled. `previous`,
    /// the supervision this one replaces, is waited for first, so two processes of one
    /// daemon never overlap.
    pub async fn supervise(self, previous: Option<tokio::task::JoinHandle<()>>) {
        if let Some(previous) = previous {
            let _ = previous.await;
        }
        if self.cancel.is_cancelled() {
            return;
        }
        let shape = match RevisionShape::from_revision(&self.revision) {
            Ok(shape) => shape,
            Err(error) => {
                tracing::error!(%error, revision = %self.revision.name, "daemon revision unreadable");
                return;
            }
        };
        let mut state = self.initial_state().await;
        if !self.take_over(&mut state).await {
            return;
        }
        let mut short_runs = 0u32;
        loop {
            let Some(spec) = self.spec().await else {
                return;
            };
            let run_id = uuid::Uuid::new_v4().to_string();
            state.phase = DaemonPhase::Pending;
            state.run_id = Some(run_id.clone());
            state.up_since = None;
            state.restart_delay_ms = None;
            state.next_restart_at = None;
            self.save(&state).await;
            let started_at = Utc::now();
            let end = self.run_once(&spec, &shape, &run_id, &mut state).await;
            let ran_for = (Utc::now() - started_at).to_std().unwrap_or_default();
            let exit_code = match &end {
                End::Cancelled => {
                    self.hand_over(&mut state).await;
                    return;
                }
                End::Exited(code) | End::Lifetime(code) => *code,
                End::Failed(_) => -1,
            };
            state.up_since = None;
            state.last_exit_code = (exit_code >= 0).then_some(exit_code);
            let decision = match &end {
                End::Failed(reason) => match after_exit(
                    spec.restart_policy,
                    1,
                    state.restart_count,
                    spec.max_restarts,
                ) {
                    AfterExit::Restart => AfterExit::Restart,
                    AfterExit::Stop(_) => AfterExit::Stop(reason.clone()),
                },
                _ => after_exit(
                    spec.restart_policy,
                    exit_code,
                    state.restart_count,
                    spec.max_restarts,
                ),
            };
            if let AfterExit::Stop(reason) = decision {
                tracing::info!(namespace = %self.namespace, daemon = %self.name, %reason, "daemon stopped");
                state.phase = DaemonPhase::Stopped;
                state.reason = Some(reason);
                self.save(&state).await;
                return;
            }
            if ran_for >= BACKOFF_RESET_AFTER {
                short_runs = 0;
            }
            let delay = backoff(short_runs);
            short_runs = short_runs.saturating_add(1);
            state.phase = if ran_for >= BACKOFF_RESET_AFTER {
                DaemonPhase::Pending
            } else {
                DaemonPhase::CrashLoopBackOff
            };
            state.reason = Some(match &end {
                End::Failed(reason) => reason.clone(),
                End::Lifetime(code) => format!(
                    "stopped after maxLifetimeSeconds ({}s), exited with code {code}",
                    spec.max_lifetime_seconds
                ),
                _ => format!("exited with code {exit_code}"),
            });
            state.restart_delay_ms = Some(delay.as_millis() as u64);
            state.next_restart_at = chrono::Duration::from_std(delay)
                .ok()
                .map(|d| Utc::now() + d);
            self.save(&state).await;
            tracing::info!(namespace = %self.namespace, daemon = %self.name, exit_code,
                delay_ms = delay.as_millis() as u64, restarts = state.restart_count, "daemon restarting");
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = self.cancel.cancelled() => {
                    self.hand_over(&mut state).await;
                    return;
                }
            }
            self.restarted(&mut state);
        }
    }

    /// Counts a restart in its state and the process's metrics (SPECIFICATION §18).
    fn restarted(&self, state: &mut DaemonState) {
        state.restart_count = state.restart_count.saturating_add(1);
        clrk_metrics::global().daemon_restart(&self.namespace, &self.name);
    }

    /// The stored state when it belongs to this revision (restarts carry over a server
    /// restart), else a fresh one.
    async fn initial_state(&self) -> DaemonState {
        let fresh = DaemonState {
            revision: self.revision.name.clone(),
            phase: DaemonPhase::Pending,
            restart_count: 0,
            up_since: None,
            run_id: None,
            last_exit_code: None,
            reason: None,
            restart_delay_ms: None,
            next_restart_at: None,
        };
        match self.store.daemon_state(&self.namespace, &self.name).await {
            Ok(Some(state)) if state.revision == self.revision.name => state,
            Ok(_) => fresh,
            Err(error) => {
                tracing::warn!(%error, daemon = %self.name, "reading daemon state");
                fresh
            }
        }
    }

    /// On a cluster worker, what the stored state says of the worker that ran the daemon
    /// before this one: `Running`, it died with the process (its connection dropped and with
    /// it the leadership), which counts as a crash under the restart policy, the restart
    /// counter carrying over; in back-off, it was about to restart it. Returns whether the
    /// daemon runs.
    async fn take_over(&self, state: &mut DaemonState) -> bool {
        let Some(worker) = &self.cluster_worker else {
            return true;
        };
        match state.phase {
            DaemonPhase::Running => {}
            DaemonPhase::CrashLoopBackOff => {
                self.restarted(state);
                return true;
            }
            DaemonPhase::Pending | DaemonPhase::Stopped => return true,
        }
        let Some(spec) = self.spec().await else {
            return false;
        };
        match after_lost_worker(spec.restart_policy, state.restart_count, spec.max_restarts) {
            AfterExit::Restart => {
                tracing::info!(namespace = %self.namespace, daemon = %self.name, %worker,
                    restarts = state.restart_count, "daemon taken over from a lost worker");
                self.restarted(state);
                state.reason = Some(format!(
                    "the worker running it was lost; restarted on worker {worker}"
                ));
                true
            }
            AfterExit::Stop(reason) => {
                tracing::info!(namespace = %self.namespace, daemon = %self.name, %worker, %reason,
                    "daemon of a lost worker not restarted");
                state.phase = DaemonPhase::Stopped;
                state.up_since = None;
                state.reason = Some(reason);
                self.save(state).await;
                false
            }
        }
    }

    /// On a cluster worker that stops (drains), records that the daemon moves, so the worker
    /// that takes it over does not count it as a crash. Not when the leadership was lost:
    /// the state is the new holder's then.
    async fn hand_over(&self, state: &mut DaemonState) {
        let Some(worker) = &self.cluster_worker else {
            return;
        };
        if self.lost.is_cancelled() || !self.shutdown.is_cancelled() {
            return;
        }
        state.phase = DaemonPhase::Pending;
        state.up_since = None;
        state.restart_delay_ms = None;
        state.next_restart_at = None;
        state.reason = Some(format!(
            "moving: worker {worker} stopped; another worker of the pool takes it over"
        ));
        self.save(state).await;
    }

    /// The current spec, read at every start so restart settings apply without a new
    /// revision; `None` once the agent is gone or no longer on this revision.
    async fn spec(&self) -> Option<DaemonAgentSpec> {
        let agent = self
            .store
            .get_agent(&self.namespace, &self.name)
            .await
            .ok()??;
        if agent.latest_revision.as_ref()?.name != self.revision.name {
            return None;
        }
        match Resource::from_stored(&agent.spec).ok()? {
            Resource::DaemonAgent(daemon) => Some(daemon.spec),
            _ => None,
        }
    }

    async fn save(&self, state: &DaemonState) {
        match self
            .store
            .set_daemon_state(&self.namespace, &self.name, state)
            .await
        {
            Ok(()) | Err(StoreError::AgentNotFound { .. }) => {}
            Err(error) => {
                tracing::error!(%error, daemon = %self.name, "could not record daemon state");
            }
        }
    }

    /// Starts one process, records it as an execution, and waits for its end.
    async fn run_once(
        &self,
        spec: &DaemonAgentSpec,
        shape: &RevisionShape,
        run_id: &str,
        state: &mut DaemonState,
    ) -> End {
        let record = NewExecution {
            id: run_id.to_string(),
            namespace: self.namespace.clone(),
            agent: self.name.clone(),
            revision: self.revision.name.clone(),
            trigger: DAEMON_TRIGGER.to_string(),
            started_at: Utc::now(),
            start: clrk_store::Start::Cold,
            worker: self.cluster_worker.clone(),
        };
        if let Err(error) = self.store.start_execution(&record).await {
            // The agent was deleted meanwhile; the next spec read ends the loop.
            tracing::debug!(%error, daemon = %self.name, "daemon run not recorded");
            return End::Failed(format!("could not record the run: {error}"));
        }
        let sandbox = self
            .worker
            .start_daemon(
                &self.namespace,
                &self.name,
                &spec.worker_pool_ref,
                &self.revision.name,
                shape,
                run_id,
            )
            .await;
        let end = match sandbox {
            Err(reason) => End::Failed(reason),
            Ok(sandbox) => {
                state.phase = DaemonPhase::Running;
                state.up_since = Some(Utc::now());
                state.reason = None;
                self.save(state).await;
                tracing::info!(namespace = %self.namespace, daemon = %self.name, run = run_id,
                    restarts = state.restart_count, "daemon running");
                self.watch(sandbox, spec, run_id).await
            }
        };
        self.record(run_id, &end).await;
        end
    }

    /// Feeds the process's output to the logs and waits for it to exit, its lifetime to
    /// run out, or a stop.
    async fn watch(&self, mut sandbox: Sandbox, spec: &DaemonAgentSpec, run_id: &str) -> End {
        // No stdin for daemons: EOF at once.
        drop(sandbox.take_stdin());
        // The run's streams share one limit and keep their newest lines.
        let log = self.worker.logs().daemon_run(
            &self.namespace,
            &self.name,
            run_id,
            LogLimit::from_spec(spec.log_limit.as_ref()),
        );
        let mut pumps = Vec::new();
        for (stream, reader) in [
            ("stdout", sandbox.take_stdout().map(box_reader)),
            ("stderr", sandbox.take_stderr().map(box_reader)),
        ] {
            let Some(reader) = reader else { continue };
            pumps.push(log.pump(reader, stream));
        }
        drop(log);
        let lifetime = async {
            match spec.max_lifetime_seconds {
                0 => std::future::pending().await,
                secs => tokio::time::sleep(Duration::from_secs(secs)).await,
            }
        };
        enum Why {
            Exited(Result<i32, String>),
            Lifetime,
            Cancelled,
        }
        let why = tokio::select! {
            code = sandbox.wait() => Why::Exited(code.map_err(|e| e.to_string())),
            () = lifetime => Why::Lifetime,
            () = self.cancel.cancelled() => Why::Cancelled,
        };
        let end = match why {
            Why::Exited(Ok(code)) => End::Exited(code),
            Why::Exited(Err(reason)) => {
                self.stop(&mut sandbox).await;
                End::Failed(format!("lost track of the sandbox: {reason}"))
            }
            Why::Lifetime => {
                self.stop(&mut sandbox).await;
                match sandbox.wait().await {
                    Ok(code) => End::Lifetime(code),
                    Err(error) => End::Failed(format!("lost track of the sandbox: {error}")),
                }
            }
            Why::Cancelled if self.lost.is_cancelled() => {
                self.kill(&mut sandbox).await;
                End::Cancelled
            }
            Why::Cancelled => {
                self.stop(&mut sandbox).await;
                End::Cancelled
            }
        };
        for pump in pumps {
            let _ = tokio::time::timeout(DRAIN_DEADLINE, pump).await;
        }
        if let Err(error) = sandbox.remove().await {
            tracing::warn!(%error, sandbox = %sandbox.id, "could not delete sandbox");
        }
        end
    }

    /// SIGTERM, [`STOP_GRACE`], SIGKILL, delete.
    async fn stop(&self, sandbox: &mut Sandbox) {
        if let Err(error) = sandbox.stop(STOP_GRACE).await {
            tracing::error!(%error, sandbox = %sandbox.id, "could not stop sandbox");
        }
    }

    /// SIGKILL at once, delete: another worker may start the daemon any moment.
    async fn kill(&self, sandbox: &mut Sandbox) {
        if let Err(error) = sandbox.stop(Duration::ZERO).await {
            tracing::error!(%error, sandbox = %sandbox.id, "could not kill sandbox");
        }
    }

    async fn record(&self, run_id: &str, end: &End) {
        let (status, exit_code, reason) = match end {
            End::Exited(0) => (ExecutionStatus::Succeeded, Some(0), None),
            End::Exited(code) => (
                ExecutionStatus::Failed,
                Some(*code),
                Some(format!("daemon exited with code {code}")),
            ),
            End::Lifetime(code) => (
                ExecutionStatus::Succeeded,
                Some(*code),
                Some("stopped at maxLifetimeSeconds".to_string()),
            ),
            End::Cancelled if self.lost.is_cancelled() => (
                ExecutionStatus::Failed,
                None,
                Some("stopped: this worker lost the daemon's leadership (its database connection ended)".to_string()),
            ),
            // Ended on purpose: Stopped, not Failed.
            End::Cancelled if self.shutdown.is_cancelled() && self.cluster_worker.is_some() => (
                ExecutionStatus::Stopped,
                None,
                Some("stopped: its worker is stopping; the daemon moves to another worker".to_string()),
            ),
            End::Cancelled if self.shutdown.is_cancelled() => (
                ExecutionStatus::Stopped,
                None,
                Some("stopped: clrk is shutting down".to_string()),
            ),
            End::Cancelled => (
                ExecutionStatus::Stopped,
                None,
                Some("stopped: the agent was deleted or a new revision replaced it".to_string()),
            ),
            End::Failed(reason) => (ExecutionStatus::Failed, None, Some(reason.clone())),
        };
        let end = ExecutionEnd {
            status,
            exit_code,
            reason,
            ended_at: Utc::now(),
        };
        match self.store.finish_execution(run_id, &end).await {
            Ok(()) | Err(StoreError::ExecutionNotFound(_)) => {}
            Err(error) => {
                tracing::error!(%error, run = run_id, "could not record the end of a daemon run");
            }
        }
    }
}

fn box_reader(
    reader: impl tokio::io::AsyncRead + Unpin + Send + 'static,
) -> Box<dyn tokio::io::AsyncRead + Unpin + Send> {
    Box::new(reader)
}
