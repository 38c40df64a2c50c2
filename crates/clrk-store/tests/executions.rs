//! Execution lifecycle, listing and restart recovery against a real database of each backend.

mod common;

use chrono::{DateTime, Duration, Utc};
use clrk_store::{ExecutionEnd, ExecutionStatus, NewExecution, StoreError};
use common::{echo_agent, execution};

fn at(rfc3339: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(rfc3339).unwrap().to_utc()
}

store_tests! {
    async fn execution_runs_then_finishes_with_status_exit_code_and_duration(backend) {
        let store = backend.open().await;
        store.apply_agent(&echo_agent("echo")).await.unwrap();
        let started = at("2024-05-01T10:00:00.250Z");
        store
            .start_execution(&NewExecution {
                started_at: started,
                ..execution("ev-1", "echo")
            }).await
            .unwrap();

        let running = store.get_execution("ev-1").await.unwrap().unwrap();
        assert_eq!(running.status, ExecutionStatus::Running);
        assert_eq!(
            (running.ended_at, running.duration_ms, running.exit_code),
            (None, None, None)
        );
        assert_eq!(running.revision, "echo-00001");
        assert_eq!(
            (running.namespace.as_str(), running.agent.as_str()),
            ("default", "echo")
        );
        assert_eq!(running.trigger, "http");
        assert_eq!(running.started_at, started);

        let end = ExecutionEnd {
            status: ExecutionStatus::Failed,
            exit_code: Some(3),
            reason: Some("exit code 3".into()),
            ended_at: started + Duration::milliseconds(1500),
        };
        store.finish_execution("ev-1", &end).await.unwrap();

        let done = store.get_execution("ev-1").await.unwrap().unwrap();
        assert_eq!(done.status, ExecutionStatus::Failed);
        assert_eq!(done.exit_code, Some(3));
        assert_eq!(done.reason.as_deref(), Some("exit code 3"));
        assert_eq!(done.ended_at, Some(end.ended_at));
        assert_eq!(done.duration_ms, Some(1500));
    }

    async fn duplicate_id_is_refused_and_names_the_id(backend) {
        let store = backend.open().await;
        store.apply_agent(&echo_agent("echo")).await.unwrap();
        store.start_execution(&execution("ev-1", "echo")).await.unwrap();

        let err = store
            .start_execution(&execution("ev-1", "echo")).await
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::DuplicateExecution(id) if id == "ev-1"),
            "{err:?}"
        );
        assert!(err.to_string().contains("ev-1"));
    }

    async fn starting_on_unknown_agent_or_revision_and_finishing_unknown_id_are_errors(backend) {
        let store = backend.open().await;
        assert!(matches!(
            store.start_execution(&execution("ev-1", "ghost")).await,
            Err(StoreError::AgentNotFound { .. })
        ));
        store.apply_agent(&echo_agent("echo")).await.unwrap();
        let wrong_rev = NewExecution {
            revision: "echo-00007".into(),
            ..execution("ev-1", "echo")
        };
        assert!(matches!(
            store.start_execution(&wrong_rev).await,
            Err(StoreError::RevisionNotFound { .. })
        ));

        let end = ExecutionEnd {
            status: ExecutionStatus::Succeeded,
            exit_code: Some(0),
            reason: None,
            ended_at: Utc::now(),
        };
        assert!(matches!(
            store.finish_execution("ev-404", &end).await,
            Err(StoreError::ExecutionNotFound(_))
        ));
    }

    async fn listing_is_newest_first_limited_and_per_agent(backend) {
        let store = backend.open().await;
        store.apply_agent(&echo_agent("echo")).await.unwrap();
        store.apply_agent(&echo_agent("other")).await.unwrap();
        let base = at("2024-05-01T10:00:00Z");
        for i in 0..5 {
            let started_at = base + Duration::seconds(i);
            store
                .start_execution(&NewExecution {
                    started_at,
                    ..execution(&format!("ev-{i}"), "echo")
                }).await
                .unwrap();
        }
        store
            .start_execution(&execution("other-1", "other")).await
            .unwrap();

        let ids: Vec<_> = store
            .executions("default", "echo", 3).await
            .unwrap()
            .into_iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(ids, ["ev-4", "ev-3", "ev-2"]);
        assert_eq!(store.executions("default", "echo", 100).await.unwrap().len(), 5);
        assert!(matches!(
            store.executions("default", "ghost", 10).await,
            Err(StoreError::AgentNotFound { .. })
        ));
    }

    async fn running_executions_become_failed_after_reopen_and_finished_ones_keep_their_result(backend) {
        {
            let store = backend.open().await;
            store.apply_agent(&echo_agent("echo")).await.unwrap();
            store
                .start_execution(&execution("in-flight-1", "echo")).await
                .unwrap();
            store
                .start_execution(&execution("in-flight-2", "echo")).await
                .unwrap();
            store.start_execution(&execution("done", "echo")).await.unwrap();
            let end = ExecutionEnd {
                status: ExecutionStatus::Succeeded,
                exit_code: Some(0),
                reason: None,
                ended_at: Utc::now(),
            };
            store.finish_execution("done", &end).await.unwrap();
        }

        let store = backend.open().await;
        let before = Utc::now() - Duration::seconds(1);
        let mut failed = store.fail_running_executions("server restarted").await.unwrap();
        failed.sort();
        assert_eq!(failed, ["in-flight-1", "in-flight-2"]);

        for id in &failed {
            let e = store.get_execution(id).await.unwrap().unwrap();
            assert_eq!(e.status, ExecutionStatus::Failed);
            assert_eq!(e.reason.as_deref(), Some("server restarted"));
            assert!(
                e.ended_at.unwrap() >= before,
                "ended_at is the recovery time"
            );
            assert!(e.duration_ms.is_some());
        }
        assert_eq!(
            store.get_execution("done").await.unwrap().unwrap().status,
            ExecutionStatus::Succeeded
        );
        assert!(
            store
                .fail_running_executions("server restarted").await
                .unwrap()
                .is_empty(),
            "idempotent"
        );
    }

    async fn clones_share_one_database_across_tasks(backend) {
        let store = backend.open().await;
        store.apply_agent(&echo_agent("echo")).await.unwrap();
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let store = store.clone();
                tokio::spawn(async move {
                    for i in 0..25 {
                        store
                            .start_execution(&execution(&format!("t{t}-{i}"), "echo"))
                            .await
                            .unwrap();
                    }
                })
            })
            .collect();
        for h in handles {
            h.await.unwrap();
        }
        assert_eq!(
            store.executions("default", "echo", 1000).await.unwrap().len(),
            100
        );
    }

    async fn an_execution_records_whether_it_started_warm(backend) {
        let store = backend.open().await;
        store.apply_agent(&echo_agent("echo")).await.unwrap();
        store.start_execution(&execution("cold-1", "echo")).await.unwrap();
        store
            .start_execution(&NewExecution {
                start: clrk_store::Start::Warm,
                ..execution("warm-1", "echo")
            }).await
            .unwrap();
        let start = async |id| store.get_execution(id).await.unwrap().unwrap().start;
        assert_eq!(start("cold-1").await, clrk_store::Start::Cold);
        assert_eq!(start("warm-1").await, clrk_store::Start::Warm);
    }

    async fn a_names_oldest_finished_executions_go_past_the_cap_with_their_logs_and_spans(backend) {
        let store = backend.open().await;
        store.apply_agent(&echo_agent("echo")).await.unwrap();
        let base = at("2024-05-01T10:00:00Z");
        for i in 0..6 {
            let id = format!("ev-{i}");
            store
                .start_execution(&NewExecution {
                    started_at: base + Duration::seconds(i),
                    ..execution(&id, "echo")
                })
                .await
                .unwrap();
            store
                .append_logs(&[clrk_store::NewLogLine {
                    execution_id: id.clone(),
                    namespace: "default".into(),
                    agent: "echo".into(),
                    stream: "stderr".into(),
                    time: Utc::now(),
                    line: format!("line of {id}"),
                }])
                .await
                .unwrap();
            store
                .insert_spans(&id, &[clrk_store::SpanRecord {
                    trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
                    span_id: format!("{i:016x}"),
                    name: "run".into(),
                    ..Default::default()
                }])
                .await
                .unwrap();
            if i != 1 {
                let end = ExecutionEnd {
                    status: ExecutionStatus::Succeeded,
                    exit_code: Some(0),
                    reason: None,
                    ended_at: base + Duration::seconds(i) + Duration::milliseconds(5),
                };
                store.finish_execution(&id, &end).await.unwrap();
            }
        }
        // The newest 3 stay; of the older ones, a running execution is never removed.
        assert_eq!(store.prune_executions("default", "echo", 3).await.unwrap(), 2);
        let ids: Vec<String> = store
            .executions("default", "echo", 100)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(ids, ["ev-5", "ev-4", "ev-3", "ev-1"]);
        let lines = store
            .logs("default", "echo", &clrk_store::LogQuery { tail: None, after_seq: None })
            .await
            .unwrap();
        let lines: Vec<&str> = lines.iter().map(|l| l.line.as_str()).collect();
        assert_eq!(lines, ["line of ev-1", "line of ev-3", "line of ev-4", "line of ev-5"]);
        assert!(store.execution_spans("ev-0").await.unwrap().is_empty());
        assert_eq!(store.execution_spans("ev-5").await.unwrap().len(), 1);
        // Past the cap already: nothing more goes; an unknown name has nothing to remove.
        assert_eq!(store.prune_executions("default", "echo", 3).await.unwrap(), 0);
        assert_eq!(store.prune_executions("default", "never", 3).await.unwrap(), 0);
    }
}
