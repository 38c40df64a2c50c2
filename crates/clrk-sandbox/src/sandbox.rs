//! A running sandbox: its stdio, its exit, and how it is stopped and cleaned up.

use std::os::fd::OwnedFd;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::net::unix::pipe::{Receiver, Sender};
use tokio::process::Child;

use crate::SandboxError;
use crate::addresses::SandboxAddresses;
use crate::host_tool::blocking;
use crate::network::SandboxNetwork;
use crate::reuse_link::{Execution, Link};
use crate::runtime_cli::{RUNTIME_LOGS, RuntimeCli, SIGKILL, SIGTERM};
use crate::stdio::Stdio;

/// Once the container is deleted its runtime process exits at once; past this it is stuck.
const REAP_DEADLINE: Duration = Duration::from_secs(30);

/// What tells when a sandbox's program has ended, and how.
#[derive(Debug)]
pub(crate) enum Process {
    /// runc: the `run` process, whose exit status is the container's.
    Run(Child),
    /// runsc after `create` and `start`: the sandbox process (gVisor's kernel), which ends
    /// with the program. It is not clrk's child (`create` started it and exited), so it is
    /// watched through a pidfd, and the program's status is what it logged before exiting.
    /// No process of clrk's stays with the sandbox, and none sits between the program's last
    /// byte and its status.
    Sandbox(AsyncFd<OwnedFd>),
}

/// One started container. Stop or remove it when done; dropping it un-removed force-deletes
/// it in the background.
#[derive(Debug)]
pub struct Sandbox {
    /// The id from the spec; the container's name in the runtime.
    pub id: String,
    process: Process,
    stdio: Stdio,
    cli: Arc<RuntimeCli>,
    exit: Option<i32>,
    /// The sandbox process died without saying how its program ended: killed from outside.
    killed_by_host: bool,
    /// Its network, until removed.
    network: Option<SandboxNetwork>,
    removed: bool,
    /// What lives as long as the sandbox (its egress registration, say).
    attachments: Vec<Box<dyn std::any::Any + Send + Sync>>,
    /// A reused sandbox's frames, which hold its stdio.
    link: Option<Link>,
    started: std::time::Instant,
}

impl Sandbox {
    pub(crate) fn new(
        id: String,
        process: Process,
        stdio: Stdio,
        cli: Arc<RuntimeCli>,
        exit: Option<i32>,
        network: Option<SandboxNetwork>,
        reuse: bool,
    ) -> Self {
        let mut stdio = stdio;
        let link = reuse
            .then(|| stdio.take_all())
            .flatten()
            .map(|(stdin, stdout, stderr)| Link::new(&id, stdin, stdout, stderr));
        Sandbox {
            id,
            process,
            stdio,
            cli,
            exit,
            killed_by_host: false,
            network,
            attachments: Vec::new(),
            removed: false,
            link,
            started: std::time::Instant::now(),
        }
    }

    /// Whether it runs executions one after another under clrk's init
    /// ([`SandboxSpec::reuse`](crate::SandboxSpec::reuse)).
    pub fn reusable(&self) -> bool {
        self.link.is_some()
    }

    /// A reused sandbox's next execution, with `envelope` on its agent's stdin; `None` for a
    /// sandbox that is not reused or whose init has stopped answering.
    ///
    /// ```no_run
    /// # async fn f(sandbox: &mut clrk_sandbox::Sandbox) {
    /// use tokio::io::AsyncReadExt as _;
    /// let mut run = sandbox.next_execution(b"{}\n".to_vec()).expect("a reused sandbox");
    /// let mut out = Vec::new();
    /// run.stdout.read_to_end(&mut out).await.unwrap();
    /// let code = run.exit.await;
    /// # }
    /// ```
    pub fn next_execution(&mut self, envelope: Vec<u8>) -> Option<Execution> {
        self.link.as_mut()?.next(envelope)
    }

    /// Executions a reused sandbox has started (0 for one that is not reused).
    pub fn executions(&self) -> u32 {
        self.link.as_ref().map_or(0, Link::executions)
    }

    /// Why a reused sandbox stopped taking executions: the last line its init wrote on its
    /// own stderr, else what was wrong with its frames; `None` while it takes them.
    pub fn why_stopped(&self) -> Option<String> {
        self.link.as_ref().and_then(Link::why_stopped)
    }

    /// Time since it started.
    pub fn age(&self) -> Duration {
        self.started.elapsed()
    }

    /// The sandbox's own addresses with [`Network::Metadata`](crate::Network::Metadata): every
    /// connection it makes to the metadata addresses comes from one of them, so they identify
    /// it. `None` without a network, and once removed.
    ///
    /// ```no_run
    /// # fn f(sandbox: &clrk_sandbox::Sandbox, peer: std::net::IpAddr) {
    /// if sandbox.addresses().is_some_and(|a| a.contains(peer)) {
    ///     // the connection from `peer` is this sandbox's
    /// }
    /// # }
    /// ```
    pub fn addresses(&self) -> Option<SandboxAddresses> {
        self.network.as_ref().map(|n| n.addresses)
    }

    /// Keeps `value` until the sandbox is dropped.
    pub fn attach<T: std::any::Any + Send + Sync>(&mut self, value: T) {
        self.attachments.push(Box::new(value));
    }

    /// The first attachment of type `T`.
    pub fn attachment<T: std::any::Any>(&self) -> Option<&T> {
        self.attachments.iter().find_map(|a| a.downcast_ref::<T>())
    }

    /// The container process's stdin; `None` once taken. Drop it to send EOF.
    pub fn take_stdin(&mut self) -> Option<Sender> {
        self.stdio.stdin.take()
    }

    /// The container process's stdout; `None` once taken.
    pub fn take_stdout(&mut self) -> Option<Receiver> {
        self.stdio.stdout.take()
    }

    /// The container process's stderr (plus any error the runtime prints); `None` once taken.
    pub fn take_stderr(&mut self) -> Option<Receiver> {
        self.stdio.stderr.take()
    }

    /// Waits for the container's process to exit; returns its exit code (128+signal when
    /// killed by a signal). Cancel-safe; later calls return the same code.
    ///
    /// ```no_run
    /// # async fn f(sandbox: &mut clrk_sandbox::Sandbox) -> Result<(), clrk_sandbox::SandboxError> {
    /// let code = sandbox.wait().await?;
    /// sandbox.remove().await?;
    /// # Ok(()) }
    /// ```
    pub async fn wait(&mut self) -> Result<i32, SandboxError> {
        if let Some(code) = self.exit {
            return Ok(code);
        }
        let wait_error = |source| SandboxError::Wait {
            id: self.id.clone(),
            source,
        };
        match &mut self.process {
            Process::Run(child) => {
                let status = child.wait().await.map_err(wait_error)?;
                self.exit = Some(exit_code(status));
            }
            Process::Sandbox(pidfd) => {
                // Readable once the process has exited; it stays so.
                let _ready = pidfd.readable().await.map_err(wait_error)?;
                self.ended();
            }
        }
        let code = self.exit.expect("set on exit");
        tracing::debug!(id = %self.id, code, "sandbox exited");
        Ok(code)
    }

    /// Records how the program of a sandbox process that has exited ended: the wait status
    /// the sandbox logged; runsc's failure (128, as `run` exits) when it died of an error; or
    /// SIGKILL from outside when it died without a word, as the host's OOM killer kills it.
    fn ended(&mut self) {
        let logs = self.cli.bundles.join(&self.id).join(RUNTIME_LOGS);
        let code = match crate::runtime_logs::program_status(&logs) {
            Some(status) => exit_code(ExitStatus::from_raw(status)),
            None if !crate::runtime_logs::fatal_errors(&logs, true).is_empty() => 128,
            None => {
                self.killed_by_host = true;
                128 + 9
            }
        };
        self.exit = Some(code);
    }

    /// The errors runsc's own processes died of, when the sandbox ended because of runsc
    /// rather than its program (runsc then exits 128, like a program that exits 128 itself);
    /// empty for runc and until the sandbox is removed.
    ///
    /// ```no_run
    /// # async fn f(sandbox: &mut clrk_sandbox::Sandbox) -> Result<(), clrk_sandbox::SandboxError> {
    /// if sandbox.wait().await? == 128 {
    ///     for error in sandbox.runtime_errors() {
    ///         tracing::warn!(%error, "the sandbox failed");
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub fn runtime_errors(&self) -> Vec<String> {
        if self.removed {
            return Vec::new();
        }
        let logs = self.cli.bundles.join(&self.id).join(RUNTIME_LOGS);
        crate::runtime_logs::fatal_errors(&logs, true)
    }

    /// Whether the sandbox as a whole was killed by the host rather than its program ending,
    /// which under runsc is what going over the memory limit does (the host's OOM killer
    /// kills gVisor's kernel, and the runtime reports exit 137 as for any SIGKILL). Always
    /// `false` under runc and once removed.
    ///
    /// ```no_run
    /// # async fn f(sandbox: &mut clrk_sandbox::Sandbox) -> Result<(), clrk_sandbox::SandboxError> {
    /// if sandbox.wait().await? == 137 && sandbox.killed_by_host() {
    ///     tracing::warn!("the sandbox went over its memory limit");
    /// }
    /// # Ok(()) }
    /// ```
    pub fn killed_by_host(&self) -> bool {
        !self.removed && self.killed_by_host
    }

    /// Whether the container's process has exited, without waiting: a sandbox kept ready whose
    /// agent was killed from outside is no longer usable.
    pub fn has_exited(&mut self) -> bool {
        if self.exit.is_some() {
            return true;
        }
        match &mut self.process {
            Process::Run(child) => match child.try_wait() {
                Ok(Some(status)) => {
                    self.exit = Some(exit_code(status));
                    true
                }
                Ok(None) => false,
                // Not waitable is as good as gone.
                Err(_) => true,
            },
            Process::Sandbox(pidfd) => {
                use rustix::event::{PollFd, PollFlags, poll};
                let mut fds = [PollFd::new(pidfd.get_ref(), PollFlags::IN)];
                let zero = rustix::event::Timespec::default();
                match poll(&mut fds, Some(&zero)) {
                    Ok(0) => false,
                    _ => {
                        self.ended();
                        true
                    }
                }
            }
        }
    }

    /// Stops everything in the sandbox: SIGTERM to all its processes, up to `grace` for the
    /// container to exit, then SIGKILL; then deletes the container and its bundle. Idempotent.
    ///
    /// ```no_run
    /// # async fn f(sandbox: &mut clrk_sandbox::Sandbox) -> Result<(), clrk_sandbox::SandboxError> {
    /// sandbox.stop(std::time::Duration::from_secs(5)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn stop(&mut self, grace: Duration) -> Result<(), SandboxError> {
        if self.removed {
            return Ok(());
        }
        if self.exit.is_none() {
            self.signal_all(SIGTERM).await;
            if tokio::time::timeout(grace, self.wait()).await.is_err() {
                tracing::info!(id = %self.id, grace_ms = grace.as_millis() as u64, "sandbox ignored SIGTERM, killing it");
                self.signal_all(SIGKILL).await;
            }
        }
        self.remove().await
    }

    /// Deletes the container, its network and its bundle, typically after a normal exit. A
    /// container still running is killed. Idempotent.
    pub async fn remove(&mut self) -> Result<(), SandboxError> {
        if self.removed {
            return Ok(());
        }
        if !self.has_exited() {
            // runsc's `delete --force` can hang on a container whose process still runs
            // (e.g. one blocked reading stdin): kill it first.
            self.signal_all(SIGKILL).await;
        }
        self.cli.delete(&self.id).await?;
        if self.exit.is_none() {
            // The container is gone, so the runtime process must exit; reap it, by force if stuck.
            if tokio::time::timeout(REAP_DEADLINE, self.wait())
                .await
                .is_err()
            {
                tracing::warn!(id = %self.id, "runtime process outlived its container, killing it");
                match &mut self.process {
                    // An error here means it has exited meanwhile; wait() reaps it either way.
                    Process::Run(child) => {
                        let _ = child.start_kill();
                    }
                    Process::Sandbox(pidfd) => {
                        let _ = rustix::process::pidfd_send_signal(
                            pidfd.get_ref(),
                            rustix::process::Signal::KILL,
                        );
                    }
                }
                self.wait().await?;
            }
        }
        if let Some(network) = self.network.clone() {
            blocking(move || network.destroy()).await?;
            self.network = None;
        }
        self.cli.remove_bundle(&self.id)?;
        self.removed = true;
        tracing::debug!(id = %self.id, "sandbox removed");
        Ok(())
    }

    /// Best effort: the container may have exited already, which `remove` then handles.
    async fn signal_all(&self, signal: &str) {
        if let Err(error) = self.cli.kill_all(&self.id, signal).await {
            tracing::debug!(id = %self.id, signal, %error, "could not signal sandbox");
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if self.removed {
            return;
        }
        tracing::warn!(id = %self.id, "sandbox dropped without stop or remove, force-deleting it");
        let (cli, id, network) = (Arc::clone(&self.cli), self.id.clone(), self.network.take());
        // Drop cannot await; a plain thread works with or without a tokio runtime.
        std::thread::spawn(move || {
            let deleted = cli.std_command().args(["delete", "--force", &id]).output();
            if let Err(error) = deleted {
                tracing::warn!(id, %error, "could not force-delete dropped sandbox");
            }
            if let Some(Err(error)) = network.map(|n| n.destroy()) {
                tracing::warn!(id, %error, "could not remove network of dropped sandbox");
            }
            if let Err(error) = cli.remove_bundle(&id) {
                tracing::warn!(id, %error, "could not remove bundle of dropped sandbox");
            }
        });
    }
}

/// The shell convention: the exit code, or 128+signal when killed by a signal.
pub(crate) fn exit_code(status: ExitStatus) -> i32 {
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(-1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_shell_convention() {
        assert_eq!(exit_code(ExitStatus::from_raw(3 << 8)), 3);
        assert_eq!(exit_code(ExitStatus::from_raw(9)), 137);
        assert_eq!(exit_code(ExitStatus::from_raw(15)), 143);
    }
}
