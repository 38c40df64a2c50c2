//! The runsc driver against the real `runsc`, on the host root filesystem.

mod common;

use std::time::{Duration, Instant};

use clrk_sandbox::{RuntimeKind, SandboxError};
use common::*;
use tokio::io::{AsyncBufReadExt, AsyncReadExt};

#[tokio::test]
async fn stdin_reaches_the_agent_and_stdout_stderr_exit_come_back() {
    let dir = temp_dir();
    let rt = runtime(RuntimeKind::Runsc, dir.path());
    let spec = host_spec("stdio", "read x; echo got:$x; echo err >&2; exit 3");
    let mut sandbox = rt.spawn(&spec).await.unwrap();

    let again = rt.spawn(&spec).await.unwrap_err();
    assert!(matches!(again, SandboxError::IdInUse { .. }), "{again}");

    let (out, err, code) = run_to_end(&mut sandbox, b"hello\n").await;
    assert_eq!(out, "got:hello\n");
    assert_eq!(err, "err\n");
    assert_eq!(code, 3);

    sandbox.remove().await.unwrap();
    assert!(!rt.list().await.unwrap().contains(&spec.id));
    assert!(!bundle_dir(dir.path(), &spec.id).exists());
    // Idempotent, and wait still answers.
    sandbox.remove().await.unwrap();
    sandbox.stop(Duration::from_secs(5)).await.unwrap();
    assert_eq!(sandbox.wait().await.unwrap(), 3);
}

#[tokio::test]
async fn env_and_cwd_are_exactly_the_spec() {
    let dir = temp_dir();
    let rt = runtime(RuntimeKind::Runsc, dir.path());
    // PID 1's environment is what the runtime passed, before any shell adds PWD.
    let mut spec = host_spec("env", "pwd; tr '\\0' '\\n' < /proc/1/environ");
    spec.env = vec![
        "PATH=/usr/bin:/bin".into(),
        "GREETING=hello world".into(),
        "EMPTY=".into(),
    ];
    spec.cwd = "/usr/share".into();
    spec.hostname = "agent-host".into();
    let mut sandbox = rt.spawn(&spec).await.unwrap();
    let (out, err, code) = run_to_end(&mut sandbox, b"").await;
    sandbox.remove().await.unwrap();
    assert_eq!(code, 0, "stderr: {err}");

    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("/usr/share"));
    let mut env: Vec<&str> = lines.collect();
    env.sort();
    // The runtime adds HOME (uid 0's home) because the spec has none; nothing else.
    assert_eq!(
        env,
        [
            "EMPTY=",
            "GREETING=hello world",
            "HOME=/root",
            "PATH=/usr/bin:/bin"
        ]
    );
}

#[tokio::test]
async fn writes_stay_inside_and_masked_paths_are_empty() {
    let dir = temp_dir();
    let rt = runtime(RuntimeKind::Runsc, dir.path());
    let host = temp_dir();
    let secret_dir = host.path().join("data");
    std::fs::create_dir(&secret_dir).unwrap();
    std::fs::write(secret_dir.join("token"), "s3cret").unwrap();
    let secret_file = host.path().join("key.pem");
    std::fs::write(&secret_file, "PRIVATE").unwrap();
    let written = host.path().join("written-inside");

    let script = format!(
        "echo x > {w} && echo wrote; cat {w}; \
         python3 -c 'import os,sys; print(os.listdir(sys.argv[1]))' {d}; \
         cat {d}/token; echo file:$(cat {f}); \
         echo y > {d}/new || echo masked-dir-read-only",
        w = written.display(),
        d = secret_dir.display(),
        f = secret_file.display(),
    );
    let mut spec = host_spec("fs", &script);
    spec.masked_paths = vec![secret_dir.clone(), secret_file.clone()];
    let mut sandbox = rt.spawn(&spec).await.unwrap();
    let (out, err, _) = run_to_end(&mut sandbox, b"").await;
    sandbox.remove().await.unwrap();

    assert_eq!(
        out, "wrote\nx\n[]\nfile:\nmasked-dir-read-only\n",
        "stderr: {err}"
    );
    assert!(
        !written.exists(),
        "a write inside the sandbox reached the host"
    );
    assert!(!secret_dir.join("new").exists());
    assert_eq!(
        std::fs::read_to_string(secret_dir.join("token")).unwrap(),
        "s3cret"
    );
}

#[tokio::test]
async fn stop_leaves_no_process_behind() {
    let dir = temp_dir();
    let rt = runtime(RuntimeKind::Runsc, dir.path());
    // The init survives SIGTERM (handler, keeps waiting), its child ignores it, and the
    // grandchild sits in its own session: only SIGKILL after the grace period ends them.
    let spec = host_spec(
        "stop",
        "trap 'echo got-term' TERM; \
         sh -c 'trap \"\" TERM; setsid sleep 1000 & sleep 1000' & \
         echo ready; while :; do wait; done",
    );
    let mut sandbox = rt.spawn(&spec).await.unwrap();
    let mut stdout = tokio::io::BufReader::new(sandbox.take_stdout().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).await.unwrap();
    assert_eq!(line, "ready\n");
    assert!(!host_processes_of(&spec.id).is_empty());

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
    assert_eq!(sandbox.wait().await.unwrap(), 137);
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).await.unwrap();
    assert!(rest.contains("got-term"), "SIGTERM came first: {rest:?}");

    assert!(!rt.list().await.unwrap().contains(&spec.id));
    assert!(!bundle_dir(dir.path(), &spec.id).exists());
    eventually("no host process of the sandbox is left", || {
        host_processes_of(&spec.id).is_empty()
    })
    .await;
}

#[tokio::test]
async fn stop_of_an_agent_that_obeys_sigterm_is_quick() {
    let dir = temp_dir();
    let rt = runtime(RuntimeKind::Runsc, dir.path());
    let spec = host_spec("quickstop", "sleep 1000 & echo ready; wait");
    let mut sandbox = rt.spawn(&spec).await.unwrap();
    let mut stdout = tokio::io::BufReader::new(sandbox.take_stdout().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).await.unwrap();
    assert_eq!(line, "ready\n");

    let started = Instant::now();
    sandbox.stop(Duration::from_secs(30)).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "waited out the grace period"
    );
    assert_eq!(sandbox.wait().await.unwrap(), 143);
    assert!(!rt.list().await.unwrap().contains(&spec.id));
}

#[tokio::test]
async fn exceeding_the_memory_limit_fails_the_run() {
    let dir = temp_dir();
    let rt = runtime(RuntimeKind::Runsc, dir.path());
    let mut spec = host_spec(
        "oom",
        "python3 -c 'x = bytearray(700 << 20); x[::4096] = b\"a\" * (len(x) // 4096)'; echo survived",
    );
    spec.memory_bytes = 256 << 20;
    let mut sandbox = rt.spawn(&spec).await.unwrap();
    let (out, _, code) = run_to_end(&mut sandbox, b"").await;
    sandbox.remove().await.unwrap();
    assert_ne!(code, 0);
    assert_eq!(out, "");
}

#[tokio::test]
async fn a_started_sandbox_keeps_no_runtime_process_and_outlives_its_driver_until_removed() {
    let dir = temp_dir();
    let rt = runtime(RuntimeKind::Runsc, dir.path());
    let spec = host_spec("crash", "sleep 1000");
    let mut sandbox = rt.spawn(&spec).await.unwrap();

    // `create` and `start` have exited: no process of the driver's stays with the sandbox.
    let me = std::process::id().to_string();
    let children: Vec<u32> = host_processes_of(&spec.id)
        .into_iter()
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|s| s.rsplit(')').next().unwrap().split_whitespace().nth(1) == Some(&me))
        })
        .collect();
    assert!(
        children.is_empty(),
        "runtime processes of the test: {children:?}"
    );
    assert!(!sandbox.has_exited());

    // Simulate `kill -9` of clrk: its end of stdin closes, the handle never cleans up, the
    // sandbox keeps running.
    drop(sandbox.take_stdin());
    std::mem::forget(sandbox);
    assert_eq!(rt.list().await.unwrap(), [spec.id.as_str()]);

    let removed = rt.remove_all().await.unwrap();
    assert_eq!(removed, [spec.id.as_str()]);
    assert!(rt.list().await.unwrap().is_empty());
    assert!(!bundle_dir(dir.path(), &spec.id).exists());
    eventually("the orphaned sandbox's processes are gone", || {
        host_processes_of(&spec.id).is_empty()
    })
    .await;
}

#[tokio::test]
async fn a_program_that_cannot_start_fails_the_run_and_says_why() {
    let dir = temp_dir();
    let rt = runtime(RuntimeKind::Runsc, dir.path());
    let mut spec = host_spec("nostart", "");
    spec.args = vec!["/no/such/program".into()];
    let mut sandbox = rt.spawn(&spec).await.unwrap();
    let (out, err, code) = run_to_end(&mut sandbox, b"").await;
    sandbox.remove().await.unwrap();
    assert_ne!(code, 0);
    assert_eq!(out, "");
    assert!(err.contains("/no/such/program"), "stderr: {err}");
    assert!(rt.list().await.unwrap().is_empty());
    assert!(!bundle_dir(dir.path(), &spec.id).exists());
}

#[tokio::test]
async fn a_sandbox_that_cannot_start_says_what_its_runtime_died_of() {
    let dir = temp_dir();
    let rt = runtime(RuntimeKind::Runsc, dir.path());
    let mut spec = host_spec("noboot", "true");
    // A file laid over a directory: runsc's gofer cannot mount it and the sandbox dies before
    // the agent starts; `runsc run` itself only says that the sandbox did not start.
    spec.files = vec![clrk_sandbox::SandboxFile {
        path: "/usr/share".into(),
        contents: b"x".to_vec(),
    }];
    let error = rt.spawn(&spec).await.unwrap_err().to_string();
    assert!(error.contains("failed to start"), "{error}");
    assert!(
        error.contains("the sandbox said:")
            && error.contains("/usr/share")
            && error.contains("is a directory"),
        "{error}"
    );
    assert!(rt.list().await.unwrap().is_empty());
    assert!(!bundle_dir(dir.path(), &spec.id).exists());
}

#[tokio::test]
async fn a_reused_runsc_sandbox_runs_each_execution_afresh() {
    let dir = temp_dir();
    let rt = runtime(RuntimeKind::Runsc, dir.path());
    // Each execution: what /tmp held and which `sleep` survived, then its envelope back, a
    // file in /tmp and a process left behind, and an exit status from its envelope.
    let script = "test -e /tmp/left && echo file-left; pgrep -c sleep || true; read line; echo \"$line\"; echo to-stderr >&2; \
                  touch /tmp/left; (sleep 1000 &); exit ${line#code=}";
    let mut spec = host_spec("reuse", script);
    spec.reuse = true;
    let mut sandbox = rt.spawn(&spec).await.unwrap();
    assert!(sandbox.reusable());
    for code in [3, 0, 7] {
        let (out, err, status) = execute(&mut sandbox, &format!("code={code}\n")).await;
        // Nothing in /tmp and no sleep from the previous execution.
        assert_eq!(out, format!("0\ncode={code}\n"), "stderr: {err}");
        assert_eq!(err, "to-stderr\n");
        assert_eq!(status, code);
    }
    assert_eq!(sandbox.executions(), 3);
    assert!(
        !sandbox.has_exited(),
        "the sandbox still waits for executions"
    );
    // Stopped, the init ends at SIGTERM rather than ignoring it as a first process would:
    // the stop does not sit out its grace.
    let grace = Duration::from_secs(60);
    let began = Instant::now();
    sandbox.stop(grace).await.unwrap();
    assert!(began.elapsed() < grace, "the init ignored SIGTERM");
}

/// An agent that writes into the init's own stdout (root in the sandbox can) breaks only its
/// sandbox: the frames out of turn end the link, with bounded reads and no exit status.
#[tokio::test]
async fn forged_frames_end_the_reused_sandbox_and_nothing_else() {
    let dir = temp_dir();
    let rt = runtime(RuntimeKind::Runsc, dir.path());
    // A frame of an unknown kind claiming 4 GiB, then the agent waits.
    let script = "cat > /dev/null; printf 'Z\\377\\377\\377\\377' > /proc/1/fd/1; sleep 1000";
    let mut spec = host_spec("reuse-forged", script);
    spec.reuse = true;
    let mut sandbox = rt.spawn(&spec).await.unwrap();
    let mut run = sandbox.next_execution(b"{}\n".to_vec()).unwrap();
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(60), run.stdout.read_to_end(&mut out));
    read.await.expect("the link ended").unwrap();
    assert!(out.is_empty());
    assert!(run.exit.await.is_err(), "no exit status from a broken link");
    let why = sandbox.why_stopped().expect("the link says why it stopped");
    assert!(why.contains("out of turn"), "{why}");
    assert!(
        sandbox.next_execution(b"{}\n".to_vec()).is_none(),
        "the sandbox takes no further execution"
    );
    sandbox.remove().await.unwrap();
}
