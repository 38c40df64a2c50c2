//! The life of one execution on its worker: feed it its envelope, forward its stdout (or its
//! Metadata-mode answer), pump its logs, stop it at its deadline or when told, record how it
//! ended, and delete its sandbox once the caller has the answer.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use chrono::Utc;
use clrk_api::{DeliveryMode, RuntimeName};
use clrk_egress::AttributeValue;
use clrk_metrics::Start;
use clrk_sandbox::{Network, Sandbox};
use clrk_store::{ExecutionEnd, ExecutionStatus};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::body::BodyPermit;
use crate::logs::{ExecutionLog, LogLimit};
use crate::revision::RevisionShape;
use crate::trace::{RUN, SANDBOX_START, StartSteps, TraceSpans};
use crate::worker::launch_error::{LaunchError, program_not_started, vanished_mount};
use crate::worker::launcher::SandboxRequest;
use crate::worker::loan::Loan;
use crate::worker::order::{ExecEvent, Outcome};
use crate::worker::warm_pool::Generation;
use crate::worker::{Places, Worker};

/// runsc's exit status when it failed itself, or started the sandbox but not the agent's
/// program (a program may exit 128 too: runsc's logs tell them apart).
const RUNSC_FAILED: i32 = 128;
/// How many times a `host:` sandbox is started for one execution when a path it hides
/// vanishes while runsc mounts it ([`vanished_mount`]); the agent had not run.
const START_ATTEMPTS: u32 = 3;
/// How long the envelope of a `host:` sandbox whose `start` succeeded is kept once written, for
/// another sandbox in case this one still fails to mount: runsc reports that within moments.
const KEEP_ENVELOPE: Duration = Duration::from_secs(2);
/// The exit status of a sandbox killed with SIGKILL (128 + 9).
const KILLED: i32 = 137;

/// Why a Metadata-mode execution that exited 0 without answering failed (and what its
/// caller's 502 says).
pub const NO_RESPONSE: &str =
    "the agent exited 0 without posting a response to $CLRK_METADATA_URL/response";
/// SIGTERM-to-SIGKILL grace when an execution is stopped (SPECIFICATION §4).
pub const STOP_GRACE: Duration = Duration::from_secs(5);
const STDOUT_CHUNK: usize = 64 * 1024;
/// How long the end of an execution is retried while the database does not answer; a worker
/// restart marks whatever is still recorded running as failed.
const RECORD_RETRY_FOR: Duration = Duration::from_secs(600);

/// How an execution's envelope reaches its agent, with the request body's share of the body
/// budget, released when the envelope is.
/// A Stdin-mode envelope with the request body's share of the body budget.
type StdinEnvelope = (Vec<u8>, Option<BodyPermit>);

pub(crate) enum Handover {
    /// Stdin mode: the newline-terminated JSON, taken once by the writer, so it is freed as
    /// soon as the agent has read it.
    Stdin(Mutex<Option<StdinEnvelope>>),
    /// Metadata mode: served on request until the execution ends.
    Metadata {
        envelope: serde_json::Value,
        _body: Option<BodyPermit>,
    },
}

impl Handover {
    pub(crate) fn new(
        mode: DeliveryMode,
        envelope: serde_json::Value,
        body: Option<BodyPermit>,
    ) -> Handover {
        match mode {
            DeliveryMode::Metadata => Handover::Metadata {
                envelope,
                _body: body,
            },
            _ => {
                let mut bytes = serde_json::to_vec(&envelope).expect("an envelope serialises");
                bytes.push(b'\n');
                Handover::Stdin(Mutex::new(Some((bytes, body))))
            }
        }
    }

    /// The stdin bytes, once; `None` in Metadata mode or when already taken.
    fn take_stdin(&self) -> Option<StdinEnvelope> {
        match self {
            Handover::Stdin(bytes) => bytes.lock().expect("stdin envelope").take(),
            Handover::Metadata { .. } => None,
        }
    }

    /// Gives back what [`Handover::take_stdin`] took, for another sandbox to read.
    fn put_back(&self, stdin: StdinEnvelope) {
        if let Handover::Stdin(bytes) = self {
            *bytes.lock().expect("stdin envelope") = Some(stdin);
        }
    }

    /// The envelope the metadata service serves (`null` in Stdin mode, which has none).
    fn metadata(&self) -> &serde_json::Value {
        static NONE: serde_json::Value = serde_json::Value::Null;
        match self {
            Handover::Metadata { envelope, .. } => envelope,
            Handover::Stdin(_) => &NONE,
        }
    }
}

/// How one sandbox of an execution ended.
enum Attempt {
    /// The execution's outcome, and its sandbox when still to be deleted.
    Ended(Outcome, Option<Box<Sandbox>>),
    /// The sandbox could not start because this path, which it hides, vanished.
    Again(std::path::PathBuf),
}

pub(crate) struct Run {
    pub(crate) worker: Worker,
    pub(crate) execution_id: String,
    pub(crate) revision: String,
    pub(crate) namespace: String,
    pub(crate) agent: String,
    /// Its trigger, for its metrics (SPECIFICATION §18).
    pub(crate) trigger: String,
    pub(crate) shape: RevisionShape,
    pub(crate) runtime: RuntimeName,
    pub(crate) pids_limit: u32,
    pub(crate) runtime_flags: Vec<String>,
    pub(crate) mode: DeliveryMode,
    pub(crate) envelope: Handover,
    pub(crate) timeout: Duration,
    pub(crate) log_limit: LogLimit,
    pub(crate) cancel: CancellationToken,
    /// Its trace's spans, written once its caller has the answer.
    pub(crate) trace: TraceSpans,
    /// What a warm sandbox for it must be; a reused sandbox goes back to that pool.
    pub(crate) generation: Generation,
    /// The reused sandbox it runs in was lent by the warm pool (`WarmPools::take`).
    pub(crate) loan: Option<Loan>,
}

impl Run {
    /// Runs the execution in `warm` (a sandbox taken from the pool) or a new sandbox.
    pub(crate) async fn run(
        mut self,
        tx: mpsc::Sender<ExecEvent>,
        places: Option<Places>,
        warm: Option<Sandbox>,
    ) {
        let started = tokio::time::Instant::now();
        let start = if warm.is_some() {
            Start::Warm
        } else {
            Start::Cold
        };
        let first_byte = FirstByte::new(&self, start, started);
        let (outcome, sandbox) = self
            .execute(&tx, started + self.timeout, warm, &first_byte)
            .await;
        let status = self.record(&outcome).await;
        clrk_metrics::global().execution_finished(
            &self.namespace,
            &self.agent,
            &self.trigger,
            status_label(status),
            start,
            started.elapsed(),
        );
        // The execution is over for the caller: a next request must not be refused while this
        // sandbox is being deleted.
        drop(places);
        tracing::info!(outcome = ?outcome,
            elapsed_ms = started.elapsed().as_millis() as u64, "execution finished");
        let error = failure(&outcome);
        // A reused sandbox goes back before the caller reads the end, which may take it.
        let loan = self.loan.take();
        let unwanted = self.give_back(sandbox, &outcome, loan);
        let _ = tx.send(ExecEvent::Finished(outcome)).await;
        self.keep_trace(start, status, error);
        if let Some(mut sandbox) = unwanted
            && let Err(error) = sandbox.remove().await
        {
            tracing::warn!(%error, sandbox = %sandbox.id, "could not delete sandbox");
        }
        let inner = &self.worker.inner;
        inner
            .live
            .lock()
            .expect("live map")
            .remove(&self.execution_id);
        // A stop that came too late to matter leaves its reason behind.
        inner
            .stop_reasons
            .lock()
            .expect("stop reasons")
            .remove(&self.execution_id);
        inner.drained.notify_waiters();
    }

    /// A reused sandbox whose execution ended by itself goes back to its warm pool while it
    /// may serve more; returns the sandbox to delete, if any. Dropping `loan` otherwise tells
    /// the pool to refill.
    fn give_back(
        &self,
        sandbox: Option<Sandbox>,
        outcome: &Outcome,
        loan: Option<Loan>,
    ) -> Option<Sandbox> {
        let mut sandbox = sandbox;
        let Some(reused) = sandbox.take_if(|sandbox| {
            matches!(outcome, Outcome::Exited(_)) && self.generation.serves_again(sandbox)
        }) else {
            return sandbox;
        };
        match loan {
            Some(loan) => loan.give_back(reused),
            None => {
                let key = (self.namespace.clone(), self.agent.clone());
                let shutting_down = self.worker.inner.shutdown.is_cancelled();
                let warm = &self.worker.inner.warm;
                warm.give_back(&key, &self.generation, reused, shutting_down)
            }
        }
    }

    /// Runs the sandbox to its end; returns the outcome and, when it exited by itself, the
    /// sandbox still to be deleted (deleted after the caller has its answer).
    async fn execute(
        &self,
        tx: &mpsc::Sender<ExecEvent>,
        deadline: tokio::time::Instant,
        mut warm: Option<Sandbox>,
        first_byte: &FirstByte<'_>,
    ) -> (Outcome, Option<Sandbox>) {
        let mut attempt = 1;
        loop {
            let again = attempt < START_ATTEMPTS
                && self.runtime == RuntimeName::Runsc
                && self.shape.image.is_host();
            match self
                .attempt(tx, deadline, warm.take(), first_byte, again)
                .await
            {
                Attempt::Ended(outcome, sandbox) => return (outcome, sandbox.map(|s| *s)),
                Attempt::Again(path) => {
                    tracing::info!(path = %path.display(), attempt,
                        "a path the sandbox hides vanished while it started; starting another");
                    attempt += 1;
                }
            }
        }
    }

    /// One sandbox for the execution. With `again`, a sandbox that could not start because a
    /// path it hides vanished ends in [`Attempt::Again`], its envelope kept for the next.
    async fn attempt(
        &self,
        tx: &mpsc::Sender<ExecEvent>,
        deadline: tokio::time::Instant,
        warm: Option<Sandbox>,
        first_byte: &FirstByte<'_>,
        again: bool,
    ) -> Attempt {
        let mut sandbox = match warm {
            Some(sandbox) => sandbox,
            None => match self.start().await {
                Ok(sandbox) => sandbox,
                Err(error @ LaunchError::ImageUnavailable { .. }) => {
                    return Attempt::Ended(Outcome::Unavailable(error.to_string()), None);
                }
                // Nothing ran, the envelope is still here.
                Err(error) if again && error.mount_vanished_at_create() => {
                    return Attempt::Again(std::path::PathBuf::from(
                        "(a mount runsc create resolves)",
                    ));
                }
                Err(error) => return Attempt::Ended(Outcome::Failed(error.to_string()), None),
            },
        };
        if sandbox.reusable() {
            return self.reused(tx, deadline, sandbox, first_byte).await;
        }
        let run_began = SystemTime::now();
        let metadata = self.mode == DeliveryMode::Metadata;
        let stdin = sandbox.take_stdin();
        let envelope = self.envelope.take_stdin();
        let kept: Arc<Mutex<Option<StdinEnvelope>>> = Arc::default();
        // Kept for another sandbox: for the whole attempt when this one's start already failed
        // (`start` said so before the envelope is written), else [`KEEP_ENVELOPE`], as the
        // sandbox may still fail to mount moments after `start` returned.
        let keep = again.then(|| (Arc::clone(&kept), !sandbox.has_exited()));
        let writer = tokio::spawn(
            async move {
                // Metadata mode closes stdin at once; an agent that exits without reading its
                // input closes the pipe: not an error. The envelope and its body's share of the
                // budget are released once written, or later when another sandbox may need
                // them.
                let (Some(mut stdin), Some(envelope)) = (stdin, envelope) else {
                    return;
                };
                let _ = stdin.write_all(&envelope.0).await;
                let _ = stdin.shutdown().await;
                drop(stdin);
                if let Some((keep, for_a_while)) = keep {
                    *keep.lock().expect("kept envelope") = Some(envelope);
                    if for_a_while {
                        tokio::spawn(async move {
                            tokio::time::sleep(KEEP_ENVELOPE).await;
                            keep.lock().expect("kept envelope").take();
                        });
                    }
                }
            }
            .in_current_span(),
        );
        // Its streams share one limit; the marker is written once both have ended.
        let log = self.log();
        let mut pumps = Vec::new();
        if let Some(stderr) = sandbox.take_stderr() {
            pumps.push(log.pump(stderr, "stderr"));
        }
        let mut stdout = sandbox.take_stdout();
        if metadata && let Some(out) = stdout.take() {
            pumps.push(log.pump(out, "stdout"));
        }
        let (registration, responder) = match (metadata, sandbox.addresses()) {
            (true, Some(addresses)) => {
                let (registration, answer) = self.worker.inner.metadata.register(
                    &[IpAddr::V4(addresses.v4), IpAddr::V6(addresses.v6)],
                    self.envelope.metadata().clone(),
                );
                let tx = tx.clone();
                // Says when the answer came, if it did.
                let responder = tokio::spawn(async move {
                    let response = answer.await.ok()?;
                    let at = tokio::time::Instant::now();
                    let _ = tx.send(ExecEvent::Response(response)).await;
                    Some(at)
                });
                (Some(registration), Some(responder))
            }
            _ => (None, None),
        };

        enum End {
            Exited(i32),
            Deadline,
            Cancelled,
            Broken(String),
        }
        let end = tokio::select! {
            result = async {
                if let Some(stdout) = stdout {
                    forward_stdout(stdout, tx, first_byte).await;
                }
                sandbox.wait().await
            } => match result {
                Ok(code) => End::Exited(code),
                Err(e) => End::Broken(e.to_string()),
            },
            () = tokio::time::sleep_until(deadline) => End::Deadline,
            () = self.cancel.cancelled() => End::Cancelled,
        };
        let run_ended = SystemTime::now();
        let outcome = match end {
            End::Exited(code) => Outcome::Exited(code),
            End::Deadline => {
                self.stop(&mut sandbox).await;
                Outcome::TimedOut(self.timeout)
            }
            End::Cancelled => {
                self.stop(&mut sandbox).await;
                let reason = self
                    .worker
                    .inner
                    .stop_reasons
                    .lock()
                    .expect("stop reasons")
                    .remove(&self.execution_id);
                Outcome::Failed(reason.unwrap_or_else(|| "stopped: clrk is shutting down".into()))
            }
            End::Broken(reason) => {
                self.stop(&mut sandbox).await;
                Outcome::Failed(format!("lost track of the sandbox: {reason}"))
            }
        };
        for pump in pumps {
            // Output reaches EOF once every process of the sandbox is gone.
            let _ = tokio::time::timeout(Duration::from_secs(5), pump).await;
        }
        // runsc exits 128 when the sandbox started but the agent's program could not (its
        // reason the last line on stderr) or when runsc itself failed (its reason in its
        // logs): the user is told that, not an exit code.
        let outcome = match outcome {
            Outcome::Exited(RUNSC_FAILED) if self.runtime == RuntimeName::Runsc => {
                let last = log.last_stderr_line();
                if again
                    && let Some(path) = last.as_deref().and_then(vanished_mount)
                    && !path.exists()
                    && self.envelope_back(writer, &kept).await
                {
                    if let Err(error) = sandbox.remove().await {
                        tracing::warn!(%error, sandbox = %sandbox.id, "could not delete sandbox");
                    }
                    return Attempt::Again(path);
                }
                let not_started = last.as_deref().and_then(program_not_started);
                let errors = sandbox.runtime_errors();
                match not_started {
                    Some(reason) => Outcome::Failed(format!("the sandbox did not start: {reason}")),
                    None if !errors.is_empty() => {
                        tracing::warn!(?errors, "the sandbox failed");
                        Outcome::Failed(format!("the sandbox failed: {}", errors.join("; ")))
                    }
                    None => outcome,
                }
            }
            // Under runsc the host's OOM killer kills the whole sandbox: the runtime reports
            // 137, as for any SIGKILL, and only its logs tell the two apart.
            Outcome::Exited(code @ KILLED) if sandbox.killed_by_host() => Outcome::Killed {
                code,
                reason: format!(
                    "killed: memory limit {} exceeded; raise spec.resources.memory",
                    self.shape.resources.memory.as_str()
                ),
            },
            other => other,
        };
        drop(log);
        // Once unregistered the responder learns whether an answer came.
        drop(registration);
        let responded = match responder {
            Some(responder) => match responder.await.ok().flatten() {
                Some(at) => {
                    first_byte.observe_at(at);
                    true
                }
                None => false,
            },
            None => !metadata,
        };
        let outcome = match outcome {
            Outcome::Exited(0) if !responded => Outcome::NoResponse,
            other => other,
        };
        let failed = failure(&outcome);
        self.trace
            .add_with(self.trace.run_context(), RUN, run_began, run_ended, failed);
        match outcome {
            Outcome::Exited(_) | Outcome::NoResponse | Outcome::Killed { .. } => {
                Attempt::Ended(outcome, Some(Box::new(sandbox)))
            }
            _ => Attempt::Ended(outcome, None),
        }
    }

    /// The execution in a reused sandbox (`spec.sandboxReuse`): its envelope goes to the
    /// sandbox's init, which runs a fresh agent process for it; the sandbox lives on unless the
    /// execution timed out, was stopped, or the sandbox itself ended.
    async fn reused(
        &self,
        tx: &mpsc::Sender<ExecEvent>,
        deadline: tokio::time::Instant,
        mut sandbox: Sandbox,
        first_byte: &FirstByte<'_>,
    ) -> Attempt {
        let run_began = SystemTime::now();
        // Stdin mode only (the manifest says so): the envelope and its body's share of the
        // budget, released when the execution ends.
        let (envelope, _body) = self.envelope.take_stdin().unwrap_or_default();
        let Some(execution) = sandbox.next_execution(envelope) else {
            self.stop(&mut sandbox).await;
            return Attempt::Ended(
                Outcome::Failed("the reused sandbox no longer answers".into()),
                None,
            );
        };
        let log = self.log();
        let pump = log.pump(execution.stderr, "stderr");
        let (stdout, exit) = (execution.stdout, execution.exit);
        let end = tokio::select! {
            code = async {
                forward_stdout(stdout, tx, first_byte).await;
                exit.await
            } => code.ok(),
            () = tokio::time::sleep_until(deadline) => {
                self.stop(&mut sandbox).await;
                return self.reused_end(Outcome::TimedOut(self.timeout), run_began, pump).await;
            }
            () = self.cancel.cancelled() => {
                self.stop(&mut sandbox).await;
                let reason = self.worker.inner.stop_reasons.lock().expect("stop reasons")
                    .remove(&self.execution_id);
                let reason = reason.unwrap_or_else(|| "stopped: clrk is shutting down".into());
                return self.reused_end(Outcome::Failed(reason), run_began, pump).await;
            }
        };
        if let Some(code) = end {
            let outcome = self
                .reused_end(Outcome::Exited(code), run_began, pump)
                .await;
            return match outcome {
                Attempt::Ended(outcome, _) => Attempt::Ended(outcome, Some(Box::new(sandbox))),
                again => again,
            };
        }
        // No exit status: the sandbox ended (its memory limit, say) or its init broke off.
        let outcome = match tokio::time::timeout(STOP_GRACE, sandbox.wait()).await {
            Ok(Ok(code @ KILLED)) if sandbox.killed_by_host() => Outcome::Killed {
                code,
                reason: format!(
                    "killed: memory limit {} exceeded; raise spec.resources.memory",
                    self.shape.resources.memory.as_str()
                ),
            },
            _ => {
                let why = (sandbox.runtime_errors().into_iter().next())
                    .or_else(|| sandbox.why_stopped())
                    .unwrap_or_else(|| "its init stopped answering".into());
                Outcome::Failed(format!("the reused sandbox failed: {why}"))
            }
        };
        self.stop(&mut sandbox).await;
        self.reused_end(outcome, run_began, pump).await
    }

    /// Ends a reused sandbox's execution: its log is complete and its run span kept.
    async fn reused_end(
        &self,
        outcome: Outcome,
        run_began: SystemTime,
        pump: tokio::task::JoinHandle<()>,
    ) -> Attempt {
        let _ = tokio::time::timeout(STOP_GRACE, pump).await;
        let run_ended = SystemTime::now();
        self.trace.add_with(
            self.trace.run_context(),
            RUN,
            run_began,
            run_ended,
            failure(&outcome),
        );
        Attempt::Ended(outcome, None)
    }

    /// Takes back the envelope `writer` fed a sandbox that never ran (kept in `kept`), for
    /// the next one; whether the next one can have it (Metadata mode: the service still holds
    /// it).
    async fn envelope_back(
        &self,
        writer: tokio::task::JoinHandle<()>,
        kept: &Mutex<Option<StdinEnvelope>>,
    ) -> bool {
        let _ = tokio::time::timeout(STOP_GRACE, writer).await;
        match kept.lock().expect("kept envelope").take() {
            Some(envelope) => {
                self.envelope.put_back(envelope);
                true
            }
            None => matches!(self.envelope, Handover::Metadata { .. }),
        }
    }

    /// Starts a sandbox for the execution, its steps timed as spans of its trace.
    async fn start(&self) -> Result<Sandbox, LaunchError> {
        // Only Metadata-mode agents and agents with egress need a network: the others stay
        // at `--network=none`, which is both safer and faster to start.
        let network = match self.mode {
            DeliveryMode::Metadata => Network::Metadata,
            _ => Network::None,
        };
        let steps = StartSteps::default();
        let began = SystemTime::now();
        let started = self
            .worker
            .inner
            .launcher
            .start(SandboxRequest {
                kind: "TaskAgent",
                namespace: &self.namespace,
                agent: &self.agent,
                revision: &self.revision,
                run: Some(&self.execution_id),
                id_base: &self.execution_id,
                shape: &self.shape,
                runtime: self.runtime,
                pids_limit: self.pids_limit,
                runtime_flags: &self.runtime_flags,
                network,
                run_span: Some(self.trace.run_context()),
                steps: Some(&steps),
            })
            .await;
        let span = self.trace.child_of_root();
        for (step, start, end) in steps.take() {
            self.trace.add(step, Some(span), start, end, Vec::new());
        }
        let error = started.as_ref().err().map(ToString::to_string);
        self.trace
            .add_with(span, SANDBOX_START, began, SystemTime::now(), error);
        started
    }

    /// Writes the execution's spans in one store write, in the background, and exports them
    /// through its gateway's OTLP endpoint when it has one (SPECIFICATION §9.7).
    fn keep_trace(&self, start: Start, status: ExecutionStatus, error: Option<String>) {
        let text = |k: &str, v: &str| (k.to_owned(), AttributeValue::String(v.to_owned()));
        let attributes = vec![
            text("agent.kind", "TaskAgent"),
            text("agent.namespace", &self.namespace),
            text("agent.name", &self.agent),
            text("agent.revision", &self.revision),
            text("invocation.id", &self.execution_id),
            text("clrk.trigger", &self.trigger),
            text(
                "clrk.start",
                if start == Start::Warm { "warm" } else { "cold" },
            ),
            text("clrk.status", &status.to_string()),
        ];
        let spans = self.trace.finish(attributes, error);
        let records: Vec<_> = spans.iter().map(clrk_egress::Span::to_record).collect();
        let store = self.worker.inner.store.clone();
        let egress = self
            .worker
            .inner
            .launcher
            .egress()
            .filter(|_| !self.shape.egress_refs.is_empty())
            .cloned();
        let (id, namespace) = (self.execution_id.clone(), self.namespace.clone());
        let gateways = crate::worker::launch::gateways(&self.shape);
        tokio::spawn(
            async move {
                if let Err(error) = store.insert_spans(&id, &records).await {
                    tracing::warn!(%error, "could not keep the execution's spans");
                }
                if let Some(egress) = egress {
                    egress.export_spans(&namespace, &gateways, spans).await;
                }
            }
            .in_current_span(),
        );
    }

    /// The execution's log, under the agent's `spec.logLimit`.
    fn log(&self) -> ExecutionLog {
        self.worker.inner.logs.execution(
            &self.namespace,
            &self.agent,
            &self.execution_id,
            self.log_limit.clone(),
        )
    }

    async fn stop(&self, sandbox: &mut Sandbox) {
        if let Err(error) = sandbox.stop(STOP_GRACE).await {
            tracing::error!(%error, sandbox = %sandbox.id, "could not stop sandbox");
        }
    }

    /// Records the end in the store (retrying in the background while it does not answer);
    /// returns the status recorded.
    async fn record(&self, outcome: &Outcome) -> ExecutionStatus {
        let (status, exit_code, reason) = match outcome {
            Outcome::Exited(0) => (ExecutionStatus::Succeeded, Some(0), None),
            Outcome::Exited(code) => (
                ExecutionStatus::Failed,
                Some(*code),
                Some(format!("agent exited with code {code}")),
            ),
            Outcome::TimedOut(after) => (
                ExecutionStatus::TimedOut,
                None,
                Some(format!(
                    "execution timed out after {}",
                    clrk_api::GoDuration(*after)
                )),
            ),
            Outcome::Failed(reason) | Outcome::Unavailable(reason) => {
                (ExecutionStatus::Failed, None, Some(reason.clone()))
            }
            Outcome::NoResponse => (ExecutionStatus::Failed, Some(0), Some(NO_RESPONSE.into())),
            Outcome::Killed { code, reason } => {
                (ExecutionStatus::Failed, Some(*code), Some(reason.clone()))
            }
        };
        let end = ExecutionEnd {
            status,
            exit_code,
            reason,
            ended_at: Utc::now(),
        };
        let store = &self.worker.inner.store;
        let Err(error) = store.finish_execution(&self.execution_id, &end).await else {
            return status;
        };
        // The database may be away for a moment (a restart, a failover): the caller gets its
        // answer now, and the end is recorded once the database answers again.
        tracing::warn!(%error, "could not record the end of an execution; retrying");
        let (store, id) = (store.clone(), self.execution_id.clone());
        tokio::spawn(
            async move {
                let mut delay = Duration::from_secs(1);
                let deadline = tokio::time::Instant::now() + RECORD_RETRY_FOR;
                while tokio::time::Instant::now() < deadline {
                    tokio::time::sleep(delay).await;
                    match store.finish_execution(&id, &end).await {
                        Ok(()) => {
                            tracing::info!("the end of the execution recorded after a retry");
                            return;
                        }
                        // Unknown to the store (a database restored from before it): nothing to record.
                        Err(clrk_store::StoreError::ExecutionNotFound(_)) => return,
                        Err(_) => delay = (delay * 2).min(Duration::from_secs(30)),
                    }
                }
                tracing::error!("gave up recording the end of an execution");
            }
            .in_current_span(),
        );
        status
    }
}

/// Copies stdout to the caller as it is written. A caller that went away does not stop the
/// agent: the rest of its output is read and dropped so it never blocks on a full pipe.
async fn forward_stdout(
    mut stdout: impl tokio::io::AsyncRead + Unpin,
    tx: &mpsc::Sender<ExecEvent>,
    first_byte: &FirstByte<'_>,
) {
    let mut caller_gone = false;
    loop {
        let mut buf = vec![0u8; STDOUT_CHUNK];
        match stdout.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                first_byte.observe();
                buf.truncate(n);
                if !caller_gone && tx.send(ExecEvent::Stdout(Bytes::from(buf))).await.is_err() {
                    caller_gone = true;
                }
            }
        }
    }
}

/// Why an execution failed, for its trace's spans; `None` when it exited 0.
fn failure(outcome: &Outcome) -> Option<String> {
    Some(match outcome {
        Outcome::Exited(0) => return None,
        Outcome::Exited(code) => format!("agent exited with code {code}"),
        Outcome::TimedOut(after) => {
            format!("execution timed out after {}", clrk_api::GoDuration(*after))
        }
        Outcome::Failed(reason) | Outcome::Unavailable(reason) => reason.clone(),
        Outcome::NoResponse => NO_RESPONSE.to_owned(),
        Outcome::Killed { reason, .. } => reason.clone(),
    })
}

/// The status's label in `clrk_executions_total`.
fn status_label(status: ExecutionStatus) -> &'static str {
    match status {
        ExecutionStatus::Succeeded => "succeeded",
        ExecutionStatus::TimedOut => "timed_out",
        _ => "failed",
    }
}

/// Observes an execution's time to its first byte of output (Metadata mode: its answer),
/// once.
struct FirstByte<'a> {
    run: &'a Run,
    start: Start,
    started: tokio::time::Instant,
    seen: AtomicBool,
}

impl FirstByte<'_> {
    fn new(run: &Run, start: Start, started: tokio::time::Instant) -> FirstByte<'_> {
        FirstByte {
            run,
            start,
            started,
            seen: AtomicBool::new(false),
        }
    }

    fn observe(&self) {
        self.observe_at(tokio::time::Instant::now());
    }

    fn observe_at(&self, at: tokio::time::Instant) {
        if !self.seen.swap(true, Ordering::Relaxed) {
            clrk_metrics::global().first_byte(
                &self.run.namespace,
                &self.run.agent,
                self.start,
                at.saturating_duration_since(self.started),
            );
        }
    }
}
