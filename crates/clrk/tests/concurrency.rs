//! Concurrency limits under load with the real runtime: `maxConcurrent` answers 429 and
//! nothing else, a worker pool's `maxExecutionsPerWorker` queues the excess in a bounded
//! queue, and a new revision applied under load fails no request.

mod common;

use std::collections::BTreeMap;

use common::*;

async fn send_all(dev: &Dev, agent: &str, n: usize) -> Vec<HttpResponse> {
    let header = format!("default/{agent}");
    let requests = (0..n).map(|i| {
        let (ingress, header) = (dev.ingress.clone(), header.clone());
        tokio::spawn(async move {
            request(
                "POST",
                &format!("{ingress}/"),
                &[("X-Clrk-TaskAgent", header.as_str())],
                bytes::Bytes::from(format!("request {i}")),
            )
            .await
        })
    });
    let mut responses = Vec::with_capacity(n);
    for r in futures::future::join_all(requests).await {
        responses.push(r.unwrap());
    }
    responses
}

fn by_status(responses: &[HttpResponse]) -> BTreeMap<u16, usize> {
    let mut counts = BTreeMap::new();
    for r in responses {
        *counts.entry(r.status).or_default() += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_requests_against_max_concurrent_4_get_only_200_or_429() {
    // A thousand clients behind one address, as behind a load balancer: the per-client
    // connection cap is raised, as the docs advise for that setup.
    let dev = Dev::start_with(&["--max-connections-per-client", "1024"]);
    dev.apply(&sh_agent("limited", "cat", "  maxConcurrent: 4"));
    let r = dev
        .invoke(&[("X-Clrk-TaskAgent", "default/limited")], "warm-up")
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let baseline = rss_kib(dev.pid());

    let responses = send_all(&dev, "limited", 1000).await;
    let counts = by_status(&responses);
    assert_eq!(
        counts.keys().copied().collect::<Vec<_>>(),
        [200, 429],
        "{counts:?}"
    );
    for r in &responses {
        match r.status {
            200 => assert!(r.text().contains("\"data_base64\""), "{}", r.text()),
            _ => {
                assert_eq!(r.header("retry-after"), Some("1"));
                assert!(r.text().contains("limit of 4"), "{}", r.text());
            }
        }
    }
    // Every request that ran is recorded and finished.
    let runs = dev.invocations("limited").await;
    assert!(runs.iter().all(|r| r["status"] == "Succeeded"), "{runs:?}");

    // Nothing leaks: no sandbox, no runtime process, and the server's memory settles back.
    dev.wait_for("every sandbox to be deleted", || {
        (dev.runsc_list().is_empty() && dev.sandbox_processes().is_empty()).then_some(())
    });
    let settled = dev.wait_for("memory to settle near its baseline", || {
        let now = rss_kib(dev.pid());
        (now <= baseline + 32 * 1024).then_some(now)
    });
    eprintln!("clrk RSS: {baseline} KiB before, {settled} KiB after 1000 requests");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_pool_queues_excess_executions_then_refuses() {
    let dev = Dev::start();
    dev.apply(
        "apiVersion: clrk.apoxy.dev/v1alpha1\nkind: WorkerPool\nmetadata:\n  name: narrow\nspec:\n  maxExecutionsPerWorker: 1\n",
    );
    // A request whose body is "slow" holds the pool's only slot for a while; others are quick.
    // (base64 of "slow" is c2xvdw==; a host file would not do as a gate: the sandbox caches
    // the host's directories.)
    let script = "read -r event; case \"$event\" in *c2xvdw*) sleep 10;; esac; echo \"$event\"";
    dev.apply(&sh_agent("queued", script, "  workerPoolRef: narrow"));

    let pool = |dev: &Dev| {
        let out = dev.clrk(&["pools", "list"]);
        let table = text(&out.stdout);
        table
            .lines()
            .find(|l| l.starts_with("narrow "))
            .map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
            .unwrap_or_default()
    };
    let ingress = dev.ingress.clone();
    let spawn = |body: &str| {
        let (ingress, body) = (ingress.clone(), body.to_string());
        tokio::spawn(async move {
            request(
                "POST",
                &format!("{ingress}/"),
                &[("X-Clrk-TaskAgent", "default/queued")],
                bytes::Bytes::from(body),
            )
            .await
        })
    };
    let running = spawn("slow");
    dev.wait_for("one execution holding the pool's slot", || {
        (pool(&dev).get(3).map(String::as_str) == Some("1")).then_some(())
    });
    let waiting: Vec<_> = (1..=4).map(|i| spawn(&format!("n{i}"))).collect();
    dev.wait_for("four invocations queued", || {
        (pool(&dev).get(4).map(String::as_str) == Some("4")).then_some(())
    });

    // The queue (4 per slot) is full: the next one is refused at once.
    let r = dev
        .invoke(&[("X-Clrk-TaskAgent", "default/queued")], "")
        .await;
    assert_eq!(r.status, 429, "{}", r.text());
    assert!(
        r.text().contains("worker pool narrow") && r.text().contains("queue of 4 is full"),
        "{}",
        r.text()
    );
    assert_eq!(r.header("retry-after"), Some("1"));

    // Once the slow one is done, the queued ones all run, one at a time.
    assert_eq!(running.await.unwrap().status, 200);
    for w in waiting {
        let r = w.await.unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
    }
    assert_eq!(pool(&dev)[3..5], ["0".to_string(), "0".to_string()]);
}

#[tokio::test(flavor = "multi_thread")]
async fn applying_a_new_revision_under_load_fails_no_request() {
    let dev = Dev::start();
    let manifest = |word: &str| sh_agent("rolling", &format!("echo {word}"), "  warmPoolSize: 2");
    dev.apply(&manifest("v1"));

    let ingress = dev.ingress.clone();
    let load = tokio::spawn(async move {
        let mut seen = Vec::new();
        for _ in 0..30 {
            let r = request(
                "POST",
                &format!("{ingress}/"),
                &[("X-Clrk-TaskAgent", "default/rolling")],
                bytes::Bytes::new(),
            )
            .await;
            seen.push((r.status, r.text()));
            if r.text() == "v2\n" && seen.iter().filter(|(_, t)| t == "v2\n").count() >= 5 {
                break;
            }
        }
        seen
    });
    eventually("a few requests on v1", || async {
        (dev.invocations("rolling").await.len() >= 3).then_some(())
    })
    .await;
    assert_eq!(
        dev.apply(&manifest("v2")).trim(),
        "taskagent/rolling configured (revision rolling-00002)"
    );
    let seen = load.await.unwrap();
    assert!(
        seen.iter().all(|(status, _)| *status == 200),
        "a request failed during the rollout: {seen:?}"
    );
    assert_eq!(seen.first().map(|(_, t)| t.as_str()), Some("v1\n"));
    assert_eq!(
        seen.last().map(|(_, t)| t.as_str()),
        Some("v2\n"),
        "{seen:?}"
    );
}
