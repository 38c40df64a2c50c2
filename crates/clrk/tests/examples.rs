//! The guide's other examples under `examples/`, each applied verbatim to `clrk dev` with real
//! gVisor and used as its comments say.

mod common;

use common::*;

fn example(path: &str) -> String {
    std::fs::read_to_string(repo_path(&format!("examples/{path}"))).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn jq_bot_lifts_the_data_out_of_the_envelope() {
    let dev = Dev::start();
    assert_eq!(
        dev.apply(&example("jq-bot/taskagent.yaml")).trim(),
        "taskagent/jq-bot created"
    );

    let r = dev
        .invoke(
            &[
                ("X-Clrk-TaskAgent", "default/jq-bot"),
                ("X-Clrk-Trigger", "http"),
                ("content-type", "application/json"),
            ],
            r#"{"user":"ada","items":[1,2,3]}"#,
        )
        .await;
    assert_eq!(r.status, 200, "{}\n{}", r.text(), dev.server_log());
    let id = r.header("x-clrk-execution-id").unwrap().to_string();
    assert_eq!(
        r.json(),
        serde_json::json!({"id": id, "trigger": "http", "keys": ["items", "user"], "size": 2})
    );

    let out = dev.clrk(&["agents", "run-task", "jq-bot", "-i", r#"{"user":"ada"}"#]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["trigger"], "cli");
    assert_eq!(answer["keys"], serde_json::json!(["user"]));
}

#[tokio::test(flavor = "multi_thread")]
async fn cron_bot_is_scheduled_and_logs_its_data() {
    let dev = Dev::start();
    assert_eq!(
        dev.apply(&example("cron-bot/taskagent.yaml")).trim(),
        "taskagent/cron-bot created"
    );
    let out = dev.clrk(&["agents", "get", "cron-bot"]);
    let shown = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(shown.contains("@every 1m"), "{shown}");

    // Fired by hand, it logs what it was given, as its comment says.
    let out = dev.clrk(&[
        "agents",
        "run-task",
        "cron-bot",
        "-i",
        r#"{"report":"now"}"#,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let logs = dev.wait_for("cron-bot's log line", || {
        let out = dev.clrk(&["agents", "logs", "cron-bot"]);
        let logs = text(&out.stdout);
        logs.contains("cron-bot fired by cli").then_some(logs)
    });
    assert!(logs.contains(r#"with data {"report": "now"}"#), "{logs}");
}

#[tokio::test(flavor = "multi_thread")]
async fn echo_bot_runs_and_prints_until_deleted() {
    let dev = Dev::start();
    assert_eq!(
        dev.apply(&example("echo-bot/daemonagent.yaml")).trim(),
        "daemonagent/echo-bot created"
    );
    dev.wait_for("echo-bot's first tick", || {
        let out = dev.clrk(&["agents", "logs", "echo-bot"]);
        text(&out.stdout)
            .contains("echo-bot: tick 1 (greeting: hello)")
            .then_some(())
    });
    let out = dev.clrk(&["agents", "get", "echo-bot"]);
    assert!(
        text(&out.stdout).contains("Running"),
        "{}",
        text(&out.stdout)
    );

    let out = dev.clrk(&["agents", "delete", "echo-bot"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    dev.wait_for("echo-bot's sandbox to go", || {
        dev.sandbox_processes().is_empty().then_some(())
    });
}
