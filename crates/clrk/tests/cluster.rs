//! The cluster end to end: PostgreSQL, `clrk server`s and `clrk worker`s, each on a host of
//! its own (a network namespace with its own loopback, nftables and metadata addresses, all
//! joined by a bridge), real gVisor on the workers, driven through the CLI and HTTP from the
//! test process as a user's machine would.

mod common;

use std::time::{Duration, Instant};

use common::cluster::*;
use common::*;

fn host_manifest() -> String {
    std::fs::read_to_string(repo_path("examples/word-count/taskagent-host.yaml")).unwrap()
}

const GUIDE_HEADERS: [(&str, &str); 3] = [
    ("X-Clrk-TaskAgent", "default/word-count"),
    ("X-Clrk-Trigger", "http"),
    ("content-type", "application/json"),
];

#[tokio::test(flavor = "multi_thread")]
async fn the_guide_flow_answers_through_either_server_from_workers_on_other_hosts() {
    // The issue's shape: PostgreSQL, two servers and three workers, each on a host of its own.
    let cluster = Cluster::start(2, 3).await;
    let (first, second) = (&cluster.clients[0], &cluster.clients[1]);
    let out = first.apply(&host_manifest());
    assert_eq!(
        out.trim(),
        "taskagent/word-count created",
        "{}",
        cluster.logs()
    );

    let mut ids = Vec::new();
    for client in [first, second, first, second] {
        let r = client
            .invoke(&GUIDE_HEADERS, r#"{"text":"hello world from clrk"}"#)
            .await;
        assert_eq!(r.status, 200, "{}\n{}", r.text(), cluster.logs());
        let id = r.header("x-clrk-execution-id").unwrap().to_string();
        assert_eq!(
            r.json(),
            serde_json::json!({"word_count": 4, "envelope_id": id})
        );
        ids.push(id);
    }
    // Every execution is on record, whichever server took it, seen through either.
    let runs = second.invocations("word-count").await;
    for id in &ids {
        let run = runs
            .iter()
            .find(|r| r["id"] == id.as_str())
            .unwrap_or_else(|| panic!("{id} not listed: {runs:?}"));
        assert_eq!(run["status"], "Succeeded");
        assert_eq!(run["trigger"], "http");
    }
    // A `host:` sandbox on a worker sees neither the cluster secret nor the worker's data.
    let secret_file = cluster.dir.path().join("cluster-secret");
    let secret = std::fs::read_to_string(&secret_file).unwrap();
    let script = format!(
        "cat >/dev/null; cat {} {}/worker-0/data/clrk.db 2>&1; echo end",
        secret_file.display(),
        cluster.dir.path().display()
    );
    first.apply(&sh_agent("peek", &script, ""));
    let r = first
        .invoke(&[("X-Clrk-TaskAgent", "default/peek")], "")
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().ends_with("end\n"), "{}", r.text());
    assert!(
        !r.text().contains(secret.trim()),
        "the secret leaked: {}",
        r.text()
    );
    // The agent ran on the workers' hosts, not the servers'.
    let ran_on: Vec<String> = cluster
        .workers
        .iter()
        .filter(|w| w.log().contains("execution finished"))
        .map(|w| w.name.clone())
        .collect();
    assert!(!ran_on.is_empty(), "no worker ran it:\n{}", cluster.logs());
    for server in &cluster.servers {
        assert!(
            !server.log().contains("execution finished"),
            "{} ran an execution itself",
            server.name
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_worker_fails_its_executions_worker_lost_and_the_others_finish() {
    let mut cluster = Cluster::start(1, 2).await;
    let client = &cluster.clients[0];
    // Quiet for 8 s, then answers: a lost one has written nothing yet.
    client.apply(&sh_agent("slow", "cat >/dev/null; sleep 8; echo done", ""));
    client.apply(&sh_agent("quick", "cat >/dev/null; echo quick", ""));
    let calls: Vec<_> = (0..6).map(|_| spawn_invoke(client, "slow")).collect();
    // All six run, spread over both workers.
    let spread = eventually("six executions running on both workers", || async {
        let w = workers(client).await;
        let (a, b) = (w["worker-0"].1, w["worker-1"].1);
        (a + b == 6 && a > 0 && b > 0).then_some((a, b))
    })
    .await;
    let killed_at = Instant::now();
    cluster.workers[0].kill9();
    // Before the registry notices, placement still tries the dead worker first: the order
    // goes to the other one instead of failing.
    for _ in 0..3 {
        let r = client
            .invoke(&[("X-Clrk-TaskAgent", "default/quick")], "")
            .await;
        assert_eq!(
            (r.status, r.text().trim()),
            (200, "quick"),
            "{}",
            cluster.logs()
        );
    }

    let mut lost = 0;
    let mut done = 0;
    for call in calls {
        let r = call.await.unwrap();
        match r.status {
            502 => {
                assert_eq!(r.text().trim(), "worker lost");
                assert!(
                    killed_at.elapsed() < Duration::from_secs(10),
                    "a lost execution's caller waited {:?}",
                    killed_at.elapsed()
                );
                lost += 1;
            }
            200 => {
                assert_eq!(r.text().trim(), "done");
                done += 1;
            }
            other => panic!("{other}: {}\n{}", r.text(), cluster.logs()),
        }
    }
    assert_eq!((lost, done), spread, "{}", cluster.logs());
    let runs = client.invocations("slow").await;
    let failed = runs
        .iter()
        .filter(|r| r["status"] == "Failed" && r["reason"] == "worker lost")
        .count();
    let succeeded = runs.iter().filter(|r| r["status"] == "Succeeded").count();
    assert_eq!((failed as u64, succeeded as u64), spread, "{runs:?}");
    // Silent for three heartbeats, the killed worker is marked lost.
    eventually("the killed worker marked Lost", || async {
        (workers(client).await["worker-0"].0 == "Lost").then_some(())
    })
    .await;
    // Started again, it deletes the sandboxes its previous start left and rejoins.
    cluster.workers[0].start();
    eventually("the restarted worker Ready again", || async {
        (workers(client).await["worker-0"].0 == "Ready").then_some(())
    })
    .await;
    eventually("its previous start's sandboxes deleted", || async {
        let log = cluster.workers[0].log();
        log.contains("deleted sandboxes left by a previous run")
            .then_some(())
    })
    .await;
    let sandboxes = cluster.dir.path().join("worker-0/data/sandboxes/state");
    let out = std::process::Command::new("runsc")
        .args(["--root", sandboxes.to_str().unwrap(), "list", "-quiet"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "",
        "sandboxes left"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn max_concurrent_holds_across_servers() {
    let cluster = Cluster::start(2, 2).await;
    let client = &cluster.clients[0];
    client.apply(&sh_agent(
        "two",
        "cat >/dev/null; sleep 3; echo ok",
        "  maxConcurrent: 2",
    ));
    let calls: Vec<_> = (0..50)
        .map(|i| spawn_invoke(&cluster.clients[i % 2], "two"))
        .collect();
    // While they run, the store never holds more than two running, whichever server placed
    // them.
    let mut most = 0;
    while calls.iter().any(|c| !c.is_finished()) {
        let w = workers(client).await;
        let running = w["worker-0"].1 + w["worker-1"].1;
        most = most.max(running);
        assert!(running <= 2, "{w:?}\n{}", cluster.logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut statuses = std::collections::BTreeMap::new();
    for call in calls {
        let r = call.await.unwrap();
        if r.status == 429 {
            assert!(r.text().contains("limit of 2"), "{}", r.text());
        }
        *statuses.entry(r.status).or_insert(0) += 1;
    }
    let ok = statuses.get(&200).copied().unwrap_or(0);
    assert!(
        ok >= 2 && statuses.keys().all(|s| *s == 200 || *s == 429),
        "{statuses:?}\n{}",
        cluster.logs()
    );
    assert_eq!(most, 2, "two ran at once");
    // Only admitted executions are recorded, all of them succeeded.
    let runs = client.invocations("two").await;
    assert_eq!(runs.len(), ok, "{runs:?}");
    assert!(runs.iter().all(|r| r["status"] == "Succeeded"), "{runs:?}");
}

/// How many executions a worker's log says it finished.
fn finished_on(process: &Process) -> usize {
    process.log().matches("execution finished").count()
}

/// The registry's warm count of a worker.
async fn warm_on(client: &Dev, worker: &str) -> u64 {
    let r = client.api_get("/v1/workers").await;
    r.json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == worker)
        .map_or(0, |w| w["warm"].as_u64().unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_warm_worker_is_chosen_over_an_idle_one() {
    let cluster = Cluster::start(1, 2).await;
    let client = &cluster.clients[0];
    // One warm sandbox across the pool: the first worker by name keeps it.
    client.apply(&sh_agent(
        "warm",
        "cat >/dev/null; echo warm",
        "  warmPoolSize: 1",
    ));
    client.apply(&sh_agent("busy", "cat >/dev/null; sleep 8; echo busy", ""));
    eventually("worker-0 reporting its warm sandbox", || async {
        (warm_on(client, "worker-0").await == 1).then_some(())
    })
    .await;
    assert_eq!(
        warm_on(client, "worker-1").await,
        0,
        "the pool's one sandbox is shared, not copied"
    );
    // worker-0 gets busy (ties go to the first): it is now the more loaded of the two.
    let busy = spawn_invoke(client, "busy");
    eventually("the busy execution running on worker-0", || async {
        (workers(client).await["worker-0"].1 == 1).then_some(())
    })
    .await;
    // Placement reads the registry at most once a second.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let before = (
        finished_on(&cluster.workers[0]),
        finished_on(&cluster.workers[1]),
    );
    let r = client
        .invoke(&[("X-Clrk-TaskAgent", "default/warm")], "")
        .await;
    assert_eq!(
        (r.status, r.text().trim()),
        (200, "warm"),
        "{}",
        cluster.logs()
    );
    let id = r.header("x-clrk-execution-id").unwrap().to_string();
    let run = client
        .invocations("warm")
        .await
        .into_iter()
        .find(|run| run["id"] == id.as_str())
        .unwrap();
    assert_eq!(run["start"], "warm", "{run:?}");
    eventually("the warm execution's end on worker-0's log", || async {
        (finished_on(&cluster.workers[0]) == before.0 + 1).then_some(())
    })
    .await;
    assert_eq!(
        finished_on(&cluster.workers[1]),
        before.1,
        "worker-1 ran nothing"
    );
    assert_eq!(busy.await.unwrap().status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_drained_worker_finishes_what_it_runs_takes_nothing_new_and_gives_back_its_warm_share() {
    let mut cluster = Cluster::start(1, 2).await;
    let client = &cluster.clients[0];
    client.apply(&sh_agent(
        "pooled",
        "cat >/dev/null; echo pooled",
        "  warmPoolSize: 2",
    ));
    client.apply(&sh_agent("long", "cat >/dev/null; sleep 5; echo long", ""));
    eventually("both workers holding their warm share", || async {
        (warm_on(client, "worker-0").await == 1 && warm_on(client, "worker-1").await == 1)
            .then_some(())
    })
    .await;
    // A long execution on worker-0 (ties go to the first), then the drain.
    let long = spawn_invoke(client, "long");
    eventually("the long execution running on worker-0", || async {
        (workers(client).await["worker-0"].1 == 1).then_some(())
    })
    .await;
    let health = cluster.worker_host(0).addr(HEALTH);
    assert_eq!(
        request_checked("GET", format!("http://{health}/readyz")).await,
        200
    );
    let out = client.clrk(&["workers", "drain", "worker-0"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(workers(client).await["worker-0"].0, "Draining");
    // Its orchestrator sees it alive but not ready.
    eventually("the drained worker's /readyz answering 503", || async {
        (request_checked("GET", format!("http://{health}/readyz")).await == 503).then_some(())
    })
    .await;
    assert_eq!(
        request_checked("GET", format!("http://{health}/healthz")).await,
        200
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;

    // Nothing new goes to it; what it runs finishes.
    let before = finished_on(&cluster.workers[0]);
    for _ in 0..4 {
        let r = client
            .invoke(&[("X-Clrk-TaskAgent", "default/pooled")], "")
            .await;
        assert_eq!(
            (r.status, r.text().trim()),
            (200, "pooled"),
            "{}",
            cluster.logs()
        );
    }
    let r = long.await.unwrap();
    assert_eq!((r.status, r.text().trim()), (200, "long"));
    assert_eq!(
        finished_on(&cluster.workers[0]),
        before + 1,
        "only the long one ended there"
    );
    // Its warm share moves: worker-1 keeps the whole pool.
    eventually(
        "the drained worker's warm sandboxes gone, the other's pool whole",
        || async {
            (warm_on(client, "worker-0").await == 0 && warm_on(client, "worker-1").await == 2)
                .then_some(())
        },
    )
    .await;

    // SIGTERM drains too: the execution in flight on worker-1 still answers.
    let last = spawn_invoke(client, "long");
    eventually("the last long execution running on worker-1", || async {
        (workers(client).await["worker-1"].1 == 1).then_some(())
    })
    .await;
    cluster.workers[1].stop();
    let r = last.await.unwrap();
    assert_eq!(
        (r.status, r.text().trim()),
        (200, "long"),
        "{}",
        cluster.logs()
    );
    assert!(
        !workers(client).await.contains_key("worker-1"),
        "a worker that stopped cleanly leaves the registry"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_server_loses_nothing_and_the_other_keeps_serving() {
    let mut cluster = Cluster::start(2, 1).await;
    let (first, second) = (&cluster.clients[0], &cluster.clients[1]);
    first.apply(&sh_agent("slow", "cat >/dev/null; sleep 4; echo done", ""));
    first.apply(&sh_agent("quick", "cat >/dev/null; echo quick", ""));
    let orphan = spawn_invoke(first, "slow");
    eventually("the slow execution running", || async {
        (workers(second).await["worker-0"].1 == 1).then_some(())
    })
    .await;
    cluster.servers[0].kill9();
    // Its caller loses the connection; the execution itself goes on and its end is recorded.
    let _ = orphan.await;
    let second = &cluster.clients[1];
    let r = second
        .invoke(&[("X-Clrk-TaskAgent", "default/quick")], "")
        .await;
    assert_eq!(
        (r.status, r.text().trim()),
        (200, "quick"),
        "{}",
        cluster.logs()
    );
    let run = eventually("the orphaned execution recorded as finished", || async {
        let runs = second.invocations("slow").await;
        runs.into_iter().find(|r| r["status"] != "Running")
    })
    .await;
    assert_eq!(run["status"], "Succeeded", "{run:?}");
    // An apply acknowledged by the dead server stands.
    let out = second.clrk(&["agents", "get", "slow", "-o", "json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_followed_through_one_server_show_lines_from_an_execution_placed_by_the_other() {
    let cluster = Cluster::start(2, 1).await;
    let (first, second) = (&cluster.clients[0], &cluster.clients[1]);
    first.apply(&sh_agent(
        "talker",
        "cat >/dev/null; echo first-line >&2; sleep 5; echo second-line >&2",
        "",
    ));
    let mut follow = std::process::Command::new(clrk_bin())
        .args(["agents", "logs", "talker", "-f"])
        .env("CLRK_DIR", second.clrk_dir())
        .env_remove("CLRK_SERVER")
        .env_remove("CLRK_TOKEN")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let stdout = follow.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let call = spawn_invoke(first, "talker");
    let mut seen: Vec<String> = Vec::new();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    for text in ["first-line", "second-line"] {
        while !seen.iter().any(|l| l.contains(text)) {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(line)) => seen.push(line),
                _ => panic!("the follower saw only {seen:?}\n{}", cluster.logs()),
            }
        }
        // The first line arrives while the execution still runs (it sleeps after it).
        if text == "first-line" {
            assert!(!call.is_finished(), "it came after the execution: {seen:?}");
        }
    }
    assert_eq!(call.await.unwrap().status, 200);
    let _ = follow.kill();
    let _ = follow.wait();
}

/// Which server's log says it leads cron.
fn cron_leader(cluster: &Cluster) -> Option<usize> {
    cluster
        .servers
        .iter()
        .position(|s| s.log().contains("leading leadership=\"clrk-cron\""))
}

/// The start times of the agent's cron-fired executions, oldest first.
async fn cron_fires(client: &Dev, agent: &str) -> Vec<chrono::DateTime<chrono::FixedOffset>> {
    let mut fires: Vec<_> = client
        .invocations(agent)
        .await
        .iter()
        .filter(|r| r["trigger"] == "cron")
        .map(|r| chrono::DateTime::parse_from_rfc3339(r["startedAt"].as_str().unwrap()).unwrap())
        .collect();
    fires.sort();
    fires
}

#[tokio::test(flavor = "multi_thread")]
async fn when_the_cron_leader_is_killed_another_server_fires_the_next_ticks_once_each() {
    let mut cluster = Cluster::start(2, 1).await;
    cluster.clients[0].apply(&sh_agent(
        "ticker",
        "cat >/dev/null; echo tick",
        "  schedule: \"@every 3s\"",
    ));
    let leader = eventually("a server leading cron", || async { cron_leader(&cluster) }).await;
    let other = 1 - leader;
    let survivor = &cluster.clients[other];
    eventually("two fires", || async {
        (cron_fires(survivor, "ticker").await.len() >= 2).then_some(())
    })
    .await;
    let killed_at = chrono::Utc::now();
    cluster.servers[leader].kill9();
    // The other server takes over and fires the next ticks.
    let survivor = &cluster.clients[other];
    eventually("two fires after the leader died", || async {
        let after = cron_fires(survivor, "ticker")
            .await
            .into_iter()
            .filter(|t| *t > killed_at)
            .count();
        (after >= 2).then_some(())
    })
    .await;
    assert!(
        cluster.servers[other]
            .log()
            .contains("leading leadership=\"clrk-cron\""),
        "{}",
        cluster.logs()
    );
    // Never a double fire: consecutive fires are a tick apart, before and after the
    // takeover; and the takeover left no gap of more than 10 s plus a tick.
    let fires = cron_fires(survivor, "ticker").await;
    for pair in fires.windows(2) {
        let gap = (pair[1] - pair[0]).num_milliseconds();
        assert!(gap >= 2_000, "two fires {gap} ms apart: {fires:?}");
        assert!(gap <= 13_000, "a gap of {gap} ms: {fires:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_workers_daemon_runs_again_on_another_worker() {
    let mut cluster = Cluster::start(1, 2).await;
    let client = &cluster.clients[0];
    client.apply(&sh_manifest(
        "DaemonAgent",
        "keeper",
        "echo up; sleep 600",
        "",
    ));
    let holder = eventually("the daemon running on one worker", || async {
        let w = workers(client).await;
        match (w["worker-0"].1, w["worker-1"].1) {
            (1, 0) => Some(0),
            (0, 1) => Some(1),
            _ => None,
        }
    })
    .await;
    let other = 1 - holder;
    let holder_name = format!("worker-{holder}");
    let other_name = format!("worker-{other}");
    cluster.workers[holder].kill9();
    eventually("the daemon running on the other worker", || async {
        (workers(client).await[&other_name].1 == 1).then_some(())
    })
    .await;
    // The run on the killed worker ends `worker lost` once the registry notices.
    let lost = eventually("the killed worker's run recorded lost", || async {
        client
            .invocations("keeper")
            .await
            .into_iter()
            .find(|r| r["status"] == "Failed" && r["reason"] == "worker lost")
    })
    .await;
    let running: Vec<_> = client
        .invocations("keeper")
        .await
        .into_iter()
        .filter(|r| r["status"] == "Running")
        .collect();
    assert_eq!(
        running.len(),
        1,
        "one run at a time: {running:#?} (lost: {lost:?})"
    );
    assert_eq!(workers(client).await[&holder_name].0, "Lost");
}

/// Each process reports what it does (SPECIFICATION §18): a server placement's families (a
/// 429), on its control API with the token and on `--metrics` without; a worker its
/// executions and sandboxes, on its `--metrics`.
#[tokio::test(flavor = "multi_thread")]
async fn servers_and_workers_each_report_their_own_metrics() {
    const METRICS: u16 = 9464;
    let listen = format!("0.0.0.0:{METRICS}");
    let cluster = Cluster::start_with(1, 1, 0, |_| Args {
        servers: vec!["--metrics".into(), listen.clone()],
        workers: vec!["--metrics".into(), listen.clone()],
    })
    .await;
    let client = &cluster.clients[0];
    client.apply(&sh_agent("echo", "cat", ""));
    for _ in 0..2 {
        let r = client
            .invoke(&[("X-Clrk-TaskAgent", "default/echo")], "hi")
            .await;
        assert_eq!(r.status, 200, "{}\n{}", r.text(), cluster.logs());
    }
    // An invocation refused (429) while the agent's one place is taken: the server's doing.
    client.apply(&sh_agent(
        "single",
        "cat >/dev/null; sleep 5; echo done",
        "  maxConcurrent: 1",
    ));
    let held = spawn_invoke(client, "single");
    eventually("the single execution running", || async {
        (client.invocations("single").await.len() == 1).then_some(())
    })
    .await;
    let r = client
        .invoke(&[("X-Clrk-TaskAgent", "default/single")], "")
        .await;
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(held.await.unwrap().status, 200);
    let get = |url: String| async move { request("GET", &url, &[], bytes::Bytes::new()).await };

    let unauthorised = get(format!("{}/metrics", client.api)).await;
    assert_eq!(unauthorised.status, 401, "{}", unauthorised.text());
    let with_token = client.api_get("/metrics").await;
    let open = get(format!("http://{}/metrics", cluster.hosts[1].addr(METRICS))).await;
    for r in [with_token, open] {
        assert_eq!(r.status, 200, "{}", r.text());
        let text = r.text();
        assert!(
            text.contains(r#"clrk_pool_refusals_total{pool="default",reason="max_concurrent"} 1"#),
            "{text}"
        );
        assert!(!text.contains("clrk_executions"), "{text}");
    }

    let worker_url = format!("http://{}/metrics", cluster.worker_host(0).addr(METRICS));
    let worker = eventually("the worker's executions in its metrics", || async {
        let r = get(worker_url.clone()).await;
        let text = r.text();
        (r.status == 200
            && text.contains(
                r#"clrk_executions_total{namespace="default",agent="echo",trigger="http",outcome="succeeded"} 2"#,
            ))
        .then_some(text)
    })
    .await;
    assert!(!worker.contains("clrk_pool_"), "{worker}");
    assert!(
        worker.contains(r#"clrk_sandbox_starts_total{runtime="runsc",result="started"}"#),
        "{worker}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_apply_warning_shows_through_either_server_until_what_was_missing_is_applied() {
    let cluster = Cluster::start(2, 0).await;
    let (first, second) = (&cluster.clients[0], &cluster.clients[1]);
    first.apply(&sh_agent("gpu-job", "true", "  workerPoolRef: gpu"));
    let conditions = |client: &Dev| {
        let out = client.clrk(&["agents", "get", "gpu-job", "-o", "json"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let agent: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        agent["status"].get("conditions").cloned()
    };
    // Computed by whichever server answers, from the shared store.
    let held = conditions(second).unwrap_or_default().to_string();
    assert!(
        held.contains("ReferencesResolved") && held.contains("no WorkerPool \\\"gpu\\\" exists"),
        "{held}"
    );
    second.apply(
        "apiVersion: clrk.apoxy.dev/v1alpha1\nkind: WorkerPool\nmetadata: {name: gpu}\nspec: {runtime: runsc}\n",
    );
    assert_eq!(conditions(first), None, "{}", cluster.logs());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_agents_runs_are_kept_and_marked_through_either_server() {
    let cluster = Cluster::start(2, 1).await;
    let (first, second) = (&cluster.clients[0], &cluster.clients[1]);
    first.apply(&host_manifest());
    let r = first
        .invoke(&GUIDE_HEADERS, r#"{"text":"before the delete"}"#)
        .await;
    assert_eq!(r.status, 200, "{}\n{}", r.text(), cluster.logs());
    let old_id = r.header("x-clrk-execution-id").unwrap().to_string();
    let out = first.clrk(&["agents", "delete", "word-count"]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    // The other server lists the deleted agent's run, and says the agent is deleted.
    let runs = second.invocations("word-count").await;
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(
        (&runs[0]["id"], &runs[0]["agentDeleted"]),
        (&serde_json::json!(old_id), &serde_json::json!(true)),
        "{runs:?}"
    );
    let out = second.clrk(&["agents", "invocations", "word-count"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("agent default/word-count is deleted"),
        "{}",
        text(&out.stderr)
    );

    // Applied again through the other server, the name lists both runs, the old one marked.
    second.apply(&host_manifest());
    let r = second
        .invoke(&GUIDE_HEADERS, r#"{"text":"after the delete"}"#)
        .await;
    assert_eq!(r.status, 200, "{}\n{}", r.text(), cluster.logs());
    let new_id = r.header("x-clrk-execution-id").unwrap().to_string();
    let runs = first.invocations("word-count").await;
    let marks: Vec<_> = runs
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap(),
                r["agentDeleted"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        marks,
        [(new_id.as_str(), false), (old_id.as_str(), true)],
        "{runs:?}"
    );
    assert_ne!(runs[0]["agentUid"], runs[1]["agentUid"], "{runs:?}");
}
