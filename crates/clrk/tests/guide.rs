//! The guide's flow, verbatim, against `clrk dev` with real gVisor: apply the word-count
//! agent, send the guide's curl, get the guide's answer.

mod common;

use common::*;

/// The shipped host manifest, verbatim: it runs the agent.py that scripts/setup.sh installs.
fn host_manifest() -> String {
    let installed = "/usr/local/share/clrk/examples/word-count/agent.py";
    let shipped = std::fs::read(repo_path("examples/word-count/agent.py")).unwrap();
    assert_eq!(
        std::fs::read(installed).ok(),
        Some(shipped),
        "{installed} is missing or stale: run scripts/setup.sh"
    );
    std::fs::read_to_string(repo_path("examples/word-count/taskagent-host.yaml")).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn guide_word_count_answers_the_guide_curl() {
    let dev = Dev::start();
    let out = dev.apply(&host_manifest());
    assert_eq!(out.trim(), "taskagent/word-count created");

    let r = dev
        .invoke(
            &[
                ("X-Clrk-TaskAgent", "default/word-count"),
                ("X-Clrk-Trigger", "http"),
                ("content-type", "application/json"),
            ],
            r#"{"text":"hello world from clrk"}"#,
        )
        .await;
    assert_eq!(r.status, 200, "{}\n{}", r.text(), dev.server_log());
    let id = r
        .header("x-clrk-execution-id")
        .expect("execution id header")
        .to_string();
    let answer = r.json();
    assert_eq!(
        answer,
        serde_json::json!({"word_count": 4, "envelope_id": id})
    );

    // The execution is on record with its trigger and outcome.
    let runs = dev.invocations("word-count").await;
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["id"], id.as_str());
    assert_eq!(runs[0]["trigger"], "http");
    assert_eq!(runs[0]["status"], "Succeeded");
    assert_eq!(runs[0]["exitCode"], 0);
    assert_eq!(runs[0]["revision"], "word-count-00001");

    // run-task goes through the same path with trigger cli.
    let out = dev.clrk(&[
        "agents",
        "run-task",
        "word-count",
        "-i",
        r#"{"text":"one two three"}"#,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["word_count"], 3);
    let runs = dev.invocations("word-count").await;
    assert!(
        runs.iter()
            .any(|r| r["trigger"] == "cli" && r["status"] == "Succeeded"),
        "{runs:?}"
    );

    // Re-applying the same manifest changes nothing.
    let out = dev.apply(&host_manifest());
    assert_eq!(out.trim(), "taskagent/word-count unchanged");
}

#[tokio::test(flavor = "multi_thread")]
async fn guide_manifest_parses_and_names_its_registry_image() {
    // The registry variant needs a registry (a later issue); it must still validate.
    let dev = Dev::start();
    let out = dev.clrk(&[
        "apply",
        "-f",
        repo_path("examples/word-count/taskagent.yaml")
            .to_str()
            .unwrap(),
    ]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("spec.template.spec.image"), "{err}");
    assert!(err.contains("localhost:5000/word-count:0.1"), "{err}");
}
