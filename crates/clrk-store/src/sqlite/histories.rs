//! Histories in SQLite: the executions and logs of an agent's name, kept across its deletes
//! and re-creations (SPECIFICATION §3.5).

use rusqlite::{Connection, OptionalExtension, params};

use crate::StoreError;

/// The history's row id, or `AgentNotFound` when no agent of that name ever kept one.
pub(super) fn history_id(
    conn: &Connection,
    namespace: &str,
    name: &str,
) -> Result<i64, StoreError> {
    conn.prepare_cached("SELECT id FROM histories WHERE namespace = ?1 AND name = ?2")?
        .query_row(params![namespace, name], |row| row.get(0))
        .optional()?
        .ok_or_else(|| StoreError::AgentNotFound {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        })
}

/// Makes the name's history if it has none; for an agent being created.
pub(super) fn ensure_history(
    conn: &Connection,
    namespace: &str,
    name: &str,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO histories (namespace, name) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
        params![namespace, name],
    )?;
    Ok(())
}

/// Deletes the name's history when nothing is left in it and no agent has the name, so a
/// name whose deleted agent never ran is not found, like one that never existed.
pub(super) fn drop_history_if_empty(
    conn: &Connection,
    namespace: &str,
    name: &str,
) -> Result<(), StoreError> {
    conn.execute(
        "DELETE FROM histories WHERE namespace = ?1 AND name = ?2 \
         AND NOT EXISTS (SELECT 1 FROM agents WHERE namespace = ?1 AND name = ?2) \
         AND NOT EXISTS (SELECT 1 FROM executions WHERE history_id = histories.id) \
         AND NOT EXISTS (SELECT 1 FROM logs WHERE history_id = histories.id)",
        params![namespace, name],
    )?;
    Ok(())
}
