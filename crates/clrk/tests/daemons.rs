//! DaemonAgents (SPECIFICATION §8): started on apply, restarted per policy with back-off, output in
//! the logs, stopped on delete (SIGTERM, 5 s, SIGKILL), replaced by a new revision, and
//! running again (once) after a `kill -9` of the server.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// A DaemonAgent running a shell script from the host root filesystem.
fn sh_daemon(name: &str, script: &str, extra_spec: &str) -> String {
    sh_manifest("DaemonAgent", name, script, extra_spec)
}

/// `clrk agents get NAME -o json`'s status.
fn status(dev: &Dev, name: &str) -> Value {
    let out = dev.clrk(&["agents", "get", name, "-o", "json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let agent: Value = serde_json::from_slice(&out.stdout).unwrap();
    agent["status"].clone()
}

fn wait_status(dev: &Dev, name: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    dev.wait_for(&format!("{name}: {what}"), || {
        let s = status(dev, name);
        check(&s).then_some(s)
    })
}

/// The cells of `clrk agents list`'s row for `name` as a map from column to value (the
/// last column, LAST-RUN, holds spaces and is left out).
fn list_row(dev: &Dev, name: &str) -> std::collections::HashMap<String, String> {
    let out = dev.clrk(&["agents", "list"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    let row: Vec<&str> = lines
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|cells| cells.get(1) == Some(&name))
        .unwrap_or_else(|| panic!("no row for {name} in\n{table}"));
    header
        .iter()
        .zip(row)
        .filter(|(column, _)| **column != "LAST-RUN")
        .map(|(column, cell)| (column.to_string(), cell.to_string()))
        .collect()
}

async fn daemon_runs(dev: &Dev, name: &str) -> Vec<Value> {
    dev.invocations(name)
        .await
        .into_iter()
        .filter(|r| r["trigger"] == "daemon")
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn each_restart_policy_and_crash_loop_back_off() {
    let dev = Dev::start();
    dev.apply(&sh_daemon(
        "always",
        "echo up; sleep 1; exit 0",
        "  restartPolicy: Always",
    ));
    dev.apply(&sh_daemon(
        "onfailure-ok",
        "sleep 1; exit 0",
        "  restartPolicy: OnFailure",
    ));
    dev.apply(&sh_daemon(
        "onfailure-bad",
        "sleep 1; exit 1",
        "  restartPolicy: OnFailure",
    ));
    dev.apply(&sh_daemon(
        "never",
        "sleep 1; exit 1",
        "  restartPolicy: Never",
    ));
    dev.apply(&sh_daemon("limited", "exit 1", "  maxRestarts: 2"));
    dev.apply(&sh_daemon(
        "mortal",
        "while true; do sleep 0.2; done",
        "  maxLifetimeSeconds: 1",
    ));

    wait_status(&dev, "always", "restarted after exit 0", |s| {
        s["restartCount"].as_u64() >= Some(1)
    });
    wait_status(&dev, "onfailure-bad", "restarted after exit 1", |s| {
        s["restartCount"].as_u64() >= Some(1)
    });
    let s = wait_status(&dev, "onfailure-ok", "stopped after exit 0", |s| {
        s["phase"] == "Stopped"
    });
    assert_eq!(s["restartCount"], 0, "{s}");
    assert_eq!(s["lastExitCode"], 0, "{s}");
    assert_eq!(
        s["reason"], "exited with code 0; restartPolicy is OnFailure",
        "{s}"
    );
    let s = wait_status(&dev, "never", "stopped after exit 1", |s| {
        s["phase"] == "Stopped"
    });
    assert_eq!(s["restartCount"], 0, "{s}");
    assert_eq!(
        s["reason"], "exited with code 1; restartPolicy is Never",
        "{s}"
    );
    let s = wait_status(&dev, "limited", "stopped at maxRestarts", |s| {
        s["phase"] == "Stopped"
    });
    assert_eq!(s["restartCount"], 2, "{s}");
    assert_eq!(
        s["reason"], "exited with code 1; maxRestarts (2) reached",
        "{s}"
    );
    assert_eq!(daemon_runs(&dev, "limited").await.len(), 3);
    wait_status(&dev, "mortal", "restarted past its lifetime", |s| {
        s["restartCount"].as_u64() >= Some(1)
    });
    let runs = daemon_runs(&dev, "mortal").await;
    assert!(
        runs.iter()
            .any(|r| r["reason"] == "stopped at maxLifetimeSeconds"),
        "{runs:?}"
    );

    // A daemon that exits at once backs off 1 s, 2 s, 4 s…, each visible while it waits.
    dev.apply(&sh_daemon("crasher", "exit 3", ""));
    let mut delays: Vec<f64> = Vec::new();
    dev.wait_for("crasher's back-off reaching 4s", || {
        let s = status(&dev, "crasher");
        if s["phase"] == "CrashLoopBackOff"
            && let Some(d) = s["restartDelaySeconds"].as_f64()
            && delays.last() != Some(&d)
        {
            delays.push(d);
        }
        (delays.last() >= Some(&4.0)).then_some(())
    });
    assert!(delays.windows(2).all(|w| w[0] < w[1]), "{delays:?}");
    assert!(delays.len() >= 2, "{delays:?}");
    let s = status(&dev, "crasher");
    assert_eq!(s["lastExitCode"], 3, "{s}");
    let shown = text(&dev.clrk(&["agents", "get", "crasher"]).stdout);
    assert!(
        shown.contains("Phase:") && shown.contains("Restarts:"),
        "{shown}"
    );
    // agents list shows it at a glance: backing off, restarted, nothing active meanwhile.
    let row = dev.wait_for("crasher backing off in agents list", || {
        let row = list_row(&dev, "crasher");
        (row["PHASE"] == "CrashLoopBackOff").then_some(row)
    });
    assert!(row["RESTARTS"].parse::<u32>().unwrap() >= 1, "{row:?}");
    assert_eq!(row["KIND"], "DaemonAgent", "{row:?}");
    // A TaskAgent has no phase.
    dev.apply(&sh_agent("plain-task", "true", ""));
    let row = list_row(&dev, "plain-task");
    assert_eq!(
        (row["PHASE"].as_str(), row["RESTARTS"].as_str()),
        ("-", "-")
    );

    // Every process start is a run with trigger daemon, its stdout in the logs.
    let logs = dev.api_get("/v1/agents/default/always/logs").await.text();
    let up: Vec<Value> = logs
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|l| l["line"] == "up")
        .collect();
    assert!(up.len() >= 2, "{logs}");
    assert!(up.iter().all(|l| l["stream"] == "stdout"), "{logs}");
    let runs = daemon_runs(&dev, "always").await;
    assert!(
        up.iter()
            .all(|l| runs.iter().any(|r| r["id"] == l["executionId"])),
        "{logs} {runs:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn runs_until_deleted_and_a_new_revision_replaces_the_process() {
    let dev = Dev::start();
    let loop_script = |word: &str| format!("while true; do echo {word}; sleep 1; done");
    dev.apply(&sh_daemon("bot", &loop_script("one"), ""));
    let first = wait_status(&dev, "bot", "running", |s| s["phase"] == "Running");
    assert!(first["upSince"].is_string(), "{first}");
    let shown = text(&dev.clrk(&["agents", "get", "bot"]).stdout);
    assert!(shown.contains("Phase:           Running"), "{shown}");
    assert!(shown.contains("Uptime:"), "{shown}");
    // At a glance: running, no restarts, and its process is the one active execution.
    let row = list_row(&dev, "bot");
    assert_eq!(
        (
            row["PHASE"].as_str(),
            row["RESTARTS"].as_str(),
            row["ACTIVE"].as_str()
        ),
        ("Running", "0", "1"),
        "{row:?}"
    );
    assert_eq!(status(&dev, "bot")["active"], 1);

    let out = dev.apply(&sh_daemon("bot", &loop_script("two"), ""));
    assert!(out.contains("bot-00002"), "{out}");
    let second = wait_status(&dev, "bot", "running the new revision", |s| {
        s["phase"] == "Running" && s["runId"] != first["runId"]
    });
    assert_eq!(
        second["restartCount"], 0,
        "a new revision starts afresh: {second}"
    );
    assert_eq!(dev.runsc_list().len(), 1, "{:?}", dev.runsc_list());
    let runs = daemon_runs(&dev, "bot").await;
    let old = runs.iter().find(|r| r["id"] == first["runId"]).unwrap();
    // Replaced on purpose: Stopped, not Failed.
    assert_eq!(old["status"], "Stopped", "{old}");
    assert_eq!(
        old["reason"], "stopped: the agent was deleted or a new revision replaced it",
        "{old}"
    );
    assert_eq!(old["revision"], "bot-00001", "{old}");
    let shown = text(&dev.clrk(&["agents", "invocations", "bot"]).stdout);
    assert!(shown.contains("Stopped"), "{shown}");
    let logs = dev.wait_for("the new process's output", || {
        let out = dev.clrk(&["agents", "logs", "bot"]);
        let logs = text(&out.stdout);
        logs.contains("two").then_some(logs)
    });
    assert!(logs.contains("one"), "{logs}");

    let out = dev.clrk(&["agents", "delete", "bot"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    dev.wait_for("no sandbox left", || {
        (dev.runsc_list().is_empty() && dev.sandbox_processes().is_empty()).then_some(())
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn a_daemon_ignoring_sigterm_is_killed_after_the_grace() {
    let dev = Dev::start();
    dev.apply(&sh_daemon(
        "stubborn",
        "trap '' TERM; while true; do echo alive; sleep 0.2; done",
        "",
    ));
    wait_status(&dev, "stubborn", "running", |s| s["phase"] == "Running");
    dev.wait_for("its output", || {
        text(&dev.clrk(&["agents", "logs", "stubborn"]).stdout)
            .contains("alive")
            .then_some(())
    });
    let deleted = Instant::now();
    let out = dev.clrk(&["agents", "delete", "stubborn"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    dev.wait_for("no sandbox left", || {
        (dev.runsc_list().is_empty() && dev.sandbox_processes().is_empty()).then_some(())
    });
    let took = deleted.elapsed();
    assert!(took >= Duration::from_millis(4500), "killed after {took:?}");
    assert!(
        dev.server_log()
            .contains("sandbox ignored SIGTERM, killing it"),
        "{}",
        dev.server_log()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn after_kill_9_both_daemons_run_again_without_duplicates() {
    let mut dev = Dev::start();
    let script = "while true; do echo tick; sleep 1; done";
    dev.apply(&sh_daemon("alpha", script, ""));
    dev.apply(&sh_daemon("beta", script, ""));
    for name in ["alpha", "beta"] {
        wait_status(&dev, name, "running", |s| s["phase"] == "Running");
    }
    assert_eq!(dev.runsc_list().len(), 2, "{:?}", dev.runsc_list());
    let before: Vec<Value> = ["alpha", "beta"].iter().map(|n| status(&dev, n)).collect();

    dev.kill9();
    dev.spawn(&[]);

    for (name, old) in ["alpha", "beta"].iter().zip(&before) {
        wait_status(&dev, name, "running again", |s| {
            s["phase"] == "Running" && s["runId"] != old["runId"]
        });
    }
    // Watch for a while: exactly one running sandbox per daemon, never more (the killed
    // ones may still be listed, stopped, until the restart's cleanup deletes them).
    let watched = Instant::now();
    while watched.elapsed() < Duration::from_secs(3) {
        let sandboxes = dev.running_sandboxes();
        assert_eq!(sandboxes.len(), 2, "{sandboxes:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // The killed ones are deleted by then or soon after.
    dev.wait_for("the killed sandboxes deleted", || {
        (dev.runsc_list().len() == 2).then_some(())
    });
    for (name, old) in ["alpha", "beta"].iter().zip(&before) {
        let runs = daemon_runs(&dev, name).await;
        let crashed = runs.iter().find(|r| r["id"] == old["runId"]).unwrap();
        assert_eq!(crashed["reason"], "server restarted", "{crashed}");
        assert_eq!(
            runs.iter().filter(|r| r["status"] == "Running").count(),
            1,
            "{runs:?}"
        );
    }
}
