//! The `Store` handle: opening the file, connection settings, and serialised access.

use std::fs::{DirBuilder, OpenOptions, Permissions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rusqlite::{Connection, Transaction, TransactionBehavior};

use crate::{StoreError, migrations};

/// How long a writer waits for another connection's lock (e.g. an operator's `sqlite3` shell).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// A handle to the clrk database. Cheap to clone; clones share one connection.
///
/// Calls are short and synchronous; from async code call them directly (they do not block
/// for long) or via `spawn_blocking` for large log batches.
#[derive(Clone, Debug)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
}

impl Store {
    /// Opens the database at `path`, creating missing directories (mode 0700) and the file
    /// (mode 0600), and brings the schema up to date.
    ///
    /// The connection uses WAL with `synchronous=NORMAL`: a call that returned `Ok` survives a
    /// `kill -9` of the process (only an OS crash or power loss can lose the last commits).
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let store = clrk_store::Store::open(&dir.path().join("data/clrk.db")).unwrap();
    /// assert!(store.list_agents(None).unwrap().is_empty());
    /// ```
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        prepare_file(path)?;
        let open_err = |source| StoreError::Open {
            path: path.to_owned(),
            source,
        };
        let mut conn = Connection::open(path).map_err(open_err)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(open_err)?;
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
        tracing::debug!(path = %path.display(), "store opened");
        Ok(Store {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Locks the connection. A panic in another caller cannot leave SQLite half-written
    /// (its transaction rolled back when dropped), so a poisoned lock is still usable.
    pub(crate) fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` in an IMMEDIATE transaction (takes the write lock up front, so it never
    /// fails half-way with SQLITE_BUSY) and commits if `f` succeeds.
    pub(crate) fn write<T>(
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
