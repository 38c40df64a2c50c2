//! The registry of workers as processes run it, against a real store: a worker's
//! registration follows drains, rejoins after being replaced and leaves cleanly; the sweep
//! marks a silent worker lost and fails what it ran, and on PostgreSQL a second server takes
//! the sweep over when the leader stops.

use std::time::Duration;

use chrono::Utc;
use clrk_server::registry::{LostWorkerSweep, Registration, new_incarnation};
use clrk_store::{
    AgentApply, ExecutionStatus, Heartbeat, NewExecution, Start, Store, WarmCount,
    WorkerRegistration, WorkerState,
};
use serde_json::json;

/// Short, so the tests see many beats; the deadlines are generous for a loaded machine.
const INTERVAL: Duration = Duration::from_millis(100);
const DEADLINE: Duration = Duration::from_secs(30);

fn worker(name: &str) -> WorkerRegistration {
    WorkerRegistration {
        name: name.into(),
        pool: "default".into(),
        address: format!("{name}:7070"),
        capacity: 4,
        incarnation: new_incarnation(),
    }
}

fn sqlite() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("clrk.db")).unwrap();
    (dir, store)
}

/// Polls `check` until it returns `Some` or the deadline passes.
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not within {DEADLINE:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn listed(store: &Store, name: &str) -> Option<clrk_store::WorkerRecord> {
    store
        .list_workers()
        .await
        .unwrap()
        .into_iter()
        .find(|w| w.name == name)
}

/// Applies agent `echo` and starts an execution of it on `worker`.
async fn execution_on(store: &Store, id: &str, worker: &str) {
    let spec = json!({"template": {"spec": {"image": "registry.local/echo:latest"}}});
    store
        .apply_agent(&AgentApply {
            namespace: "default".into(),
            name: "echo".into(),
            kind: "TaskAgent".into(),
            spec: spec.clone(),
            shape: spec,
            image_ref: "registry.local/echo:latest".into(),
            image_digest: "sha256:1111".into(),
        })
        .await
        .unwrap();
    store
        .start_execution(&NewExecution {
            id: id.into(),
            namespace: "default".into(),
            agent: "echo".into(),
            revision: "echo-00001".into(),
            trigger: "http".into(),
            started_at: Utc::now(),
            start: Start::Cold,
            worker: Some(worker.into()),
        })
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_heartbeats_follows_a_drain_and_leaves_on_stop() {
    let (_dir, store) = sqlite();
    let warm = || {
        vec![WarmCount {
            namespace: "default".into(),
            agent: "echo".into(),
            revision: "echo-00001".into(),
            ready: 2,
        }]
    };
    let registration = Registration::start(store.clone(), worker("node-1"), warm, INTERVAL);
    let first = eventually("registered with its warm count", || async {
        listed(&store, "node-1").await.filter(|w| w.warm == 2)
    })
    .await;
    assert_eq!((first.state, first.capacity), (WorkerState::Ready, 4));
    eventually("the heartbeat moves on", || async {
        listed(&store, "node-1")
            .await
            .filter(|w| w.heartbeat_at > first.heartbeat_at)
    })
    .await;

    let mut state = registration.state();
    assert_eq!(*state.borrow_and_update(), Heartbeat::Ready);
    assert!(store.drain_worker("node-1").await.unwrap());
    tokio::time::timeout(DEADLINE, state.wait_for(|s| *s == Heartbeat::Draining))
        .await
        .expect("the worker learns it drains")
        .unwrap();

    registration.stop().await;
    assert_eq!(
        listed(&store, "node-1").await,
        None,
        "a clean stop leaves no row"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_marked_lost_is_told_so_and_rejoins_as_a_new_start() {
    let (_dir, store) = sqlite();
    let registration = Registration::start(store.clone(), worker("node-1"), Vec::new, INTERVAL);
    let first = eventually("registered", || listed(&store, "node-1")).await;
    let mut state = registration.state();

    // As the sweep would after missed heartbeats (here: every heartbeat counts as old).
    let lost = store
        .mark_lost_workers(Utc::now() + chrono::Duration::minutes(1))
        .await
        .unwrap();
    assert_eq!(lost, ["node-1"]);
    tokio::time::timeout(DEADLINE, state.wait_for(|s| *s == Heartbeat::Replaced))
        .await
        .expect("the worker learns it was replaced")
        .unwrap();
    let again = eventually("registered again", || async {
        listed(&store, "node-1")
            .await
            .filter(|w| w.state == WorkerState::Ready)
    })
    .await;
    assert_ne!(again.incarnation, first.incarnation, "as a new start");
    tokio::time::timeout(DEADLINE, state.wait_for(|s| *s == Heartbeat::Ready))
        .await
        .expect("ready again")
        .unwrap();
    registration.stop().await;
    assert_eq!(listed(&store, "node-1").await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweep_marks_a_silent_worker_lost_and_fails_its_executions() {
    let (_dir, store) = sqlite();
    // A worker that registered a minute ago and never beat since, running one execution.
    let silent = worker("silent");
    store
        .register_worker(&silent, Utc::now() - chrono::Duration::minutes(1))
        .await
        .unwrap();
    execution_on(&store, "ev-silent", "silent").await;
    let alive = Registration::start(store.clone(), worker("alive"), Vec::new, INTERVAL);
    eventually("the live worker registered", || listed(&store, "alive")).await;

    let sweep = LostWorkerSweep::start(store.clone(), INTERVAL);
    eventually("the silent worker is lost", || async {
        listed(&store, "silent")
            .await
            .filter(|w| w.state == WorkerState::Lost)
    })
    .await;
    let failed = store.get_execution("ev-silent").await.unwrap().unwrap();
    assert_eq!(failed.status, ExecutionStatus::Failed);
    assert_eq!(failed.reason.as_deref(), Some("worker lost"));

    // The same sweep spared the worker that heartbeats.
    assert_eq!(
        listed(&store, "alive").await.map(|w| w.state),
        Some(WorkerState::Ready)
    );
    sweep.stop().await;
    alive.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_another_server_takes_the_sweep_over_when_the_leader_stops() {
    let db = clrk_store::testing::TempPostgres::database().await;
    let (a, b) = (db.connect().await, db.connect().await);
    let first = LostWorkerSweep::start(a.clone(), INTERVAL);
    let second = LostWorkerSweep::start(b.clone(), INTERVAL);
    let first_silent = worker("first-silent");
    a.register_worker(&first_silent, Utc::now() - chrono::Duration::minutes(1))
        .await
        .unwrap();
    eventually("a leader sweeps", || async {
        listed(&b, "first-silent")
            .await
            .filter(|w| w.state == WorkerState::Lost)
    })
    .await;

    first.stop().await;
    // Whichever led, the remaining sweep leads now (or already did) and sweeps.
    let second_silent = worker("second-silent");
    a.register_worker(&second_silent, Utc::now() - chrono::Duration::minutes(1))
        .await
        .unwrap();
    execution_on(&a, "ev-1", "second-silent").await;
    eventually("the remaining server sweeps", || async {
        let e = a.get_execution("ev-1").await.unwrap()?;
        (e.status == ExecutionStatus::Failed).then_some(e)
    })
    .await;
    assert_eq!(
        listed(&a, "second-silent").await.map(|w| w.state),
        Some(WorkerState::Lost)
    );
    second.stop().await;
}
