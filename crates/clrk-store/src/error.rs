//! The one error type of clrk-store.

use std::path::PathBuf;

/// Everything that can go wrong while reading or writing the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The data directory or database file could not be created or secured.
    #[error(
        "cannot prepare database file {path}: {source}; check that the data dir exists and is writable by this user"
    )]
    Io {
        /// The file or directory at fault.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// SQLite refused to open the file or to apply the connection settings.
    #[error(
        "cannot open database {path}: {source}; check the file is a clrk SQLite database and not used by another program"
    )]
    Open {
        /// The database file.
        path: PathBuf,
        /// What SQLite said.
        source: rusqlite::Error,
    },
    /// The schema could not be brought up to date.
    #[error(
        "cannot migrate database {path}: {source}; if it was written by a newer clrk, run that version or restore a backup"
    )]
    Migrate {
        /// The database file.
        path: PathBuf,
        /// What the migration runner said.
        source: rusqlite_migration::Error,
    },
    /// A query failed.
    #[error(
        "database error: {0}; if it persists, check disk space and run `PRAGMA integrity_check` on the database file"
    )]
    Sqlite(#[from] rusqlite::Error),
    /// The PostgreSQL server could not be reached, refused the login, or lacks the database.
    #[error(
        "cannot connect to PostgreSQL at {target}: {}; check that the server runs and listens there, that the database exists and that the user may log in (password, pg_hba.conf)",
        pg_message(source)
    )]
    Connect {
        /// `user@host:port/database`, never the password.
        target: String,
        /// What the client said.
        source: tokio_postgres::Error,
    },
    /// The PostgreSQL URL could not be read.
    #[error(
        "invalid PostgreSQL URL: {}; write it as postgres://USER[:PASSWORD]@HOST:PORT/DATABASE",
        pg_message(source)
    )]
    Url {
        /// What the parser said (it never echoes the password).
        source: tokio_postgres::Error,
    },
    /// The PostgreSQL schema could not be brought up to date.
    #[error(
        "cannot migrate PostgreSQL database {target}: {reason}; if it was written by a newer clrk, run that version or restore a backup"
    )]
    PgMigrate {
        /// `user@host:port/database`.
        target: String,
        /// What went wrong.
        reason: String,
    },
    /// A PostgreSQL query failed.
    #[error(
        "PostgreSQL error: {}; if it persists, check the server's log, its disk space and the connection to it",
        pg_message(.0)
    )]
    Postgres(#[from] tokio_postgres::Error),
    /// No pooled PostgreSQL connection could be had.
    #[error(
        "no connection to PostgreSQL at {target}: {reason}; check that the server runs and accepts connections"
    )]
    Pool {
        /// `user@host:port/database`.
        target: String,
        /// What the pool said.
        reason: String,
    },
    /// A stored value could not be read back as what it should be.
    #[error(
        "database holds an invalid {what}: {reason}; the database was changed by hand or is damaged"
    )]
    Corrupt {
        /// Which value.
        what: &'static str,
        /// Why it is invalid.
        reason: String,
    },
    /// `start_execution` was given an id that is already recorded.
    #[error("execution {0} already exists; give every execution a fresh id")]
    DuplicateExecution(String),
    /// `start_execution_within` found the agent already running its limit of executions.
    #[error(
        "the agent already runs {limit} executions, its maxConcurrent; retry when one has finished"
    )]
    TooManyExecutions {
        /// The agent's `maxConcurrent`.
        limit: u32,
    },
    /// The named agent is not in the store.
    #[error("agent {namespace}/{name} not found; apply its manifest first")]
    AgentNotFound {
        /// Namespace looked in.
        namespace: String,
        /// Agent name.
        name: String,
    },
    /// The named revision is not in the store.
    #[error(
        "revision {revision} not found in namespace {namespace}; list the agent's revisions to see which exist"
    )]
    RevisionNotFound {
        /// Namespace looked in.
        namespace: String,
        /// Revision name (`<agent>-00001`).
        revision: String,
    },
    /// The execution id is not in the store (never started, or its agent was deleted).
    #[error("execution {0} not found; it was never started or its agent has been deleted")]
    ExecutionNotFound(String),
    /// A JSON document could not be turned into text for storage.
    #[error("cannot serialise {what} to JSON: {source}")]
    Json {
        /// Which document.
        what: &'static str,
        /// What serde_json said.
        source: serde_json::Error,
    },
}

/// The client's error with what caused it: its own `Display` says only "db error" or
/// "error connecting to server", without the server's message or the OS error.
pub(crate) fn pg_message(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return db.to_string();
    }
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}
