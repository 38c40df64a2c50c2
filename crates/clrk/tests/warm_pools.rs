//! Warm pools with the real runtime: filled to `warmPoolSize` with agents already running,
//! taken once each and refilled (during a long execution too), recycled after `warmPoolIdleTTL`, drained by a new revision,
//! healed when a warm sandbox is killed from outside, and emptied on delete and shutdown.

mod common;

use std::collections::BTreeSet;

use common::*;

/// Prints when its process started (host clock, in ns), then echoes its input.
const STAMP_THEN_CAT: &str = "echo started=$(date +%s%N); cat";

/// Whether `cat` runs in sandbox `id` (`runsc ps` lists the processes inside).
fn runs_cat(dev: &Dev, id: &str) -> bool {
    let root = dev.data_dir().join("sandboxes").join("state");
    let out = std::process::Command::new("runsc")
        .args(["--root", root.to_str().unwrap(), "ps", id])
        .output()
        .expect("runsc ps");
    text(&out.stdout)
        .lines()
        .any(|l| l.trim_end().ends_with(" cat"))
}

async fn warm_count(dev: &Dev, name: &str) -> u64 {
    let agent = dev
        .api_get(&format!("/v1/agents/default/{name}"))
        .await
        .json();
    agent["status"]["warm"].as_u64().unwrap_or(0)
}

async fn wait_warm(dev: &Dev, name: &str, want: u64) {
    eventually(&format!("{want} warm sandboxes of {name}"), || async {
        (warm_count(dev, name).await == want).then_some(())
    })
    .await;
}

fn sandboxes(dev: &Dev) -> BTreeSet<String> {
    dev.runsc_list().into_iter().collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn warm_sandboxes_are_started_ahead_used_once_and_refilled() {
    let dev = Dev::start();
    dev.apply(&sh_agent("warm", STAMP_THEN_CAT, "  warmPoolSize: 2"));
    wait_warm(&dev, "warm", 2).await;
    let before = sandboxes(&dev);
    assert_eq!(before.len(), 2, "{before:?}");
    // Ready means the runtime has started the sandbox; on a loaded machine its shell may not
    // have printed its stamp yet. Once `cat` runs in both, it has.
    dev.wait_for("the warm agents to reach cat", || {
        before.iter().all(|id| runs_cat(&dev, id)).then_some(())
    });

    let sent = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let r = dev
        .invoke(&[("X-Clrk-TaskAgent", "default/warm")], "hello")
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let answer = r.text();
    let (stamp, rest) = answer.split_once('\n').unwrap();
    let started: u128 = stamp.strip_prefix("started=").unwrap().parse().unwrap();
    assert!(
        started < sent,
        "the agent process started before the request was sent ({started} < {sent})"
    );
    assert!(rest.contains("\"data_base64\""), "{rest}");

    let runs = dev.invocations("warm").await;
    assert_eq!(runs[0]["start"], "warm", "{runs:?}");
    // Used once: the sandbox that served is gone, and the pool is back to two others.
    wait_warm(&dev, "warm", 2).await;
    let after = dev.wait_for("the served sandbox to be deleted", || {
        let now = sandboxes(&dev);
        (now.len() == 2).then_some(now)
    });
    assert_eq!(
        before.intersection(&after).count(),
        1,
        "one sandbox was used, one kept: {before:?} → {after:?}"
    );

    // Two requests at once take both; a third, with the pool still refilling, may start cold.
    let (a, b) = tokio::join!(
        dev.invoke(&[("X-Clrk-TaskAgent", "default/warm")], "a"),
        dev.invoke(&[("X-Clrk-TaskAgent", "default/warm")], "b"),
    );
    assert_eq!((a.status, b.status), (200, 200));
    let runs = dev.invocations("warm").await;
    assert!(
        runs[..2].iter().all(|r| r["start"] == "warm"),
        "both took a warm sandbox: {runs:?}"
    );
    let out = dev.clrk(&["agents", "invocations", "warm"]);
    assert!(
        text_has_column(&text(&out.stdout), "START", "warm"),
        "{}",
        text(&out.stdout)
    );

    // Deleting the agent removes its warm sandboxes.
    let out = dev.clrk(&["agents", "delete", "warm"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    dev.wait_for("no sandbox after delete", || {
        dev.runsc_list().is_empty().then_some(())
    });
}

fn text_has_column(table: &str, header: &str, value: &str) -> bool {
    let mut lines = table.lines();
    let Some(head) = lines.next() else {
        return false;
    };
    let Some(at) = head.find(header) else {
        return false;
    };
    lines.any(|l| l.get(at..).is_some_and(|cell| cell.starts_with(value)))
}

/// The replacement of a warm sandbox waits for the end of the execution that took it, but not
/// for long: the pool of an agent that runs for minutes is full again while it runs.
#[tokio::test(flavor = "multi_thread")]
async fn a_long_warm_execution_has_its_sandbox_replaced_while_it_runs() {
    let dev = Dev::start();
    dev.apply(&sh_agent(
        "long",
        "cat > /dev/null; sleep 600",
        "  warmPoolSize: 1",
    ));
    wait_warm(&dev, "long", 1).await;

    let request = dev.invoke(&[("X-Clrk-TaskAgent", "default/long")], "x");
    let refilled = async {
        eventually("the execution to run in the warm sandbox", || async {
            let runs = dev.invocations("long").await;
            runs.first()
                .filter(|r| r["status"] == "Running" && r["start"] == "warm")
                .map(drop)
        })
        .await;
        wait_warm(&dev, "long", 1).await;
    };
    tokio::select! {
        r = request => panic!("the execution ended before the pool refilled: {} {}", r.status, r.text()),
        () = refilled => {}
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_sandboxes_are_recycled_and_a_new_revision_drains_the_pool() {
    let mut dev = Dev::start();
    let manifest = |greeting: &str| {
        sh_agent(
            "ttl",
            &format!("echo {greeting}; cat >/dev/null"),
            "  warmPoolSize: 1\n  warmPoolIdleTTL: 2s",
        )
    };
    dev.apply(&manifest("v1"));
    wait_warm(&dev, "ttl", 1).await;
    let first = sandboxes(&dev);

    // Past the idle TTL the sandbox is replaced by a fresh one.
    dev.wait_for("the idle sandbox to be recycled", || {
        let now = sandboxes(&dev);
        (now.len() == 1 && now.is_disjoint(&first)).then_some(())
    });

    // A new revision drains the old pool; the next request runs the new code, warm.
    let drained = sandboxes(&dev);
    dev.apply(&manifest("v2"));
    dev.wait_for("the old revision's sandbox to be drained", || {
        let now = sandboxes(&dev);
        (now.len() == 1 && now.is_disjoint(&drained)).then_some(())
    });
    wait_warm(&dev, "ttl", 1).await;
    let r = dev
        .invoke(&[("X-Clrk-TaskAgent", "default/ttl")], "x")
        .await;
    assert_eq!(r.text(), "v2\n");
    let runs = dev.invocations("ttl").await;
    assert_eq!(
        (runs[0]["revision"].as_str(), runs[0]["start"].as_str()),
        (Some("ttl-00002"), Some("warm"))
    );

    // A clean stop deletes the warm sandboxes too.
    wait_warm(&dev, "ttl", 1).await;
    assert!(dev.stop().success(), "{}", dev.server_log());
    assert_eq!(dev.runsc_list(), Vec::<String>::new());
    assert_eq!(dev.sandbox_processes(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_warm_sandbox_killed_from_outside_is_replaced() {
    let dev = Dev::start();
    dev.apply(&sh_agent("healed", "cat", "  warmPoolSize: 1"));
    wait_warm(&dev, "healed", 1).await;
    let victim = sandboxes(&dev).into_iter().next().unwrap();

    // Kill every host process of that sandbox (runsc's sandbox, gofer and run processes).
    let status = std::process::Command::new("pkill")
        .args(["-9", "-f", &victim])
        .status()
        .unwrap();
    assert!(status.success(), "no process of {victim} found");
    // SIGKILL takes effect asynchronously; a request sent while the runtime's process is still
    // dying could take the sandbox (that window is not what this test is about).
    dev.wait_for("the killed sandbox's processes to be gone", || {
        let alive = std::process::Command::new("pgrep")
            .args(["-f", &victim])
            .status()
            .unwrap()
            .success();
        (!alive).then_some(())
    });

    let r = dev
        .invoke(&[("X-Clrk-TaskAgent", "default/healed")], "still here")
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("\"c3RpbGwgaGVyZQ==\""), "{}", r.text());
    dev.wait_for("the killed sandbox to be discarded and replaced", || {
        let now = sandboxes(&dev);
        (now.len() == 1 && !now.contains(&victim)).then_some(())
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn a_warm_runsc_sandbox_keeps_no_process_of_clrk() {
    let dev = Dev::start();
    dev.apply(&sh_agent("lean", "cat", "  warmPoolSize: 2"));
    wait_warm(&dev, "lean", 2).await;
    let warm = sandboxes(&dev);
    dev.wait_for("the warm agents to reach cat", || {
        warm.iter().all(|id| runs_cat(&dev, id)).then_some(())
    });

    // runsc's `create` and `start` have exited: the server is the parent of no process of
    // its warm sandboxes.
    let server = dev.pid().to_string();
    let children: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let parent = stat
                .rsplit(')')
                .next()?
                .split_whitespace()
                .nth(1)?
                .to_owned();
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            (parent == server && warm.iter().any(|id| cmdline.contains(id.as_str())))
                .then_some(cmdline)
        })
        .collect();
    assert!(children.is_empty(), "children of clrk: {children:?}");

    // And each still serves, with its status.
    let r = dev
        .invoke(&[("X-Clrk-TaskAgent", "default/lean")], "lean")
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("\"bGVhbg==\""), "{}", r.text());
}

/// Says what the previous execution left (a file in /tmp, a `sleep`), echoes its input,
/// leaves both behind, and hangs when asked to (`hang` is `aGFuZw` in base64).
const LEAVES_THINGS_BEHIND: &str = "test -e /tmp/left && echo file-left; \
    echo sleeping=$(pgrep -c sleep); in=$(cat); echo \"$in\"; touch /tmp/left; \
    (sleep 1000 &); case \"$in\" in *aGFuZw*) sleep 100;; esac";

/// The one sandbox of the pool, once it is the only one and differs from `not`.
fn only_sandbox(dev: &Dev, not: Option<&str>) -> String {
    dev.wait_for("one sandbox in the pool", || {
        let now = sandboxes(dev);
        match now.iter().next() {
            Some(id) if now.len() == 1 && Some(id.as_str()) != not => Some(id.clone()),
            _ => None,
        }
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reused_sandbox_serves_executions_afresh_until_its_limit_or_a_timeout() {
    let dev = Dev::start();
    // Reuse needs a pool to wait in, and says so naming the field.
    let out = dev.try_apply(&sh_agent("lonely", "cat", "  sandboxReuse: {}"));
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("spec.sandboxReuse") && err.contains("warmPoolSize"),
        "{err}"
    );

    let spec = "  warmPoolSize: 1\n  timeout: 5s\n  sandboxReuse:\n    maxExecutions: 3";
    dev.apply(&sh_agent("reused", LEAVES_THINGS_BEHIND, spec));
    wait_warm(&dev, "reused", 1).await;
    let first = only_sandbox(&dev, None);
    // The bodies as the envelope carries them, in base64.
    for (n, data) in [(1, "cmVxMQ=="), (2, "cmVxMg=="), (3, "cmVxMw==")] {
        let r = dev
            .invoke(&[("X-Clrk-TaskAgent", "default/reused")], format!("req{n}"))
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        let answer = r.text();
        // Each execution has a fresh agent process, an empty /tmp and no process of the
        // one before, in the same sandbox until it has served three.
        assert!(answer.starts_with("sleeping=0\n"), "{answer}");
        assert!(!answer.contains("file-left"), "{answer}");
        assert!(answer.contains(data), "{answer}");
        if n < 3 {
            wait_warm(&dev, "reused", 1).await;
            assert_eq!(only_sandbox(&dev, None), first, "execution {n} reused it");
        }
    }
    let runs = dev.invocations("reused").await;
    assert!(
        runs.iter()
            .all(|r| r["start"] == "warm" && r["status"] == "Succeeded"),
        "{runs:?}"
    );
    // Past maxExecutions it is replaced by a fresh one.
    let second = only_sandbox(&dev, Some(&first));

    // An execution that times out takes its sandbox with it.
    wait_warm(&dev, "reused", 1).await;
    let r = dev
        .invoke(&[("X-Clrk-TaskAgent", "default/reused")], "hang")
        .await;
    assert_eq!(r.status, 504, "{}", r.text());
    let third = only_sandbox(&dev, Some(&second));
    assert_ne!(third, first);
    wait_warm(&dev, "reused", 1).await;
    let r = dev
        .invoke(&[("X-Clrk-TaskAgent", "default/reused")], "after")
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().starts_with("sleeping=0\n"), "{}", r.text());

    // Two at once, one sandbox: the second waits for it to come back rather than start one,
    // so that sandbox has served its three ("after", then these) and is replaced.
    let one = only_sandbox(&dev, None);
    wait_warm(&dev, "reused", 1).await;
    let (a, b) = tokio::join!(
        dev.invoke(&[("X-Clrk-TaskAgent", "default/reused")], "a"),
        dev.invoke(&[("X-Clrk-TaskAgent", "default/reused")], "b"),
    );
    assert_eq!(
        (a.status, b.status),
        (200, 200),
        "{} {}",
        a.text(),
        b.text()
    );
    let runs = dev.invocations("reused").await;
    assert!(
        runs[..2].iter().all(|r| r["start"] == "warm"),
        "both ran in the pool's sandbox: {runs:?}"
    );
    only_sandbox(&dev, Some(&one));
}
