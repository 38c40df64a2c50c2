//! The CLI as a user drives it (SPECIFICATION §10), against a real `clrk dev`.

mod common;

use std::time::{Duration, Instant};

use common::*;

#[tokio::test(flavor = "multi_thread")]
async fn invalid_manifests_fail_naming_the_field_and_apply_nothing() {
    let dev = Dev::start();
    let cases = [
        ("kind: TaskAgent\nmetadata: [unclosed\n", "invalid YAML"),
        (
            "apiVersion: clrk.apoxy.dev/v1alpha1\nkind: Robot\nmetadata: {name: a}\nspec: {}\n",
            "kind",
        ),
        (&sh_agent("Bad_Name", "true", ""), "metadata.name"),
        (&sh_agent("neg", "true", "  timeout: -5s"), "spec.timeout"),
        (
            "apiVersion: clrk.apoxy.dev/v1alpha1\nkind: TaskAgent\nmetadata: {name: noimage}\nspec:\n  template:\n    spec: {command: [sh]}\n",
            "spec.template.spec.image",
        ),
        (
            "apiVersion: clrk.apoxy.dev/v1alpha1\nkind: TaskAgent\nmetadata: {name: typo}\nspec:\n  template:\n    spec: {imagee: 'host:'}\n",
            "spec.template.spec.imagee",
        ),
    ];
    for (manifest, field) in cases {
        let out = dev.try_apply(manifest);
        assert!(!out.status.success(), "accepted:\n{manifest}");
        let err = text(&out.stderr);
        assert!(
            err.contains(field),
            "error for {field} does not name it: {err}"
        );
        assert!(err.contains("m-"), "error does not name the file: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    // A valid document next to an invalid one: nothing is applied.
    let two = format!(
        "{}---\n{}",
        sh_agent("good", "true", ""),
        sh_agent("bad", "true", "  timeout: 0s")
    );
    let out = dev.try_apply(&two);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("document 2"),
        "{}",
        text(&out.stderr)
    );
    // Every faulty document is named at once, each with what to fix: a cron field out of its
    // range, a port over 65535.
    let three = format!(
        "{}---\n{}---\n{}",
        sh_agent("cron", "true", "  schedule: \"0 25 * * *\""),
        sh_agent("fine", "true", ""),
        "apiVersion: clrk.apoxy.dev/v1alpha1\nkind: EgressL4Route\nmetadata: {name: r}\n\
         spec:\n  parentRefs: [{name: gw}]\n  rules: [{destinationHostnames: [a.test], ports: [70000]}]\n",
    );
    let out = dev.try_apply(&three);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains(
            "document 1: spec.schedule: \"0 25 * * *\" is not valid: hour 25 is out of range (0-23)"
        ),
        "{err}"
    );
    assert!(
        err.contains(
            "document 3: spec.rules[0].ports[0]: 70000 is not a port: use one between 1 and 65535"
        ),
        "{err}"
    );
    assert!(!err.contains("document 2"), "{err}");
    let out = dev.clrk(&["agents", "list", "-o", "json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list["items"].as_array().map_or(0, Vec::len), 0, "{list}");
}

#[tokio::test(flavor = "multi_thread")]
async fn apply_reports_created_unchanged_configured_and_revisions() {
    let dev = Dev::start();
    let v1 = sh_agent("greeter", "echo hello", "");
    assert_eq!(dev.apply(&v1).trim(), "taskagent/greeter created");
    assert_eq!(dev.apply(&v1).trim(), "taskagent/greeter unchanged");
    // A change that does not shape the sandbox: configured, no new revision.
    assert_eq!(
        dev.apply(&sh_agent("greeter", "echo hello", "  maxConcurrent: 3"))
            .trim(),
        "taskagent/greeter configured"
    );
    // A changed template: a new revision, which serves the next request.
    let v2 = sh_agent("greeter", "echo bonjour", "  maxConcurrent: 3");
    assert_eq!(
        dev.apply(&v2).trim(),
        "taskagent/greeter configured (revision greeter-00002)"
    );
    let r = dev
        .invoke(&[("X-Clrk-TaskAgent", "default/greeter")], "")
        .await;
    assert_eq!(r.text(), "bonjour\n");

    let out = dev.clrk(&["agents", "get", "greeter", "-o", "json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let agent: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(agent["status"]["latestRevision"], "greeter-00002");
    assert_eq!(agent["status"]["revisions"].as_array().unwrap().len(), 2);
    assert_eq!(agent["spec"]["maxConcurrent"], 3);
    assert_eq!(agent["spec"]["timeout"], "1m40s");

    let out = dev.clrk(&["agents", "list"]);
    let table = text(&out.stdout);
    assert!(
        table.contains("greeter") && table.contains("greeter-00002"),
        "{table}"
    );

    // secretKeyRef is accepted with a warning, never silently.
    let manifest = "apiVersion: clrk.apoxy.dev/v1alpha1\nkind: TaskAgent\nmetadata: {name: secretive}\nspec:\n  template:\n    spec:\n      image: 'host:'\n      command: [env]\n      env:\n        - name: TOKEN\n          valueFrom: {secretKeyRef: {name: s, key: k}}\n";
    let out = dev.try_apply(manifest);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("warning") && err.contains("spec.template.spec.env[0].valueFrom.secretKeyRef"),
        "{err}"
    );
    let r = dev
        .invoke(&[("X-Clrk-TaskAgent", "default/secretive")], "")
        .await;
    assert!(!r.text().contains("TOKEN"), "{}", r.text());
}

#[tokio::test(flavor = "multi_thread")]
async fn run_task_exit_codes_logs_invocations_and_delete() {
    let dev = Dev::start();
    dev.apply(&sh_agent(
        "ok",
        "read line; echo \"$line\" | head -c 60; echo; echo to-logs >&2",
        "",
    ));
    dev.apply(&sh_agent("three", "exit 3", ""));
    dev.apply(&sh_agent("slow", "sleep 1000", ""));
    dev.apply(&sh_agent("partial", "echo partial; exit 5", STREAMING));

    let out = dev.clrk(&["agents", "run-task", "ok", "-i", r#"{"n":1}"#]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with('{'), "{}", text(&out.stdout));

    let out = dev.clrk_with_stdin(
        &["agents", "run-task", "ok", "-i", "-"],
        Some(br#"{"from":"stdin"}"#),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    let out = dev.clrk(&["agents", "run-task", "three"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("code 3"),
        "{}",
        text(&out.stderr)
    );

    // Output already streamed, then a failure: the trailer still makes run-task fail.
    let out = dev.clrk(&["agents", "run-task", "partial"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "partial\n");
    assert!(
        text(&out.stderr).contains("code 5"),
        "{}",
        text(&out.stderr)
    );

    let out = dev.clrk(&["agents", "run-task", "slow", "--timeout", "1s"]);
    assert_eq!(out.status.code(), Some(124), "{}", text(&out.stderr));

    // A timeout after output was streamed is still a timeout. The clock includes the cold
    // start, which on a loaded machine can take seconds: the agent gets time to talk first.
    dev.apply(&sh_agent("talker", "echo talking; sleep 1000", STREAMING));
    let out = dev.clrk(&["agents", "run-task", "talker", "--timeout", "10s"]);
    assert_eq!(out.status.code(), Some(124), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "talking\n");

    let out = dev.clrk(&["agents", "run-task", "missing"]);
    assert_eq!(out.status.code(), Some(77), "{}", text(&out.stderr));

    let out = dev.clrk(&["agents", "run-task", "ok", "-i", "{broken"]);
    assert_ne!(out.status.code(), Some(0));

    let out = dev.clrk(&["agents", "logs", "ok", "--tail", "1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let logs = text(&out.stdout);
    assert_eq!(logs.lines().count(), 1, "{logs}");
    assert!(logs.contains("to-logs"), "{logs}");
    // --tail -1 is every line, as kubectl writes it: one per run.
    let out = dev.clrk(&["agents", "logs", "ok", "--tail", "-1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let logs = text(&out.stdout);
    assert_eq!(logs.matches("to-logs").count(), 2, "{logs}");

    let out = dev.clrk(&["agents", "invocations", "ok"]);
    let table = text(&out.stdout);
    assert!(
        table.contains("cli") && table.contains("Succeeded"),
        "{table}"
    );

    let out = dev.clrk(&["agents", "delete", "ok"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "taskagent/ok deleted");
    let r = dev.invoke(&[("X-Clrk-TaskAgent", "default/ok")], "").await;
    assert_eq!(r.status, 404);
    let out = dev.clrk(&["agents", "delete", "ok"]);
    assert!(!out.status.success());
    // --ignore-not-found: nothing to do is success, and says nothing.
    let out = dev.clrk(&["agents", "delete", "ok", "--ignore-not-found"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "");
    let gone = dev.clrk_dir().join("gone.yaml");
    std::fs::write(&gone, sh_agent("ok", "true", "")).unwrap();
    let gone = gone.to_str().unwrap();
    let out = dev.clrk(&["delete", "-f", gone]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("not found"),
        "{}",
        text(&out.stderr)
    );
    let out = dev.clrk(&["delete", "-f", gone, "--ignore-not-found"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = dev.clrk(&["secret", "delete", "never-set", "--ignore-not-found"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_runs_and_diff_say_what_applying_would_do_and_change_nothing() {
    let dev = Dev::start();
    let file = |name: &str, manifest: &str| {
        let path = dev.clrk_dir().join(name);
        std::fs::write(&path, manifest).unwrap();
        path.to_str().unwrap().to_string()
    };
    let v1 = file("v1.yaml", &sh_agent("greeter", "echo hello", ""));
    let run = |args: &[&str]| {
        let out = dev.clrk(args);
        (out.status.code(), text(&out.stdout), text(&out.stderr))
    };
    let nothing_applied = || {
        let (code, list, _) = run(&["agents", "list", "-o", "json"]);
        assert_eq!(code, Some(0));
        let list: serde_json::Value = serde_json::from_str(&list).unwrap();
        assert_eq!(list["items"].as_array().map(Vec::len), Some(0), "{list}");
    };

    let (code, out, err) = run(&["apply", "-f", &v1, "--dry-run"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out.trim(), "taskagent/greeter checked (client dry run)");
    let (code, out, err) = run(&["apply", "-f", &v1, "--dry-run=server"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out.trim(), "taskagent/greeter created (server dry run)");
    let (code, out, _) = run(&["diff", "-f", &v1]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("(not applied)") && out.contains("+ kind: TaskAgent"),
        "{out}"
    );
    assert!(
        out.contains("taskagent/greeter: would be created, with revision greeter-00001"),
        "{out}"
    );
    nothing_applied();
    // The server resolves images in a dry run; the client does not.
    let unreachable = file(
        "unreachable.yaml",
        &sh_agent("far", "true", "").replace("\"host:\"", "127.0.0.1:1/nothing:1"),
    );
    let (code, _, err) = run(&["apply", "-f", &unreachable, "--dry-run"]);
    assert_eq!(code, Some(0), "{err}");
    let (code, _, err) = run(&["apply", "-f", &unreachable, "--dry-run=server"]);
    assert_ne!(code, Some(0));
    assert!(err.contains("spec.template.spec.image"), "{err}");
    nothing_applied();

    dev.apply(&sh_agent("greeter", "echo hello", ""));
    let (code, out, _) = run(&["diff", "-f", &v1]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(out, "taskagent/greeter: unchanged\n");
    // A setting that shapes no sandbox: configured, no revision; a new template: a revision.
    let v2 = file(
        "v2.yaml",
        &sh_agent("greeter", "echo hello", "  maxConcurrent: 3"),
    );
    let (code, out, _) = run(&["diff", "-f", &v2]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("+ ") && l.contains("maxConcurrent: 3")),
        "{out}"
    );
    assert!(
        out.contains("would be configured, no new revision"),
        "{out}"
    );
    let v3 = file("v3.yaml", &sh_agent("greeter", "echo bonjour", ""));
    let (code, out, _) = run(&["diff", "-f", &v3]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("- ") && l.contains("echo hello"))
            && out
                .lines()
                .any(|l| l.starts_with("+ ") && l.contains("echo bonjour")),
        "{out}"
    );
    assert!(
        out.contains("would be configured, making revision greeter-00002"),
        "{out}"
    );
    let (code, out, err) = run(&["apply", "-f", &v3, "--dry-run=server"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        out.trim(),
        "taskagent/greeter configured (revision greeter-00002) (server dry run)"
    );
    // None of it changed anything.
    let (_, shown, _) = run(&["agents", "get", "greeter", "-o", "json"]);
    let agent: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(
        agent["status"]["revisions"].as_array().map(Vec::len),
        Some(1),
        "{agent}"
    );
    assert!(
        agent["spec"].get("maxConcurrent").is_none_or(|m| m != 3),
        "{agent}"
    );
    let r = dev
        .invoke(&[("X-Clrk-TaskAgent", "default/greeter")], "")
        .await;
    assert_eq!(r.text(), "hello\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn get_yaml_applies_back_and_clrk_get_shows_every_kind() {
    let dev = Dev::start();
    let labelled = sh_agent("greeter", "echo hello", "  maxConcurrent: 2").replace(
        "  name: greeter\n",
        "  name: greeter\n  labels: {team: web}\n",
    );
    assert_eq!(dev.apply(&labelled).trim(), "taskagent/greeter created");
    dev.apply(&sh_manifest(
        "DaemonAgent",
        "ticker",
        "while true; do sleep 1; done",
        "",
    ));
    let save = |args: &[&str], file: &str| {
        let out = dev.clrk(args);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        let path = dev.clrk_dir().join(file);
        std::fs::write(&path, &out.stdout).unwrap();
        (path.to_str().unwrap().to_string(), text(&out.stdout))
    };
    let apply_file = |path: &str| {
        let out = dev.clrk(&["apply", "-f", path]);
        assert!(
            out.status.success(),
            "apply -f {path}: {}",
            text(&out.stderr)
        );
        text(&out.stdout)
    };

    // get -o yaml|json is a manifest: spec as applied, status beside it; apply takes it back.
    let (yaml, shown) = save(&["agents", "get", "greeter", "-o", "yaml"], "greeter.yaml");
    for expected in [
        "apiVersion: clrk.apoxy.dev/v1alpha1",
        "kind: TaskAgent",
        "team: web",
        "maxConcurrent: 2",
        "latestRevision: greeter-00001",
        "revisions:",
    ] {
        assert!(shown.contains(expected), "no {expected:?} in\n{shown}");
    }
    assert_eq!(apply_file(&yaml).trim(), "taskagent/greeter unchanged");
    let (json, shown) = save(&["agents", "get", "greeter", "-o", "json"], "greeter.json");
    let object: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(object["metadata"]["labels"]["team"], "web", "{object}");
    assert_eq!(
        object["status"]["latestRevision"], "greeter-00001",
        "{object}"
    );
    assert_eq!(apply_file(&json).trim(), "taskagent/greeter unchanged");
    // An edit of the saved spec applies as one.
    std::fs::write(
        &yaml,
        std::fs::read_to_string(&yaml)
            .unwrap()
            .replace("maxConcurrent: 2", "maxConcurrent: 5"),
    )
    .unwrap();
    assert_eq!(apply_file(&yaml).trim(), "taskagent/greeter configured");

    // clrk get KIND [NAME]: each kind's table, one object, or a List apply takes back.
    let out = dev.clrk(&["get", "taskagents"]);
    let table = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        table.contains("greeter") && !table.contains("ticker"),
        "{table}"
    );
    let out = dev.clrk(&["get", "DaemonAgent", "ticker", "-o", "wide"]);
    let table = text(&out.stdout);
    assert!(
        table.contains("ticker") && table.contains("IMAGE"),
        "{table}"
    );
    let (one, _) = save(&["get", "taskagent/greeter", "-o", "yaml"], "one.yaml");
    assert_eq!(apply_file(&one).trim(), "taskagent/greeter unchanged");
    let (all, shown) = save(&["get", "agents", "-o", "yaml"], "all.yaml");
    assert!(shown.contains("kind: List"), "{shown}");
    let applied = apply_file(&all);
    assert!(
        applied.contains("taskagent/greeter unchanged")
            && applied.contains("daemonagent/ticker unchanged"),
        "{applied}"
    );
    let out = dev.clrk(&["get", "taskagent", "nope"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("taskagent \"nope\" not found in namespace default"),
        "{}",
        text(&out.stderr)
    );
    let out = dev.clrk(&["get", "robots"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("egressgateway"),
        "{}",
        text(&out.stderr)
    );
    let out = dev.clrk(&["get", "egressgateways"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("no egressgateways"),
        "{}",
        text(&out.stderr)
    );

    // Every list takes -o wide|json|yaml; a secret's value never shows in any of them.
    let out = dev.clrk(&[
        "secret",
        "set",
        "api",
        "--from-literal",
        "token=SUPER-SECRET-VALUE",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for list in [
        &["pools", "list"][..],
        &["secret", "list"],
        &["images", "list"],
        &["workers", "list"],
        &["egress", "list"],
        &["agents", "list"],
        &["get", "secrets"],
        &["get", "pools"],
        &["get", "workers"],
        &["get", "images"],
    ] {
        for format in ["wide", "json", "yaml"] {
            let args = [list, &["-o", format]].concat();
            let out = dev.clrk(&args);
            assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
            let shown = text(&out.stdout);
            assert!(
                !shown.contains("SUPER-SECRET"),
                "{args:?} printed the value:\n{shown}"
            );
            if format == "json" {
                let list: serde_json::Value = serde_json::from_str(&shown).unwrap();
                assert!(list["items"].is_array(), "{args:?}: {list}");
            }
        }
    }
    for args in [
        &["secret", "list", "-o", "yaml"][..],
        &["get", "secret", "api", "-o", "json"],
    ] {
        let out = dev.clrk(args);
        let shown = text(&out.stdout);
        assert!(
            shown.contains("token") && !shown.contains("SUPER-SECRET"),
            "{args:?}: {shown}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_follow_streams_new_lines() {
    let dev = Dev::start();
    dev.apply(&sh_agent(
        "chatty",
        "echo line-one >&2; echo line-two >&2",
        "",
    ));
    let mut follow = std::process::Command::new(clrk_bin())
        .args(["agents", "logs", "chatty", "-f"])
        .env("CLRK_DIR", dev.clrk_dir())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = follow.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead as _;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let r = dev
        .invoke(&[("X-Clrk-TaskAgent", "default/chatty")], "")
        .await;
    let id = r.header("x-clrk-execution-id").unwrap().to_string();
    let first = rx.recv_timeout(DEADLINE).expect("a followed line");
    let second = rx.recv_timeout(DEADLINE).expect("a second followed line");
    assert!(first.contains(&id) && first.contains("line-one"), "{first}");
    assert!(second.contains("line-two"), "{second}");
    // Deleting the agent ends the follower, with a line saying why.
    let out = dev.clrk(&["agents", "delete", "chatty"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let ended = Instant::now();
    while follow.try_wait().unwrap().is_none() {
        assert!(
            ended.elapsed() < DEADLINE,
            "logs -f still follows a deleted agent"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let out = follow.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("agent default/chatty was deleted"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_agents_runs_and_logs_are_kept_and_marked_once_its_name_is_used_again() {
    let dev = Dev::start();
    dev.apply(&sh_agent("hist", "echo first-run >&2", ""));
    let out = dev.clrk(&["agents", "run-task", "hist"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let first = dev.invocations("hist").await;
    assert_eq!(first.len(), 1, "{first:?}");
    let first_id = first[0]["id"].as_str().unwrap().to_string();
    let out = dev.clrk(&["agents", "delete", "hist"]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    // The deleted agent's run and its line are still shown, saying whose they are.
    let out = dev.clrk(&["agents", "invocations", "hist"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    assert!(
        table.contains(&first_id)
            && table.contains("Succeeded")
            && table.contains("hist-00001 (deleted agent uid "),
        "{table}"
    );
    assert!(
        text(&out.stderr)
            .contains("agent default/hist is deleted: showing the executions of the deleted agent"),
        "{}",
        text(&out.stderr)
    );
    for args in [
        &["agents", "logs", "hist"][..],
        &["agents", "logs", "hist", "--execution", &first_id],
        // Following a deleted agent shows what it kept and ends.
        &["agents", "logs", "hist", "-f"],
    ] {
        let out = dev.clrk(args);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        assert_eq!(
            text(&out.stdout),
            format!("{first_id} first-run\n"),
            "{args:?}"
        );
        assert!(
            text(&out.stderr)
                .contains("agent default/hist is deleted: showing the log of the deleted agent"),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    // Its trace is kept with it (spans are written just after the run ends).
    let waterfall = dev.wait_for("the deleted agent's trace", || {
        let out = dev.clrk(&["agents", "traces", "hist", "--execution", &first_id]);
        let shown = text(&out.stdout);
        (out.status.success() && shown.contains("run")).then_some(shown)
    });
    assert!(waterfall.contains("sandbox start"), "{waterfall}");
    // A name that never existed is still not found, by the CLI and by the API.
    for what in ["invocations", "logs", "traces"] {
        let out = dev.clrk(&["agents", what, "never"]);
        assert!(!out.status.success(), "{what}");
        assert!(
            text(&out.stderr).contains("agent default/never not found"),
            "{what}: {}",
            text(&out.stderr)
        );
        let r = dev
            .api_get(&format!("/v1/agents/default/never/{what}"))
            .await;
        assert_eq!(r.status, 404, "{what}: {}", r.text());
    }

    // An agent of the same name lists both runs, the old one marked with the old agent's uid.
    dev.apply(&sh_agent("hist", "echo second-run >&2", ""));
    let out = dev.clrk(&["agents", "run-task", "hist"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let both = dev.invocations("hist").await;
    assert_eq!(both.len(), 2, "{both:?}");
    let second_id = both[0]["id"].as_str().unwrap().to_string();
    assert_eq!(both[1]["id"], first_id.as_str(), "{both:?}");
    assert_eq!(
        (&both[0]["agentDeleted"], &both[1]["agentDeleted"]),
        (&serde_json::json!(false), &serde_json::json!(true)),
        "{both:?}"
    );
    assert_ne!(both[0]["agentUid"], both[1]["agentUid"], "{both:?}");
    let old_uid = both[1]["agentUid"].as_str().unwrap();
    let out = dev.clrk(&["agents", "invocations", "hist"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stderr), "", "the agent is there again");
    let table = text(&out.stdout);
    let row = |id: &str| table.lines().find(|l| l.starts_with(id)).unwrap_or("");
    assert!(!row(&second_id).contains("deleted"), "{table}");
    assert!(
        row(&first_id).contains(&format!("hist-00001 (deleted agent uid {})", &old_uid[..8])),
        "{table}"
    );
    let out = dev.clrk(&["agents", "invocations", "hist", "-o", "yaml"]);
    let yaml = text(&out.stdout);
    assert!(
        yaml.contains("agentDeleted: true") && yaml.contains(old_uid),
        "{yaml}"
    );
    let out = dev.clrk(&["agents", "logs", "hist"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        format!("{first_id} first-run\n{second_id} second-run\n")
    );
    assert_eq!(text(&out.stderr), "");
}

#[tokio::test(flavor = "multi_thread")]
async fn control_api_requires_the_token() {
    let dev = Dev::start();
    let r = request(
        "GET",
        &format!("{}/v1/agents", dev.api),
        &[],
        bytes::Bytes::new(),
    )
    .await;
    assert_eq!(r.status, 401);
    let r = request(
        "GET",
        &format!("{}/v1/agents", dev.api),
        &[("authorization", "Bearer wrong")],
        bytes::Bytes::new(),
    )
    .await;
    assert_eq!(r.status, 401);
    let r = dev.api_get("/v1/agents").await;
    assert_eq!(r.status, 200);
    // dev.json holds the token: readable by its owner only.
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(dev.clrk_dir().join("dev.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "dev.json mode {mode:o}");
    // 32 random bytes as hex.
    assert_eq!(dev.token.len(), 64, "{}", dev.token);
    assert!(
        dev.token.bytes().all(|b| b.is_ascii_hexdigit()),
        "{}",
        dev.token
    );
}

#[test]
fn commands_without_a_server_say_how_to_start_one() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(clrk_bin())
        .args(["agents", "list"])
        .env("CLRK_DIR", dir.path())
        .env_remove("CLRK_SERVER")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("clrk dev"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn help_teaches_with_examples() {
    // Every command a user can run: the top level and each leaf of the command tree.
    fn leaves(cmd: &clap::Command, path: Vec<String>, out: &mut Vec<Vec<String>>) {
        let subs: Vec<_> = cmd
            .get_subcommands()
            .filter(|c| c.get_name() != "help")
            .collect();
        if subs.is_empty() {
            out.push(path);
            return;
        }
        for sub in subs {
            let mut next = path.clone();
            next.push(sub.get_name().to_string());
            leaves(sub, next, out);
        }
    }
    let mut commands = vec![Vec::new()];
    leaves(
        &<clrk::cli::Cli as clap::CommandFactory>::command(),
        Vec::new(),
        &mut commands,
    );
    assert!(commands.len() > 15, "{commands:?}");
    for mut args in commands {
        args.push("--help".into());
        let out = std::process::Command::new(clrk_bin())
            .args(&args)
            .output()
            .unwrap();
        assert!(out.status.success());
        let help = text(&out.stdout);
        assert!(help.contains("clrk "), "{args:?}: {help}");
        assert!(
            help.to_lowercase().contains("example"),
            "{args:?} has no example: {help}"
        );
    }
}

/// Every route is in `/v1/openapi.json` (and nothing else is), and what the routes answer
/// for real calls fits the answer types the document gives them, field for field.
#[tokio::test(flavor = "multi_thread")]
async fn openapi_document_lists_every_route_and_what_it_answers() {
    let dev = Dev::start();
    dev.apply(&sh_agent("echo", "cat", ""));
    let out = dev.clrk(&["agents", "run-task", "echo", "-i", r#"{"n":1}"#]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    let unauthorised = request(
        "GET",
        &format!("{}/v1/openapi.json", dev.api),
        &[],
        bytes::Bytes::new(),
    )
    .await;
    assert_eq!(unauthorised.status, 401);
    let r = dev.api_get("/v1/openapi.json").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let doc = r.json();
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "{}",
        doc["openapi"]
    );

    // The routes docs/api.md lists, which are the routes the router serves.
    let served = [
        ("post", "/v1/apply"),
        ("get", "/v1/agents"),
        ("get", "/v1/agents/{namespace}/{name}"),
        ("delete", "/v1/agents/{namespace}/{name}"),
        ("get", "/v1/agents/{namespace}/{name}/invocations"),
        ("get", "/v1/agents/{namespace}/{name}/logs"),
        ("get", "/v1/agents/{namespace}/{name}/traces"),
        ("get", "/v1/agents/{namespace}/{name}/egress"),
        ("get", "/v1/egress"),
        ("get", "/v1/egress/{namespace}/{kind}/{name}"),
        ("delete", "/v1/egress/{namespace}/{kind}/{name}"),
        ("get", "/v1/images"),
        ("post", "/v1/images/import"),
        ("post", "/v1/images/prune"),
        ("get", "/v1/secrets"),
        ("put", "/v1/secrets/{namespace}/{name}"),
        ("delete", "/v1/secrets/{namespace}/{name}"),
        ("get", "/v1/pools"),
        ("delete", "/v1/pools/{name}"),
        ("get", "/v1/workers"),
        ("post", "/v1/workers/{name}/drain"),
        ("get", "/v1/openapi.json"),
    ];
    let mut documented = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().unwrap().keys() {
            if ["get", "put", "post", "delete", "patch"].contains(&method.as_str()) {
                documented.push((method.clone(), path.clone()));
            }
        }
    }
    documented.sort();
    let mut expected: Vec<(String, String)> = served
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    expected.sort();
    assert_eq!(documented, expected);

    // Every documented GET answers (no route is in the document that the router lacks).
    let set = request(
        "PUT",
        &format!("{}/v1/secrets/default/key", dev.api),
        &[
            ("authorization", &format!("Bearer {}", dev.token)),
            ("content-type", "application/json"),
        ],
        bytes::Bytes::from_static(br#"{"data": {"k": "dg=="}}"#),
    )
    .await;
    assert_eq!(set.status, 200, "{}", set.text());
    check_answer(&doc, "put", "/v1/secrets/{namespace}/{name}", &set.json());
    for (url, path) in [
        ("/v1/agents", "/v1/agents"),
        ("/v1/agents?namespace=default", "/v1/agents"),
        ("/v1/agents/default/echo", "/v1/agents/{namespace}/{name}"),
        (
            "/v1/agents/default/echo/invocations",
            "/v1/agents/{namespace}/{name}/invocations",
        ),
        (
            "/v1/agents/default/echo/egress",
            "/v1/agents/{namespace}/{name}/egress",
        ),
        ("/v1/egress", "/v1/egress"),
        ("/v1/images", "/v1/images"),
        ("/v1/secrets", "/v1/secrets"),
        ("/v1/pools", "/v1/pools"),
        ("/v1/workers", "/v1/workers"),
    ] {
        let r = dev.api_get(url).await;
        assert_eq!(r.status, 200, "{url}: {}", r.text());
        check_answer(&doc, "get", path, &r.json());
    }
    let items = dev.api_get("/v1/agents").await.json();
    assert_eq!(items["items"][0]["name"], "echo", "{items}");
    let runs = dev.invocations("echo").await;
    assert_eq!(runs.len(), 1, "{runs:?}");

    let logs = dev.api_get("/v1/agents/default/echo/logs").await;
    assert_eq!(logs.status, 200);
    let line_schema = &doc["paths"]["/v1/agents/{namespace}/{name}/logs"]["get"]["responses"]["200"]
        ["content"]["application/x-ndjson"]["schema"];
    for line in logs.text().lines() {
        let line: serde_json::Value = serde_json::from_str(line).unwrap();
        schema_check(&doc, line_schema, &line, "logs").unwrap();
    }

    let missing = dev.api_get("/v1/agents/default/nobody").await;
    assert_eq!(missing.status, 404);
    check_answer_with(
        &doc,
        "get",
        "/v1/agents/{namespace}/{name}",
        "404",
        &missing.json(),
    );
    let deleted = request(
        "DELETE",
        &format!("{}/v1/agents/default/echo", dev.api),
        &[("authorization", &format!("Bearer {}", dev.token))],
        bytes::Bytes::new(),
    )
    .await;
    assert_eq!(deleted.status, 200, "{}", deleted.text());
    check_answer(
        &doc,
        "delete",
        "/v1/agents/{namespace}/{name}",
        &deleted.json(),
    );
}

fn check_answer(doc: &serde_json::Value, method: &str, path: &str, answer: &serde_json::Value) {
    check_answer_with(doc, method, path, "200", answer);
}

/// Checks `answer` against the JSON schema the document gives `method path` for `status`.
fn check_answer_with(
    doc: &serde_json::Value,
    method: &str,
    path: &str,
    status: &str,
    answer: &serde_json::Value,
) {
    let schema =
        &doc["paths"][path][method]["responses"][status]["content"]["application/json"]["schema"];
    assert!(
        !schema.is_null(),
        "{method} {path} documents no JSON answer for {status}"
    );
    if let Err(e) = schema_check(doc, schema, answer, &format!("{method} {path}")) {
        panic!("{method} {path} answered what its document does not say: {e}\n{answer:#}");
    }
}

/// The OpenAPI 3.1 subset the document uses: `$ref`, `allOf`, `oneOf`, `anyOf`, `type`,
/// `properties`, `required`, `items` and `additionalProperties`. An object may hold only the
/// properties its schema names.
fn schema_check(
    doc: &serde_json::Value,
    schema: &serde_json::Value,
    value: &serde_json::Value,
    at: &str,
) -> Result<(), String> {
    use serde_json::Value;
    let schema = resolve(doc, schema);
    if let Some(parts) = schema.get("allOf").and_then(Value::as_array) {
        for part in parts {
            schema_check_loose(doc, part, value, at)?;
        }
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(choices) = schema.get(key).and_then(Value::as_array) {
            let errors: Vec<String> = choices
                .iter()
                .filter_map(|c| schema_check(doc, c, value, at).err())
                .collect();
            if errors.len() == choices.len() {
                return Err(format!("{at}: fits none of {key}: {errors:?}"));
            }
        }
    }
    schema_check_loose(doc, schema, value, at)?;
    if let Value::Object(fields) = value
        && let Some(names) = property_names(doc, schema)
    {
        for field in fields.keys() {
            if !names.contains(field) {
                return Err(format!("{at}: field {field} is not documented"));
            }
        }
    }
    Ok(())
}

/// `schema_check` without the check for undocumented fields: an `allOf` part sees only some.
fn schema_check_loose(
    doc: &serde_json::Value,
    schema: &serde_json::Value,
    value: &serde_json::Value,
    at: &str,
) -> Result<(), String> {
    use serde_json::Value;
    let schema = resolve(doc, schema);
    if schema.get("allOf").is_some()
        || schema.get("oneOf").is_some()
        || schema.get("anyOf").is_some()
    {
        if let Some(parts) = schema.get("allOf").and_then(Value::as_array) {
            for part in parts {
                schema_check_loose(doc, part, value, at)?;
            }
        }
        for key in ["oneOf", "anyOf"] {
            if let Some(choices) = schema.get(key).and_then(Value::as_array)
                && !choices
                    .iter()
                    .any(|c| schema_check_loose(doc, c, value, at).is_ok())
            {
                return Err(format!("{at}: fits none of {key}"));
            }
        }
    }
    if let Some(types) = schema.get("type") {
        let types: Vec<&str> = match types {
            Value::String(t) => vec![t.as_str()],
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        let fits = types.iter().any(|t| match *t {
            "null" => value.is_null(),
            "string" => value.is_string(),
            "boolean" => value.is_boolean(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            "array" => value.is_array(),
            "object" => value.is_object(),
            _ => false,
        });
        if !fits {
            return Err(format!("{at}: {value} is not {types:?}"));
        }
    }
    if let Value::Object(fields) = value {
        for name in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let name = name.as_str().unwrap();
            if !fields.contains_key(name) {
                return Err(format!("{at}: required field {name} is missing"));
            }
        }
        if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
            for (name, field) in fields {
                if let Some(field_schema) = properties.get(name) {
                    schema_check(doc, field_schema, field, &format!("{at}.{name}"))?;
                }
            }
        }
        if let Some(extra) = schema.get("additionalProperties").filter(|s| s.is_object()) {
            for (name, field) in fields {
                schema_check(doc, extra, field, &format!("{at}.{name}"))?;
            }
        }
    }
    if let (Value::Array(items), Some(item_schema)) = (value, schema.get("items")) {
        for (i, item) in items.iter().enumerate() {
            schema_check(doc, item_schema, item, &format!("{at}[{i}]"))?;
        }
    }
    Ok(())
}

/// The property names an object schema allows, through `$ref`s and combinations; `None`
/// when it allows any.
fn property_names(
    doc: &serde_json::Value,
    schema: &serde_json::Value,
) -> Option<std::collections::BTreeSet<String>> {
    use serde_json::Value;
    let schema = resolve(doc, schema);
    if schema
        .get("additionalProperties")
        .is_some_and(|a| a != &Value::Bool(false))
    {
        return None;
    }
    let mut names = std::collections::BTreeSet::new();
    let mut constrained = false;
    if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
        names.extend(properties.keys().cloned());
        constrained = true;
    }
    for key in ["allOf", "oneOf", "anyOf"] {
        for part in schema
            .get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let part = resolve(doc, part);
            if part.get("type").and_then(Value::as_str) == Some("null") {
                continue;
            }
            names.extend(property_names(doc, part)?);
            constrained = true;
        }
    }
    constrained.then_some(names)
}

fn resolve<'a>(doc: &'a serde_json::Value, schema: &'a serde_json::Value) -> &'a serde_json::Value {
    match schema.get("$ref").and_then(serde_json::Value::as_str) {
        Some(reference) => {
            let pointer = reference.strip_prefix('#').expect("a local $ref");
            let target = doc
                .pointer(pointer)
                .unwrap_or_else(|| panic!("{reference} resolves"));
            resolve(doc, target)
        }
        None => schema,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn messages_say_what_is_wrong_and_what_is() {
    let dev = Dev::start();
    // run-task on a daemon: it is a daemon, not missing.
    dev.apply(&sh_manifest("DaemonAgent", "loop", "sleep 1000", ""));
    let out = dev.clrk(&["agents", "run-task", "loop"]);
    assert_eq!(out.status.code(), Some(77));
    let said = text(&out.stderr);
    assert!(
        said.contains("default/loop is a DaemonAgent, not a TaskAgent")
            && !said.contains("not found"),
        "{said}"
    );
    // --limit 0 is refused rather than answered with "has not run yet".
    dev.apply(&sh_agent("ran", "true", ""));
    assert!(dev.clrk(&["agents", "run-task", "ran"]).status.success());
    let out = dev.clrk(&["agents", "invocations", "ran", "--limit", "0"]);
    assert!(!out.status.success());
    assert!(
        !text(&out.stderr).contains("has not run"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        text(&out.stderr).contains("--limit"),
        "{}",
        text(&out.stderr)
    );
    // A secret command's namespace flag is the secret's.
    let out = dev.clrk(&["secret", "set", "--help"]);
    assert!(
        text(&out.stdout).contains("Namespace of the secret"),
        "{}",
        text(&out.stdout)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn apply_warns_about_what_cannot_work_yet_and_keeps_it() {
    let dev = Dev::start();
    let warned = |manifest: &str| {
        let out = dev.try_apply(manifest);
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stderr)
    };
    let err = warned(&sh_agent("gpu-job", "true", "  workerPoolRef: gpu"));
    assert!(
        err.contains("warning: ")
            && err.contains("document 1: spec.workerPoolRef: no WorkerPool \"gpu\" exists"),
        "{err}"
    );
    // Kept, and `agents get` shows the warning as a condition for as long as it holds.
    let conditions = |name: &str| {
        let out = dev.clrk(&["agents", "get", name, "-o", "json"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let agent: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        agent["status"]
            .get("conditions")
            .cloned()
            .unwrap_or(serde_json::Value::Null)
    };
    let held = conditions("gpu-job");
    assert_eq!(held[0]["type"], "ReferencesResolved", "{held}");
    assert_eq!(held[0]["status"], "False", "{held}");
    assert_eq!(held[0]["reason"], "Unresolved", "{held}");
    assert!(
        held[0]["message"]
            .as_str()
            .unwrap()
            .starts_with("spec.workerPoolRef: no WorkerPool \"gpu\" exists"),
        "{held}"
    );
    let wide = text(&dev.clrk(&["agents", "list", "-o", "wide"]).stdout);
    let row = wide
        .lines()
        .find(|l| l.contains("gpu-job"))
        .unwrap_or_default();
    assert!(row.ends_with("ReferencesResolved"), "{wide}");
    let out = dev.clrk(&["agents", "get", "gpu-job"]);
    let table = text(&out.stdout);
    assert!(
        table.contains("Conditions:")
            && table.contains("ReferencesResolved   False    Unresolved   spec.workerPoolRef: no WorkerPool \"gpu\" exists"),
        "{table}"
    );

    let pool = "apiVersion: clrk.apoxy.dev/v1alpha1\nkind: WorkerPool\nmetadata: {name: gpu}\nspec: {runtime: runc}\n";
    let err = warned(&format!(
        "{pool}---\n{}",
        sh_agent("gpu-job", "true", "  workerPoolRef: gpu")
    ));
    assert!(err.contains("host: images need the runsc runtime"), "{err}");
    assert!(!err.contains("no WorkerPool"), "{err}");
    let held = conditions("gpu-job").to_string();
    assert!(
        held.contains("host: images need the runsc runtime") && !held.contains("no WorkerPool"),
        "{held}"
    );
    // Applying what was missing clears the condition, with no new apply of the agent.
    dev.apply(&pool.replace("runc", "runsc"));
    assert_eq!(conditions("gpu-job"), serde_json::Value::Null);
    assert!(!text(&dev.clrk(&["agents", "get", "gpu-job"]).stdout).contains("Conditions"));

    let err = warned(&sh_agent(
        "caller",
        "true",
        "  egressRefs: [{gatewayRef: llm}]",
    ));
    assert!(
        err.contains("spec.egressRefs[0].gatewayRef: no EgressGateway default/llm exists"),
        "{err}"
    );
    let held = conditions("caller").to_string();
    assert!(held.contains("spec.egressRefs[0].gatewayRef"), "{held}");
    let route = |gateway: &str| {
        format!(
            "apiVersion: clrk.apoxy.dev/v1alpha1\nkind: EgressL4Route\nmetadata: {{name: r}}\n\
             spec:\n  parentRefs: [{{name: {gateway}}}]\n  rules: [{{destinationHostnames: [a.test]}}]\n"
        )
    };
    let err = warned(&route("nowhere"));
    assert!(
        err.contains("spec.parentRefs[0].name: no EgressGateway default/nowhere exists"),
        "{err}"
    );
    // The route keeps saying so in `egress get` and `egress list -o wide`, and its manifest
    // with the condition still applies back.
    let shown = dev.clrk(&["egress", "get", "egressl4route/r", "-o", "json"]);
    let shown: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(
        shown["status"]["conditions"][0]["type"], "ReferencesResolved",
        "{shown}"
    );
    assert!(
        shown["status"]["conditions"][0]["message"]
            .as_str()
            .unwrap()
            .contains("no EgressGateway default/nowhere exists"),
        "{shown}"
    );
    let listed = text(&dev.clrk(&["egress", "list", "-o", "wide"]).stdout);
    assert!(
        listed.lines().next().unwrap().ends_with("CONDITIONS"),
        "{listed}"
    );
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("EgressL4Route") && l.ends_with("ReferencesResolved")),
        "{listed}"
    );
    let yaml = text(&dev.clrk(&["egress", "get", "egressl4route/r"]).stdout);
    assert!(yaml.contains("status:"), "{yaml}");
    assert!(warned(&yaml).contains("spec.parentRefs[0].name"), "{yaml}");
    // A gateway applied with its route satisfies it.
    let gateway = "apiVersion: clrk.apoxy.dev/v1alpha1\nkind: EgressGateway\nmetadata: {name: llm}\nspec: {defaultPolicy: deny-all}\n";
    let err = warned(&format!("{gateway}---\n{}", route("llm")));
    assert!(!err.contains("warning"), "{err}");
    assert_eq!(conditions("caller"), serde_json::Value::Null);
    let shown = dev.clrk(&["egress", "get", "egressl4route/r", "-o", "json"]);
    let shown: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(shown["status"], serde_json::Value::Null, "{shown}");

    let err = warned(&metadata_py_agent("meta", "pass").replacen(
        "\nspec:\n",
        "\nspec:\n  warmPoolSize: 2\n",
        1,
    ));
    assert!(
        err.contains("document 1: spec.warmPoolSize: ignored"),
        "{err}"
    );
    let held = conditions("meta");
    assert_eq!(held[0]["type"], "SpecHonoured", "{held}");
    assert_eq!(held[0]["reason"], "FieldsIgnored", "{held}");
    assert!(
        held[0]["message"]
            .as_str()
            .unwrap()
            .starts_with("spec.warmPoolSize: ignored"),
        "{held}"
    );
}
