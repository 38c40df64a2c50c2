//! Shared fixtures: a real database of either backend (a SQLite file in a fresh temporary
//! directory, or a fresh database on the test process's PostgreSQL), and `store_tests!`,
//! which runs one test body against both.

#![allow(dead_code)] // Each test binary uses a different subset of these helpers.

use std::path::PathBuf;

use chrono::Utc;
use clrk_store::testing::{TempDatabase, TempPostgres};
use clrk_store::{AgentApply, NewExecution, Store};
use serde_json::{Value, json};

/// Where a test's data lives; [`Backend::open`] gives a new handle on it (a reopen).
pub enum Backend {
    Sqlite(tempfile::TempDir),
    Postgres(TempDatabase),
}

impl Backend {
    /// An empty SQLite database in a temporary directory.
    pub async fn sqlite() -> Backend {
        Backend::Sqlite(tempfile::tempdir().expect("create temp dir"))
    }

    /// An empty database on the process's PostgreSQL.
    pub async fn postgres() -> Backend {
        Backend::Postgres(TempPostgres::database().await)
    }

    /// Opens (SQLite) or connects (PostgreSQL) a new store on this data.
    pub async fn open(&self) -> Store {
        match self {
            Backend::Sqlite(dir) => Store::open(&dir.path().join("clrk.db")).expect("open store"),
            Backend::Postgres(db) => db.connect().await,
        }
    }

    /// The SQLite file, for checks of the file itself.
    pub fn sqlite_path(&self) -> Option<PathBuf> {
        match self {
            Backend::Sqlite(dir) => Some(dir.path().join("clrk.db")),
            Backend::Postgres(_) => None,
        }
    }

    /// Rows in `table`, read around the store: what is really kept, not just what queries show.
    pub async fn count_rows(&self, table: &str) -> i64 {
        let sql = format!("SELECT count(*) FROM {table}");
        match self {
            Backend::Sqlite(dir) => {
                let raw = rusqlite::Connection::open(dir.path().join("clrk.db")).unwrap();
                raw.query_row(&sql, [], |r| r.get(0)).unwrap()
            }
            Backend::Postgres(db) => {
                let (client, connection) = tokio_postgres::connect(db.url(), tokio_postgres::NoTls)
                    .await
                    .unwrap();
                let connection = tokio::spawn(connection);
                let count = client.query_one(&sql, &[]).await.unwrap().get(0);
                drop(client);
                let _ = connection.await;
                count
            }
        }
    }
}

/// Turns `async fn name(backend) { body }` items into `sqlite::name` and `postgres::name`
/// tests, each given a fresh [`Backend`] of its kind.
#[macro_export]
macro_rules! store_tests {
    ($(async fn $name:ident($backend:ident) $body:block)*) => {
        mod sqlite {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let $backend = common::Backend::sqlite().await;
                    $body
                }
            )*
        }
        mod postgres {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let $backend = common::Backend::postgres().await;
                    $body
                }
            )*
        }
    };
}

/// An apply of TaskAgent `name` in `default` with the given spec, shape and digest.
pub fn task_agent(name: &str, spec: Value, shape: Value, digest: &str) -> AgentApply {
    AgentApply {
        namespace: "default".into(),
        name: name.into(),
        kind: "TaskAgent".into(),
        spec,
        shape,
        image_ref: "registry.local/echo:latest".into(),
        image_digest: digest.into(),
    }
}

/// A simple agent `name` with revision 00001.
pub fn echo_agent(name: &str) -> AgentApply {
    task_agent(
        name,
        json!({"template": {"spec": {"image": "registry.local/echo:latest"}}, "maxConcurrent": 0}),
        json!({"template": {"spec": {"image": "registry.local/echo:latest"}}}),
        "sha256:1111",
    )
}

/// A new `http` execution `id` of `agent`'s first revision, started now.
pub fn execution(id: &str, agent: &str) -> NewExecution {
    NewExecution {
        id: id.into(),
        namespace: "default".into(),
        agent: agent.into(),
        revision: format!("{agent}-00001"),
        trigger: "http".into(),
        started_at: Utc::now(),
        start: clrk_store::Start::Cold,
        worker: None,
    }
}
