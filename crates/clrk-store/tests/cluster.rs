//! What several processes sharing one PostgreSQL database rely on (here, several `Store`
//! handles with pools and connections of their own): `maxConcurrent` held across all of
//! them, and exactly one leader at a time, taken over when the leader goes.

mod common;

use std::time::Duration;

use clrk_store::testing::TempPostgres;
use clrk_store::{Store, StoreError};
use common::{echo_agent, execution};

/// How long a takeover or a lost connection may take to show on a loaded machine.
const DEADLINE: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_concurrent_holds_across_stores_starting_at_once() {
    let db = TempPostgres::database().await;
    let mut stores = Vec::new();
    for _ in 0..4 {
        stores.push(db.connect().await);
    }
    stores[0].apply_agent(&echo_agent("echo")).await.unwrap();
    const LIMIT: u32 = 3;
    let starts: Vec<_> = (0..50)
        .map(|i| {
            let store = stores[i % stores.len()].clone();
            tokio::spawn(async move {
                store
                    .start_execution_within(&execution(&format!("ev-{i}"), "echo"), LIMIT)
                    .await
            })
        })
        .collect();
    let (mut started, mut refused) = (0, 0);
    for start in starts {
        match start.await.unwrap() {
            Ok(()) => started += 1,
            Err(StoreError::TooManyExecutions { limit: LIMIT }) => refused += 1,
            Err(other) => panic!("unexpected error: {other}"),
        }
    }
    assert_eq!((started, refused), (LIMIT, 50 - LIMIT));
    let running = stores[1].executions("default", "echo", 100).await.unwrap();
    assert_eq!(
        running.len(),
        LIMIT as usize,
        "only the admitted ones are recorded"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_store_leads_and_the_other_takes_over_when_it_lets_go() {
    let db = TempPostgres::database().await;
    let (a, b) = (db.connect().await, db.connect().await);
    let leader = a
        .try_lead("clrk-sweep")
        .await
        .unwrap()
        .expect("the first one leads");
    assert!(
        b.try_lead("clrk-sweep").await.unwrap().is_none(),
        "only one leads"
    );
    assert!(
        a.try_lead("clrk-sweep").await.unwrap().is_none(),
        "even the same store cannot lead twice"
    );
    let other_job = b.try_lead("clrk-cron").await.unwrap();
    assert!(other_job.is_some(), "leadership of another job is separate");

    drop(leader);
    let taken = wait_for_lead(&b, "clrk-sweep").await;
    assert!(a.try_lead("clrk-sweep").await.unwrap().is_none());
    drop(taken);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_connection_is_killed_learns_it_lost() {
    let db = TempPostgres::database().await;
    let (a, b) = (db.connect().await, db.connect().await);
    let leader = a.try_lead("clrk-sweep").await.unwrap().expect("leads");

    // An administrator (or a failover) ends the leader's session.
    let (admin, connection) = tokio_postgres::connect(db.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let killed = admin
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_locks \
             WHERE locktype = 'advisory' AND granted \
               AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(killed.len(), 1, "the leader's connection holds the lock");

    tokio::time::timeout(DEADLINE, leader.lost())
        .await
        .expect("lost() resolves once the connection is gone");
    let _taken = wait_for_lead(&b, "clrk-sweep").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_tries_without_opening_a_connection_while_the_leader_holds() {
    let db = TempPostgres::database().await;
    let (a, b) = (db.connect().await, db.connect().await);
    let _leader = a
        .try_lead("clrk-daemon/default/bot")
        .await
        .unwrap()
        .expect("leads");
    // Warm b's pool, then count the sessions ever opened to the database around 20 tries.
    assert!(
        b.try_lead("clrk-daemon/default/bot")
            .await
            .unwrap()
            .is_none()
    );
    let (admin, connection) = tokio_postgres::connect(db.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let sessions = || async {
        admin
            .batch_execute("SELECT pg_stat_clear_snapshot()")
            .await
            .unwrap();
        admin
            .query_one(
                "SELECT sessions FROM pg_stat_database WHERE datname = current_database()",
                &[],
            )
            .await
            .unwrap()
            .get::<_, i64>(0)
    };
    let before = sessions().await;
    for _ in 0..20 {
        assert!(
            b.try_lead("clrk-daemon/default/bot")
                .await
                .unwrap()
                .is_none()
        );
    }
    assert_eq!(sessions().await, before, "no connection opened to try");
    // A leadership nobody holds is still taken, on a connection of its own.
    assert!(
        b.try_lead("clrk-daemon/default/other")
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(sessions().await, before + 1);
}

/// Tries to lead until it does or the deadline passes.
async fn wait_for_lead(store: &Store, name: &str) -> clrk_store::Leadership {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Some(held) = store.try_lead(name).await.unwrap() {
            return held;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} was not taken over within {DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
