//! Crash durability (SPECIFICATION §11) of both backends and the SQLite file's permissions, with a
//! real child process and SIGKILL.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use chrono::Utc;
use clrk_store::testing::TempPostgres;
use clrk_store::{ExecutionEnd, ExecutionStatus, LogQuery, NewLogLine, Store};
use common::{echo_agent, execution};

/// Tells the re-spawned test binary to act as the writer that gets killed, on this SQLite file.
const CHILD_DB_ENV: &str = "CLRK_STORE_CRASH_CHILD_DB";
/// The same, on this PostgreSQL database URL.
const CHILD_PG_ENV: &str = "CLRK_STORE_CRASH_CHILD_PG";
/// Acknowledged writes to see before killing the writer.
const ACKS_BEFORE_KILL: usize = 300;

/// The writer half of the `acknowledged_writes_survive_*` tests: a no-op unless one of them
/// spawns this binary with `CLRK_STORE_CRASH_CHILD_DB` or `CLRK_STORE_CRASH_CHILD_PG` set.
/// Prints `ack <kind> <id>` after each call returns `Ok`, and keeps writing until killed.
#[tokio::test]
async fn crash_child_writer() {
    let store = if let Some(path) = std::env::var_os(CHILD_DB_ENV) {
        Store::open(Path::new(&path)).unwrap()
    } else if let Ok(url) = std::env::var(CHILD_PG_ENV) {
        Store::connect(&url).await.unwrap()
    } else {
        return;
    };
    let mut out = std::io::stdout().lock();
    // Bounded so an orphaned writer ends on its own if the parent test dies first.
    for i in 0..1_000_000 {
        let agent = format!("agent-{i}");
        store.apply_agent(&echo_agent(&agent)).await.unwrap();
        writeln!(out, "ack applied {agent}").unwrap();
        let id = format!("ev-{i}");
        store
            .start_execution(&execution(&id, &agent))
            .await
            .unwrap();
        writeln!(out, "ack started {id}").unwrap();
        let line = NewLogLine {
            execution_id: id.clone(),
            namespace: "default".into(),
            agent: agent.clone(),
            stream: "stderr".into(),
            time: Utc::now(),
            line: format!("line of {id}"),
        };
        store.append_logs(&[line]).await.unwrap();
        writeln!(out, "ack logged {id}").unwrap();
        if i % 2 == 0 {
            let end = ExecutionEnd {
                status: ExecutionStatus::Succeeded,
                exit_code: Some(0),
                reason: None,
                ended_at: Utc::now(),
            };
            store.finish_execution(&id, &end).await.unwrap();
            writeln!(out, "ack finished {id}").unwrap();
        }
        out.flush().unwrap();
    }
}

/// Runs the writer with `env=value`, SIGKILLs it after [`ACKS_BEFORE_KILL`] acks and returns
/// every ack it printed.
fn acks_of_killed_writer(env: &str, value: &str) -> Vec<String> {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "crash_child_writer",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(env, value)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();

    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });

    let deadline = Instant::now() + Duration::from_secs(120);
    let mut acks = Vec::new();
    while acks.len() < ACKS_BEFORE_KILL {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .expect("writer produced acks before the deadline");
        if let Some(ack) = line.strip_prefix("ack ") {
            acks.push(ack.to_owned());
        }
    }
    child.kill().unwrap(); // SIGKILL: no destructors, no checkpoint, no flush.
    child.wait().unwrap();
    // Acks already in the pipe were printed after their write returned: they count too.
    acks.extend(
        rx.iter()
            .filter_map(|l| l.strip_prefix("ack ").map(str::to_owned)),
    );
    reader.join().unwrap();
    acks
}

/// Every acknowledged write is there, and restart recovery fails exactly the unfinished.
async fn assert_acks_kept(store: &Store, acks: &[String]) {
    let mut finished = BTreeSet::new();
    let mut started = BTreeSet::new();
    for ack in acks {
        let (kind, id) = ack.split_once(' ').unwrap();
        match kind {
            "applied" => {
                let agent = store
                    .get_agent("default", id)
                    .await
                    .unwrap()
                    .unwrap_or_else(|| panic!("lost agent {id}"));
                assert_eq!(agent.latest_revision.unwrap().name, format!("{id}-00001"));
            }
            "started" => {
                assert!(
                    store.get_execution(id).await.unwrap().is_some(),
                    "lost execution {id}"
                );
                started.insert(id);
            }
            "logged" => {
                let agent = format!("agent-{}", id.trim_start_matches("ev-"));
                let lines = store
                    .logs("default", &agent, &LogQuery::default())
                    .await
                    .unwrap();
                assert_eq!(lines.len(), 1, "lost log line of {id}");
                assert_eq!(lines[0].line, format!("line of {id}"));
            }
            "finished" => {
                finished.insert(id);
            }
            other => panic!("unexpected ack {other}"),
        }
    }

    let last_started = started
        .iter()
        .max_by_key(|id| id.trim_start_matches("ev-").parse::<u64>().unwrap_or(0))
        .copied()
        .unwrap_or_default();
    let recovered: BTreeSet<String> = store
        .fail_running_executions("server restarted")
        .await
        .unwrap()
        .into_iter()
        .collect();
    for id in &started {
        let e = store.get_execution(id).await.unwrap().unwrap();
        if finished.contains(id) {
            assert_eq!(
                e.status,
                ExecutionStatus::Succeeded,
                "finished record of {id} lost"
            );
            assert_eq!(e.exit_code, Some(0));
        } else if *id == last_started && e.status == ExecutionStatus::Succeeded {
            // The writer is sequential: only its last execution can have been finished with
            // the kill landing between the commit and its ack.
        } else {
            assert_eq!(
                e.status,
                ExecutionStatus::Failed,
                "{id} left {:?}",
                e.status
            );
            assert_eq!(e.reason.as_deref(), Some("server restarted"));
            assert!(recovered.contains(*id));
        }
    }
    assert!(
        started.len() >= ACKS_BEFORE_KILL / 4,
        "the writer really made progress"
    );
}

#[tokio::test]
async fn acknowledged_writes_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clrk.db");
    let acks = acks_of_killed_writer(CHILD_DB_ENV, path.to_str().unwrap());

    let raw = rusqlite::Connection::open(&path).unwrap();
    let integrity: String = raw
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(integrity, "ok");
    let fk_violations: i64 = raw
        .query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(fk_violations, 0);
    drop(raw);

    assert_acks_kept(&Store::open(&path).unwrap(), &acks).await;
}

/// A PostgreSQL client acknowledges a write only once the server has committed it: killing
/// the client loses nothing it reported, and leaves no half-applied transaction behind.
#[tokio::test]
async fn acknowledged_writes_survive_sigkill_of_a_postgres_client() {
    let db = TempPostgres::database().await;
    let acks = acks_of_killed_writer(CHILD_PG_ENV, db.url());
    assert_acks_kept(&db.connect().await, &acks).await;
}

#[tokio::test]
async fn database_and_wal_files_are_owner_only() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("nested/data");
    let path = data.join("clrk.db");
    let store = Store::open(&path).unwrap();
    store.apply_agent(&echo_agent("echo")).await.unwrap();

    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(&data.join("clrk.db-wal")), 0o600);
    assert_eq!(mode(&data), 0o700);
}

#[tokio::test]
async fn existing_world_readable_database_is_tightened_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clrk.db");
    Store::open(&path)
        .unwrap()
        .apply_agent(&echo_agent("echo"))
        .await
        .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();

    let store = Store::open(&path).unwrap();
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(
        store.get_agent("default", "echo").await.unwrap().is_some(),
        "data written before is still there"
    );
}
