//! Execution lifecycle, listing and restart recovery against a real database file.

mod common;

use chrono::{DateTime, Duration, Utc};
use clrk_store::{ExecutionEnd, ExecutionStatus, NewExecution, Store, StoreError};
use common::{echo_agent, execution, temp_store};

fn at(rfc3339: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(rfc3339).unwrap().to_utc()
}

#[test]
fn execution_runs_then_finishes_with_status_exit_code_and_duration() {
    let (_dir, store) = temp_store();
    store.apply_agent(&echo_agent("echo")).unwrap();
    let started = at("2024-05-01T10:00:00.250Z");
    store
        .start_execution(&NewExecution {
            started_at: started,
            ..execution("ev-1", "echo")
        })
        .unwrap();

    let running = store.get_execution("ev-1").unwrap().unwrap();
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
    store.finish_execution("ev-1", &end).unwrap();

    let done = store.get_execution("ev-1").unwrap().unwrap();
    assert_eq!(done.status, ExecutionStatus::Failed);
    assert_eq!(done.exit_code, Some(3));
    assert_eq!(done.reason.as_deref(), Some("exit code 3"));
    assert_eq!(done.ended_at, Some(end.ended_at));
    assert_eq!(done.duration_ms, Some(1500));
}

#[test]
fn duplicate_id_is_refused_and_names_the_id() {
    let (_dir, store) = temp_store();
    store.apply_agent(&echo_agent("echo")).unwrap();
    store.start_execution(&execution("ev-1", "echo")).unwrap();

    let err = store
        .start_execution(&execution("ev-1", "echo"))
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::DuplicateExecution(id) if id == "ev-1"),
        "{err:?}"
    );
    assert!(err.to_string().contains("ev-1"));
}

#[test]
fn starting_on_unknown_agent_or_revision_and_finishing_unknown_id_are_errors() {
    let (_dir, store) = temp_store();
    assert!(matches!(
        store.start_execution(&execution("ev-1", "ghost")),
        Err(StoreError::AgentNotFound { .. })
    ));
    store.apply_agent(&echo_agent("echo")).unwrap();
    let wrong_rev = NewExecution {
        revision: "echo-00007".into(),
        ..execution("ev-1", "echo")
    };
    assert!(matches!(
        store.start_execution(&wrong_rev),
        Err(StoreError::RevisionNotFound { .. })
    ));

    let end = ExecutionEnd {
        status: ExecutionStatus::Succeeded,
        exit_code: Some(0),
        reason: None,
        ended_at: Utc::now(),
    };
    assert!(matches!(
        store.finish_execution("ev-404", &end),
        Err(StoreError::ExecutionNotFound(_))
    ));
}

#[test]
fn listing_is_newest_first_limited_and_per_agent() {
    let (_dir, store) = temp_store();
    store.apply_agent(&echo_agent("echo")).unwrap();
    store.apply_agent(&echo_agent("other")).unwrap();
    let base = at("2024-05-01T10:00:00Z");
    for i in 0..5 {
        let started_at = base + Duration::seconds(i);
        store
            .start_execution(&NewExecution {
                started_at,
                ..execution(&format!("ev-{i}"), "echo")
            })
            .unwrap();
    }
    store
        .start_execution(&execution("other-1", "other"))
        .unwrap();

    let ids: Vec<_> = store
        .executions("default", "echo", 3)
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(ids, ["ev-4", "ev-3", "ev-2"]);
    assert_eq!(store.executions("default", "echo", 100).unwrap().len(), 5);
    assert!(matches!(
        store.executions("default", "ghost", 10),
        Err(StoreError::AgentNotFound { .. })
    ));
}

#[test]
fn running_executions_become_failed_after_reopen_and_finished_ones_keep_their_result() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clrk.db");
    {
        let store = Store::open(&path).unwrap();
        store.apply_agent(&echo_agent("echo")).unwrap();
        store
            .start_execution(&execution("in-flight-1", "echo"))
            .unwrap();
        store
            .start_execution(&execution("in-flight-2", "echo"))
            .unwrap();
        store.start_execution(&execution("done", "echo")).unwrap();
        let end = ExecutionEnd {
            status: ExecutionStatus::Succeeded,
            exit_code: Some(0),
            reason: None,
            ended_at: Utc::now(),
        };
        store.finish_execution("done", &end).unwrap();
    }

    let store = Store::open(&path).unwrap();
    let before = Utc::now() - Duration::seconds(1);
    let mut failed = store.fail_running_executions("server restarted").unwrap();
    failed.sort();
    assert_eq!(failed, ["in-flight-1", "in-flight-2"]);

    for id in &failed {
        let e = store.get_execution(id).unwrap().unwrap();
        assert_eq!(e.status, ExecutionStatus::Failed);
        assert_eq!(e.reason.as_deref(), Some("server restarted"));
        assert!(
            e.ended_at.unwrap() >= before,
            "ended_at is the recovery time"
        );
        assert!(e.duration_ms.is_some());
    }
    assert_eq!(
        store.get_execution("done").unwrap().unwrap().status,
        ExecutionStatus::Succeeded
    );
    assert!(
        store
            .fail_running_executions("server restarted")
            .unwrap()
            .is_empty(),
        "idempotent"
    );
}

#[test]
fn clones_share_one_database_across_threads() {
    let (_dir, store) = temp_store();
    store.apply_agent(&echo_agent("echo")).unwrap();
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                for i in 0..25 {
                    store
                        .start_execution(&execution(&format!("t{t}-{i}"), "echo"))
                        .unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(
        store.executions("default", "echo", 1000).unwrap().len(),
        100
    );
}

#[test]
fn an_execution_records_whether_it_started_warm() {
    let (_dir, store) = temp_store();
    store.apply_agent(&echo_agent("echo")).unwrap();
    store.start_execution(&execution("cold-1", "echo")).unwrap();
    store
        .start_execution(&NewExecution {
            start: clrk_store::Start::Warm,
            ..execution("warm-1", "echo")
        })
        .unwrap();
    let start = |id| store.get_execution(id).unwrap().unwrap().start;
    assert_eq!(start("cold-1"), clrk_store::Start::Cold);
    assert_eq!(start("warm-1"), clrk_store::Start::Warm);
}
