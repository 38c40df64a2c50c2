//! The SQLite backend (`clrk dev`): one file in WAL mode behind one connection, each call a
//! short synchronous transaction made inline on the caller's thread.

mod agents;
mod columns;
mod egress;
mod executions;
mod histories;
mod logs;
mod migrations;
mod pools;
mod secrets;
mod spans;
mod supervision;
mod workers;

use std::fs::{DirBuilder, OpenOptions, Permissions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rusqlite::{Connection, Transaction, TransactionBehavior};

use crate::StoreError;

/// How long a writer waits for another connection's lock (e.g. an operator's `sqlite3` shell).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Prepared statements kept for reuse: the ones of the hot paths (an execution's start and
/// end, log lines) with room to spare, so none is evicted and parsed again.
const STATEMENT_CACHE: usize = 64;

/// One SQLite database; clones share its connection.
#[derive(Clone, Debug)]
pub(crate) struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
}

impl SqliteStore {
    /// Opens (creating if needed) the file at `path` and brings its schema up to date.
    pub(crate) fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        prepare_file(path)?;
        let open_err = |source| StoreError::Open {
            path: path.to_owned(),
            source,
        };
        let mut conn = Connection::open(path).map_err(open_err)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(open_err)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .map_err(open_err)?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(path = %path.display(), journal_mode = %mode, "database did not switch to WAL");
        }
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(open_err)?;
        conn.pragma_update(None, "foreign_keys", true)
            .map_err(open_err)?;
        migrations::migrations()
            .to_latest(&mut conn)
            .map_err(|source| StoreError::Migrate {
                path: path.to_owned(),
                source,
            })?;
        Ok(SqliteStore {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Locks the connection. A panic in another caller cannot leave SQLite half-written
    /// (its transaction rolled back when dropped), so a poisoned lock is still usable.
    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` in an IMMEDIATE transaction (takes the write lock up front, so it never
    /// fails half-way with SQLITE_BUSY) and commits if `f` succeeds.
    fn write<T>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }
}

/// Creates the parent directories and the database file with owner-only permissions, and
/// tightens the file's mode if it already existed. SQLite gives its `-wal` and `-shm` files
/// the database file's mode, so they inherit 0600.
fn prepare_file(path: &Path) -> Result<(), StoreError> {
    let io_err = |p: &Path| {
        let p = p.to_owned();
        move |source| StoreError::Io { path: p, source }
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io_err(dir))?;
    }
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(io_err(path))?;
    file.set_permissions(Permissions::from_mode(0o600))
        .map_err(io_err(path))
}
