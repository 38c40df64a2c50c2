//! What a sandbox should be: the caller's description, independent of the runtime.

use std::path::PathBuf;

use crate::SandboxError;

/// Longest id accepted; runtimes use it in file and cgroup names.
const MAX_ID_LEN: usize = 100;

/// Everything needed to start one sandbox. The caller builds `args` and `env` in full (SPECIFICATION §7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxSpec {
    /// Unique id of `[a-z0-9-]`, e.g. `clrk-<uuid>`; names the container and its bundle dir.
    pub id: String,
    /// Root filesystem directory; `/` together with `host_rootfs` for `host:` images.
    pub rootfs: PathBuf,
    /// Run on the host root: a read-only base with a writable in-memory overlay (runsc only).
    pub host_rootfs: bool,
    /// Paths hidden inside the sandbox: a directory shows as an empty read-only tmpfs, a file
    /// as an empty read-only file (clrk's data dir, `~/.clrk`, keys).
    pub masked_paths: Vec<PathBuf>,
    /// The program and its arguments.
    pub args: Vec<String>,
    /// The environment as `K=V`. The runtime adds `HOME` (the user's home, as Docker does)
    /// when it is absent; nothing else is added.
    pub env: Vec<String>,
    /// Working directory inside the sandbox.
    pub cwd: String,
    /// User id of the process.
    pub uid: u32,
    /// Group id of the process.
    pub gid: u32,
    /// Memory limit in bytes; 0 means none.
    pub memory_bytes: u64,
    /// CPU limit in thousandths of a CPU; 0 means none.
    pub cpu_millis: u64,
    /// Processes and threads the agent may have at once; 0 means none. runc counts them in
    /// the sandbox's pids cgroup; under runsc it is the guest's `RLIMIT_NPROC`, with a host
    /// cgroup limit sized for gVisor's own tasks as a backstop.
    pub pids_limit: u32,
    /// Extra runsc flags, `--name=value`, from the worker pool's `runtimeOptions`; checked
    /// against the installed runsc ([`crate::RuntimeSupport`]) before they get here. runc
    /// takes none.
    pub runtime_flags: Vec<String>,
    /// Hostname inside the sandbox.
    pub hostname: String,
    /// What the sandbox can reach over the network.
    pub network: Network,
    /// Files laid over the root filesystem, read-only (a trust bundle, `resolv.conf`). A file
    /// whose parent directory the root filesystem lacks is left out.
    pub files: Vec<SandboxFile>,
    /// Runs `args` under clrk's init, once per execution, for as long as the sandbox lives
    /// (`spec.sandboxReuse`): its stdio carries the init's frames, and executions go through
    /// [`Sandbox::next_execution`](crate::Sandbox::next_execution).
    pub reuse: bool,
}

/// A file clrk places in a sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxFile {
    /// Absolute path inside the sandbox.
    pub path: PathBuf,
    /// What it holds.
    pub contents: Vec<u8>,
}

/// A sandbox's network.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Network {
    /// Loopback only: nothing outside the sandbox is reachable.
    #[default]
    None,
    /// Its own network namespace with one veth whose host end carries the metadata addresses
    /// `169.254.169.254` and `fd00:ec2::254`; the host firewall drops everything else it sends.
    /// The sandbox's own addresses are [`Sandbox::addresses`](crate::Sandbox::addresses).
    Metadata,
    /// [`Network::Metadata`] plus egress: every TCP connection to another address is
    /// redirected to clrk's egress proxy and every DNS question to clrk's resolver, which
    /// decide what leaves. The sandbox routes everything to the host end.
    Egress,
}

impl Network {
    /// Whether the sandbox gets its own namespace and veth.
    pub fn is_networked(&self) -> bool {
        !matches!(self, Network::None)
    }
}

impl SandboxSpec {
    /// A spec with the defaults of a TaskAgent (1 CPU, 512 MiB, 512 processes, cwd `/`, uid 0,
    /// no env, no network).
    ///
    /// ```
    /// let spec = clrk_sandbox::SandboxSpec::new("clrk-1", "/", vec!["true".into()]);
    /// assert_eq!(spec.memory_bytes, 512 << 20);
    /// ```
    pub fn new(id: impl Into<String>, rootfs: impl Into<PathBuf>, args: Vec<String>) -> Self {
        SandboxSpec {
            id: id.into(),
            rootfs: rootfs.into(),
            host_rootfs: false,
            masked_paths: Vec::new(),
            args,
            env: Vec::new(),
            cwd: "/".into(),
            uid: 0,
            gid: 0,
            memory_bytes: 512 << 20,
            cpu_millis: 1000,
            pids_limit: 512,
            runtime_flags: Vec::new(),
            hostname: "sandbox".into(),
            network: Network::None,
            files: Vec::new(),
            reuse: false,
        }
    }
}

/// Checks that `id` is safe as a container name, a directory name and a cgroup name.
pub(crate) fn validate_id(id: &str) -> Result<(), SandboxError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(SandboxError::InvalidId { id: id.to_owned() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_clrk_ids() {
        assert!(validate_id("clrk-0b5e2c1a-7f3d-4a8e-9c6b-1d2e3f4a5b6c").is_ok());
    }

    #[test]
    fn rejects_ids_that_could_escape_the_state_dir() {
        for bad in ["", "../x", "a/b", "A", "a b", "a.b", &"a".repeat(101)] {
            assert!(validate_id(bad).is_err(), "{bad:?} accepted");
        }
    }
}
