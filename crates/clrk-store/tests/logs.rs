//! Log append and query (tail, after_seq) against a real database file.

mod common;

use chrono::Utc;
use clrk_store::{LogQuery, NewLogLine, StoreError};
use common::{echo_agent, execution, temp_store};

fn line(agent: &str, execution_id: &str, text: &str) -> NewLogLine {
    NewLogLine {
        execution_id: execution_id.into(),
        namespace: "default".into(),
        agent: agent.into(),
        stream: if text.starts_with("out") {
            "stdout"
        } else {
            "stderr"
        }
        .into(),
        time: Utc::now(),
        line: text.into(),
    }
}

fn texts(lines: &[clrk_store::LogLine]) -> Vec<&str> {
    lines.iter().map(|l| l.line.as_str()).collect()
}

#[test]
fn logs_come_back_in_order_with_tail_and_after_seq() {
    let (_dir, store) = temp_store();
    store.apply_agent(&echo_agent("echo")).unwrap();
    store.apply_agent(&echo_agent("other")).unwrap();
    store.start_execution(&execution("ev-1", "echo")).unwrap();
    let batch: Vec<_> = (1..=5)
        .map(|i| line("echo", "ev-1", &format!("err {i}")))
        .collect();
    store.append_logs(&batch).unwrap();
    store
        .append_logs(&[line("other", "ev-x", "not mine")])
        .unwrap();
    store.append_logs(&[line("echo", "ev-1", "out 6")]).unwrap();

    let all = store.logs("default", "echo", &LogQuery::default()).unwrap();
    assert_eq!(
        texts(&all),
        ["err 1", "err 2", "err 3", "err 4", "err 5", "out 6"]
    );
    assert!(all.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(all[5].stream, "stdout");
    assert_eq!(all[0].stream, "stderr");
    assert_eq!(all[0].execution_id, "ev-1");

    let tail = store
        .logs(
            "default",
            "echo",
            &LogQuery {
                tail: Some(2),
                after_seq: None,
            },
        )
        .unwrap();
    assert_eq!(texts(&tail), ["err 5", "out 6"]);

    let after = store
        .logs(
            "default",
            "echo",
            &LogQuery {
                tail: None,
                after_seq: Some(all[3].seq),
            },
        )
        .unwrap();
    assert_eq!(texts(&after), ["err 5", "out 6"]);

    let both = store
        .logs(
            "default",
            "echo",
            &LogQuery {
                tail: Some(1),
                after_seq: Some(all[1].seq),
            },
        )
        .unwrap();
    assert_eq!(texts(&both), ["out 6"]);

    let none = store
        .logs(
            "default",
            "echo",
            &LogQuery {
                tail: None,
                after_seq: Some(all[5].seq),
            },
        )
        .unwrap();
    assert!(
        none.is_empty(),
        "a follower at the last seq sees nothing new"
    );
}

#[test]
fn batch_with_an_unknown_agent_stores_nothing() {
    let (_dir, store) = temp_store();
    store.apply_agent(&echo_agent("echo")).unwrap();
    let err = store
        .append_logs(&[
            line("echo", "ev-1", "kept?"),
            line("ghost", "ev-2", "orphan"),
        ])
        .unwrap_err();
    assert!(matches!(err, StoreError::AgentNotFound { .. }));
    assert!(
        store
            .logs("default", "echo", &LogQuery::default())
            .unwrap()
            .is_empty()
    );
}
