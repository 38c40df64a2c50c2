//! SPEC §11: a `kill -9` of the server loses nothing acknowledged and leaves nothing running;
//! a clean stop deletes every sandbox.

mod common;

use common::*;

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_during_ten_executions_then_restart_leaves_a_consistent_store() {
    let mut dev = Dev::start();
    dev.apply(&sh_agent("long", "sleep 1000", ""));
    let mut calls = Vec::new();
    for i in 0..10 {
        let ingress = dev.ingress.clone();
        calls.push(tokio::spawn(async move {
            let id = format!("crash-{i}");
            request(
                "POST",
                &format!("{ingress}/"),
                &[
                    ("X-Clrk-TaskAgent", "default/long"),
                    ("X-Clrk-Execution-ID", &id),
                ],
                bytes::Bytes::new(),
            )
            .await
        }));
    }
    eventually("ten sandboxes running", || async {
        let runs = dev.invocations("long").await;
        (runs.len() == 10 && dev.runsc_list().len() == 10).then_some(())
    })
    .await;

    dev.kill9();
    for call in calls {
        // The callers see their connection close; what matters is the record.
        let _ = call.await;
    }
    dev.spawn(&[]);

    let runs = dev.invocations("long").await;
    assert_eq!(runs.len(), 10, "{runs:?}");
    for run in &runs {
        assert_eq!(run["status"], "Failed", "{run}");
        assert_eq!(run["reason"], "server restarted", "{run}");
    }
    assert!(dev.runsc_list().is_empty(), "{:?}", dev.runsc_list());
    dev.wait_for("no sandbox process left", || {
        dev.sandbox_processes().is_empty().then_some(())
    });
    // The agent still serves after the restart.
    dev.apply(&sh_agent("quick", "echo alive", ""));
    let r = dev
        .invoke(&[("X-Clrk-TaskAgent", "default/quick")], "")
        .await;
    assert_eq!(r.text(), "alive\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_stops_cleanly_and_deletes_sandboxes() {
    let mut dev = Dev::start();
    dev.apply(&sh_agent("long", "sleep 1000", ""));
    let ingress = dev.ingress.clone();
    let call = tokio::spawn(async move {
        request(
            "POST",
            &format!("{ingress}/"),
            &[("X-Clrk-TaskAgent", "default/long")],
            bytes::Bytes::new(),
        )
        .await
    });
    eventually("the sandbox running", || async {
        (dev.runsc_list().len() == 1).then_some(())
    })
    .await;
    let status = dev.stop();
    assert!(status.success(), "{status}\n{}", dev.server_log());
    let _ = call.await;
    assert!(dev.runsc_list().is_empty());
    assert!(
        dev.sandbox_processes().is_empty(),
        "{:?}",
        dev.sandbox_processes()
    );
    assert!(!dev.clrk_dir().join("dev.json").exists());
}
