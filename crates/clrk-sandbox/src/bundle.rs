//! The OCI bundle: `config.json` built from a [`SandboxSpec`], written under the state dir.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::reuse_init;
use crate::runtime_cli::RuntimeKind;
use crate::{SandboxError, SandboxSpec, seccomp};

/// Empty file in the bundle, bind-mounted read-only over masked files.
const EMPTY_FILE: &str = "empty";
/// CFS period; the quota is scaled against it.
const CPU_PERIOD_US: u64 = 100_000;
/// The kernel refuses CFS quotas below 1 ms.
const MIN_CPU_QUOTA_US: u64 = 1_000;

/// Host tasks a runsc sandbox may have per guest process it is allowed: gVisor's ptrace
/// platform backs each guest process with several host threads (about 7.7 measured for
/// sleeping processes), and the sentry needs its own ([`RUNSC_HOST_TASKS_BASE`]). The guest's
/// own limit is `RLIMIT_NPROC`, which gVisor enforces with `EAGAIN`; the host cgroup limit only
/// backstops a guest root that spreads its processes over several uids (the sandbox then
/// dies when gVisor cannot make a thread).
const RUNSC_HOST_TASKS_PER_PROCESS: u64 = 8;
/// Host tasks of gVisor's sentry and gofer themselves.
const RUNSC_HOST_TASKS_BASE: u64 = 128;

/// Capabilities an agent's root may use under gVisor, whose root is not the host's: enough to
/// own and write files in its image (package managers, chown of build output), nothing that
/// touches devices, the network stack or the kernel. Under runc an agent has none.
const CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_NET_BIND_SERVICE",
];

/// How a masked path looks on the sandbox's root filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Masked {
    /// A directory (hidden under an empty tmpfs).
    Dir(PathBuf),
    /// A file (hidden under an empty file).
    File(PathBuf),
    /// Nothing there yet; runsc can still place a tmpfs in its overlay so it never appears.
    Missing(PathBuf),
}

/// Writes `<bundles>/<id>/config.json` (and the empty file masks use); returns the bundle dir.
/// `netns` is the network namespace to join; without one the sandbox gets a fresh, empty one.
pub(crate) fn write(
    spec: &SandboxSpec,
    kind: RuntimeKind,
    bundles: &Path,
    netns: Option<&Path>,
) -> Result<PathBuf, SandboxError> {
    let dir = bundles.join(&spec.id);
    std::fs::create_dir_all(bundles).map_err(SandboxError::io(bundles))?;
    std::fs::create_dir(&dir).map_err(|source| match source.kind() {
        ErrorKind::AlreadyExists => SandboxError::IdInUse {
            id: spec.id.clone(),
            path: dir.clone(),
        },
        _ => SandboxError::Io {
            path: dir.clone(),
            source,
        },
    })?;
    let empty = dir.join(EMPTY_FILE);
    std::fs::write(&empty, b"").map_err(SandboxError::io(&empty))?;
    let rootfs = std::path::absolute(&spec.rootfs).map_err(SandboxError::io(&spec.rootfs))?;
    let masked: Vec<Masked> = spec
        .masked_paths
        .iter()
        .map(|p| classify(&rootfs, p))
        .collect();
    let files = place_files(spec, &rootfs, &dir)?;
    let mut config = config(spec, kind, &rootfs, &masked, &empty, netns);
    if let Some(mounts) = config["mounts"].as_array_mut() {
        let at = mounts.len() - masked_dir_mounts(kind, &masked);
        for (i, (destination, source)) in files.into_iter().enumerate() {
            mounts.insert(
                at + i,
                json!({
                    "destination": destination, "type": "bind", "source": source,
                    "options": ["rbind", "ro", "nosuid", "nodev", "noexec"],
                }),
            );
        }
        if spec.reuse {
            // Under /dev, a tmpfs in every sandbox, so any image can take it.
            let init = reuse_init::install(bundles.parent().unwrap_or(bundles))?;
            mounts.insert(
                at,
                json!({
                    "destination": reuse_init::PATH, "type": "bind", "source": init,
                    "options": ["rbind", "ro", "nosuid", "nodev"],
                }),
            );
            let mut args = vec![Value::from(reuse_init::PATH)];
            args.extend(spec.args.iter().map(|a| Value::from(a.as_str())));
            config["process"]["args"] = Value::Array(args);
        }
    }
    let path = dir.join("config.json");
    let text = serde_json::to_vec_pretty(&config).expect("a JSON value always serializes");
    std::fs::write(&path, text).map_err(SandboxError::io(&path))?;
    Ok(dir)
}

/// Writes each of `spec.files` into the bundle; returns (destination, source) pairs for those
/// whose parent directory exists on `rootfs` (a mount point cannot be made in a missing one).
fn place_files(
    spec: &SandboxSpec,
    rootfs: &Path,
    bundle: &Path,
) -> Result<Vec<(PathBuf, PathBuf)>, SandboxError> {
    let mut placed = Vec::new();
    for (i, file) in spec.files.iter().enumerate() {
        let parent = file.path.parent().unwrap_or(Path::new("/"));
        if !matches!(classify(rootfs, parent), Masked::Dir(_)) {
            tracing::debug!(id = %spec.id, path = %file.path.display(), "no parent directory for a sandbox file; left out");
            continue;
        }
        let source = bundle.join(format!("file-{i}"));
        std::fs::write(&source, &file.contents).map_err(SandboxError::io(&source))?;
        placed.push((file.path.clone(), source));
    }
    Ok(placed)
}

/// How many mounts at the end of [`mounts`] are masked directories (files go before them).
fn masked_dir_mounts(kind: RuntimeKind, masked: &[Masked]) -> usize {
    masked
        .iter()
        .filter(|m| {
            matches!(
                (m, kind),
                (Masked::Dir(_), _) | (Masked::Missing(_), RuntimeKind::Runsc)
            )
        })
        .count()
}

/// Looks at `path` as it is on `rootfs` (symlinks followed, as the runtime will).
fn classify(rootfs: &Path, path: &Path) -> Masked {
    let on_root = rootfs.join(path.strip_prefix("/").unwrap_or(path));
    match std::fs::metadata(on_root) {
        Ok(m) if m.is_dir() => Masked::Dir(path.to_owned()),
        Ok(_) => Masked::File(path.to_owned()),
        Err(_) => Masked::Missing(path.to_owned()),
    }
}

/// The OCI runtime config for `spec`.
pub(crate) fn config(
    spec: &SandboxSpec,
    kind: RuntimeKind,
    rootfs: &Path,
    masked: &[Masked],
    empty_file: &Path,
    netns: Option<&Path>,
) -> Value {
    let caps: Vec<&str> = match kind {
        RuntimeKind::Runsc => CAPABILITIES.to_vec(),
        // runc's processes are host processes: no capability at all.
        RuntimeKind::Runc => Vec::new(),
    };
    let network = match netns {
        Some(path) => json!({ "type": "network", "path": path }),
        None => json!({ "type": "network" }),
    };
    let mut config = json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": { "uid": spec.uid, "gid": spec.gid },
            "args": spec.args,
            "env": spec.env,
            "cwd": spec.cwd,
            "noNewPrivileges": true,
            "capabilities": {
                "bounding": caps, "effective": caps, "permitted": caps,
            },
            "rlimits": rlimits(spec, kind),
        },
        "root": {
            "path": rootfs,
            // runsc runs with --overlay2=root:memory: the base stays untouched and writes land
            // in memory. runc has no overlay, so its root is read-only (an image rootfs may be
            // shared by several sandboxes) and /tmp is the writable place.
            "readonly": kind == RuntimeKind::Runc,
        },
        "hostname": spec.hostname,
        "mounts": mounts(kind, masked, empty_file),
        "linux": {
            "namespaces": [
                { "type": "pid" }, { "type": "ipc" }, { "type": "uts" },
                { "type": "mount" }, network,
            ],
            "resources": resources(spec, kind),
            // Relative, so both runtimes nest it under their own (clrk's) cgroup: the
            // server's limits and accounting cover its sandboxes.
            "cgroupsPath": format!("clrk/{}", spec.id),
            "maskedPaths": [
                "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
                "/sys/firmware",
            ],
            "readonlyPaths": [
                "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
            ],
        },
    });
    // gVisor answers the agent's system calls itself; under runc they reach the host kernel.
    if kind == RuntimeKind::Runc {
        config["linux"]["seccomp"] = seccomp::profile();
    }
    config
}

/// The agent's open-file soft limit: what a Linux process usually starts with, not the limit
/// clrk raised for itself (programs that close every possible descriptor would crawl). The
/// hard limit stays clrk's own: without capabilities, runc's agent cannot be given more.
const NOFILE_SOFT: u64 = 1024;

/// `RLIMIT_NOFILE` as the agent gets it.
fn nofile() -> Value {
    let hard = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .maximum
        .unwrap_or(u64::from(u32::MAX));
    json!({ "type": "RLIMIT_NOFILE", "hard": hard, "soft": NOFILE_SOFT.min(hard) })
}

/// The agent's open-file limit, and the guest's process limit under runsc (gVisor's kernel
/// enforces `RLIMIT_NPROC`); runc uses the pids cgroup instead, since `RLIMIT_NPROC` counts a
/// uid's processes host-wide.
fn rlimits(spec: &SandboxSpec, kind: RuntimeKind) -> Value {
    let mut limits = vec![nofile()];
    if kind == RuntimeKind::Runsc && spec.pids_limit > 0 {
        limits.push(json!({
            "type": "RLIMIT_NPROC", "hard": spec.pids_limit, "soft": spec.pids_limit,
        }));
    }
    Value::Array(limits)
}

/// Mounts in the order the runtime applies them.
fn mounts(kind: RuntimeKind, masked: &[Masked], empty_file: &Path) -> Vec<Value> {
    // File masks come first: runc resolves bind sources inside the new mount namespace, where a
    // later tmpfs (/tmp, a masked data dir) could hide the bundle's empty file.
    let mut out: Vec<Value> = masked
        .iter()
        .filter_map(|m| match m {
            Masked::File(p) => Some(json!({
                "destination": p, "type": "bind", "source": empty_file,
                "options": ["rbind", "ro", "nosuid", "nodev", "noexec"],
            })),
            _ => None,
        })
        .collect();
    out.extend([
        json!({ "destination": "/proc", "type": "proc", "source": "proc",
                "options": ["nosuid", "noexec", "nodev"] }),
        json!({ "destination": "/dev", "type": "tmpfs", "source": "tmpfs",
                "options": ["nosuid", "strictatime", "mode=755", "size=65536k"] }),
        json!({ "destination": "/dev/pts", "type": "devpts", "source": "devpts",
                "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"] }),
        json!({ "destination": "/dev/shm", "type": "tmpfs", "source": "shm",
                "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"] }),
        json!({ "destination": "/sys", "type": "sysfs", "source": "sysfs",
                "options": ["nosuid", "noexec", "nodev", "ro"] }),
        json!({ "destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
                "options": ["nosuid", "nodev", "mode=1777"] }),
    ]);
    out.extend(masked.iter().filter_map(|m| {
        let dir = match (m, kind) {
            (Masked::Dir(p), _) | (Masked::Missing(p), RuntimeKind::Runsc) => p,
            // runc cannot create a mount point on its read-only root; nothing is there to hide.
            (Masked::Missing(_), RuntimeKind::Runc) | (Masked::File(_), _) => return None,
        };
        Some(json!({
            "destination": dir, "type": "tmpfs", "source": "tmpfs",
            "options": ["ro", "nosuid", "nodev", "noexec", "mode=755"],
        }))
    }));
    out
}

/// Memory, CPU and process limits; a zero in the spec means "no limit".
///
/// runsc's cgroupfs handling works on this project's hybrid (v1) hosts, so the limit is a plain
/// cgroup limit rather than `--ignore-cgroups` plus `--total-memory`: gVisor sizes the guest's
/// memory from it, and the host charges everything the sandbox uses (its overlay writes too) to
/// that cgroup. Exceeding it OOM-kills the whole sandbox, which the caller sees as exit 137.
fn resources(spec: &SandboxSpec, kind: RuntimeKind) -> Value {
    let mut r = json!({ "devices": [{ "allow": false, "access": "rwm" }] });
    if spec.pids_limit > 0 {
        let limit = u64::from(spec.pids_limit);
        let limit = match kind {
            RuntimeKind::Runc => limit,
            RuntimeKind::Runsc => limit * RUNSC_HOST_TASKS_PER_PROCESS + RUNSC_HOST_TASKS_BASE,
        };
        r["pids"] = json!({ "limit": limit });
    }
    if spec.memory_bytes > 0 {
        r["memory"] = json!({ "limit": spec.memory_bytes });
    }
    if spec.cpu_millis > 0 {
        r["cpu"] = json!({ "quota": cpu_quota_us(spec.cpu_millis), "period": CPU_PERIOD_US });
    }
    r
}

/// CFS quota for `millis` thousandths of a CPU over [`CPU_PERIOD_US`].
fn cpu_quota_us(millis: u64) -> u64 {
    (millis.saturating_mul(CPU_PERIOD_US) / 1000).max(MIN_CPU_QUOTA_US)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> SandboxSpec {
        let mut s = SandboxSpec::new("clrk-t", "/", vec!["sh".into(), "-c".into(), "true".into()]);
        s.env = vec!["A=1".into()];
        s.cwd = "/work".into();
        s.uid = 1000;
        s.gid = 1001;
        s.hostname = "agent".into();
        s
    }

    fn destinations(c: &Value) -> Vec<&str> {
        c["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["destination"].as_str().unwrap())
            .collect()
    }

    #[test]
    fn process_is_exactly_the_spec() {
        let c = config(
            &spec(),
            RuntimeKind::Runsc,
            Path::new("/"),
            &[],
            Path::new("/e"),
            None,
        );
        let p = &c["process"];
        assert_eq!(p["args"], json!(["sh", "-c", "true"]));
        assert_eq!(p["env"], json!(["A=1"]));
        assert_eq!(p["cwd"], "/work");
        assert_eq!(p["user"], json!({ "uid": 1000, "gid": 1001 }));
        assert_eq!(p["terminal"], false);
        assert_eq!(p["noNewPrivileges"], true);
        assert_eq!(c["hostname"], "agent");
        assert_eq!(c["linux"]["cgroupsPath"], "clrk/clrk-t");
    }

    #[test]
    fn limits_follow_the_spec() {
        let mut s = spec();
        s.memory_bytes = 256 << 20;
        s.cpu_millis = 500;
        let c = config(
            &s,
            RuntimeKind::Runsc,
            Path::new("/"),
            &[],
            Path::new("/e"),
            None,
        );
        assert_eq!(c["linux"]["resources"]["memory"]["limit"], 256u64 << 20);
        assert_eq!(c["linux"]["resources"]["cpu"]["quota"], 50_000);
        assert_eq!(c["linux"]["resources"]["cpu"]["period"], 100_000);
        s.memory_bytes = 0;
        s.cpu_millis = 0;
        let c = config(
            &s,
            RuntimeKind::Runsc,
            Path::new("/"),
            &[],
            Path::new("/e"),
            None,
        );
        assert!(c["linux"]["resources"].get("memory").is_none());
        assert!(c["linux"]["resources"].get("cpu").is_none());
    }

    #[test]
    fn runc_gets_no_capabilities_a_seccomp_profile_and_a_pids_cgroup_limit() {
        let mut s = spec();
        s.pids_limit = 64;
        let c = config(
            &s,
            RuntimeKind::Runc,
            Path::new("/r"),
            &[],
            Path::new("/e"),
            None,
        );
        let caps = &c["process"]["capabilities"];
        for set in ["bounding", "effective", "permitted"] {
            assert_eq!(caps[set], json!([]), "{set}");
        }
        assert_eq!(c["process"]["noNewPrivileges"], true);
        assert_eq!(c["process"]["rlimits"], json!([nofile()]));
        assert_eq!(c["linux"]["resources"]["pids"]["limit"], 64);
        assert_eq!(c["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ERRNO");
    }

    #[test]
    fn runsc_limits_guest_processes_and_backstops_its_host_tasks() {
        let mut s = spec();
        s.pids_limit = 64;
        let c = config(
            &s,
            RuntimeKind::Runsc,
            Path::new("/"),
            &[],
            Path::new("/e"),
            None,
        );
        assert_eq!(
            c["process"]["rlimits"],
            json!([
                nofile(),
                { "type": "RLIMIT_NPROC", "hard": 64, "soft": 64 },
            ])
        );
        assert_eq!(c["linux"]["resources"]["pids"]["limit"], 64 * 8 + 128);
        assert!(c["linux"].get("seccomp").is_none(), "gVisor filters itself");
        assert!(
            !c["process"]["capabilities"]["effective"]
                .as_array()
                .unwrap()
                .is_empty()
        );
        s.pids_limit = 0;
        let c = config(
            &s,
            RuntimeKind::Runsc,
            Path::new("/"),
            &[],
            Path::new("/e"),
            None,
        );
        assert!(c["linux"]["resources"].get("pids").is_none());
        assert_eq!(c["process"]["rlimits"], json!([nofile()]));
    }

    #[test]
    fn tiny_cpu_share_still_gets_a_valid_quota() {
        assert_eq!(cpu_quota_us(1), MIN_CPU_QUOTA_US);
        assert_eq!(cpu_quota_us(2000), 200_000);
    }

    #[test]
    fn root_is_writable_only_through_the_runsc_overlay() {
        let c = config(
            &spec(),
            RuntimeKind::Runsc,
            Path::new("/"),
            &[],
            Path::new("/e"),
            None,
        );
        assert_eq!(c["root"], json!({ "path": "/", "readonly": false }));
        let c = config(
            &spec(),
            RuntimeKind::Runc,
            Path::new("/r"),
            &[],
            Path::new("/e"),
            None,
        );
        assert_eq!(c["root"], json!({ "path": "/r", "readonly": true }));
    }

    #[test]
    fn all_namespaces_are_fresh() {
        let c = config(
            &spec(),
            RuntimeKind::Runc,
            Path::new("/r"),
            &[],
            Path::new("/e"),
            None,
        );
        let ns: Vec<&str> = c["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| {
                assert!(
                    n.get("path").is_none(),
                    "namespace {n} joins an existing one"
                );
                n["type"].as_str().unwrap()
            })
            .collect();
        assert_eq!(ns, ["pid", "ipc", "uts", "mount", "network"]);
    }

    #[test]
    fn a_sandbox_network_joins_its_namespace() {
        let c = config(
            &spec(),
            RuntimeKind::Runsc,
            Path::new("/"),
            &[],
            Path::new("/e"),
            Some(Path::new("/var/run/netns/clrk-x")),
        );
        let ns = c["linux"]["namespaces"].as_array().unwrap();
        assert_eq!(
            ns[4],
            json!({ "type": "network", "path": "/var/run/netns/clrk-x" })
        );
        assert!(ns[..4].iter().all(|n| n.get("path").is_none()));
    }

    #[test]
    fn masks_files_first_and_directories_last() {
        let masked = [
            Masked::Dir("/data".into()),
            Masked::File("/keys/k".into()),
            Masked::Missing("/later".into()),
        ];
        let c = config(
            &spec(),
            RuntimeKind::Runsc,
            Path::new("/"),
            &masked,
            Path::new("/b/empty"),
            None,
        );
        let d = destinations(&c);
        assert_eq!(d.first(), Some(&"/keys/k"));
        assert_eq!(&d[d.len() - 2..], ["/data", "/later"]);
        assert_eq!(c["mounts"][0]["source"], "/b/empty");
        assert!(d.contains(&"/tmp") && d.contains(&"/dev/pts") && d.contains(&"/sys"));
    }

    #[test]
    fn runc_skips_masks_of_missing_paths() {
        let masked = [Masked::Missing("/later".into())];
        let c = config(
            &spec(),
            RuntimeKind::Runc,
            Path::new("/r"),
            &masked,
            Path::new("/e"),
            None,
        );
        assert!(!destinations(&c).contains(&"/later"));
    }

    #[test]
    fn classify_looks_on_the_rootfs() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("d")).unwrap();
        std::fs::write(root.path().join("f"), "x").unwrap();
        assert_eq!(
            classify(root.path(), Path::new("/d")),
            Masked::Dir("/d".into())
        );
        assert_eq!(
            classify(root.path(), Path::new("/f")),
            Masked::File("/f".into())
        );
        assert_eq!(
            classify(root.path(), Path::new("/n")),
            Masked::Missing("/n".into())
        );
    }
}
