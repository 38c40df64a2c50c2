//! SPECIFICATION §4 through the HTTP ingress with real gVisor sandboxes: routing, the envelope,
//! streaming, status codes and limits.

mod common;

use common::*;

/// An agent that answers with the envelope it received.
fn echo_envelope(dev: &Dev) {
    dev.apply(&sh_agent("echo", "cat", ""));
}

#[tokio::test(flavor = "multi_thread")]
async fn envelope_has_exactly_the_specified_attributes() {
    let dev = Dev::start();
    echo_envelope(&dev);

    let r = request(
        "PUT",
        &format!("{}/hooks/push?x=1&y=two", dev.ingress),
        &[
            ("X-Clrk-TaskAgent", "default/echo"),
            ("X-Clrk-Trigger", "webhook"),
            ("X-Clrk-Execution-ID", "exec-42"),
            ("Content-Type", "application/json"),
            ("ce-tenant", "acme"),
            // What the event is and where it comes from stay clrk's.
            ("ce-type", "com.example.forged"),
            ("ce-source", "https://forged.example"),
        ],
        bytes::Bytes::from_static(br#"{"text":"hello"}"#),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-clrk-execution-id"), Some("exec-42"));
    assert_eq!(r.header("content-type"), Some("application/octet-stream"));
    let env = r.json();
    assert_eq!(env["specversion"], "1.0");
    assert_eq!(env["id"], "exec-42");
    assert_eq!(env["source"], "clrk://default/echo");
    assert_eq!(env["type"], "dev.apoxy.clrk.taskagent.invoke");
    assert_eq!(env["subject"], "webhook");
    assert_eq!(env["datacontenttype"], "application/json");
    assert_eq!(env["data"], serde_json::json!({"text": "hello"}));
    assert_eq!(env["clrkrevision"], "echo-00001");
    assert_eq!(env["httpmethod"], "PUT");
    assert_eq!(env["httpurl"], "/hooks/push");
    assert_eq!(env["httpquery"], "x=1&y=two");
    assert_eq!(env["tenant"], "acme");
    let time = env["time"].as_str().unwrap();
    // clrk's computed extensions cannot be set at all.
    for computed in ["clrkrevision", "httpmethod", "httpurl", "httpquery"] {
        let header = format!("ce-{computed}");
        let r = dev
            .invoke(
                &[("X-Clrk-TaskAgent", "default/echo"), (&header, "forged")],
                "",
            )
            .await;
        assert_eq!(r.status, 400, "{header}: {}", r.text());
        assert!(r.text().contains(&header), "{}", r.text());
    }
    chrono::DateTime::parse_from_rfc3339(time).expect("RFC 3339 time");
    assert!(time.ends_with('Z'), "{time}");

    // No trigger header: no subject. x-request-id names the execution. Text stays text.
    let r = dev
        .invoke(
            &[
                ("X-Clrk-TaskAgent", "default/echo"),
                ("x-request-id", "req-7"),
                ("content-type", "text/plain"),
            ],
            "just words",
        )
        .await;
    let env = r.json();
    assert_eq!(env["id"], "req-7");
    assert!(env.get("subject").is_none(), "{env}");
    assert_eq!(env["data"], "just words");

    // Binary bodies travel base64; an empty body has no data at all; ids are generated.
    let r = dev
        .invoke(
            &[
                ("X-Clrk-TaskAgent", "default/echo"),
                ("content-type", "application/octet-stream"),
            ],
            vec![0u8, 1, 2],
        )
        .await;
    assert_eq!(r.json()["data_base64"], "AAEC");
    let r = dev
        .invoke(&[("X-Clrk-TaskAgent", "default/echo")], "")
        .await;
    let env = r.json();
    assert!(
        env.get("data").is_none() && env.get("data_base64").is_none(),
        "{env}"
    );
    let id = r.header("x-clrk-execution-id").unwrap();
    assert_eq!(env["id"], id);
    uuid::Uuid::parse_str(id).expect("a generated UUID");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_get_the_documented_status() {
    let dev = Dev::start();
    echo_envelope(&dev);

    let r = dev.invoke(&[], "").await;
    assert_eq!(r.status, 400);
    assert!(r.text().contains("X-Clrk-TaskAgent"), "{}", r.text());

    let r = dev.invoke(&[("X-Clrk-TaskAgent", "echo")], "").await;
    assert_eq!(r.status, 400);
    assert!(r.text().contains("<namespace>/<name>"), "{}", r.text());

    let r = dev
        .invoke(&[("X-Clrk-TaskAgent", "default/nope")], "")
        .await;
    assert_eq!(r.status, 404, "{}", r.text());

    let r = dev
        .invoke(
            &[
                ("X-Clrk-TaskAgent", "default/echo"),
                ("content-type", "application/json"),
            ],
            "{not json",
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(r.text().contains("not valid JSON"), "{}", r.text());

    // 33 MiB, with a Content-Length and chunked: 413 either way. curl, as a user would send
    // it, because the server answers before reading the whole body.
    let big = dev.clrk_dir().join("big.bin");
    std::fs::write(&big, vec![b'a'; 33 * 1024 * 1024]).unwrap();
    for extra in [None, Some("Transfer-Encoding: chunked")] {
        let mut curl = std::process::Command::new("curl");
        curl.args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-H",
            "X-Clrk-TaskAgent: default/echo",
        ])
        .arg("--data-binary")
        .arg(format!("@{}", big.display()));
        if let Some(header) = extra {
            curl.args(["-H", header]);
        }
        let out = curl.arg(format!("{}/", dev.ingress)).output().unwrap();
        assert_eq!(text(&out.stdout), "413", "{extra:?}: {}", text(&out.stderr));
    }
    // None of the rejected requests ran anything.
    assert!(dev.invocations("echo").await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn exit_codes_and_timeouts_map_to_statuses() {
    let dev = Dev::start();
    dev.apply(&sh_agent("fails", "echo oops >&2; exit 3", ""));
    let r = dev
        .invoke(&[("X-Clrk-TaskAgent", "default/fails")], "")
        .await;
    assert_eq!(r.status, 500);
    assert_eq!(r.header("x-clrk-exit-code"), Some("3"));
    assert_eq!(r.text().trim(), "agent exited with code 3");
    // stderr went to the logs, not to the caller.
    let id = r.header("x-clrk-execution-id").unwrap().to_string();
    let logs = dev.api_get("/v1/agents/default/fails/logs").await;
    let line: serde_json::Value =
        serde_json::from_str(logs.text().lines().next().expect("a log line")).unwrap();
    assert_eq!(line["line"], "oops");
    assert_eq!(line["executionId"], id.as_str());

    // Output, then a non-zero exit: by default the output was held, so the status is still
    // the 500 of the exit code (the guide's promise); the output is not sent.
    dev.apply(&sh_agent("partial", "echo partial; exit 5", ""));
    let r = dev
        .invoke(&[("X-Clrk-TaskAgent", "default/partial")], "")
        .await;
    assert_eq!(r.status, 500, "{}", r.text());
    assert_eq!(r.header("x-clrk-exit-code"), Some("5"));
    assert_eq!(r.text().trim(), "agent exited with code 5");
    assert!(r.trailers.is_empty(), "{:?}", r.trailers);

    // A streaming agent: its output went out first, so 200, and the exit code travels as a
    // trailer.
    dev.apply(&sh_agent(
        "partial-stream",
        "echo partial; exit 5",
        STREAMING,
    ));
    let r = dev
        .invoke(&[("X-Clrk-TaskAgent", "default/partial-stream")], "")
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "partial\n");
    assert_eq!(
        r.trailers.get("x-clrk-exit-code").map(String::as_str),
        Some("5")
    );

    // Timeout: 504, and nothing of the execution survives it, not even a setsid grandchild
    // that ignores SIGTERM.
    let script =
        "(trap '' TERM; sleep 1000) & setsid sh -c 'trap \"\" TERM; sleep 1000' & sleep 1000";
    dev.apply(&sh_agent("sleeper", script, "  timeout: 2s"));
    let r = dev
        .invoke(&[("X-Clrk-TaskAgent", "default/sleeper")], "")
        .await;
    assert_eq!(r.status, 504, "{}", r.text());
    assert_eq!(r.text().trim(), "execution timed out after 2s");
    dev.wait_for("the timed-out sandbox to be gone", || {
        (dev.runsc_list().is_empty() && dev.sandbox_processes().is_empty()).then_some(())
    });
    let runs = dev.invocations("sleeper").await;
    assert_eq!(runs[0]["status"], "TimedOut");
}

#[tokio::test(flavor = "multi_thread")]
async fn stdout_is_streamed_as_it_is_written() {
    let dev = Dev::start();
    // The agent writes one line, then keeps running long enough for the test to look.
    dev.apply(&sh_agent(
        "streamer",
        "echo first; sleep 10; echo second",
        STREAMING,
    ));

    let client: hyper_util::client::legacy::Client<_, http_body_util::Full<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http();
    let req = http::Request::post(format!("{}/", dev.ingress))
        .header("X-Clrk-TaskAgent", "default/streamer")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let response = client.request(req).await.unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    use http_body_util::BodyExt as _;
    let frame = body.frame().await.unwrap().unwrap();
    assert_eq!(frame.into_data().unwrap(), "first\n");
    // The first line arrived while the agent is still running.
    let runs = dev.invocations("streamer").await;
    assert_eq!(runs[0]["status"], "Running", "{runs:?}");
    let rest = body.collect().await.unwrap().to_bytes();
    assert_eq!(rest, "second\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hundred_mib_of_stdout_is_streamed_without_buffering() {
    let dev = Dev::start();
    dev.apply(&sh_agent(
        "firehose",
        "head -c 104857600 /dev/zero",
        STREAMING,
    ));
    let client: hyper_util::client::legacy::Client<_, http_body_util::Full<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http();
    let req = http::Request::post(format!("{}/", dev.ingress))
        .header("X-Clrk-TaskAgent", "default/firehose")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let response = client.request(req).await.unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    use http_body_util::BodyExt as _;
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            assert!(data.iter().all(|b| *b == 0));
            total += data.len();
        }
    }
    assert_eq!(total, 104_857_600);
    // The server never held the output: its peak RSS stays far below 100 MiB.
    let status = std::fs::read_to_string(format!("/proc/{}/status", dev.pid())).unwrap();
    let hwm_kib: u64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap()
        .parse()
        .unwrap();
    assert!(hwm_kib < 80 * 1024, "clrk peak RSS {hwm_kib} KiB");
}

#[tokio::test(flavor = "multi_thread")]
async fn held_output_is_answered_whole_after_the_exit_and_capped() {
    let dev = Dev::start();
    // Exit 0: all of it, with its length, and no trailer.
    dev.apply(&sh_agent(
        "megabyte",
        "head -c 1048576 /dev/zero | tr '\\0' a",
        "",
    ));
    let r = dev
        .invoke(&[("X-Clrk-TaskAgent", "default/megabyte")], "")
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-length"), Some("1048576"));
    assert!(r.body.len() == 1 << 20 && r.body.iter().all(|b| *b == b'a'));
    assert!(r.trailers.is_empty(), "{:?}", r.trailers);

    // Output, then the timeout: a 504, not a 200 cut short.
    dev.apply(&sh_agent("talker", "echo talking; sleep 1000", ""));
    let r = dev
        .invoke(
            &[
                ("X-Clrk-TaskAgent", "default/talker"),
                ("X-Clrk-Timeout", "1s"),
            ],
            "",
        )
        .await;
    assert_eq!(r.status, 504, "{}", r.text());
    assert_eq!(r.text().trim(), "execution timed out after 1s");

    // Over the cap: a 502 that names it and the way out, while clrk holds no more than the
    // cap of the agent's 200 MiB.
    dev.apply(&sh_agent("flood", "head -c 209715200 /dev/zero", ""));
    let r = dev
        .invoke(&[("X-Clrk-TaskAgent", "default/flood")], "")
        .await;
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(r.header("x-clrk-execution-id").is_some());
    let said = r.text();
    assert!(said.contains("more than 32 MiB of stdout"), "{said}");
    assert!(said.contains("spec.streaming.enabled: true"), "{said}");
    let status = std::fs::read_to_string(format!("/proc/{}/status", dev.pid())).unwrap();
    let hwm_kib: u64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap()
        .parse()
        .unwrap();
    assert!(hwm_kib < 112 * 1024, "clrk peak RSS {hwm_kib} KiB");
}

#[tokio::test(flavor = "multi_thread")]
async fn max_concurrent_rejects_with_429_and_deleting_stops_the_agent() {
    let dev = Dev::start();
    // One at a time is not "one ever": sequential calls all run.
    dev.apply(&sh_agent("one", "echo ok", "  maxConcurrent: 1"));
    for _ in 0..3 {
        let r = dev.invoke(&[("X-Clrk-TaskAgent", "default/one")], "").await;
        assert_eq!(r.status, 200, "{}", r.text());
    }

    dev.apply(&sh_agent("single", "sleep 1000", "  maxConcurrent: 1"));
    let ingress = dev.ingress.clone();
    let first = tokio::spawn(async move {
        request(
            "POST",
            &format!("{ingress}/"),
            &[("X-Clrk-TaskAgent", "default/single")],
            bytes::Bytes::new(),
        )
        .await
    });
    eventually("the first execution to run", || async {
        (dev.invocations("single").await.len() == 1).then_some(())
    })
    .await;
    let r = dev
        .invoke(&[("X-Clrk-TaskAgent", "default/single")], "")
        .await;
    assert_eq!(r.status, 429, "{}", r.text());
    assert!(r.header("retry-after").is_some());

    // Deleting the agent stops its execution and deletes the sandbox.
    let out = dev.clrk(&["agents", "delete", "single"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let r = first.await.unwrap();
    assert_eq!(r.status, 500);
    assert!(r.text().contains("deleted"), "{}", r.text());
    dev.wait_for("the sandbox to be gone", || {
        (dev.runsc_list().is_empty() && dev.sandbox_processes().is_empty()).then_some(())
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn cloudevents_accept_wraps_the_response() {
    let dev = Dev::start();
    dev.apply(&sh_agent("wrapped", r#"echo '{"ok":true}'"#, ""));
    let r = dev
        .invoke(
            &[
                ("X-Clrk-TaskAgent", "default/wrapped"),
                ("X-Clrk-Execution-ID", "w-1"),
                ("Accept", "application/cloudevents+json"),
            ],
            "",
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("application/cloudevents+json")
    );
    let e = r.json();
    assert_eq!(e["type"], "dev.apoxy.clrk.taskagent.response");
    assert_eq!(e["id"], "w-1.response");
    assert_eq!(e["data"], serde_json::json!({"ok": true}));
}

#[tokio::test(flavor = "multi_thread")]
async fn sandbox_sees_only_the_specified_environment() {
    let dev = Dev::start();
    let manifest = r#"apiVersion: clrk.apoxy.dev/v1alpha1
kind: TaskAgent
metadata:
  name: env
spec:
  template:
    spec:
      image: "host:"
      command: ["/bin/sh", "-c"]
      args: ["env | sort; pwd; ls -A $HOME_DIR | wc -l"]
      workingDir: /tmp
      env:
        - name: GREETING
          value: hi
        - name: HOME_DIR
          value: CLRK_DIR_PLACEHOLDER
"#
    .replace("CLRK_DIR_PLACEHOLDER", dev.clrk_dir().to_str().unwrap());
    dev.apply(&manifest);
    let r = dev.invoke(&[("X-Clrk-TaskAgent", "default/env")], "").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let out = r.text();
    let mut lines: Vec<&str> = out.lines().collect();
    let entries = lines.pop().unwrap();
    let cwd = lines.pop().unwrap();
    assert_eq!(cwd, "/tmp");
    // clrk's data dir (store, logs, API token) is masked: empty inside the sandbox.
    assert_eq!(entries.trim(), "0");
    let names: Vec<&str> = lines.iter().map(|l| l.split('=').next().unwrap()).collect();
    let expected = [
        "CLRK_METADATA_URL",
        "CLRK_METADATA_URL_V6",
        "CURL_CA_BUNDLE",
        "GIT_SSL_CAINFO",
        "GREETING",
        "HOME",
        "HOME_DIR",
        "NODE_EXTRA_CA_CERTS",
        "PATH",
        "PWD",
        "REQUESTS_CA_BUNDLE",
        "SSL_CERT_FILE",
    ];
    // `PWD` and `SHLVL` are the shell's own; `HOME` is set by the OCI runtime, as in every
    // container (documented in docs/agents.md).
    let names: Vec<&str> = names.into_iter().filter(|n| *n != "SHLVL").collect();
    assert_eq!(names, expected, "{out}");
    assert!(out.contains("CLRK_METADATA_URL=http://169.254.169.254/v1\n"));
    assert!(out.contains("SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt\n"));
}

/// Held responses share one memory budget (`--held-output-memory`): executions in flight
/// together past it go on in temporary files, every caller still gets all of its output, and
/// /metrics says how much memory is held and how many went to files.
#[tokio::test(flavor = "multi_thread")]
async fn held_output_of_many_executions_shares_one_memory_budget_and_loses_nothing() {
    let dev = Dev::start_with(&["--held-output-memory", "1Mi"]);
    dev.apply(&sh_agent(
        "bulk",
        "letter=$(cat | sed 's/.*\"letter\":\"\\([a-z]\\)\".*/\\1/'); head -c 4194304 /dev/zero | tr '\\0' \"$letter\"",
        "",
    ));
    let letters = ["a", "b", "c", "d"];
    let calls = letters.map(|letter| {
        let dev = &dev;
        async move {
            let r = dev
                .invoke(
                    &[
                        ("X-Clrk-TaskAgent", "default/bulk"),
                        ("content-type", "application/json"),
                    ],
                    format!(r#"{{"letter":"{letter}"}}"#),
                )
                .await;
            (letter, r)
        }
    });
    for (letter, r) in futures::future::join_all(calls).await {
        assert_eq!(
            r.status,
            200,
            "{}",
            String::from_utf8_lossy(&r.body[..r.body.len().min(300)])
        );
        assert_eq!(r.header("content-length"), Some("4194304"));
        assert!(
            r.body.len() == 4 << 20 && r.body.iter().all(|b| *b == letter.as_bytes()[0]),
            "{letter}: {} bytes, not all {letter}",
            r.body.len()
        );
    }
    let metrics = dev.api_get("/metrics").await;
    let text = metrics.text();
    let value = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {text}"))
    };
    // 4 MiB each against a 1 MiB budget: each of them went on in a file.
    assert!(value("clrk_held_output_spills_total") >= 4.0, "{text}");
    assert_eq!(
        value("clrk_held_output_bytes"),
        0.0,
        "all given back: {text}"
    );
}
