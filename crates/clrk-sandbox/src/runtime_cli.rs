//! The runtime's command line: which OCI runtime runs sandboxes, and the one place that knows
//! the flags of `runsc` and `runc`.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::{Network, SandboxError};

/// File in the bundle the runtime writes the container's pid to once the process has started
/// (its `--pid-file`).
pub(crate) const PID_FILE: &str = "pid";
/// Dir in the bundle where runsc's commands log (its `--debug-log`, a file per command: `run`,
/// `gofer`, `boot`): the sandbox and gofer processes write why they died there only, and `run`
/// itself only says that the sandbox did not start. A few kB per sandbox, removed with it.
pub(crate) const RUNTIME_LOGS: &str = "runtime-logs";

/// Which OCI runtime runs the sandboxes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum RuntimeKind {
    /// gVisor: a user-space kernel between the agent and the host.
    #[default]
    Runsc,
    /// Plain Linux namespaces and cgroups; needs a real rootfs (no `host:`).
    Runc,
}

impl RuntimeKind {
    /// The binary looked up in `PATH` when none is configured.
    ///
    /// ```
    /// assert_eq!(clrk_sandbox::RuntimeKind::Runsc.default_binary(), "runsc");
    /// ```
    pub fn default_binary(self) -> &'static str {
        match self {
            RuntimeKind::Runsc => "runsc",
            RuntimeKind::Runc => "runc",
        }
    }
}

/// Signal numbers as both runtimes accept them on `kill`.
pub(crate) const SIGTERM: &str = "15";
pub(crate) const SIGKILL: &str = "9";

/// Invokes one runtime binary against one state dir.
#[derive(Debug)]
pub(crate) struct RuntimeCli {
    pub(crate) kind: RuntimeKind,
    pub(crate) binary: PathBuf,
    /// The runtime's `--root`: its container state.
    pub(crate) root: PathBuf,
    /// Where bundles live, one directory per sandbox id.
    pub(crate) bundles: PathBuf,
}

impl RuntimeCli {
    /// The binary with the global flags every subcommand needs.
    pub(crate) fn std_command(&self) -> std::process::Command {
        self.command(Network::None)
    }

    /// The binary with the global flags, for a sandbox with `network`.
    fn command(&self, network: Network) -> std::process::Command {
        let mut cmd = std::process::Command::new(&self.binary);
        cmd.arg("--root").arg(&self.root);
        if self.kind == RuntimeKind::Runsc {
            // `none` is a loopback-only stack; `sandbox` is gVisor's netstack on the interfaces
            // of the OCI config's network namespace. The root overlay keeps the rootfs
            // (possibly the host's) unchanged; writes go to sandbox memory, charged to its cgroup.
            cmd.arg(match network {
                Network::None => "--network=none",
                Network::Metadata | Network::Egress => "--network=sandbox",
            });
            cmd.arg("--overlay2=root:memory");
        }
        cmd
    }

    /// `run` of the bundle in `bundle`, with the container pid written to the bundle's pid
    /// file: runc's way to start a sandbox, the process living as long as the container.
    pub(crate) fn run_command(
        &self,
        id: &str,
        bundle: &Path,
        network: Network,
    ) -> tokio::process::Command {
        self.bundle_command("run", id, bundle, network, &[])
    }

    /// `create` of the bundle in `bundle`, with the sandbox's pid written to the bundle's pid
    /// file: runsc's way to start a sandbox, with `start` after it. The caller's stdio becomes
    /// the container's (the sandbox process keeps it); `create` exits once the container exists.
    /// `flags` (a pool's `runtimeOptions`) come after clrk's own.
    pub(crate) fn create_command(
        &self,
        id: &str,
        bundle: &Path,
        network: Network,
        flags: &[String],
    ) -> tokio::process::Command {
        self.bundle_command("create", id, bundle, network, flags)
    }

    /// `start` of created container `id`: runs its program. runsc sets up the sandbox's
    /// network here, so it takes the same network flags as `create`, and the same `flags`.
    pub(crate) fn start_command(
        &self,
        id: &str,
        bundle: &Path,
        network: Network,
        flags: &[String],
    ) -> tokio::process::Command {
        let mut cmd = self.sandbox_command(bundle, network, flags);
        cmd.arg("start").arg(id);
        tokio::process::Command::from(cmd)
    }

    fn bundle_command(
        &self,
        command: &str,
        id: &str,
        bundle: &Path,
        network: Network,
        flags: &[String],
    ) -> tokio::process::Command {
        let mut cmd = self.sandbox_command(bundle, network, flags);
        cmd.arg(command)
            .arg("--bundle")
            .arg(bundle)
            .arg("--pid-file")
            .arg(bundle.join(PID_FILE))
            .arg(id);
        tokio::process::Command::from(cmd)
    }

    /// The binary with the global flags, `flags` (a pool's `runtimeOptions`), the debug log
    /// and the network namespace hook: what `run`, `create` and `start` share.
    fn sandbox_command(
        &self,
        bundle: &Path,
        network: Network,
        flags: &[String],
    ) -> std::process::Command {
        let mut cmd = self.command(network);
        cmd.args(flags);
        self.log_to(&mut cmd, bundle);
        hide_host_network(&mut cmd, self.kind, network);
        cmd
    }

    /// runsc's `--debug-log` into the bundle's [`RUNTIME_LOGS`] dir.
    fn log_to(&self, cmd: &mut std::process::Command, bundle: &Path) {
        if self.kind == RuntimeKind::Runsc {
            // The trailing `/` makes it a dir of files named after each command.
            let mut flag = std::ffi::OsString::from("--debug-log=");
            flag.push(bundle.join(RUNTIME_LOGS));
            flag.push("/");
            cmd.arg(flag);
        }
    }

    /// Makes sure the state dir exists, as the runtimes expect.
    pub(crate) fn ensure_root(&self) -> Result<(), SandboxError> {
        std::fs::create_dir_all(&self.root).map_err(SandboxError::io(&self.root))
    }

    /// Runs a subcommand to completion; returns its stdout.
    async fn output(&self, args: &[&str]) -> Result<String, SandboxError> {
        let mut cmd = tokio::process::Command::from(self.std_command());
        cmd.args(args).stdin(Stdio::null());
        let out = cmd.output().await.map_err(|source| SandboxError::Exec {
            binary: self.binary.clone(),
            source,
        })?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(SandboxError::Command {
                binary: self.binary.clone(),
                command: args.join(" "),
                status: out.status,
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            })
        }
    }

    /// Sends `signal` to every process of container `id`.
    pub(crate) async fn kill_all(&self, id: &str, signal: &str) -> Result<(), SandboxError> {
        self.output(&["kill", "--all", id, signal]).await.map(drop)
    }

    /// Deletes container `id`, killing what still runs in it. A container that no longer
    /// exists counts as deleted (`runsc run` deletes its container itself on exit).
    pub(crate) async fn delete(&self, id: &str) -> Result<(), SandboxError> {
        match self.output(&["delete", "--force", id]).await {
            Ok(_) => Ok(()),
            Err(e) if !self.list().await?.iter().any(|c| c == id) => {
                tracing::debug!(id, error = %e, "container already gone");
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Ids of the containers in the state dir.
    pub(crate) async fn list(&self) -> Result<Vec<String>, SandboxError> {
        self.ensure_root()?;
        let out = self.output(&["list", "--quiet"]).await?;
        Ok(out
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect())
    }

    /// Ids of the bundle dirs; none when the bundles dir does not exist.
    pub(crate) fn bundle_ids(&self) -> Result<Vec<String>, SandboxError> {
        let entries = match std::fs::read_dir(&self.bundles) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            other => other.map_err(SandboxError::io(&self.bundles))?,
        };
        entries
            .map(|e| {
                e.map(|e| e.file_name().to_string_lossy().into_owned())
                    .map_err(SandboxError::io(&self.bundles))
            })
            .collect()
    }

    /// Removes bundle dir `id`; a missing one is fine.
    pub(crate) fn remove_bundle(&self, id: &str) -> Result<(), SandboxError> {
        let dir = self.bundles.join(id);
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(SandboxError::Io {
                path: dir,
                source: e,
            }),
            _ => Ok(()),
        }
    }
}

/// runsc takes over a sandbox's network namespace in a mount namespace of its own (see
/// `mount_ns`): in `run`, or in `create` and `start`.
fn hide_host_network(cmd: &mut std::process::Command, kind: RuntimeKind, network: Network) {
    if kind == RuntimeKind::Runsc && network != Network::None {
        // SAFETY: the hook only makes raw syscalls, as required between fork and exec.
        #[allow(unsafe_code)]
        unsafe {
            cmd.pre_exec(crate::mount_ns::hide_proc_sys_net)
        };
    }
}
