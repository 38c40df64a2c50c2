//! Histories in PostgreSQL: the executions and logs of an agent's name, kept across its
//! deletes and re-creations (SPECIFICATION §3.5).

use deadpool_postgres::GenericClient;

use crate::StoreError;

/// The history's row id, or `AgentNotFound` when no agent of that name ever kept one.
pub(super) async fn history_id(
    c: &impl GenericClient,
    namespace: &str,
    name: &str,
) -> Result<i64, StoreError> {
    c.query_opt(
        "SELECT id FROM histories WHERE namespace = $1 AND name = $2",
        &[&namespace, &name],
    )
    .await?
    .map(|row| row.try_get(0))
    .transpose()?
    .ok_or_else(|| StoreError::AgentNotFound {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
    })
}

/// Makes the name's history if it has none; for an agent being created.
pub(super) async fn ensure_history(
    c: &impl GenericClient,
    namespace: &str,
    name: &str,
) -> Result<(), StoreError> {
    c.execute(
        "INSERT INTO histories (namespace, name) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        &[&namespace, &name],
    )
    .await?;
    Ok(())
}

/// Deletes the name's history when nothing is left in it and no agent has the name, so a
/// name whose deleted agent never ran is not found, like one that never existed.
pub(super) async fn drop_history_if_empty(
    c: &impl GenericClient,
    namespace: &str,
    name: &str,
) -> Result<(), StoreError> {
    c.execute(
        "DELETE FROM histories h WHERE h.namespace = $1 AND h.name = $2 \
         AND NOT EXISTS (SELECT 1 FROM agents WHERE namespace = $1 AND name = $2) \
         AND NOT EXISTS (SELECT 1 FROM executions WHERE history_id = h.id) \
         AND NOT EXISTS (SELECT 1 FROM logs WHERE history_id = h.id)",
        &[&namespace, &name],
    )
    .await?;
    Ok(())
}
