//! Applying, reading and deleting agents against a real database of each backend.

mod common;

use clrk_store::{
    ApplyOutcome, ExecutionEnd, ExecutionStatus, LogQuery, NewLogLine, RevisionState, Store,
    StoreError,
};
use common::{echo_agent, execution, task_agent};
use serde_json::json;

fn log_line(execution_id: &str, text: &str) -> NewLogLine {
    NewLogLine {
        execution_id: execution_id.into(),
        namespace: "default".into(),
        agent: "echo".into(),
        stream: "stderr".into(),
        time: chrono::Utc::now(),
        line: text.into(),
    }
}

async fn log_texts(store: &Store, agent: &str) -> Vec<String> {
    let lines = store
        .logs("default", agent, &LogQuery::default())
        .await
        .unwrap();
    lines.into_iter().map(|l| l.line).collect()
}

store_tests! {
    async fn first_apply_creates_revision_00001_and_identical_apply_is_unchanged(backend) {
        let store = backend.open().await;
        let apply = echo_agent("echo");

        assert_eq!(
            store.apply_agent(&apply).await.unwrap(),
            ApplyOutcome::Created {
                revision: Some("echo-00001".into())
            }
        );
        let before = store.get_agent("default", "echo").await.unwrap().unwrap();
        assert_eq!(store.apply_agent(&apply).await.unwrap(), ApplyOutcome::Unchanged);
        let after = store.get_agent("default", "echo").await.unwrap().unwrap();

        assert_eq!(
            before, after,
            "an unchanged apply must not touch updated_at or anything else"
        );
        let rev = after.latest_revision.unwrap();
        assert_eq!(rev.name, "echo-00001");
        assert_eq!(rev.number, 1);
        assert_eq!(rev.state, RevisionState::Ready);
        assert_eq!(rev.image_digest, "sha256:1111");
        assert_eq!(rev.shape, apply.shape);
        assert_eq!(after.spec, apply.spec);
        assert_eq!(after.kind, "TaskAgent");
    }

    async fn shape_change_makes_00002_and_spec_only_change_makes_no_revision(backend) {
        let store = backend.open().await;
        store.apply_agent(&echo_agent("echo")).await.unwrap();

        let mut resized = echo_agent("echo");
        resized.shape["resources"] = json!({"memory": "1Gi"});
        resized.spec["resources"] = json!({"memory": "1Gi"});
        assert_eq!(
            store.apply_agent(&resized).await.unwrap(),
            ApplyOutcome::Configured {
                revision: Some("echo-00002".into())
            }
        );

        let mut throttled = resized.clone();
        throttled.spec["maxConcurrent"] = json!(3);
        assert_eq!(
            store.apply_agent(&throttled).await.unwrap(),
            ApplyOutcome::Configured { revision: None }
        );

        let agent = store.get_agent("default", "echo").await.unwrap().unwrap();
        assert_eq!(agent.spec["maxConcurrent"], json!(3));
        assert_eq!(agent.latest_revision.unwrap().name, "echo-00002");
        let names: Vec<_> = store
            .revisions("default", "echo").await
            .unwrap()
            .into_iter()
            .map(|r| r.name)
            .collect();
        assert_eq!(names, ["echo-00001", "echo-00002"]);
    }

    async fn new_digest_for_the_same_reference_makes_a_new_revision(backend) {
        let store = backend.open().await;
        store.apply_agent(&echo_agent("echo")).await.unwrap();

        let mut repushed = echo_agent("echo");
        repushed.image_digest = "sha256:2222".into();
        assert_eq!(
            store.apply_agent(&repushed).await.unwrap(),
            ApplyOutcome::Configured {
                revision: Some("echo-00002".into())
            }
        );
        let revs = store.revisions("default", "echo").await.unwrap();
        assert_eq!(
            revs[0].image_digest, "sha256:1111",
            "old revisions are immutable"
        );
        assert_eq!(revs[1].image_digest, "sha256:2222");
    }

    async fn shape_comparison_ignores_json_key_order(backend) {
        let store = backend.open().await;
        let a = task_agent(
            "k",
            json!({"a": 1, "b": 2}),
            json!({"x": 1, "y": [1, 2]}),
            "sha256:1",
        );
        let b = task_agent(
            "k",
            json!({"b": 2, "a": 1}),
            json!({"y": [1, 2], "x": 1}),
            "sha256:1",
        );
        store.apply_agent(&a).await.unwrap();
        assert_eq!(store.apply_agent(&b).await.unwrap(), ApplyOutcome::Unchanged);
    }

    async fn list_is_ordered_by_namespace_then_name_and_filters_by_namespace(backend) {
        let store = backend.open().await;
        for (ns, name) in [
            ("prod", "b"),
            ("default", "z"),
            ("prod", "a"),
            ("default", "c"),
        ] {
            let mut apply = echo_agent(name);
            apply.namespace = ns.into();
            store.apply_agent(&apply).await.unwrap();
        }

        let all: Vec<_> = store
            .list_agents(None).await
            .unwrap()
            .into_iter()
            .map(|a| format!("{}/{}", a.namespace, a.name))
            .collect();
        assert_eq!(all, ["default/c", "default/z", "prod/a", "prod/b"]);
        let prod: Vec<_> = store
            .list_agents(Some("prod")).await
            .unwrap()
            .into_iter()
            .map(|a| a.name)
            .collect();
        assert_eq!(prod, ["a", "b"]);
    }

    async fn same_agent_name_in_two_namespaces_keeps_separate_revisions(backend) {
        let store = backend.open().await;
        store.apply_agent(&echo_agent("echo")).await.unwrap();
        let mut other = echo_agent("echo");
        other.namespace = "team".into();
        other.image_digest = "sha256:9999".into();
        assert_eq!(
            store.apply_agent(&other).await.unwrap(),
            ApplyOutcome::Created {
                revision: Some("echo-00001".into())
            }
        );

        store
            .set_revision_state(
                "team",
                "echo-00001",
                RevisionState::Failed,
                Some("pull failed"),
            ).await
            .unwrap();

        let default_rev = store
            .get_agent("default", "echo").await
            .unwrap()
            .unwrap()
            .latest_revision
            .unwrap();
        let team_rev = store
            .get_agent("team", "echo").await
            .unwrap()
            .unwrap()
            .latest_revision
            .unwrap();
        assert_eq!(default_rev.state, RevisionState::Ready);
        assert_eq!(team_rev.state, RevisionState::Failed);
        assert_eq!(team_rev.reason.as_deref(), Some("pull failed"));
    }

    async fn set_state_of_unknown_revision_names_it(backend) {
        let store = backend.open().await;
        let err = store
            .set_revision_state("default", "nope-00001", RevisionState::Ready, None).await
            .unwrap_err();
        assert!(matches!(err, StoreError::RevisionNotFound { .. }));
        assert!(err.to_string().contains("nope-00001"), "{err}");
    }

    async fn delete_keeps_executions_and_logs_marked_and_recreate_starts_at_00001(backend) {
        let store = backend.open().await;
        store.apply_agent(&echo_agent("echo")).await.unwrap();
        store.apply_agent(&echo_agent("keep")).await.unwrap();
        let mut v2 = echo_agent("echo");
        v2.image_digest = "sha256:2222".into();
        store.apply_agent(&v2).await.unwrap();
        let old_uid = store.get_agent("default", "echo").await.unwrap().unwrap().uid;
        store.start_execution(&execution("ev-1", "echo")).await.unwrap();
        store
            .start_execution(&execution("ev-keep", "keep")).await
            .unwrap();
        store.append_logs(&[log_line("ev-1", "hello")]).await.unwrap();

        assert!(store.delete_agent("default", "echo").await.unwrap());
        assert!(
            !store.delete_agent("default", "echo").await.unwrap(),
            "second delete reports absence"
        );

        assert_eq!(store.get_agent("default", "echo").await.unwrap(), None);
        assert!(matches!(
            store.revisions("default", "echo").await,
            Err(StoreError::AgentNotFound { .. })
        ));
        // The history stays, marked as the deleted agent's; a run being stopped still
        // records its end and its last lines.
        let kept = store.get_execution("ev-1").await.unwrap().unwrap();
        assert_eq!(
            (kept.agent.as_str(), kept.revision.as_str(), kept.agent_uid.as_str(), kept.agent_deleted),
            ("echo", "echo-00001", old_uid.as_str(), true)
        );
        store
            .finish_execution(
                "ev-1",
                &ExecutionEnd {
                    status: ExecutionStatus::Stopped,
                    exit_code: None,
                    reason: Some("stopped: the agent was deleted".into()),
                    ended_at: chrono::Utc::now(),
                },
            )
            .await
            .unwrap();
        store.append_logs(&[log_line("ev-1", "bye")]).await.unwrap();
        let listed = store.executions("default", "echo", 10).await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].status, ExecutionStatus::Stopped);
        assert_eq!(log_texts(&store, "echo").await, ["hello", "bye"]);
        let other = store.get_execution("ev-keep").await.unwrap().unwrap();
        assert_eq!(
            (other.status, other.agent_deleted),
            (ExecutionStatus::Running, false),
            "other agents are untouched"
        );
        // The revisions went with the agent; its executions and lines are kept.
        assert_eq!(
            (
                backend.count_rows("revisions").await,
                backend.count_rows("executions").await,
                backend.count_rows("logs").await
            ),
            (1, 2, 2)
        );

        assert_eq!(
            store.apply_agent(&echo_agent("echo")).await.unwrap(),
            ApplyOutcome::Created {
                revision: Some("echo-00001".into())
            }
        );
        let new_uid = store.get_agent("default", "echo").await.unwrap().unwrap().uid;
        assert_ne!(new_uid, old_uid, "a re-created agent is another agent");
        assert_eq!(store.revisions("default", "echo").await.unwrap().len(), 1);
        store.start_execution(&execution("ev-2", "echo")).await.unwrap();
        let listed = store.executions("default", "echo", 10).await.unwrap();
        let marks: Vec<_> = listed
            .iter()
            .map(|e| (e.id.as_str(), e.agent_uid.as_str(), e.agent_deleted))
            .collect();
        assert_eq!(
            marks,
            [("ev-2", new_uid.as_str(), false), ("ev-1", old_uid.as_str(), true)]
        );
        assert_eq!(log_texts(&store, "echo").await, ["hello", "bye"]);
    }

    async fn a_name_that_never_ran_has_no_history(backend) {
        let store = backend.open().await;
        // Never applied, or deleted before it ran: not found, like an agent that never was.
        store.apply_agent(&echo_agent("idle")).await.unwrap();
        assert!(store.executions("default", "idle", 10).await.unwrap().is_empty());
        assert!(store.delete_agent("default", "idle").await.unwrap());
        for name in ["idle", "never"] {
            assert!(matches!(
                store.executions("default", name, 10).await,
                Err(StoreError::AgentNotFound { .. })
            ));
            assert!(matches!(
                store.logs("default", name, &LogQuery::default()).await,
                Err(StoreError::AgentNotFound { .. })
            ));
        }
        // A running limit counts the agent's own runs, not a deleted one's being stopped.
        store.apply_agent(&echo_agent("echo")).await.unwrap();
        store.start_execution(&execution("ev-1", "echo")).await.unwrap();
        store.delete_agent("default", "echo").await.unwrap();
        store.apply_agent(&echo_agent("echo")).await.unwrap();
        store
            .start_execution_within(&execution("ev-2", "echo"), 1)
            .await
            .unwrap();
        assert!(matches!(
            store.start_execution_within(&execution("ev-3", "echo"), 1).await,
            Err(StoreError::TooManyExecutions { limit: 1 })
        ));
    }
}
