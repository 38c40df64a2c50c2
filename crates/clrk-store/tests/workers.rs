//! The registry of workers against a real database of each backend: registration,
//! heartbeats and their answers, warm counts, drain, removal, the lost-worker sweep with the
//! executions it fails, and the execution starts and ends the cluster relies on.

mod common;

use chrono::{Duration, Utc};
use clrk_store::{
    ExecutionEnd, ExecutionStatus, Heartbeat, NewExecution, StoreError, WarmCount,
    WorkerRegistration, WorkerState,
};
use common::{echo_agent, execution};

fn worker(name: &str, pool: &str, incarnation: &str) -> WorkerRegistration {
    WorkerRegistration {
        name: name.into(),
        pool: pool.into(),
        address: format!("{name}.local:7070"),
        capacity: 16,
        incarnation: incarnation.into(),
    }
}

fn warm(revision: &str, ready: u32) -> WarmCount {
    WarmCount {
        namespace: "default".into(),
        agent: "echo".into(),
        revision: revision.into(),
        ready,
    }
}

fn on_worker(id: &str, worker: &str) -> NewExecution {
    NewExecution {
        worker: Some(worker.into()),
        ..execution(id, "echo")
    }
}

store_tests! {
    async fn registered_workers_are_listed_by_pool_then_name_with_their_load(backend) {
        let store = backend.open().await;
        store.apply_agent(&echo_agent("echo")).await.unwrap();
        let now = Utc::now();
        for (name, pool) in [("w-b", "gpu"), ("w-c", "default"), ("w-a", "gpu")] {
            store.register_worker(&worker(name, pool, "i1"), now).await.unwrap();
        }
        store.start_execution(&on_worker("ev-1", "w-a")).await.unwrap();
        store.start_execution(&on_worker("ev-2", "w-a")).await.unwrap();
        store.start_execution(&on_worker("ev-3", "w-c")).await.unwrap();
        let end = ExecutionEnd {
            status: ExecutionStatus::Succeeded,
            exit_code: Some(0),
            reason: None,
            ended_at: Utc::now(),
        };
        store.finish_execution("ev-3", &end).await.unwrap();
        let answer = store
            .heartbeat_worker("w-a", "i1", &[warm("echo-00001", 2), warm("echo-00002", 1)], now)
            .await
            .unwrap();
        assert_eq!(answer, Heartbeat::Ready);

        let listed = store.list_workers().await.unwrap();
        let names: Vec<_> = listed.iter().map(|w| (w.pool.as_str(), w.name.as_str())).collect();
        assert_eq!(names, [("default", "w-c"), ("gpu", "w-a"), ("gpu", "w-b")]);
        let a = &listed[1];
        assert_eq!((a.state, a.running, a.warm, a.capacity), (WorkerState::Ready, 2, 3, 16));
        assert_eq!(a.address, "w-a.local:7070");
        assert_eq!(a.incarnation, "i1");
        assert_eq!(a.heartbeat_at.timestamp_millis(), now.timestamp_millis());
        assert_eq!((listed[0].running, listed[0].warm), (0, 0), "finished executions do not count");
        assert_eq!(
            store.get_execution("ev-1").await.unwrap().unwrap().worker.as_deref(),
            Some("w-a")
        );
        assert_eq!(store.get_execution("ev-9").await.unwrap(), None);
    }

    async fn a_heartbeat_moves_the_clock_and_replaces_the_warm_counts(backend) {
        let store = backend.open().await;
        let start = Utc::now() - Duration::seconds(30);
        store.register_worker(&worker("w1", "default", "i1"), start).await.unwrap();
        let later = start + Duration::seconds(10);
        store
            .heartbeat_worker("w1", "i1", &[warm("echo-00001", 4), warm("echo-00002", 1)], later)
            .await
            .unwrap();
        store
            .heartbeat_worker("w1", "i1", &[warm("echo-00002", 2), warm("echo-00002", 1)], later)
            .await
            .unwrap();
        let w = &store.list_workers().await.unwrap()[0];
        assert_eq!(w.warm, 3, "the last heartbeat's counts, a revision listed twice summed");
        assert_eq!(w.heartbeat_at.timestamp_millis(), later.timestamp_millis());
        assert_eq!(w.started_at.timestamp_millis(), start.timestamp_millis());
        assert_eq!(backend.count_rows("worker_warm").await, 1);

        // Registering again starts afresh: no warm sandboxes, a new start time.
        let again = later + Duration::seconds(1);
        store.register_worker(&worker("w1", "default", "i2"), again).await.unwrap();
        let w = &store.list_workers().await.unwrap()[0];
        assert_eq!((w.warm, w.incarnation.as_str()), (0, "i2"));
        assert_eq!(w.started_at.timestamp_millis(), again.timestamp_millis());
        assert_eq!(backend.count_rows("worker_warm").await, 0);
    }

    async fn heartbeats_say_ready_draining_or_replaced(backend) {
        let store = backend.open().await;
        let now = Utc::now();
        store.register_worker(&worker("w1", "default", "i1"), now).await.unwrap();
        assert_eq!(store.heartbeat_worker("w1", "i1", &[], now).await.unwrap(), Heartbeat::Ready);

        assert!(store.drain_worker("w1").await.unwrap());
        assert_eq!(store.heartbeat_worker("w1", "i1", &[], now).await.unwrap(), Heartbeat::Draining);
        assert_eq!(store.list_workers().await.unwrap()[0].state, WorkerState::Draining);

        // Another start of the same worker registered: the old one is replaced and its
        // heartbeat changes nothing.
        let later = now + Duration::seconds(5);
        store.register_worker(&worker("w1", "default", "i2"), now).await.unwrap();
        assert_eq!(
            store.heartbeat_worker("w1", "i1", &[warm("echo-00001", 1)], later).await.unwrap(),
            Heartbeat::Replaced
        );
        let w = &store.list_workers().await.unwrap()[0];
        assert_eq!((w.state, w.warm), (WorkerState::Ready, 0));
        assert_eq!(w.heartbeat_at.timestamp_millis(), now.timestamp_millis());

        // Marked lost: replaced, and it stays lost.
        store.mark_lost_workers(later).await.unwrap();
        assert_eq!(store.heartbeat_worker("w1", "i2", &[], later).await.unwrap(), Heartbeat::Replaced);
        assert_eq!(store.list_workers().await.unwrap()[0].state, WorkerState::Lost);
        assert!(store.drain_worker("w1").await.unwrap(), "a lost worker's name is known");
        assert_eq!(store.list_workers().await.unwrap()[0].state, WorkerState::Lost);

        // Gone: replaced.
        assert!(store.remove_worker("w1", "i2").await.unwrap());
        assert_eq!(store.heartbeat_worker("w1", "i2", &[], later).await.unwrap(), Heartbeat::Replaced);
        assert!(store.list_workers().await.unwrap().is_empty());
    }

    async fn unknown_names_and_old_incarnations_change_nothing(backend) {
        let store = backend.open().await;
        assert!(!store.drain_worker("ghost").await.unwrap());
        store.register_worker(&worker("w1", "default", "i2"), Utc::now()).await.unwrap();
        store.heartbeat_worker("w1", "i2", &[warm("echo-00001", 1)], Utc::now()).await.unwrap();
        assert!(!store.remove_worker("w1", "i1").await.unwrap(), "an older start cannot remove it");
        assert_eq!(store.list_workers().await.unwrap().len(), 1);
        assert!(store.remove_worker("w1", "i2").await.unwrap());
        assert_eq!(backend.count_rows("worker_warm").await, 0, "its warm counts go with it");
    }

    async fn silent_workers_are_marked_lost_with_their_running_executions(backend) {
        let store = backend.open().await;
        store.apply_agent(&echo_agent("echo")).await.unwrap();
        let now = Utc::now();
        let silent_since = now - Duration::seconds(30);
        store.register_worker(&worker("silent", "default", "i1"), silent_since).await.unwrap();
        store.heartbeat_worker("silent", "i1", &[warm("echo-00001", 2)], silent_since).await.unwrap();
        store.register_worker(&worker("draining", "default", "i1"), silent_since).await.unwrap();
        store.drain_worker("draining").await.unwrap();
        store.register_worker(&worker("alive", "default", "i1"), now).await.unwrap();
        store.start_execution(&on_worker("on-silent", "silent")).await.unwrap();
        store.start_execution(&on_worker("done-on-silent", "silent")).await.unwrap();
        store.start_execution(&on_worker("on-alive", "alive")).await.unwrap();
        store.start_execution(&execution("local", "echo")).await.unwrap();
        let end = ExecutionEnd {
            status: ExecutionStatus::Succeeded,
            exit_code: Some(0),
            reason: None,
            ended_at: now,
        };
        store.finish_execution("done-on-silent", &end).await.unwrap();

        let mut lost = store.mark_lost_workers(now - Duration::seconds(6)).await.unwrap();
        lost.sort();
        assert_eq!(lost, ["draining", "silent"]);

        let failed = store.get_execution("on-silent").await.unwrap().unwrap();
        assert_eq!(failed.status, ExecutionStatus::Failed);
        assert_eq!(failed.reason.as_deref(), Some(clrk_store::WORKER_LOST));
        assert_eq!(failed.reason.as_deref(), Some("worker lost"));
        assert!(failed.ended_at.is_some());
        let done = store.get_execution("done-on-silent").await.unwrap().unwrap();
        assert_eq!(done.status, ExecutionStatus::Succeeded, "a recorded end stands");
        for id in ["on-alive", "local"] {
            let e = store.get_execution(id).await.unwrap().unwrap();
            assert_eq!(e.status, ExecutionStatus::Running, "{id} is not on a lost worker");
        }
        let states: Vec<_> = store
            .list_workers()
            .await
            .unwrap()
            .into_iter()
            .map(|w| (w.name, w.state, w.running, w.warm))
            .collect();
        assert_eq!(
            states,
            [
                ("alive".to_owned(), WorkerState::Ready, 1, 0),
                ("draining".to_owned(), WorkerState::Lost, 0, 0),
                ("silent".to_owned(), WorkerState::Lost, 0, 0),
            ]
        );
        assert!(
            store.mark_lost_workers(now - Duration::seconds(6)).await.unwrap().is_empty(),
            "a lost worker is reported once"
        );
    }

    async fn failing_if_running_leaves_a_recorded_end_alone(backend) {
        let store = backend.open().await;
        store.apply_agent(&echo_agent("echo")).await.unwrap();
        store.start_execution(&execution("ev-1", "echo")).await.unwrap();
        store.start_execution(&execution("ev-2", "echo")).await.unwrap();
        let end = ExecutionEnd {
            status: ExecutionStatus::Succeeded,
            exit_code: Some(0),
            reason: None,
            ended_at: Utc::now(),
        };
        store.finish_execution("ev-2", &end).await.unwrap();

        let now = Utc::now();
        assert!(store.fail_execution_if_running("ev-1", "link to worker lost", now).await.unwrap());
        let failed = store.get_execution("ev-1").await.unwrap().unwrap();
        assert_eq!(failed.status, ExecutionStatus::Failed);
        assert_eq!(failed.reason.as_deref(), Some("link to worker lost"));
        assert_eq!(failed.ended_at.map(|t| t.timestamp_millis()), Some(now.timestamp_millis()));
        assert!(!store.fail_execution_if_running("ev-1", "again", now).await.unwrap());
        assert_eq!(
            store.get_execution("ev-1").await.unwrap().unwrap().reason.as_deref(),
            Some("link to worker lost")
        );
        assert!(!store.fail_execution_if_running("ev-2", "late", now).await.unwrap());
        let done = store.get_execution("ev-2").await.unwrap().unwrap();
        assert_eq!((done.status, done.reason), (ExecutionStatus::Succeeded, None));
        assert!(!store.fail_execution_if_running("ev-404", "gone", now).await.unwrap());
    }

    async fn starting_within_a_limit_refuses_past_it(backend) {
        let store = backend.open().await;
        store.apply_agent(&echo_agent("echo")).await.unwrap();
        store.start_execution_within(&execution("ev-1", "echo"), 2).await.unwrap();
        store.start_execution_within(&execution("ev-2", "echo"), 2).await.unwrap();
        let err = store
            .start_execution_within(&execution("ev-3", "echo"), 2)
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::TooManyExecutions { limit: 2 }), "{err:?}");
        assert!(err.to_string().contains("maxConcurrent"), "{err}");
        assert_eq!(store.get_execution("ev-3").await.unwrap(), None, "nothing recorded");

        let end = ExecutionEnd {
            status: ExecutionStatus::Succeeded,
            exit_code: Some(0),
            reason: None,
            ended_at: Utc::now(),
        };
        store.finish_execution("ev-1", &end).await.unwrap();
        store.start_execution_within(&execution("ev-3", "echo"), 2).await.unwrap();
        // 0 is no limit; a duplicate id is still refused as such.
        store.start_execution_within(&execution("ev-4", "echo"), 0).await.unwrap();
        assert!(matches!(
            store.start_execution_within(&execution("ev-4", "echo"), 0).await,
            Err(StoreError::DuplicateExecution(_))
        ));
        assert!(matches!(
            store.start_execution_within(&execution("ev-5", "ghost"), 2).await,
            Err(StoreError::AgentNotFound { .. })
        ));
    }

    async fn the_only_store_of_a_database_leads(backend) {
        let store = backend.open().await;
        let leadership = store.try_lead("clrk-sweep").await.unwrap();
        assert!(leadership.is_some());
    }

    async fn placement_reads_every_workers_warm_sandboxes_by_revision(backend) {
        let store = backend.open().await;
        let now = Utc::now();
        store.register_worker(&worker("w-b", "default", "i1"), now).await.unwrap();
        store.register_worker(&worker("w-a", "default", "i1"), now).await.unwrap();
        store.heartbeat_worker("w-b", "i1", &[warm("echo-00002", 3)], now).await.unwrap();
        store
            .heartbeat_worker("w-a", "i1", &[warm("echo-00002", 1), warm("echo-00001", 2)], now)
            .await
            .unwrap();
        let found: Vec<_> = store
            .warm_sandboxes()
            .await
            .unwrap()
            .into_iter()
            .map(|(worker, w)| (worker, w.revision, w.ready))
            .collect();
        assert_eq!(
            found,
            [
                ("w-a".to_string(), "echo-00001".to_string(), 2),
                ("w-a".to_string(), "echo-00002".to_string(), 1),
                ("w-b".to_string(), "echo-00002".to_string(), 3),
            ]
        );
    }

    async fn a_restarted_worker_fails_only_what_its_previous_start_ran(backend) {
        let store = backend.open().await;
        store.apply_agent(&echo_agent("echo")).await.unwrap();
        store.start_execution(&on_worker("mine-1", "w1")).await.unwrap();
        store.start_execution(&on_worker("mine-2", "w1")).await.unwrap();
        store.start_execution(&on_worker("theirs", "w2")).await.unwrap();
        store.start_execution(&execution("local", "echo")).await.unwrap();
        let failed = store.fail_worker_executions("w1", "worker restarted").await.unwrap();
        assert_eq!(failed, ["mine-1", "mine-2"]);
        let e = store.get_execution("mine-2").await.unwrap().unwrap();
        assert_eq!((e.status, e.reason.as_deref()), (ExecutionStatus::Failed, Some("worker restarted")));
        assert!(e.ended_at.is_some());
        for id in ["theirs", "local"] {
            let e = store.get_execution(id).await.unwrap().unwrap();
            assert_eq!(e.status, ExecutionStatus::Running, "{id} is not w1's");
        }
        assert!(store.fail_worker_executions("w1", "again").await.unwrap().is_empty());
    }
}
