//! The one error type of clrk-sandbox.

use std::path::PathBuf;

/// Everything that can go wrong while preparing, running or cleaning up a sandbox.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The caller gave an id the runtimes or the bundle directory cannot take.
    #[error(
        "invalid sandbox id {id:?}: use 1 to 100 characters of [a-z0-9-], e.g. \"clrk-<uuid>\""
    )]
    InvalidId {
        /// The id at fault.
        id: String,
    },
    /// A bundle directory for this id already exists, so the id is in use or was not cleaned up.
    #[error(
        "sandbox id {id} is already in use (bundle {path} exists); pick a fresh id, or call remove_all at startup to clear leftovers"
    )]
    IdInUse {
        /// The id at fault.
        id: String,
        /// The existing bundle directory.
        path: PathBuf,
    },
    /// `host_rootfs` was requested with runc, which cannot run on the host root.
    #[error(
        "sandbox {id}: the host root filesystem (image host:) needs the runsc runtime; use a worker pool with runtime runsc"
    )]
    HostRootfsNeedsRunsc {
        /// The sandbox at fault.
        id: String,
    },
    /// The worker pool's `runtimeOptions` name a platform or flag this worker's runsc lacks.
    #[error("sandbox {id}: the worker pool's spec.runtimeOptions cannot run here: {reason}")]
    RuntimeOptions {
        /// The sandbox at fault.
        id: String,
        /// What the installed runsc lacks.
        reason: String,
    },
    /// A file or directory under the state dir could not be written, read or removed.
    #[error("cannot access {path}: {source}; check that the sandbox state dir is writable by clrk")]
    Io {
        /// The path at fault.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The runtime binary could not be executed at all.
    #[error(
        "cannot run the OCI runtime {binary}: {source}; install it (Debian package `runsc` or `runc`) or configure its path"
    )]
    Exec {
        /// The runtime binary.
        binary: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A runtime subcommand (`kill`, `delete`, `list`, ...) exited with an error.
    #[error("`{binary} {command}` failed ({status}): {stderr}")]
    Command {
        /// The runtime binary.
        binary: PathBuf,
        /// The subcommand and its arguments.
        command: String,
        /// How it exited.
        status: std::process::ExitStatus,
        /// What it printed on stderr.
        stderr: String,
    },
    /// The runtime exited before the container's process started.
    #[error(
        "sandbox {id} failed to start ({status}): {stderr}; check the rootfs, args and that the runtime works (`{binary} --version`)"
    )]
    Start {
        /// The sandbox at fault.
        id: String,
        /// The runtime binary.
        binary: PathBuf,
        /// How the runtime exited.
        status: std::process::ExitStatus,
        /// What the runtime printed on stderr.
        stderr: String,
    },
    /// The container neither started nor failed within the start deadline.
    #[error(
        "sandbox {id} did not start within {seconds} s; the machine may be overloaded or the runtime stuck"
    )]
    StartTimeout {
        /// The sandbox at fault.
        id: String,
        /// The deadline that passed.
        seconds: u64,
    },
    /// Waiting for the runtime process failed.
    #[error("cannot wait for sandbox {id}: {source}")]
    Wait {
        /// The sandbox at fault.
        id: String,
        /// What the OS said.
        source: std::io::Error,
    },
    /// `ip` or `nft` could not be executed at all.
    #[error(
        "cannot run `{tool}` to set up a sandbox network: {source}; install iproute2 and nftables (Debian packages `iproute2`, `nftables`; scripts/setup.sh does)"
    )]
    NetworkToolExec {
        /// The tool.
        tool: &'static str,
        /// What the OS said.
        source: std::io::Error,
    },
    /// `ip` or `nft` refused a step of a sandbox's network setup or teardown.
    #[error(
        "`{tool} {command}` failed ({status}): {stderr}; sandbox networks need root and a kernel with network namespaces, veth, IPv6 and nf_tables"
    )]
    NetworkTool {
        /// The tool.
        tool: &'static str,
        /// Its arguments (and the batch it read on stdin).
        command: String,
        /// How it exited.
        status: std::process::ExitStatus,
        /// What it printed on stderr.
        stderr: String,
    },
    /// Every sandbox address (and so every veth name) is taken.
    #[error(
        "no free network slot for sandbox {id}: all {slots} sandbox addresses are in use; stop sandboxes, or call remove_all at startup to clear leftovers"
    )]
    AddressPoolExhausted {
        /// The sandbox that could not get one.
        id: String,
        /// Size of the pool.
        slots: u32,
    },
    /// An egress sandbox was asked of a runtime configured without egress ports.
    #[error(
        "sandbox {id}: egress needs clrk's egress proxy, and this runtime was configured without one"
    )]
    NoEgressProxy {
        /// The sandbox at fault.
        id: String,
    },
}

impl SandboxError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> SandboxError {
        let path = path.into();
        move |source| SandboxError::Io { path, source }
    }
}
