//! Failures that lead to their cause: what a user sees when an execution fails names what went
//! wrong and where to read more.

mod common;

use common::*;

#[tokio::test(flavor = "multi_thread")]
async fn a_command_missing_from_the_image_is_a_500_that_names_it() {
    let dev = Dev::start();
    dev.apply(
        r#"apiVersion: clrk.apoxy.dev/v1alpha1
kind: TaskAgent
metadata:
  name: typo
spec:
  template:
    spec:
      image: "host:"
      command: ["nosuchbinary", "--flag"]
"#,
    );
    let r = dev
        .invoke(&[("X-Clrk-TaskAgent", "default/typo")], "")
        .await;
    assert_eq!(r.status, 500, "{}", r.text());
    assert!(
        r.text().contains(
            r#"the sandbox did not start: command "nosuchbinary" not found in the image"#
        ),
        "{}",
        r.text()
    );
    assert!(
        r.text().contains("spec.template.spec.command"),
        "{}",
        r.text()
    );
    let runs = dev.invocations("typo").await;
    assert_eq!(runs[0]["status"], "Failed");
    assert!(
        runs[0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains(r#"command "nosuchbinary" not found"#)),
        "{runs:?}"
    );

    // The same through the CLI: the reason, not an exit code.
    let out = dev.clrk(&["agents", "run-task", "typo"]);
    assert_eq!(out.status.code(), Some(1));
    let said = text(&out.stderr);
    assert!(
        said.contains(r#"command "nosuchbinary" not found in the image"#),
        "{said}"
    );
    assert!(!said.contains("code 128"), "{said}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_run_task_shows_its_execution_and_the_end_of_its_stderr() {
    let dev = Dev::start();
    dev.apply(&sh_agent(
        "fails",
        "for i in 1 2 3 4 5 6 7; do echo \"step $i\" >&2; done; exit 1",
        "",
    ));
    // Another execution's lines stay out of what the failed one shows.
    let first = dev
        .invoke(&[("X-Clrk-TaskAgent", "default/fails")], "")
        .await;
    let first = first.header("x-clrk-execution-id").unwrap().to_string();

    let out = dev.clrk(&["agents", "run-task", "fails"]);
    assert_eq!(out.status.code(), Some(1));
    let said = text(&out.stderr);
    assert!(
        said.starts_with("error: agent exited with code 1\n"),
        "{said}"
    );
    let id = said
        .split("execution ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .unwrap_or_else(|| panic!("no execution id in: {said}"))
        .to_string();
    assert_ne!(id, first);
    // The last five lines of its stderr, in order.
    let shown: Vec<&str> = said
        .lines()
        .filter_map(|l| l.strip_prefix("  | "))
        .collect();
    assert_eq!(
        shown,
        ["step 3", "step 4", "step 5", "step 6", "step 7"],
        "{said}"
    );
    let see = format!("see: clrk agents logs fails --execution {id}");
    assert!(said.trim_end().ends_with(&see), "{said}");

    // That command shows that execution's log, all of it and nothing else.
    let out = dev.clrk(&["agents", "logs", "fails", "--execution", &id]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let logs = text(&out.stdout);
    assert_eq!(logs.lines().count(), 7, "{logs}");
    assert!(logs.lines().all(|l| l.starts_with(&id)), "{logs}");
    let out = dev.clrk(&["agents", "logs", "fails", "--execution", &id, "--tail", "2"]);
    let logs = text(&out.stdout);
    assert_eq!(
        logs.lines().collect::<Vec<_>>(),
        [format!("{id} step 6"), format!("{id} step 7")]
    );

    // A refused request made no execution: no execution to point at.
    let out = dev.clrk(&["agents", "run-task", "missing"]);
    assert_eq!(out.status.code(), Some(77));
    assert!(
        !text(&out.stderr).contains("see: "),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_over_its_memory_limit_is_said_to_be_killed_for_it() {
    let dev = Dev::start();
    dev.apply(&sh_agent(
        "hungry",
        "echo starting; python3 -c 'x = bytearray(700 << 20); x[::4096] = b\"a\" * (len(x) // 4096)'",
        "  resources:\n    memory: 128Mi",
    ));
    let killed = "killed: memory limit 128Mi exceeded";

    // Through HTTP: a 500 that says why, with the code the runtime gave.
    let r = dev
        .invoke(&[("X-Clrk-TaskAgent", "default/hungry")], "")
        .await;
    assert_eq!(r.status, 500, "{}", r.text());
    assert_eq!(r.header("x-clrk-exit-code"), Some("137"));
    assert!(r.text().starts_with(killed), "{}", r.text());
    assert!(r.text().contains("spec.resources.memory"), "{}", r.text());

    // The record, and what agents invocations shows of it.
    let runs = dev.invocations("hungry").await;
    assert_eq!(runs[0]["status"], "Failed");
    assert_eq!(runs[0]["exitCode"], 137);
    assert!(
        runs[0]["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with(killed)),
        "{runs:?}"
    );
    let out = dev.clrk(&["agents", "invocations", "hungry"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains(killed), "{}", text(&out.stdout));

    // run-task says it too, not just the code.
    let out = dev.clrk(&["agents", "run-task", "hungry"]);
    assert_eq!(out.status.code(), Some(1));
    let said = text(&out.stderr);
    assert!(said.contains(killed), "{said}");
    assert!(!said.contains("exited with code 137"), "{said}");

    // A program that kills itself with SIGKILL is not said to have run out of memory.
    dev.apply(&sh_agent("selfkill", "kill -9 $$", ""));
    let r = dev
        .invoke(&[("X-Clrk-TaskAgent", "default/selfkill")], "")
        .await;
    assert_eq!(r.status, 500, "{}", r.text());
    assert_eq!(r.text().trim(), "agent exited with code 137");
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_an_agent_during_a_run_says_so_and_points_at_its_kept_history() {
    let dev = Dev::start();
    for (name, extra) in [("slow", ""), ("slow-stream", STREAMING)] {
        dev.apply(&sh_agent(
            name,
            "echo started; echo started >&2; sleep 1000",
            extra,
        ));
        let out = std::thread::scope(|scope| {
            let run = scope.spawn(|| dev.clrk(&["agents", "run-task", name]));
            // Its log line is stored after its output was written.
            dev.wait_for("the execution to have written", || {
                let logs = dev.clrk(&["agents", "logs", name]);
                text(&logs.stdout).contains("started").then_some(())
            });
            let deleted = dev.clrk(&["agents", "delete", name]);
            assert!(deleted.status.success(), "{}", text(&deleted.stderr));
            run.join().unwrap()
        });
        assert_eq!(out.status.code(), Some(1), "{name}");
        let said = text(&out.stderr);
        assert!(
            said.contains(&format!(
                "the agent default/{name} was deleted during the run"
            )),
            "{name}: {said}"
        );
        // Its record and log are kept: the commands that show them are named, and work.
        assert!(
            said.contains(&format!("see: clrk agents invocations {name}")),
            "{name}: {said}"
        );
        let id = said
            .split(&format!("see: clrk agents logs {name} --execution "))
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("{name}: no logs command in {said}"))
            .to_string();
        assert!(
            said.contains(&format!(
                "execution {id}, the end of its stderr:\n  | started"
            )),
            "{name}: {said}"
        );
        let listed = text(&dev.clrk(&["agents", "invocations", name]).stdout);
        assert!(listed.contains(&id), "{name}: {listed}");
        if name == "slow" {
            assert!(said.contains("stopped: the agent was deleted"), "{said}");
            assert_eq!(text(&out.stdout), "");
        } else {
            assert_eq!(text(&out.stdout), "started\n");
        }
        dev.wait_for("the sandbox to be gone", || {
            dev.runsc_list().is_empty().then_some(())
        });
    }
}
