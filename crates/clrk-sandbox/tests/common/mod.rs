//! Helpers shared by the integration tests: real runtimes in a temporary state dir.
#![allow(dead_code)] // Each test binary uses a different subset of these helpers.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clrk_sandbox::{Runtime, RuntimeConfig, RuntimeKind, Sandbox, SandboxSpec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A temporary dir outside /tmp (the sandbox mounts its own tmpfs there, which would hide it).
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap()
}

/// A runtime of `kind` whose state lives in `dir`.
pub fn runtime(kind: RuntimeKind, dir: &Path) -> Runtime {
    Runtime::new(RuntimeConfig::new(kind, dir.join("sandboxes")))
}

/// Where the bundle of `id` lives for a runtime made by [`runtime`].
pub fn bundle_dir(dir: &Path, id: &str) -> PathBuf {
    dir.join("sandboxes/bundles").join(id)
}

/// A sandbox id unique across concurrently running test processes.
pub fn id(name: &str) -> String {
    format!("clrk-test-{name}-{}", std::process::id())
}

/// A spec running `script` with `sh -c` on the host root, as `host:` images do.
pub fn host_spec(name: &str, script: &str) -> SandboxSpec {
    let mut spec = SandboxSpec::new(id(name), "/", vec!["sh".into(), "-c".into(), script.into()]);
    spec.host_rootfs = true;
    spec.env = vec!["PATH=/usr/local/bin:/usr/bin:/bin".into()];
    spec
}

/// Feeds `input` to stdin, closes it, and collects stdout, stderr and the exit code.
pub async fn run_to_end(sandbox: &mut Sandbox, input: &[u8]) -> (String, String, i32) {
    let mut stdin = sandbox.take_stdin().unwrap();
    let mut stdout = sandbox.take_stdout().unwrap();
    let mut stderr = sandbox.take_stderr().unwrap();
    let input = input.to_vec();
    let write = async move {
        // The agent may exit without reading; a broken pipe is its business.
        let _ = stdin.write_all(&input).await;
    };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let ((), o, e) = tokio::join!(
        write,
        stdout.read_to_end(&mut out),
        stderr.read_to_end(&mut err)
    );
    o.unwrap();
    e.unwrap();
    let code = tokio::time::timeout(Duration::from_secs(60), sandbox.wait())
        .await
        .expect("sandbox exited")
        .unwrap();
    (
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
        code,
    )
}

/// Pids of host processes that belong to sandbox `id`: its cgroup, or its id on the command
/// line (runsc's own processes).
pub fn host_processes_of(id: &str) -> Vec<u32> {
    let me = std::process::id();
    let cgroup = format!("/clrk/{id}");
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me)
        .filter(|pid| {
            let read = |f: &str| std::fs::read(format!("/proc/{pid}/{f}")).unwrap_or_default();
            String::from_utf8_lossy(&read("cmdline")).contains(id)
                || String::from_utf8_lossy(&read("cgroup")).contains(&cgroup)
        })
        .collect()
}

/// Polls `cond` until it holds or a generous deadline passes.
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One execution in a reused sandbox: its stdout, stderr and exit status.
pub async fn execute(sandbox: &mut Sandbox, envelope: &str) -> (String, String, i32) {
    let mut run = sandbox
        .next_execution(envelope.as_bytes().to_vec())
        .expect("the sandbox takes another execution");
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let (o, e) = tokio::join!(
        run.stdout.read_to_end(&mut out),
        run.stderr.read_to_end(&mut err)
    );
    o.unwrap();
    e.unwrap();
    let code = tokio::time::timeout(Duration::from_secs(60), run.exit)
        .await
        .expect("the execution ended")
        .expect("an exit status");
    (
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
        code,
    )
}
