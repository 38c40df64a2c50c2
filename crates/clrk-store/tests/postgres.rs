//! What only the PostgreSQL backend has to get right: several processes (here, several
//! `Store` handles with their own pools) migrating and writing one database at once, and
//! connection errors that say where it tried to connect.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{NaiveDate, Utc};
use clrk_store::testing::TempPostgres;
use clrk_store::{ApplyOutcome, LogQuery, NewLogLine, Store, StoreError};
use common::{echo_agent, execution};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_connecting_at_once_migrate_the_database_once() {
    let db = TempPostgres::database().await;
    let connects: Vec<_> = (0..4)
        .map(|_| {
            let url = db.url().to_owned();
            tokio::spawn(async move { Store::connect(&url).await })
        })
        .collect();
    let mut stores = Vec::new();
    for c in connects {
        stores.push(c.await.unwrap().expect("every concurrent connect succeeds"));
    }
    let backend = common::Backend::Postgres(db);
    assert_eq!(
        backend.count_rows("clrk_migrations").await,
        5,
        "each migration recorded once"
    );
    // All of them see one working schema.
    stores[0].apply_agent(&echo_agent("echo")).await.unwrap();
    assert!(
        stores[3]
            .get_agent("default", "echo")
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn unreachable_server_error_names_the_target_but_not_the_password() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://clrk:hunter2@127.0.0.1:{port}/clrk");
    let err = Store::connect(&url).await.unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, StoreError::Connect { .. }), "{err:?}");
    assert!(
        message.contains(&format!("clrk@127.0.0.1:{port}/clrk")),
        "{message}"
    );
    assert!(message.contains("refused"), "says why: {message}");
    assert!(!message.contains("hunter2"), "{message}");
}

#[tokio::test]
async fn missing_database_error_names_it() {
    let pg = TempPostgres::shared();
    let err = Store::connect(&pg.url("no_such_db")).await.unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, StoreError::Connect { .. }), "{err:?}");
    assert!(message.contains("/no_such_db"), "{message}");
    assert!(message.contains("does not exist"), "{message}");
}

#[tokio::test]
async fn a_malformed_url_is_refused_before_connecting() {
    let err = Store::connect("postgres://clrk:pw@host:notaport/db")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Url { .. }), "{err:?}");
    assert!(!err.to_string().contains("pw@"), "{err}");
}

/// Two handles stand for two processes: applies, starts, token counts and log appends from
/// both at once give the same result as one after the other, and a follower reading with
/// `after_seq` while they write sees every line exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stores_writing_at_once_lose_nothing_and_followers_miss_no_line() {
    let db = TempPostgres::database().await;
    let a = db.connect().await;
    let b = db.connect().await;

    let apply = echo_agent("echo");
    let (ra, rb) = tokio::join!(a.apply_agent(&apply), b.apply_agent(&apply));
    let mut outcomes = [ra.unwrap(), rb.unwrap()];
    outcomes.sort_by_key(|o| matches!(o, ApplyOutcome::Unchanged));
    assert_eq!(
        outcomes,
        [
            ApplyOutcome::Created {
                revision: Some("echo-00001".into())
            },
            ApplyOutcome::Unchanged
        ]
    );

    let start = execution("ev-1", "echo");
    let (sa, sb) = tokio::join!(a.start_execution(&start), b.start_execution(&start));
    assert_eq!(
        [sa.is_ok(), sb.is_ok()].iter().filter(|ok| **ok).count(),
        1,
        "one start of an id wins, the other is a duplicate"
    );

    let day = NaiveDate::from_ymd_opt(2026, 12, 1).unwrap();
    const WRITERS: usize = 4;
    const LINES: usize = 200;
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let store = if w % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            for i in 0..LINES {
                let line = NewLogLine {
                    execution_id: "ev-1".into(),
                    namespace: "default".into(),
                    agent: "echo".into(),
                    stream: "stdout".into(),
                    time: Utc::now(),
                    line: format!("w{w} line {i}"),
                };
                store.append_logs(&[line]).await.unwrap();
                store.add_tokens("default", "echo", day, 1).await.unwrap();
            }
        }));
    }

    // Follow while they write, as `clrk logs -f` does.
    let follower = {
        let store = a.clone();
        tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut after = None;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
            while seen.len() < WRITERS * LINES {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "follower saw {} lines",
                    seen.len()
                );
                let q = LogQuery {
                    tail: None,
                    after_seq: after,
                };
                let lines = store.logs("default", "echo", &q).await.unwrap();
                if lines.is_empty() {
                    tokio::task::yield_now().await;
                }
                for l in lines {
                    after = Some(l.seq);
                    seen.push(l.line);
                }
            }
            seen
        })
    };
    for t in tasks {
        t.await.unwrap();
    }
    let seen = follower.await.unwrap();

    let unique: BTreeSet<&String> = seen.iter().collect();
    assert_eq!(
        unique.len(),
        WRITERS * LINES,
        "no line seen twice or skipped"
    );
    let stored = a
        .logs("default", "echo", &LogQuery::default())
        .await
        .unwrap();
    assert_eq!(
        stored.iter().map(|l| &l.line).collect::<Vec<_>>(),
        seen.iter().collect::<Vec<_>>(),
        "the follower saw the lines in seq order"
    );
    let text_bytes: u64 = stored
        .iter()
        .map(|l| clrk_store::log_line_cost(&l.line))
        .sum();
    assert_eq!(b.log_bytes("default", "echo").await.unwrap(), text_bytes);
    assert_eq!(
        b.tokens_on("default", "echo", day).await.unwrap(),
        (WRITERS * LINES) as u64
    );
}
