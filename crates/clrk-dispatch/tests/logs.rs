//! Execution logs against a real store file: the per-execution limit and its marker, and the
//! per-agent cap that expires the oldest executions first.

use std::time::{Duration, Instant};

use clrk_dispatch::{LogBus, LogLimit};
use clrk_store::{AgentApply, LogQuery, Store};

fn store_with_agent() -> (tempfile::TempDir, Store) {
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
    let (_dir, store) = store_with_agent();
    let bus = LogBus::new(store.clone());
    let log = bus.execution("default", "loud", "ev-1", limit("1Ki"));
    let stderr = log.pump(std::io::Cursor::new(output(100, 19)), "stderr");
    let stdout = log.pump(std::io::Cursor::new(output(100, 19)), "stdout");
    drop(log);
    stderr.await.unwrap();
    stdout.await.unwrap();
    let lines = store.logs("default", "loud", &LogQuery::default()).unwrap();
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
    let (_dir, store) = store_with_agent();
    let bus = LogBus::new(store.clone());
    // 70 executions of 16 lines of 64 KiB with their rows (just under 1 MiB each).
    let each = 16 * 65_535;
    let text = 65_535 - clrk_store::LOG_ROW_COST as usize;
    for i in 0..70 {
        let log = bus.execution("default", "loud", &format!("ev-{i:02}"), limit("1Mi"));
        log.pump(std::io::Cursor::new(output(16, text)), "stderr")
            .await
            .unwrap();
    }
    let started = Instant::now();
    while store.log_bytes("default", "loud").unwrap() > 64 << 20 {
        assert!(started.elapsed() < Duration::from_secs(60), "never expired");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let kept = store.log_bytes("default", "loud").unwrap();
    assert_eq!(
        kept,
        (64 << 20) / each as u64 * each as u64,
        "whole executions"
    );
    let first = store
        .logs(
            "default",
            "loud",
            &LogQuery {
                tail: None,
                after_seq: None,
            },
        )
        .unwrap()
        .first()
        .map(|l| l.execution_id.clone())
        .unwrap();
    assert_eq!(first, format!("ev-{:02}", 70 - (64 << 20) / each));
}
