//! Agents and their revisions in PostgreSQL: apply (create or update, making revisions),
//! read, delete, and revision state.

use deadpool_postgres::GenericClient;
use serde_json::Value;
use tokio_postgres::Row;

use super::columns;
use super::histories::{drop_history_if_empty, ensure_history};
use super::{PgStore, locks};
use crate::agent::new_uid;
use crate::revision::revision_name;
use crate::{Agent, AgentApply, ApplyOutcome, Revision, RevisionState, StoreError, json, time};

/// The agent's row id, or `AgentNotFound`.
pub(super) async fn agent_id(
    c: &impl GenericClient,
    namespace: &str,
    name: &str,
) -> Result<i64, StoreError> {
    c.query_opt(
        "SELECT id FROM agents WHERE namespace = $1 AND name = $2",
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

/// Columns read by [`revision_from_row`]; `r` is revisions, `a` is agents.
const REVISION_COLUMNS: &str = "r.name, a.namespace, a.name, r.number, r.shape, r.image_ref, \
     r.image_digest, r.state, r.reason, r.created_at";

/// Maps a row selected with [`REVISION_COLUMNS`] starting at column `at`.
fn revision_from_row(row: &Row, at: usize) -> Result<Revision, StoreError> {
    Ok(Revision {
        name: row.try_get(at)?,
        namespace: row.try_get(at + 1)?,
        agent: row.try_get(at + 2)?,
        number: number(row, at + 3)?,
        shape: columns::json(row, at + 4)?,
        image_ref: row.try_get(at + 5)?,
        image_digest: row.try_get(at + 6)?,
        state: columns::enum_text(row, at + 7)?,
        reason: row.try_get(at + 8)?,
        created_at: columns::time(row, at + 9)?,
    })
}

fn number(row: &Row, idx: usize) -> Result<u32, StoreError> {
    let n: i64 = row.try_get(idx)?;
    u32::try_from(n).map_err(|_| StoreError::Corrupt {
        what: "revision number",
        reason: format!("{n} is not a revision number"),
    })
}

/// Agents joined with their latest revision (if any); append WHERE/ORDER BY.
fn select_agents() -> String {
    format!(
        "SELECT a.namespace, a.name, a.kind, a.spec, a.created_at, a.updated_at, a.uid, r.id, \
         {REVISION_COLUMNS} \
         FROM agents a LEFT JOIN revisions r ON r.agent_id = a.id \
           AND r.number = (SELECT MAX(number) FROM revisions WHERE agent_id = a.id)"
    )
}

fn agent_from_row(row: &Row) -> Result<Agent, StoreError> {
    let revision_id: Option<i64> = row.try_get(7)?;
    Ok(Agent {
        namespace: row.try_get(0)?,
        name: row.try_get(1)?,
        kind: row.try_get(2)?,
        spec: columns::json(row, 3)?,
        created_at: columns::time(row, 4)?,
        updated_at: columns::time(row, 5)?,
        uid: row.try_get(6)?,
        latest_revision: revision_id.map(|_| revision_from_row(row, 8)).transpose()?,
    })
}

/// The stored state `apply_agent` compares against.
struct Current {
    id: i64,
    kind: String,
    spec: Value,
    latest: Option<(u32, Value, String)>,
}

async fn current(
    c: &impl GenericClient,
    namespace: &str,
    name: &str,
) -> Result<Option<Current>, StoreError> {
    let Some(row) = c
        .query_opt(
            "SELECT a.id, a.kind, a.spec, r.number, r.shape, r.image_digest \
             FROM agents a LEFT JOIN revisions r ON r.agent_id = a.id \
               AND r.number = (SELECT MAX(number) FROM revisions WHERE agent_id = a.id) \
             WHERE a.namespace = $1 AND a.name = $2",
            &[&namespace, &name],
        )
        .await?
    else {
        return Ok(None);
    };
    let has_revision = row.try_get::<_, Option<i64>>(3)?.is_some();
    let latest = if has_revision {
        Some((number(&row, 3)?, columns::json(&row, 4)?, row.try_get(5)?))
    } else {
        None
    };
    Ok(Some(Current {
        id: row.try_get(0)?,
        kind: row.try_get(1)?,
        spec: columns::json(&row, 2)?,
        latest,
    }))
}

async fn insert_revision(
    c: &impl GenericClient,
    agent_id: i64,
    a: &AgentApply,
    number: u32,
    now: i64,
) -> Result<String, StoreError> {
    let name = revision_name(&a.name, number);
    c.execute(
        "INSERT INTO revisions (agent_id, namespace, name, number, shape, image_ref, image_digest, state, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        &[
            &agent_id,
            &a.namespace,
            &name,
            &i64::from(number),
            &json::to_text(&a.shape, "agent shape")?,
            &a.image_ref,
            &a.image_digest,
            &RevisionState::Ready.as_str(),
            &now,
        ],
    )
    .await?;
    Ok(name)
}

impl PgStore {
    pub(crate) async fn apply_agent(&self, a: &AgentApply) -> Result<ApplyOutcome, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        // Two applies of one agent at once would both see it missing (or at the same
        // revision) and collide; the second waits and then sees the first's result.
        locks::lock(&tx, &format!("agent:{}/{}", a.namespace, a.name)).await?;
        let now = time::to_millis(time::now());
        let spec = json::to_text(&a.spec, "agent spec")?;
        let outcome = match current(&tx, &a.namespace, &a.name).await? {
            None => {
                let id: i64 = tx
                    .query_one(
                        "INSERT INTO agents (namespace, name, kind, spec, created_at, updated_at, uid) \
                         VALUES ($1, $2, $3, $4, $5, $5, $6) RETURNING id",
                        &[&a.namespace, &a.name, &a.kind, &spec, &now, &new_uid()],
                    )
                    .await?
                    .try_get(0)?;
                let revision = insert_revision(&tx, id, a, 1, now).await?;
                ensure_history(&tx, &a.namespace, &a.name).await?;
                ApplyOutcome::Created {
                    revision: Some(revision),
                }
            }
            Some(cur) => {
                let next_number = match &cur.latest {
                    Some((_, shape, digest)) if *shape == a.shape && *digest == a.image_digest => {
                        None
                    }
                    Some((n, _, _)) => Some(n + 1),
                    None => Some(1),
                };
                if next_number.is_none() && cur.kind == a.kind && cur.spec == a.spec {
                    return Ok(ApplyOutcome::Unchanged);
                }
                tx.execute(
                    "UPDATE agents SET kind = $2, spec = $3, updated_at = $4 WHERE id = $1",
                    &[&cur.id, &a.kind, &spec, &now],
                )
                .await?;
                let revision = match next_number {
                    Some(n) => Some(insert_revision(&tx, cur.id, a, n, now).await?),
                    None => None,
                };
                ApplyOutcome::Configured { revision }
            }
        };
        tx.commit().await?;
        Ok(outcome)
    }

    pub(crate) async fn get_agent(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Agent>, StoreError> {
        let sql = format!("{} WHERE a.namespace = $1 AND a.name = $2", select_agents());
        let client = self.client().await?;
        client
            .query_opt(&sql, &[&namespace, &name])
            .await?
            .as_ref()
            .map(agent_from_row)
            .transpose()
    }

    pub(crate) async fn list_agents(
        &self,
        namespace: Option<&str>,
    ) -> Result<Vec<Agent>, StoreError> {
        let sql = format!(
            "{} WHERE $1::text IS NULL OR a.namespace = $1 ORDER BY a.namespace, a.name",
            select_agents()
        );
        let client = self.client().await?;
        client
            .query(&sql, &[&namespace])
            .await?
            .iter()
            .map(agent_from_row)
            .collect()
    }

    pub(crate) async fn delete_agent(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<bool, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        // As apply takes it: the name's history is judged empty with no apply in between.
        locks::lock(&tx, &format!("agent:{namespace}/{name}")).await?;
        let deleted = tx
            .execute(
                "DELETE FROM agents WHERE namespace = $1 AND name = $2",
                &[&namespace, &name],
            )
            .await?;
        drop_history_if_empty(&tx, namespace, name).await?;
        tx.commit().await?;
        Ok(deleted > 0)
    }

    pub(crate) async fn revisions(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Vec<Revision>, StoreError> {
        let client = self.client().await?;
        let id = agent_id(&client, namespace, name).await?;
        let sql = format!(
            "SELECT {REVISION_COLUMNS} FROM revisions r JOIN agents a ON a.id = r.agent_id \
             WHERE r.agent_id = $1 ORDER BY r.number"
        );
        client
            .query(&sql, &[&id])
            .await?
            .iter()
            .map(|row| revision_from_row(row, 0))
            .collect()
    }

    pub(crate) async fn revision_images(
        &self,
    ) -> Result<Vec<(String, String, String)>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT image_digest, namespace, name FROM revisions \
                 ORDER BY image_digest, namespace, name",
                &[],
            )
            .await?;
        rows.iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?)))
            .collect()
    }

    /// Returns whether the revision exists.
    pub(crate) async fn set_revision_state(
        &self,
        namespace: &str,
        revision: &str,
        state: RevisionState,
        reason: Option<&str>,
    ) -> Result<bool, StoreError> {
        let client = self.client().await?;
        let changed = client
            .execute(
                "UPDATE revisions SET state = $3, reason = $4 WHERE namespace = $1 AND name = $2",
                &[&namespace, &revision, &state.as_str(), &reason],
            )
            .await?;
        Ok(changed > 0)
    }
}
