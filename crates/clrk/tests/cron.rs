//! Cron (SPECIFICATION §3, §8): scheduled TaskAgents fire through the dispatcher with the cron
//! envelope, honour `concurrencyPolicy: Forbid`, and refuse bad schedules at apply.

mod common;

use common::*;
use serde_json::Value;

/// The agent's log lines as the API returns them.
async fn log_lines(dev: &Dev, agent: &str) -> Vec<Value> {
    let r = dev
        .api_get(&format!("/v1/agents/default/{agent}/logs"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.text()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

async fn agent_json(dev: &Dev, agent: &str) -> Value {
    let r = dev.api_get(&format!("/v1/agents/default/{agent}")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_two_seconds_fires_with_the_cron_envelope_and_shows_its_times() {
    let dev = Dev::start();
    // The envelope goes to stderr, which is the agent's log.
    dev.apply(&sh_agent(
        "ticker",
        "cat >&2; echo",
        "  schedule: \"@every 2s\"\n  scheduleInput: {report: daily, n: [1, 2]}",
    ));

    let runs = dev.wait_for("two cron runs that succeeded", || {
        let runs = futures::executor::block_on(dev.invocations("ticker"));
        let done: Vec<Value> = runs
            .into_iter()
            .filter(|r| r["status"] == "Succeeded")
            .collect();
        (done.len() >= 2).then_some(done)
    });
    for run in &runs {
        assert_eq!(run["trigger"], "cron", "{run}");
    }
    let lines = log_lines(&dev, "ticker").await;
    let envelopes: Vec<Value> = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l["line"].as_str()?).ok())
        .collect();
    assert!(envelopes.len() >= 2, "{lines:?}");
    for envelope in &envelopes {
        assert_eq!(envelope["subject"], "cron", "{envelope}");
        assert_eq!(envelope["source"], "clrk://default/ticker", "{envelope}");
        assert_eq!(
            envelope["datacontenttype"], "application/json",
            "{envelope}"
        );
        assert_eq!(
            envelope["data"],
            serde_json::json!({"report": "daily", "n": [1, 2]}),
            "{envelope}"
        );
        assert!(
            runs.iter().any(|r| r["id"] == envelope["id"]),
            "the envelope id is the execution id: {envelope} {runs:?}"
        );
    }
    // Two fires, two fresh execution ids.
    assert_ne!(envelopes[0]["id"], envelopes[1]["id"]);

    let agent = agent_json(&dev, "ticker").await;
    let status = &agent["status"];
    let last: chrono::DateTime<chrono::Utc> = status["lastScheduleTime"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let next: chrono::DateTime<chrono::Utc> = status["nextScheduleTime"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(next > last, "{status}");
    assert!(next - last <= chrono::Duration::seconds(4), "{status}");

    let out = dev.clrk(&["agents", "get", "ticker"]);
    let shown = text(&out.stdout);
    assert!(
        shown.contains("Schedule:") && shown.contains("@every 2s"),
        "{shown}"
    );
    assert!(shown.contains("Next schedule:"), "{shown}");

    // Removing the schedule stops the fires at once; HTTP keeps working.
    dev.apply(&sh_agent("ticker", "cat >&2; echo", ""));
    let count = dev.invocations("ticker").await.len();
    let agent = agent_json(&dev, "ticker").await;
    assert!(agent["status"].get("nextScheduleTime").is_none(), "{agent}");
    let r = dev
        .invoke(&[("X-Clrk-TaskAgent", "default/ticker")], "")
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    // A fire already under way when the schedule went may still land.
    assert!(dev.invocations("ticker").await.len() <= count + 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn forbid_skips_ticks_while_a_run_is_in_flight() {
    let dev = Dev::start();
    dev.apply(&sh_agent(
        "slow",
        "cat >/dev/null; sleep 5",
        "  schedule: \"@every 2s\"\n  concurrencyPolicy: Forbid",
    ));
    let runs = eventually("two finished cron runs", || async {
        let runs = dev.invocations("slow").await;
        (runs.iter().filter(|r| r["status"] != "Running").count() >= 2).then_some(runs)
    })
    .await;
    // Never two at once: every run starts after the previous one ended.
    let mut spans: Vec<(String, Option<String>)> = runs
        .iter()
        .map(|r| {
            (
                r["startedAt"].as_str().unwrap().to_string(),
                r["endedAt"].as_str().map(str::to_string),
            )
        })
        .collect();
    spans.sort();
    for pair in spans.windows(2) {
        let (_, ended) = &pair[0];
        let (started, _) = &pair[1];
        let ended: chrono::DateTime<chrono::Utc> = ended
            .as_deref()
            .expect("an earlier run has ended")
            .parse()
            .unwrap();
        let started: chrono::DateTime<chrono::Utc> = started.parse().unwrap();
        assert!(started >= ended, "runs overlap: {runs:?}");
    }
    assert!(
        dev.server_log().contains("cron tick skipped"),
        "{}",
        dev.server_log()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_schedule_or_zone_fails_apply_naming_the_field() {
    let dev = Dev::start();
    let out = dev.try_apply(&sh_agent("bad", "true", "  schedule: \"61 * * * *\""));
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("spec.schedule: \"61 * * * *\" is not valid"),
        "{err}"
    );
    assert!(err.contains("@every <duration>"), "{err}");

    let out = dev.try_apply(&sh_agent(
        "bad",
        "true",
        "  schedule: \"@daily\"\n  timeZone: Europe/Atlantis",
    ));
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("spec.timeZone: \"Europe/Atlantis\" is not valid"),
        "{err}"
    );
    assert!(err.contains("IANA"), "{err}");

    let out = dev.clrk(&["agents", "list", "-o", "json"]);
    assert!(
        !text(&out.stdout).contains("\"bad\""),
        "nothing was applied"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn replace_stops_the_running_run_and_says_why() {
    let dev = Dev::start();
    dev.apply(&sh_agent(
        "replacer",
        "sleep 1000",
        "  schedule: \"@every 2s\"\n  concurrencyPolicy: Replace",
    ));
    let replaced = dev.wait_for("a run replaced by the next tick", || {
        let runs = futures::executor::block_on(dev.invocations("replacer"));
        runs.into_iter().find(|r| r["status"] == "Failed")
    });
    let reason = replaced["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("Replace"), "{replaced}");
    // Never two at once: the replaced run is over before its successor starts.
    let running = futures::executor::block_on(dev.invocations("replacer"))
        .into_iter()
        .filter(|r| r["status"] == "Running")
        .count();
    assert!(running <= 1, "{running} runs at once");
    dev.clrk(&["agents", "delete", "replacer"]);
}
