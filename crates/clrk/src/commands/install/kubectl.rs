//! What `clrk install` and `clrk upgrade` ask of `kubectl`, as a plan of steps (pure, so
//! `--print-commands` and the tests see exactly what would run), and the code that runs it.

use std::process::Stdio;

use anyhow::{Context as _, bail};
use serde_json::Value;
use tokio::io::AsyncWriteExt as _;

use super::objects::{FIELD_MANAGER, InstallOptions};
use super::render;
use super::secrets::{self, GeneratedSecret};
use super::{server, worker};

/// One thing to do with kubectl.
#[derive(Debug, Clone)]
pub enum Step {
    /// Server-side apply of these objects (given on stdin): creates or updates them, and
    /// takes back fields another manager (e.g. `kubectl set image`) changed.
    Apply(Vec<Value>),
    /// Create this Secret with random values unless one of its name exists.
    EnsureSecret(GeneratedSecret),
    /// Any other command (`set image`, `rollout status`).
    Run(Vec<String>),
}

/// `clrk upgrade`'s inputs.
#[derive(Debug, Clone)]
pub struct UpgradeOptions {
    pub namespace: String,
    pub image: String,
    pub pools: Vec<String>,
    /// `kubectl rollout status --timeout` for each DaemonSet and the Deployment.
    pub timeout: String,
}

/// The namespace first (the Secrets go in it), then the Secrets missing, then the rest.
pub fn install_plan(options: &InstallOptions) -> Vec<Step> {
    let mut families = render::families(options).into_iter();
    let mut steps = Vec::new();
    if let Some(namespace) = families.next() {
        steps.push(Step::Apply(namespace.objects));
    }
    steps.extend(
        secrets::generated(options)
            .into_iter()
            .map(Step::EnsureSecret),
    );
    steps.push(Step::Apply(
        families.flat_map(|family| family.objects).collect(),
    ));
    steps
}

/// Workers first, pool by pool, each DaemonSet replacing one node's pod at a time (each
/// drained by its preStop and SIGTERM) and waited for; then the servers.
pub fn upgrade_plan(options: &UpgradeOptions) -> Vec<Step> {
    let ns = options.namespace.as_str();
    let mut steps = Vec::new();
    let mut replace = |target: String, containers: &[&str]| {
        let mut args = strings(&["set", "image", &target]);
        args.extend(
            containers
                .iter()
                .map(|container| format!("{container}={}", options.image)),
        );
        args.extend(strings(&["--namespace", ns]));
        steps.push(Step::Run(args));
        steps.push(Step::Run(strings(&[
            "rollout",
            "status",
            &target,
            "--namespace",
            ns,
            "--timeout",
            &options.timeout,
        ])));
    };
    for pool in &options.pools {
        replace(
            format!("daemonset/{}", worker::daemon_set_name(pool)),
            &[worker::CONTAINER],
        );
    }
    replace(
        format!("deployment/{}", server::DEPLOYMENT),
        &[server::CONTAINER, server::INIT_CONTAINER],
    );
    steps
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| (*s).to_string()).collect()
}

fn apply_args() -> Vec<String> {
    strings(&[
        "apply",
        "--server-side",
        &format!("--field-manager={FIELD_MANAGER}"),
        "--force-conflicts",
        "-f",
        "-",
    ])
}

fn get_secret_args(name: &str, namespace: &str) -> Vec<String> {
    strings(&[
        "get",
        "secret",
        name,
        "--namespace",
        namespace,
        "--ignore-not-found",
        "-o",
        "name",
    ])
}

fn create_args(namespace: &str) -> Vec<String> {
    strings(&["create", "--namespace", namespace, "-f", "-"])
}

/// `KIND/NAME` of each object, for messages.
fn names(objects: &[Value]) -> String {
    objects
        .iter()
        .map(|o| {
            format!(
                "{}/{}",
                o["kind"].as_str().unwrap_or("?"),
                o["metadata"]["name"].as_str().unwrap_or("?")
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The command lines a plan runs, with what goes on stdin after `#`.
pub fn describe(steps: &[Step], namespace: &str) -> Vec<String> {
    let mut lines = Vec::new();
    for step in steps {
        match step {
            Step::Apply(objects) => lines.push(format!(
                "kubectl {}   # {}",
                apply_args().join(" "),
                names(objects)
            )),
            Step::EnsureSecret(secret) => {
                lines.push(format!(
                    "kubectl {}",
                    get_secret_args(secret.name, namespace).join(" ")
                ));
                lines.push(format!(
                    "kubectl {}   # only when missing: Secret/{}, {}",
                    create_args(namespace).join(" "),
                    secret.name,
                    secret.what
                ));
            }
            Step::Run(args) => lines.push(format!("kubectl {}", args.join(" "))),
        }
    }
    lines
}

/// Runs the steps in order, stopping at the first that fails.
pub async fn execute(steps: &[Step], namespace: &str) -> anyhow::Result<()> {
    for step in steps {
        match step {
            Step::Apply(objects) => {
                kubectl(&apply_args(), Some(render::to_yaml(objects)?)).await?;
            }
            Step::EnsureSecret(secret) => ensure_secret(secret, namespace).await?,
            Step::Run(args) => kubectl(args, None).await?,
        }
    }
    Ok(())
}

async fn ensure_secret(secret: &GeneratedSecret, namespace: &str) -> anyhow::Result<()> {
    let output = tokio::process::Command::new("kubectl")
        .args(get_secret_args(secret.name, namespace))
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .await
        .context("running kubectl")?;
    if !output.status.success() {
        bail!(
            "kubectl could not tell whether Secret/{} exists",
            secret.name
        );
    }
    if !output.stdout.is_empty() {
        println!("secret/{} exists: kept", secret.name);
        return Ok(());
    }
    // The values travel on stdin, never on a command line `ps` shows.
    let object = secret.make(namespace)?;
    kubectl(
        &create_args(namespace),
        Some(serde_json::to_string(&object)?),
    )
    .await
}

/// Runs kubectl with `stdin`, its output passed through; fails naming the command.
async fn kubectl(args: &[String], stdin: Option<String>) -> anyhow::Result<()> {
    tracing::debug!(?args, "running kubectl");
    let mut child = tokio::process::Command::new("kubectl")
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .spawn()
        .context("running kubectl")?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes()).await?;
        drop(pipe);
    }
    let status = child.wait().await?;
    if !status.success() {
        bail!("`kubectl {}` failed ({status})", args.join(" "));
    }
    Ok(())
}
