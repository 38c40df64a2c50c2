//! Runs the host's network tools (`ip` from iproute2, `nft` from nftables).
//!
//! Their command lines are stable, match what an operator types to inspect the result, and
//! take a whole batch on stdin (one process, one nftables transaction). They block for a few
//! milliseconds, so async callers run them on the blocking pool.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::SandboxError;

/// iproute2.
pub(crate) const IP: &str = "ip";
/// nftables.
pub(crate) const NFT: &str = "nft";

/// Runs `tool args`, with `script` on stdin when given; returns stdout.
pub(crate) fn run(
    tool: &'static str,
    args: &[&str],
    script: Option<&str>,
) -> Result<String, SandboxError> {
    let mut cmd = Command::new(tool);
    cmd.args(args)
        .stdin(if script.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let exec_error = |source| SandboxError::NetworkToolExec { tool, source };
    let mut child = cmd.spawn().map_err(exec_error)?;
    if let (Some(text), Some(mut stdin)) = (script, child.stdin.take()) {
        stdin.write_all(text.as_bytes()).map_err(exec_error)?;
    }
    let out = child.wait_with_output().map_err(exec_error)?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let mut command = args.join(" ");
    if let Some(text) = script {
        command.push_str(" <<<");
        command.push_str(text.trim_end());
    }
    Err(SandboxError::NetworkTool {
        tool,
        command,
        status: out.status,
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
    })
}

/// Like [`run`], but a failure whose message contains `tolerated` (the thing to create exists
/// already, the thing to delete is gone) returns `Ok(false)`.
pub(crate) fn run_tolerating(
    tool: &'static str,
    args: &[&str],
    script: Option<&str>,
    tolerated: &[&str],
) -> Result<bool, SandboxError> {
    match run(tool, args, script) {
        Ok(_) => Ok(true),
        Err(SandboxError::NetworkTool { stderr, .. })
            if tolerated.iter().any(|t| stderr.contains(t)) =>
        {
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

/// Runs `f` (network setup or teardown) on tokio's blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, SandboxError> + Send + 'static,
) -> Result<T, SandboxError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}
