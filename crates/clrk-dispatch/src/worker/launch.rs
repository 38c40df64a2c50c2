//! From a revision to the sandbox that runs it: command line, environment (SPECIFICATION §7),
//! working directory and limits.

use std::path::PathBuf;

use clrk_api::{ContainerSpec, Resources};
use clrk_image::{ImageConfig, Rootfs};
use clrk_sandbox::{Network, RuntimeKind, SandboxFile, SandboxSpec};

use crate::revision::RevisionShape;
use crate::worker::launch_error::LaunchError;

/// Base URL of the sandbox-local metadata service.
pub const METADATA_URL: &str = "http://169.254.169.254/v1";
/// Same, IPv6.
pub const METADATA_URL_V6: &str = "http://[fd00:ec2::254]/v1";
/// User and group of a runc agent whose image names no user or root: runc's processes are
/// host processes, and host root is never an agent's.
pub const RUNC_DEFAULT_ID: u32 = 65534;
/// `PATH` every sandbox starts with.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// The trust bundle every CA variable points at.
pub const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
const CA_VARIABLES: [&str; 5] = [
    "SSL_CERT_FILE",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "NODE_EXTRA_CA_CERTS",
    "GIT_SSL_CAINFO",
];

/// What runs: `command` + `args` when `command` is set, else the image ENTRYPOINT + `args`.
/// The image CMD is never used. `None` when there is nothing to run.
///
/// ```
/// # use clrk_dispatch::launch::command_line;
/// let mut c = clrk_api::ContainerSpec::default();
/// let mut image = clrk_image::ImageConfig::default();
/// image.entrypoint = Some(vec!["python".into(), "/agent.py".into()]);
/// image.cmd = Some(vec!["--ignored".into()]);
/// assert_eq!(command_line(&c, &image).unwrap(), vec!["python", "/agent.py"]);
/// c.command = Some(vec!["sh".into()]);
/// c.args = Some(vec!["-c".into(), "echo hi".into()]);
/// assert_eq!(command_line(&c, &image).unwrap(), vec!["sh", "-c", "echo hi"]);
/// ```
pub fn command_line(container: &ContainerSpec, image: &ImageConfig) -> Option<Vec<String>> {
    let mut argv = match &container.command {
        Some(command) if !command.is_empty() => command.clone(),
        _ => image.entrypoint.clone().filter(|e| !e.is_empty())?,
    };
    argv.extend(container.args.iter().flatten().cloned());
    Some(argv)
}

/// The environment of SPECIFICATION §7: clrk's variables first, then the manifest's literal `env`,
/// which may override them. Image `ENV` is not passed; `valueFrom` entries are dropped.
pub fn environment(container: &ContainerSpec) -> Vec<String> {
    let mut vars: Vec<(String, String)> = vec![
        ("CLRK_METADATA_URL".into(), METADATA_URL.into()),
        ("CLRK_METADATA_URL_V6".into(), METADATA_URL_V6.into()),
        ("PATH".into(), DEFAULT_PATH.into()),
    ];
    vars.extend(
        CA_VARIABLES
            .iter()
            .map(|v| (v.to_string(), CA_BUNDLE.to_string())),
    );
    for env in &container.env {
        let Some(value) = &env.value else {
            if env.value_from.is_some() {
                continue;
            }
            set(&mut vars, &env.name, "");
            continue;
        };
        set(&mut vars, &env.name, value);
    }
    vars.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
}

fn set(vars: &mut Vec<(String, String)>, name: &str, value: &str) {
    match vars.iter_mut().find(|(k, _)| k == name) {
        Some(slot) => slot.1 = value.to_string(),
        None => vars.push((name.to_string(), value.to_string())),
    }
}

/// Everything needed to start one sandbox for one execution.
pub struct Launch<'a> {
    pub sandbox_id: String,
    pub container: &'a ContainerSpec,
    pub resources: &'a Resources,
    pub image: &'a ImageConfig,
    pub rootfs: &'a Rootfs,
    /// Host paths hidden inside host-rootfs sandboxes (data dir, `$CLRK_DIR`).
    pub masked_paths: &'a [PathBuf],
    pub network: Network,
    /// Files laid over the root filesystem (resolver, trust bundles).
    pub files: Vec<SandboxFile>,
    /// The runtime that will run it.
    pub runtime: RuntimeKind,
    /// The worker pool's `pidsLimit`.
    pub pids_limit: u32,
    /// The worker pool's runtime flags (`runtimeOptions`).
    pub runtime_flags: &'a [String],
    /// Runs executions one after another (`spec.sandboxReuse`).
    pub reuse: bool,
}

impl Launch<'_> {
    /// The sandbox spec, or why the revision cannot run.
    pub fn spec(&self) -> Result<SandboxSpec, LaunchError> {
        let args = command_line(self.container, self.image).ok_or(LaunchError::NothingToRun)?;
        let cwd = self
            .container
            .working_dir
            .clone()
            .or_else(|| self.image.working_dir.clone())
            .filter(|d| !d.is_empty())
            .unwrap_or_else(|| "/".to_string());
        // The image's `User` applies whether or not `command` is set, as in docker.
        let (uid, gid) = match &self.image.user {
            Some(user) => self.rootfs.user_ids(user).map_err(LaunchError::User)?,
            None => (0, 0),
        };
        // Under gVisor root is the guest kernel's; under runc it would be the host's.
        let (uid, gid) = match (self.runtime, uid) {
            (RuntimeKind::Runc, 0) => (RUNC_DEFAULT_ID, RUNC_DEFAULT_ID),
            _ => (uid, gid),
        };
        Ok(SandboxSpec {
            id: self.sandbox_id.clone(),
            rootfs: self.rootfs.path.clone(),
            host_rootfs: self.rootfs.host,
            masked_paths: if self.rootfs.host {
                self.masked_paths.to_vec()
            } else {
                Vec::new()
            },
            args,
            env: environment(self.container),
            cwd,
            uid,
            gid,
            memory_bytes: self.resources.memory.bytes(),
            cpu_millis: self.resources.cpu.millis(),
            pids_limit: self.pids_limit,
            runtime_flags: self.runtime_flags.to_vec(),
            hostname: "clrk".to_string(),
            network: self.network,
            files: self.files.clone(),
            reuse: self.reuse,
        })
    }
}

/// The gateway names of `shape`'s `egressRefs`.
pub fn gateways(shape: &RevisionShape) -> Vec<String> {
    shape
        .egress_refs
        .iter()
        .map(|r| r.gateway_ref.clone())
        .collect()
}

/// Sandbox ids are derived from the execution id but always runtime-safe and unique.
pub fn sandbox_id(execution_id: &str) -> String {
    let safe: String = execution_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(40)
        .collect();
    format!(
        "clrk-{safe}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use clrk_api::EnvVar;

    #[test]
    fn environment_is_exactly_the_contract_plus_manifest_env() {
        let c = ContainerSpec {
            env: vec![
                EnvVar {
                    name: "GREETING".into(),
                    value: Some("hi".into()),
                    value_from: None,
                },
                EnvVar {
                    name: "PATH".into(),
                    value: Some("/opt/bin".into()),
                    value_from: None,
                },
                EnvVar {
                    name: "SECRET".into(),
                    value: None,
                    value_from: Some(
                        serde_json::json!({"secretKeyRef": {"name": "s", "key": "k"}}),
                    ),
                },
            ],
            ..ContainerSpec::default()
        };
        let env = environment(&c);
        assert!(env.contains(&"CLRK_METADATA_URL=http://169.254.169.254/v1".to_string()));
        assert!(env.contains(&"CLRK_METADATA_URL_V6=http://[fd00:ec2::254]/v1".to_string()));
        assert!(env.contains(&"GREETING=hi".to_string()));
        assert!(env.contains(&"PATH=/opt/bin".to_string()));
        assert!(env.contains(&format!("NODE_EXTRA_CA_CERTS={CA_BUNDLE}")));
        assert!(!env.iter().any(|e| e.starts_with("SECRET=")));
        assert_eq!(env.len(), 2 + 1 + 5 + 1);
    }

    #[test]
    fn no_command_and_no_entrypoint_is_nothing_to_run() {
        let c = ContainerSpec::default();
        let image = ImageConfig {
            cmd: Some(vec!["sh".into()]),
            ..ImageConfig::default()
        };
        assert!(command_line(&c, &image).is_none());
    }
}
