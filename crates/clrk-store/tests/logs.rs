//! Log append and query (tail, after_seq) against a real database of each backend.

mod common;

use chrono::Utc;
use clrk_store::{LogPage, LogQuery, NewLogLine, StoreError};
use common::{echo_agent, execution};

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

store_tests! {
    async fn logs_come_back_in_order_with_tail_and_after_seq(backend) {
        let store = backend.open().await;
        store.apply_agent(&echo_agent("echo")).await.unwrap();
        store.apply_agent(&echo_agent("other")).await.unwrap();
        store.start_execution(&execution("ev-1", "echo")).await.unwrap();
        let batch: Vec<_> = (1..=5)
            .map(|i| line("echo", "ev-1", &format!("err {i}")))
            .collect();
        store.append_logs(&batch).await.unwrap();
        store
            .append_logs(&[line("other", "ev-x", "not mine")]).await
            .unwrap();
        store.append_logs(&[line("echo", "ev-1", "out 6")]).await.unwrap();

        let all = store.logs("default", "echo", &LogQuery::default()).await.unwrap();
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
            ).await
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
            ).await
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
            ).await
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
            ).await
            .unwrap();
        assert!(
            none.is_empty(),
            "a follower at the last seq sees nothing new"
        );
    }

    async fn batch_with_an_unknown_agent_stores_nothing(backend) {
        let store = backend.open().await;
        store.apply_agent(&echo_agent("echo")).await.unwrap();
        let err = store
            .append_logs(&[
                line("echo", "ev-1", "kept?"),
                line("ghost", "ev-2", "orphan"),
            ]).await
            .unwrap_err();
        assert!(matches!(err, StoreError::AgentNotFound { .. }));
        assert!(
            store
                .logs("default", "echo", &LogQuery::default()).await
                .unwrap()
                .is_empty()
        );
    }

    async fn pages_cover_the_log_once_in_order_bounded_by_lines_and_bytes(backend) {
        let store = backend.open().await;
        store.apply_agent(&echo_agent("echo")).await.unwrap();
        let batch: Vec<_> = (0..25)
            .map(|i| line("echo", "ev-1", &format!("err {i:02}")))
            .collect();
        store.append_logs(&batch).await.unwrap();
        let mut page = LogPage {
            execution: None,
            after_seq: None,
            up_to_seq: None,
            max_lines: 10,
            max_bytes: 1 << 20,
        };
        let mut seen = Vec::new();
        loop {
            let lines = store.log_page("default", "echo", &page).await.unwrap();
            let Some(last) = lines.last() else { break };
            assert!(lines.len() <= 10);
            page.after_seq = Some(last.seq);
            seen.extend(lines.into_iter().map(|l| l.line));
        }
        assert_eq!(seen.len(), 25);
        assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");

        // A page ends at the line that reaches max_bytes (6 bytes a line).
        page.after_seq = None;
        page.max_bytes = 13;
        assert_eq!(store.log_page("default", "echo", &page).await.unwrap().len(), 3);

        // tail and up_to_seq bound where a reader starts and stops.
        let start = store.log_tail_start("default", "echo", 5, None).await.unwrap();
        let last = store.log_last_seq("default", "echo").await.unwrap().unwrap();
        page.max_bytes = 1 << 20;
        page.after_seq = start;
        page.up_to_seq = Some(last - 1);
        let lines = store.log_page("default", "echo", &page).await.unwrap();
        assert_eq!(texts(&lines), ["err 20", "err 21", "err 22", "err 23"]);
        assert_eq!(store.log_tail_start("default", "echo", 25, None).await.unwrap(), None);
    }

    async fn one_executions_lines_and_tail_leave_the_others_out(backend) {
        let store = backend.open().await;
        store.apply_agent(&echo_agent("echo")).await.unwrap();
        let batch: Vec<_> = (0..12)
            .map(|i| line("echo", ["ev-a", "ev-b", "ev-c"][i % 3], &format!("line {i:02}")))
            .collect();
        store.append_logs(&batch).await.unwrap();
        let page = LogPage {
            execution: Some("ev-b".into()),
            after_seq: store.log_tail_start("default", "echo", 2, Some("ev-b")).await.unwrap(),
            up_to_seq: None,
            max_lines: 100,
            max_bytes: 1 << 20,
        };
        let lines = store.log_page("default", "echo", &page).await.unwrap();
        assert_eq!(texts(&lines), ["line 07", "line 10"]);
        assert!(lines.iter().all(|l| l.execution_id == "ev-b"));
        let none = LogPage {
            execution: Some("ev-none".into()),
            after_seq: None,
            ..page
        };
        assert!(store.log_page("default", "echo", &none).await.unwrap().is_empty());
    }

    async fn the_log_cap_holds_across_deletes_and_re_creations_of_a_name(backend) {
        let store = backend.open().await;
        let text = "x".repeat(100 - clrk_store::LOG_ROW_COST as usize);
        // Three agents of one name, each deleted after one run of 1,000 bytes of log.
        for (n, execution_id) in ["ev-1", "ev-2", "ev-3"].into_iter().enumerate() {
            store.apply_agent(&echo_agent("echo")).await.unwrap();
            store.start_execution(&execution(execution_id, "echo")).await.unwrap();
            let batch: Vec<_> = (0..10).map(|_| line("echo", execution_id, &text)).collect();
            store.append_logs(&batch).await.unwrap();
            assert_eq!(
                store.log_bytes("default", "echo").await.unwrap(),
                1000 * (n as u64 + 1),
                "the name's total counts the deleted agents' lines"
            );
            store.delete_agent("default", "echo").await.unwrap();
        }
        // Expiry of a deleted name's history keeps its newest run, like a live agent's.
        assert_eq!(store.expire_logs("default", "echo", 1500).await.unwrap(), 2000);
        let left = store.logs("default", "echo", &LogQuery::default()).await.unwrap();
        assert!(left.len() == 10 && left.iter().all(|l| l.execution_id == "ev-3"));
        // The next agent of the name shares its cap with what is left.
        store.apply_agent(&echo_agent("echo")).await.unwrap();
        store.start_execution(&execution("ev-4", "echo")).await.unwrap();
        let batch: Vec<_> = (0..10).map(|_| line("echo", "ev-4", &text)).collect();
        store.append_logs(&batch).await.unwrap();
        assert_eq!(store.expire_logs("default", "echo", 1500).await.unwrap(), 1000);
        let left = store.logs("default", "echo", &LogQuery::default()).await.unwrap();
        assert!(left.iter().all(|l| l.execution_id == "ev-4"));
    }

    async fn expiry_deletes_the_oldest_executions_until_the_agent_is_under_its_cap(backend) {
        let store = backend.open().await;
        store.apply_agent(&echo_agent("echo")).await.unwrap();
        store.apply_agent(&echo_agent("other")).await.unwrap();
        // 100 bytes a line: its text and the row.
        let text = "x".repeat(100 - clrk_store::LOG_ROW_COST as usize);
        for execution in ["ev-1", "ev-2", "ev-3", "ev-4"] {
            let batch: Vec<_> = (0..10).map(|_| line("echo", execution, &text)).collect();
            store.append_logs(&batch).await.unwrap();
            store
                .append_logs(&[line("other", execution, &text)]).await
                .unwrap();
        }
        assert_eq!(store.log_bytes("default", "echo").await.unwrap(), 4000);

        // Under the cap: nothing goes.
        assert_eq!(store.expire_logs("default", "echo", 4000).await.unwrap(), 0);
        // 2,500 bytes allowed: the two oldest executions go, whole.
        assert_eq!(store.expire_logs("default", "echo", 2500).await.unwrap(), 2000);
        let left = store.logs("default", "echo", &LogQuery::default()).await.unwrap();
        assert_eq!(left.len(), 20);
        assert!(
            left.iter()
                .all(|l| l.execution_id == "ev-3" || l.execution_id == "ev-4")
        );
        assert_eq!(store.log_bytes("default", "echo").await.unwrap(), 2000);
        // The newest execution is kept even over the cap; other agents are untouched.
        assert_eq!(store.expire_logs("default", "echo", 1).await.unwrap(), 1000);
        assert_eq!(store.log_bytes("default", "echo").await.unwrap(), 1000);
        assert_eq!(
            store
                .logs("default", "other", &LogQuery::default()).await
                .unwrap()
                .len(),
            4
        );
    }

    async fn trimming_a_run_deletes_its_oldest_lines_and_keeps_the_marker(backend) {
        let store = backend.open().await;
        store.apply_agent(&echo_agent("echo")).await.unwrap();
        // 100 bytes a line: its text and the row.
        let text = "x".repeat(100 - clrk_store::LOG_ROW_COST as usize);
        let batch: Vec<_> = (0..5).map(|_| line("echo", "run-1", &text)).collect();
        store.append_logs(&batch).await.unwrap();
        let marker = store
            .append_log(&line("echo", "run-1", &"m".repeat(36))).await
            .unwrap();
        let batch: Vec<_> = (0..5).map(|_| line("echo", "run-1", &text)).collect();
        store.append_logs(&batch).await.unwrap();
        store.append_logs(&[line("echo", "run-2", &text)]).await.unwrap();
        assert_eq!(store.log_bytes("default", "echo").await.unwrap(), 1200);

        // Under the limit: nothing goes.
        let trim = async |max| {
            store
                .trim_execution_logs("default", "echo", "run-1", max, Some(marker))
                .await
                .unwrap()
        };
        assert_eq!(trim(1000).await, 0);
        // 350 bytes for the lines besides the marker: the newest three stay, and the marker.
        assert_eq!(trim(350).await, 700);
        let left = store.logs("default", "echo", &LogQuery::default()).await.unwrap();
        let run: Vec<_> = left.iter().filter(|l| l.execution_id == "run-1").collect();
        assert_eq!(run.len(), 4);
        assert_eq!(run[0].seq, marker);
        assert!(left.iter().any(|l| l.execution_id == "run-2"));
        assert_eq!(store.log_bytes("default", "echo").await.unwrap(), 500);
        // Trimming again is cheap and exact.
        assert_eq!(trim(350).await, 0);
        assert_eq!(trim(100).await, 200);
        assert_eq!(store.log_bytes("default", "echo").await.unwrap(), 300);
    }
}
