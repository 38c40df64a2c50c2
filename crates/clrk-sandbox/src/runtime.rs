//! The runtime driver: starts sandboxes and finds the ones a crash left behind.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::os::fd::OwnedFd;

use rustix::process::{Pid, PidfdFlags, pidfd_open};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncReadExt, Interest};
use tokio::process::Child;
use tokio::sync::OnceCell;

use crate::firewall::EgressPorts;
use crate::host_tool::blocking;
use crate::leftovers::Leftovers;
use crate::network::{NetworkScope, SandboxNetwork};
use crate::runtime_cli::{PID_FILE, RUNTIME_LOGS, RuntimeCli, RuntimeKind};
use crate::runtime_logs;
use crate::runtime_support::RuntimeSupport;
use crate::sandbox::Process;
use crate::spec::validate_id;
use crate::stdio::{self, ChildEnds};
use crate::{Network, Sandbox, SandboxError, SandboxSpec, bundle, firewall};

/// A loaded machine can take seconds to boot a sandbox; past this the runtime is stuck.
const START_DEADLINE: Duration = Duration::from_secs(60);
/// How often to look for the pid file while a sandbox starts.
const START_POLL: Duration = Duration::from_millis(10);
/// How long to read a failed runtime's stderr for its error message.
const STDERR_DEADLINE: Duration = Duration::from_secs(2);
/// Most of a failed start's stderr kept: the runtime's reason is short, an agent's output is
/// not the runtime's to keep.
const STDERR_LIMIT: u64 = 16 << 10;

/// Where and with what a [`Runtime`] runs sandboxes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeConfig {
    /// The runtime.
    pub kind: RuntimeKind,
    /// Its binary; a bare name is looked up in `PATH`.
    pub binary: PathBuf,
    /// `<data-dir>/sandboxes`: the runtime's `--root` (`state/`) and the bundles (`bundles/<id>/`).
    /// Owned by one `Runtime`: give runsc and runc different dirs.
    pub state_dir: PathBuf,
    /// Host port of this clrk's metadata service: a networked sandbox's connections to
    /// port 80 of the metadata addresses are redirected to it, so several clrk processes on
    /// one host each serve their own sandboxes.
    pub metadata_port: u16,
    /// Host ports of this clrk's egress proxy (TCP) and DNS resolver (UDP); an
    /// [`Network::Egress`] sandbox needs both.
    pub egress_ports: Option<EgressPorts>,
}

impl RuntimeConfig {
    /// The config for `kind` with its default binary.
    ///
    /// ```
    /// use clrk_sandbox::{RuntimeConfig, RuntimeKind};
    /// let cfg = RuntimeConfig::new(RuntimeKind::Runsc, "/var/lib/clrk/sandboxes");
    /// assert_eq!(cfg.binary, std::path::Path::new("runsc"));
    /// ```
    pub fn new(kind: RuntimeKind, state_dir: impl Into<PathBuf>) -> Self {
        RuntimeConfig {
            kind,
            binary: kind.default_binary().into(),
            state_dir: state_dir.into(),
            metadata_port: crate::addresses::METADATA_PORT,
            egress_ports: None,
        }
    }
}

/// Starts sandboxes with one runtime under one state dir.
#[derive(Debug, Clone)]
pub struct Runtime {
    cli: Arc<RuntimeCli>,
    network: Arc<NetworkScope>,
    /// Set once the host firewall is in place: checked on the first networked sandbox.
    firewall: Arc<OnceCell<()>>,
    /// What the runtime's binary supports, asked the first time a pool sets runtime flags.
    support: Arc<OnceCell<RuntimeSupport>>,
}

impl Runtime {
    /// A driver for `cfg`; nothing is touched on disk until it is used.
    pub fn new(cfg: RuntimeConfig) -> Runtime {
        Runtime {
            network: Arc::new(NetworkScope::new(
                &cfg.state_dir,
                cfg.metadata_port,
                cfg.egress_ports,
            )),
            firewall: Arc::new(OnceCell::new()),
            support: Arc::new(OnceCell::new()),
            cli: Arc::new(RuntimeCli {
                kind: cfg.kind,
                binary: cfg.binary,
                root: cfg.state_dir.join("state"),
                bundles: cfg.state_dir.join("bundles"),
            }),
        }
    }

    /// Writes the bundle under `state_dir/bundles/<id>/` and starts the container with piped
    /// stdio: under runsc `create` then `start`, which leave no process behind (the sandbox's
    /// status comes from the sandbox process itself); under runc `run`, which stays until the
    /// container exits. Returns once the program has been started.
    ///
    /// A program that cannot be executed is a [`SandboxError::Start`] under runc; under runsc
    /// the sandbox exits 128 with the reason on stderr, as `run` would.
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), clrk_sandbox::SandboxError> {
    /// use clrk_sandbox::{Runtime, RuntimeConfig, RuntimeKind, SandboxSpec};
    /// let runtime = Runtime::new(RuntimeConfig::new(RuntimeKind::Runsc, "/tmp/sandboxes"));
    /// let mut spec = SandboxSpec::new("clrk-1", "/", vec!["echo".into(), "hi".into()]);
    /// spec.host_rootfs = true;
    /// let mut sandbox = runtime.spawn(&spec).await?;
    /// assert_eq!(sandbox.wait().await?, 0);
    /// sandbox.remove().await?;
    /// # Ok(()) }
    /// ```
    pub async fn spawn(&self, spec: &SandboxSpec) -> Result<Sandbox, SandboxError> {
        validate_id(&spec.id)?;
        if spec.host_rootfs && self.cli.kind == RuntimeKind::Runc {
            return Err(SandboxError::HostRootfsNeedsRunsc {
                id: spec.id.clone(),
            });
        }
        if !spec.runtime_flags.is_empty() && self.cli.kind == RuntimeKind::Runsc {
            let support = self
                .support
                .get_or_try_init(|| RuntimeSupport::probe(&self.cli.binary))
                .await?;
            if let Some(reason) = support.refuses(&spec.runtime_flags) {
                return Err(SandboxError::RuntimeOptions {
                    id: spec.id.clone(),
                    reason,
                });
            }
        }
        self.cli.ensure_root()?;
        // Read at each start: instances come and go.
        let with_masks;
        let spec = if spec.host_rootfs {
            with_masks = SandboxSpec {
                masked_paths: crate::host_masks::with_host_masks(&spec.masked_paths),
                ..spec.clone()
            };
            &with_masks
        } else {
            spec
        };
        if spec.network == Network::Egress && !self.network.serves_egress() {
            return Err(SandboxError::NoEgressProxy {
                id: spec.id.clone(),
            });
        }
        let netns = match spec.network {
            Network::None => None,
            Network::Metadata | Network::Egress => {
                self.firewall
                    .get_or_try_init(|| blocking(firewall::ensure))
                    .await?;
                Some(self.network.netns_path(&spec.id))
            }
        };
        // The bundle dir claims the id, so it comes before the network named after it.
        let bundle = bundle::write(spec, self.cli.kind, &self.cli.bundles, netns.as_deref())?;
        let network = match spec.network {
            Network::None => None,
            mode @ (Network::Metadata | Network::Egress) => {
                let (scope, id) = (Arc::clone(&self.network), spec.id.clone());
                match blocking(move || scope.create(&id, mode == Network::Egress)).await {
                    Ok(network) => Some(network),
                    Err(e) => {
                        self.cli.remove_bundle(&spec.id)?;
                        return Err(e);
                    }
                }
            }
        };
        let started = match stdio::pipes() {
            Ok((mut stdio, ends)) => {
                let started = match self.cli.kind {
                    RuntimeKind::Runsc => {
                        self.create_and_start(&spec.id, &bundle, spec, ends, &mut stdio)
                            .await
                    }
                    RuntimeKind::Runc => {
                        self.run(&spec.id, &bundle, spec.network, ends, &mut stdio)
                            .await
                    }
                };
                started.map(|(process, exit)| (process, exit, stdio))
            }
            Err(source) => Err(SandboxError::Io {
                path: bundle.clone(),
                source,
            }),
        };
        match started {
            Ok((process, exit, stdio)) => {
                tracing::info!(id = %spec.id, runtime = ?self.cli.kind, "sandbox started");
                Ok(Sandbox::new(
                    spec.id.clone(),
                    process,
                    stdio,
                    Arc::clone(&self.cli),
                    exit,
                    network,
                    spec.reuse,
                ))
            }
            Err(e) => {
                // Whatever got created must not linger; the start error is what matters.
                if let Err(error) = self.cli.delete(&spec.id).await {
                    tracing::warn!(id = %spec.id, %error, "could not delete failed sandbox");
                }
                destroy_network(&spec.id, network).await;
                self.cli.remove_bundle(&spec.id)?;
                Err(e)
            }
        }
    }

    /// runsc: `create` with the program's stdio, then `start`. Returns the sandbox process and,
    /// when `start` failed (the program could not be run: its reason on the program's stderr,
    /// as `run` prints it), `start`'s status as the program's.
    async fn create_and_start(
        &self,
        id: &str,
        bundle: &Path,
        spec: &SandboxSpec,
        ends: ChildEnds,
        stdio: &mut stdio::Stdio,
    ) -> Result<(Process, Option<i32>), SandboxError> {
        let start_stderr = ends.stderr.try_clone().map_err(SandboxError::io(bundle))?;
        let mut child = {
            let mut cmd = self
                .cli
                .create_command(id, bundle, spec.network, &spec.runtime_flags);
            with_stdio(&mut cmd, ends);
            // Dropping the command closes clrk's copies of the program's ends.
            cmd.spawn().map_err(|source| SandboxError::Exec {
                binary: self.cli.binary.clone(),
                source,
            })?
        };
        let created = match tokio::time::timeout(START_DEADLINE, child.wait()).await {
            Ok(status) => status.map_err(|source| SandboxError::Wait {
                id: id.to_owned(),
                source,
            })?,
            Err(_) => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                return Err(SandboxError::StartTimeout {
                    id: id.to_owned(),
                    seconds: START_DEADLINE.as_secs(),
                });
            }
        };
        if !created.success() {
            return Err(self.start_error(id, bundle, created, stdio).await);
        }
        let pidfd = self.sandbox_process(id, bundle)?;
        let mut start = self
            .cli
            .start_command(id, bundle, spec.network, &spec.runtime_flags);
        start
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(start_stderr))
            .process_group(0)
            .kill_on_drop(true);
        let started = match tokio::time::timeout(START_DEADLINE, start.status()).await {
            Ok(status) => status.map_err(|source| SandboxError::Exec {
                binary: self.cli.binary.clone(),
                source,
            })?,
            Err(_) => {
                return Err(SandboxError::StartTimeout {
                    id: id.to_owned(),
                    seconds: START_DEADLINE.as_secs(),
                });
            }
        };
        drop(start);
        let exit = (!started.success()).then(|| crate::sandbox::exit_code(started));
        Ok((Process::Sandbox(pidfd), exit))
    }

    /// A pidfd of the sandbox process `create` wrote to the pid file: it is not clrk's child.
    fn sandbox_process(&self, id: &str, bundle: &Path) -> Result<AsyncFd<OwnedFd>, SandboxError> {
        let pid_file = bundle.join(PID_FILE);
        let text = std::fs::read_to_string(&pid_file).map_err(SandboxError::io(&pid_file))?;
        let wait_error = |source: std::io::Error| SandboxError::Wait {
            id: id.to_owned(),
            source,
        };
        let pid = text
            .trim()
            .parse::<i32>()
            .ok()
            .and_then(Pid::from_raw)
            .ok_or_else(|| {
                wait_error(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{} holds no pid: {text:?}", pid_file.display()),
                ))
            })?;
        let pidfd = pidfd_open(pid, PidfdFlags::NONBLOCK).map_err(|e| wait_error(e.into()))?;
        // SAFETY: the `OwnedFd` is moved in and never replaced or closed while registered.
        #[allow(unsafe_code)]
        let registered = unsafe { AsyncFd::register_with_interest(pidfd, Interest::READABLE) };
        registered.map_err(|e| wait_error(e.into_parts().1))
    }

    /// runc: `run`, returning once the container's process has started (the pid file exists).
    async fn run(
        &self,
        id: &str,
        bundle: &Path,
        network: Network,
        ends: ChildEnds,
        stdio: &mut stdio::Stdio,
    ) -> Result<(Process, Option<i32>), SandboxError> {
        let mut child = {
            let mut cmd = self.cli.run_command(id, bundle, network);
            with_stdio(&mut cmd, ends);
            cmd.spawn().map_err(|source| SandboxError::Exec {
                binary: self.cli.binary.clone(),
                source,
            })?
        };
        match self.await_start(id, bundle, &mut child, stdio).await {
            Ok(exit) => Ok((Process::Run(child), exit)),
            Err(e) => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                Err(e)
            }
        }
    }

    /// Why a runtime command that should have started the sandbox exited with `status`.
    async fn start_error(
        &self,
        id: &str,
        bundle: &Path,
        status: std::process::ExitStatus,
        stdio: &mut stdio::Stdio,
    ) -> SandboxError {
        SandboxError::Start {
            id: id.to_owned(),
            binary: self.cli.binary.clone(),
            status,
            stderr: with_reasons(
                read_stderr(stdio).await,
                &runtime_logs::fatal_errors(&bundle.join(RUNTIME_LOGS), false),
            ),
        }
    }

    /// Polls until the runtime has written the pid file (started) or exited without it (failed).
    /// Returns the exit code when the container already ran to completion.
    async fn await_start(
        &self,
        id: &str,
        bundle: &Path,
        child: &mut Child,
        stdio: &mut stdio::Stdio,
    ) -> Result<Option<i32>, SandboxError> {
        let pid_file = bundle.join(PID_FILE);
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            // Exit first, then the pid file: a runtime that exited after starting the
            // container has written the file by then.
            let exited = child.try_wait().map_err(|source| SandboxError::Wait {
                id: id.to_owned(),
                source,
            })?;
            let started = std::fs::metadata(&pid_file).is_ok_and(|m| m.len() > 0);
            match (exited, started) {
                (_, true) => return Ok(None),
                (Some(status), false) => {
                    return Err(self.start_error(id, bundle, status, stdio).await);
                }
                (None, false) if Instant::now() >= deadline => {
                    return Err(SandboxError::StartTimeout {
                        id: id.to_owned(),
                        seconds: START_DEADLINE.as_secs(),
                    });
                }
                (None, false) => tokio::time::sleep(START_POLL).await,
            }
        }
    }

    /// Which OCI runtime this is.
    pub fn kind(&self) -> RuntimeKind {
        self.cli.kind
    }

    /// Ids of the containers that exist under this runtime's state dir.
    pub async fn list(&self) -> Result<Vec<String>, SandboxError> {
        self.cli.list().await
    }

    /// Crash recovery at server start: finds every container, bundle dir and sandbox network
    /// (namespace, veths, firewall elements) under this runtime's state dir, without removing
    /// anything yet. Call it before this runtime starts a sandbox; new sandboxes may then start
    /// while [`Leftovers::remove`] deletes what was found.
    pub async fn leftovers(&self) -> Result<Leftovers, SandboxError> {
        Leftovers::find(Arc::clone(&self.cli), Arc::clone(&self.network)).await
    }

    /// Crash recovery in one step: finds and removes every leftover (see
    /// [`Runtime::leftovers`]); returns the ids removed, sorted.
    ///
    /// ```no_run
    /// # async fn f(runtime: clrk_sandbox::Runtime) -> Result<(), clrk_sandbox::SandboxError> {
    /// for id in runtime.remove_all().await? {
    ///     tracing::info!(id, "removed leftover sandbox");
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn remove_all(&self) -> Result<Vec<String>, SandboxError> {
        let removed = self.leftovers().await?.remove().await?;
        if !removed.is_empty() {
            tracing::info!(count = removed.len(), ids = ?removed, "removed leftover sandboxes");
        }
        Ok(removed)
    }
}

/// Undoes the network of a sandbox that failed to start; the start error is what the caller
/// sees, so a failure here is only logged.
async fn destroy_network(id: &str, network: Option<SandboxNetwork>) {
    if let Some(network) = network
        && let Err(error) = blocking(move || network.destroy()).await
    {
        tracing::warn!(id, %error, "could not remove the network of a failed sandbox");
    }
}

/// The program's stdio as the runtime command's, in its own process group: a Ctrl-C at
/// clrk's terminal must not reach sandboxes directly; clrk stops them itself.
fn with_stdio(cmd: &mut tokio::process::Command, ends: ChildEnds) {
    cmd.stdin(Stdio::from(ends.stdin))
        .stdout(Stdio::from(ends.stdout))
        .stderr(Stdio::from(ends.stderr))
        .process_group(0);
}

/// The runtime's error output after it exited, bounded in time in case a helper kept it open.
async fn read_stderr(stdio: &mut stdio::Stdio) -> String {
    let Some(mut stderr) = stdio.stderr.take() else {
        return String::new();
    };
    let mut buf = Vec::new();
    let mut limited = (&mut stderr).take(STDERR_LIMIT);
    let _ = tokio::time::timeout(STDERR_DEADLINE, limited.read_to_end(&mut buf)).await;
    String::from_utf8_lossy(&buf).trim().to_owned()
}

/// `stderr` of a failed `run`, followed by the errors the runtime's gofer and sandbox
/// processes died of (`run` itself only says that the sandbox did not start).
fn with_reasons(stderr: String, reasons: &[String]) -> String {
    if reasons.is_empty() {
        stderr
    } else {
        format!("{stderr} (the sandbox said: {})", reasons.join("; "))
    }
}
