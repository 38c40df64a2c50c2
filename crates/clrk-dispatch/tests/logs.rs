//! Execution logs against a real store file: the per-execution limit and its marker, and the
//! per-agent cap that expires the oldest executions first.

use std::time::{Duration, Instant};

use clrk_dispatch::{LogBus, LogLimit};
use clrk_store::{AgentApply, LogQuery, Store};

async fn store_with_agent() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("clrk.db")).unwrap();
    store
        .apply_agent(&AgentApply {
            namespace: "default".into(),
            name: "loud".into(),
            kind: "TaskAgent".into(),
            spec: serde_json::json!({}),
            shape: serde_json::json!({"image": "loud"}),
            image_ref: "loud:latest".into(),
            image_digest: "sha256:ab".into(),
        })
        .await
        .unwrap();
    (dir, store)
}

fn limit(text: &str) -> LogLimit {
    LogLimit::from_spec(Some(&text.parse().unwrap()))
}

/// `lines` lines of `len` bytes each, newline-terminated.
fn output(lines: usize, len: usize) -> Vec<u8> {
    let mut line = vec![b'x'; len];
    line.push(b'\n');
    line.repeat(lines)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_execution_keeps_its_limit_and_ends_with_the_marker() {
    let (_dir, store) = store_with_agent().await;
    let bus = LogBus::new(store.clone());
    let log = bus.execution("default", "loud", "ev-1", limit("1Ki"));
    let stderr = log.pump(std::io::Cursor::new(output(100, 19)), "stderr");
    let stdout = log.pump(std::io::Cursor::new(output(100, 19)), "stdout");
    drop(log);
    stderr.await.unwrap();
    stdout.await.unwrap();
    let lines = store
        .logs("default", "loud", &LogQuery::default())
        .await
        .unwrap();
    let (marker, kept) = lines.split_last().unwrap();
    // 12 lines of 19 bytes (83 with their rows) fit in 1 KiB: both streams share it.
    assert_eq!(kept.len(), 12);
    assert_eq!(
        marker.line,
        "[clrk] log limit 1Ki reached: 3572 more bytes (188 lines) dropped"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_keeps_at_most_64_mib_dropping_its_oldest_executions() {
    let (_dir, store) = store_with_agent().await;
    let bus = LogBus::new(store.clone());
    // 70 executions of 16 lines of 64 KiB with their rows (just under 1 MiB each).
    let each: u64 = 16 * 65_535;
    let text = 65_535 - clrk_store::LOG_ROW_COST as usize;
    for i in 0..70 {
        let log = bus.execution("default", "loud", &format!("ev-{i:02}"), limit("1Mi"));
        log.pump(std::io::Cursor::new(output(16, text)), "stderr")
            .await
            .unwrap();
    }
    let started = Instant::now();
    while store.log_bytes("default", "loud").await.unwrap() > 64 << 20 {
        assert!(started.elapsed() < Duration::from_secs(60), "never expired");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let kept = store.log_bytes("default", "loud").await.unwrap();
    assert_eq!(kept, (64 << 20) / each * each, "whole executions");
    let first = store
        .logs(
            "default",
            "loud",
            &LogQuery {
                tail: None,
                after_seq: None,
            },
        )
        .await
        .unwrap()
        .first()
        .map(|l| l.execution_id.clone())
        .unwrap();
    assert_eq!(first, format!("ev-{:02}", 70 - (64 << 20) / each));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_daemon_run_keeps_its_newest_lines_and_one_marker() {
    let (_dir, store) = store_with_agent().await;
    let bus = LogBus::new(store.clone());
    let log = bus.daemon_run("default", "loud", "run-1", limit("4Ki"));
    let numbered = |stream: &str| {
        let text: String = (0..500).map(|i| format!("{stream} {i:04}\n")).collect();
        std::io::Cursor::new(text.into_bytes())
    };
    let stderr = log.pump(numbered("err"), "stderr");
    let stdout = log.pump(numbered("out"), "stdout");
    drop(log);
    stderr.await.unwrap();
    stdout.await.unwrap();
    let lines = store
        .logs("default", "loud", &LogQuery::default())
        .await
        .unwrap();
    let texts: Vec<&str> = lines.iter().map(|l| l.line.as_str()).collect();
    let cost: u64 = texts.iter().map(|l| clrk_store::log_line_cost(l)).sum();
    assert!(cost <= 4096, "{cost} bytes kept: {texts:?}");
    // The store's count of the run's bytes is what its lines cost.
    assert_eq!(store.log_bytes("default", "loud").await.unwrap(), cost);
    assert_eq!(
        texts[0],
        "[clrk] log limit 4Ki: older lines of this run are deleted as new ones arrive"
    );
    assert_eq!(texts.iter().filter(|l| l.starts_with("[clrk]")).count(), 1);
    // Each stream comes in one read here: the stream read last keeps its newest lines.
    assert!(texts.last().unwrap().ends_with(" 0499"), "{texts:?}");
    assert!(!texts.iter().any(|l| l.ends_with(" 0000")), "{texts:?}");
    assert!(texts.len() > 40, "{texts:?}");
}
