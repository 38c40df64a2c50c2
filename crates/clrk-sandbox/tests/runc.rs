//! The runc driver against the real `runc`, on a small busybox rootfs.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use clrk_sandbox::{RuntimeKind, SandboxError, SandboxSpec};
use common::*;
use tokio::io::AsyncBufReadExt;

/// A rootfs with only a static busybox and the applets the tests use.
fn busybox_rootfs(root: &Path) {
    let bin = root.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy("/bin/busybox", bin.join("busybox")).unwrap();
    for applet in ["sh", "cat", "sleep", "setsid", "test"] {
        std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
    }
}

fn busybox_spec(name: &str, rootfs: &Path, script: &str) -> SandboxSpec {
    let mut spec = SandboxSpec::new(
        id(name),
        rootfs,
        vec!["sh".into(), "-c".into(), script.into()],
    );
    spec.env = vec!["PATH=/bin".into()];
    spec
}

#[tokio::test]
async fn runc_passes_stdio_and_exit_code() {
    let dir = temp_dir();
    let rootfs = dir.path().join("rootfs");
    busybox_rootfs(&rootfs);
    let rt = runtime(RuntimeKind::Runc, dir.path());
    let spec = busybox_spec(
        "runc-stdio",
        &rootfs,
        "read x; echo got:$x; echo err >&2; echo y > /tmp/ok && cat /tmp/ok; exit 3",
    );
    let mut sandbox = rt.spawn(&spec).await.unwrap();
    let (out, err, code) = run_to_end(&mut sandbox, b"hello\n").await;
    assert_eq!(out, "got:hello\ny\n");
    assert_eq!(err, "err\n");
    assert_eq!(code, 3);

    sandbox.remove().await.unwrap();
    assert!(!rt.list().await.unwrap().contains(&spec.id));
    assert!(!bundle_dir(dir.path(), &spec.id).exists());
    assert!(
        !rootfs.join("tmp/ok").exists(),
        "/tmp is the sandbox's own tmpfs"
    );
}

#[tokio::test]
async fn runc_stop_leaves_no_process_behind() {
    let dir = temp_dir();
    let rootfs = dir.path().join("rootfs");
    busybox_rootfs(&rootfs);
    let rt = runtime(RuntimeKind::Runc, dir.path());
    let spec = busybox_spec(
        "runc-stop",
        &rootfs,
        "trap 'echo got-term' TERM; \
         sh -c 'trap \"\" TERM; setsid sleep 1000 & sleep 1000' & \
         echo ready; while :; do wait; done",
    );
    let mut sandbox = rt.spawn(&spec).await.unwrap();
    let mut stdout = tokio::io::BufReader::new(sandbox.take_stdout().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).await.unwrap();
    assert_eq!(line, "ready\n");
    assert!(
        host_processes_of(&spec.id).len() >= 3,
        "init, child and grandchild run"
    );

    let started = Instant::now();
    tokio::time::timeout(
        Duration::from_secs(60),
        sandbox.stop(Duration::from_secs(5)),
    )
    .await
    .expect("stop returned")
    .unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(5),
        "stopped before the grace period"
    );
    assert!(!rt.list().await.unwrap().contains(&spec.id));
    assert!(!bundle_dir(dir.path(), &spec.id).exists());
    eventually("no host process of the sandbox is left", || {
        host_processes_of(&spec.id).is_empty()
    })
    .await;
}

#[tokio::test]
async fn runc_reports_a_program_that_cannot_start() {
    let dir = temp_dir();
    let rootfs = dir.path().join("rootfs");
    busybox_rootfs(&rootfs);
    let rt = runtime(RuntimeKind::Runc, dir.path());
    let mut spec = busybox_spec("runc-nostart", &rootfs, "");
    spec.args = vec!["/no/such/program".into()];
    match rt.spawn(&spec).await {
        Err(err) => {
            assert!(matches!(err, SandboxError::Start { .. }), "{err}");
            assert!(err.to_string().contains("/no/such/program"), "{err}");
        }
        Ok(mut sandbox) => {
            let (_, err, code) = run_to_end(&mut sandbox, b"").await;
            sandbox.remove().await.unwrap();
            assert_ne!(code, 0);
            assert!(err.contains("/no/such/program"), "stderr: {err}");
        }
    }
    assert!(rt.list().await.unwrap().is_empty());
    assert!(!bundle_dir(dir.path(), &spec.id).exists());
}

#[tokio::test]
async fn runc_refuses_the_host_root() {
    let dir = temp_dir();
    let rt = runtime(RuntimeKind::Runc, dir.path());
    let spec = host_spec("runc-host", "true");
    let err = rt.spawn(&spec).await.unwrap_err();
    assert!(
        matches!(err, SandboxError::HostRootfsNeedsRunsc { .. }),
        "{err}"
    );
    assert!(!bundle_dir(dir.path(), &spec.id).exists());
}

/// Under runc the init and the agent are host processes of an unprivileged user in their own
/// PID namespace: the init still clears what an execution leaves behind, and the agent
/// cannot write into the init's stdio.
#[tokio::test]
async fn a_reused_runc_sandbox_runs_each_execution_afresh() {
    let dir = temp_dir();
    let rootfs = dir.path().join("rootfs");
    busybox_rootfs(&rootfs);
    let rt = runtime(RuntimeKind::Runc, dir.path());
    // `/proc/[0-9]*` counts the sandbox's processes without starting one: the init and this
    // shell, and nothing the previous execution left.
    let mut spec = busybox_spec(
        "runc-reuse",
        &rootfs,
        "test -e /tmp/left && echo file-left; set -- /proc/[0-9]*; echo procs=$#; read line; \
         echo \"$line\"; { printf X > /proc/1/fd/1; } 2>/dev/null && echo wrote || echo refused; \
         : > /tmp/left; sleep 1000 & exit ${line#code=}",
    );
    (spec.uid, spec.gid, spec.reuse) = (65534, 65534, true);
    let mut sandbox = rt.spawn(&spec).await.unwrap();
    for code in [0, 5, 0] {
        let (out, err, status) = execute(&mut sandbox, &format!("code={code}\n")).await;
        // The init is not dumpable: the kernel keeps this user out of its stdio.
        assert_eq!(
            out,
            format!("procs=2\ncode={code}\nrefused\n"),
            "stderr: {err}"
        );
        assert_eq!(status, code);
    }
    sandbox.remove().await.unwrap();
    assert!(host_processes_of(&spec.id).is_empty());
}
