//! Transaction-scoped advisory locks. SQLite serialises every write through one connection;
//! PostgreSQL runs transactions side by side, so a read-then-write (is this agent new? is
//! this secret?) and the numbering of log lines take a lock that is released at commit.

use deadpool_postgres::GenericClient;

use crate::StoreError;

/// Held while log lines are numbered and committed, so lines become visible in `seq` order
/// and a follower reading `after_seq` never skips one committed late.
pub(super) const LOG_APPEND: &str = "clrk:logs";

/// Waits for the lock named `key` in the current transaction; released at commit or rollback.
pub(super) async fn lock(tx: &impl GenericClient, key: &str) -> Result<(), StoreError> {
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
        &[&key],
    )
    .await?;
    Ok(())
}
