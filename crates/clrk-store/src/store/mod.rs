//! The `Store` handle: which backend it talks to, how it is opened or connected, and the
//! dispatch of every call to that backend (one file per table group beside this one).

mod agents;
mod egress;
mod executions;
mod leadership;
mod logs;
mod pools;
mod secrets;
mod spans;
mod supervision;
mod workers;

pub use workers::WORKER_LOST;

use std::path::Path;

use crate::StoreError;
use crate::postgres::PgStore;
use crate::sqlite::SqliteStore;

/// Calls the same method on whichever backend the store has; SQLite's are synchronous and
/// run inline, PostgreSQL's are awaited.
macro_rules! dispatch {
    ($self:ident . $method:ident ( $($arg:expr),* $(,)? )) => {
        match &$self.backend {
            $crate::store::Backend::Sqlite(db) => db.$method($($arg),*),
            $crate::store::Backend::Postgres(db) => db.$method($($arg),*).await,
        }
    };
}
use dispatch;

/// A handle to clrk's database: a SQLite file (`clrk dev`) or a PostgreSQL database (the
/// cluster). Cheap to clone; clones share one SQLite connection or one PostgreSQL pool.
///
/// Every method is `async`. On SQLite a call is a short transaction made inline, without a
/// thread hop; on PostgreSQL it waits for a pooled connection and the server.
#[derive(Clone, Debug)]
pub struct Store {
    backend: Backend,
}

/// Where the data lives.
#[derive(Clone, Debug)]
enum Backend {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

impl Store {
    /// Opens the SQLite database at `path`, creating missing directories (mode 0700) and the
    /// file (mode 0600), and brings the schema up to date.
    ///
    /// The connection uses WAL with `synchronous=NORMAL`: a call that returned `Ok` survives a
    /// `kill -9` of the process (only an OS crash or power loss can lose the last commits).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let dir = tempfile::tempdir().unwrap();
    /// let store = clrk_store::Store::open(&dir.path().join("data/clrk.db")).unwrap();
    /// assert!(store.list_agents(None).await.unwrap().is_empty());
    /// # }
    /// ```
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let db = SqliteStore::open(path)?;
        tracing::debug!(path = %path.display(), "store opened");
        Ok(Store {
            backend: Backend::Sqlite(db),
        })
    }

    /// Connects to the PostgreSQL database at `url` (`postgres://USER[:PASSWORD]@HOST:PORT/DB`,
    /// or the key=value form) and brings its schema up to date. Processes starting together
    /// migrate once: the first takes an advisory lock, the others wait for it and find the
    /// schema current.
    ///
    /// A server that cannot be reached, refuses the login or lacks the database is
    /// [`StoreError::Connect`], naming host, port, database and user (never the password).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// // Nothing listens on port 1.
    /// let err = clrk_store::Store::connect("postgres://clrk:secret@127.0.0.1:1/clrk")
    ///     .await
    ///     .unwrap_err();
    /// let message = err.to_string();
    /// assert!(message.contains("127.0.0.1:1/clrk"), "{message}");
    /// assert!(!message.contains("secret"), "{message}");
    /// # }
    /// ```
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        let db = PgStore::connect(url).await?;
        tracing::debug!(database = %db.target(), "store connected");
        Ok(Store {
            backend: Backend::Postgres(db),
        })
    }
}
