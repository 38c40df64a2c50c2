//! Why a sandbox could not be started for a revision. Each message is for the user who applied
//! the agent: it ends up as an execution's failure reason or a daemon's state.

use clrk_egress::EgressError;
use clrk_image::ImageError;
use clrk_sandbox::SandboxError;

/// A launch that failed, by the step that failed.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// The revision's image reference does not parse (a store written by another version).
    #[error("image {reference}: {source}")]
    Reference {
        reference: String,
        source: ImageError,
    },
    /// Its manifest or layers are not on this worker and the registry cannot give them now
    /// (unreachable, refusing, or no longer holding them): the caller may retry later.
    #[error(
        "image {reference} is not on this worker and cannot be pulled now: {source}; retry shortly"
    )]
    ImageUnavailable {
        reference: String,
        source: ImageError,
    },
    /// Its layers could not be unpacked or stored.
    #[error("preparing the image: {0}")]
    Image(ImageError),
    /// The preparing thread died (a panic while unpacking).
    #[error("preparing the image: {0}")]
    Preparing(String),
    /// The resolver and CA files of an agent with `egressRefs` could not be made.
    #[error("preparing the sandbox's egress: {0}")]
    Egress(EgressError),
    #[error(
        "this worker does not run host: images: start it with --allow-host-rootfs, or use an OCI image"
    )]
    HostRootfsRefused,
    #[error("nothing to run: the image has no ENTRYPOINT, set spec.template.spec.command")]
    NothingToRun,
    /// The image's `User` names nobody in its `/etc/passwd`.
    #[error(transparent)]
    User(ImageError),
    #[error("the sandbox did not start: {0}")]
    Spawn(SandboxError),
}

/// What runsc's `create` says when a path to mount is gone by the time it resolves them.
const MOUNTS_UNRESOLVED: &str = "Failure to resolve mounts: no such file or directory";

impl LaunchError {
    /// Whether runsc's `create` failed because a path the sandbox mounts (one it hides) was
    /// gone: the `create` side of [`vanished_mount`], which `start` reports on the program's
    /// stderr instead.
    pub fn mount_vanished_at_create(&self) -> bool {
        matches!(self, LaunchError::Spawn(SandboxError::Start { stderr, .. })
            if stderr.contains(MOUNTS_UNRESOLVED))
    }
}

/// runsc's error when the sandbox started but the agent's program could not: printed on the
/// agent's stderr as `starting container: ... starting sandbox: REASON` by `start`, which
/// exits 128 (`run` prints the same after `running container: `).
const RUNSC_NOT_STARTED: &str = "starting container: ";
/// What `run` puts before it.
const RUNSC_RUNNING: &str = "running container: ";
/// Where runsc's chain of contexts ends and the reason begins.
const RUNSC_REASON: &str = "starting sandbox: ";

/// Why the agent's program did not start, from the last line its sandbox wrote on stderr
/// after exiting 128; `None` when that line is not runsc's.
///
/// ```
/// # use clrk_dispatch::worker::launch_error::program_not_started;
/// let line = r#"running container: starting container: starting root container: starting sandbox: error finding executable "nosuchbinary" in PATH [/usr/bin /bin]: no such file or directory"#;
/// assert_eq!(
///     program_not_started(line).unwrap(),
///     r#"command "nosuchbinary" not found in the image (PATH /usr/bin /bin): set spec.template.spec.command to a program it has"#
/// );
/// let line = "starting container: starting root container: starting sandbox: creating process: failed to load /etc/passwd: permission denied";
/// assert_eq!(program_not_started(line).unwrap(), "cannot run /etc/passwd: permission denied");
/// assert_eq!(program_not_started("Traceback (most recent call last):"), None);
/// assert_eq!(program_not_started("running container: waiting for container: EOF"), None);
/// ```
pub fn program_not_started(line: &str) -> Option<String> {
    let chain = runsc_chain(line)?;
    let reason = chain.rsplit_once(RUNSC_REASON).map_or(chain, |(_, r)| r);
    if let Some(rest) = reason.strip_prefix("error finding executable \"")
        && let Some((name, rest)) = rest.split_once('"')
    {
        let path = rest
            .split_once('[')
            .and_then(|(_, r)| r.split_once(']'))
            .map(|(path, _)| format!(" (PATH {path})"))
            .unwrap_or_default();
        return Some(format!(
            "command {name:?} not found in the image{path}: set spec.template.spec.command to a program it has"
        ));
    }
    if let Some(rest) = reason.strip_prefix("creating process: failed to load ") {
        return Some(format!("cannot run {rest}"));
    }
    Some(reason.to_owned())
}

/// The path of a mount that runsc could not make because it vanished, from the last line a
/// sandbox wrote on stderr after exiting 128: a `host:` sandbox hides other clrk instances'
/// files under mounts, and an instance that stops may remove one between the moment the
/// sandbox's mounts are chosen and the moment runsc makes them. The agent never ran.
///
/// ```
/// # use clrk_dispatch::worker::launch_error::vanished_mount;
/// let line = r#"running container: starting container: starting root container: starting sandbox: failed to setupFS: mounting submounts: mount submount "/etc/clrk/cluster-secret": failed to mount "/etc/clrk/cluster-secret" (type: bind): no such file or directory, opts: &{{true false false false} true}"#;
/// assert_eq!(vanished_mount(line).unwrap(), std::path::Path::new("/etc/clrk/cluster-secret"));
/// let refused = line.replace("no such file or directory", "permission denied");
/// assert_eq!(vanished_mount(&refused), None);
/// assert_eq!(vanished_mount("mount submount \"/x\": no such file or directory"), None);
/// ```
pub fn vanished_mount(line: &str) -> Option<std::path::PathBuf> {
    let chain = runsc_chain(line)?;
    let (_, rest) = chain.split_once("failed to setupFS: mounting submounts: mount submount \"")?;
    let (path, rest) = rest.split_once('"')?;
    rest.contains(": no such file or directory")
        .then(|| std::path::PathBuf::from(path))
}

/// The chain of contexts of runsc's error on a program that could not start, from
/// `starting container: ` on.
fn runsc_chain(line: &str) -> Option<&str> {
    let line = line.trim();
    let line = line.strip_prefix(RUNSC_RUNNING).unwrap_or(line);
    line.starts_with(RUNSC_NOT_STARTED).then_some(line)
}
