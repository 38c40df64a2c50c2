//! Agents and their revisions in SQLite: apply (create or update, making revisions), read,
//! delete, and revision state.

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;

use super::SqliteStore;
use super::columns;
use super::histories::{drop_history_if_empty, ensure_history};
use crate::agent::new_uid;
use crate::revision::revision_name;
use crate::{Agent, AgentApply, ApplyOutcome, Revision, RevisionState, StoreError, json, time};

/// The agent's row id, or `AgentNotFound`.
pub(super) fn agent_id(conn: &Connection, namespace: &str, name: &str) -> Result<i64, StoreError> {
    conn.query_row(
        "SELECT id FROM agents WHERE namespace = ?1 AND name = ?2",
        params![namespace, name],
        |row| row.get(0),
    )
    .optional()?
    .ok_or_else(|| StoreError::AgentNotFound {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
    })
}

/// Columns read by [`revision_from_row`]; `r` is revisions, `a` is agents.
const REVISION_COLUMNS: &str = "r.name, a.namespace, a.name, r.number, r.shape, r.image_ref, \
     r.image_digest, r.state, r.reason, r.created_at";

/// Maps a row selected with [`REVISION_COLUMNS`] starting at column `at`.
fn revision_from_row(row: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<Revision> {
    Ok(Revision {
        name: row.get(at)?,
        namespace: row.get(at + 1)?,
        agent: row.get(at + 2)?,
        number: row.get(at + 3)?,
        shape: columns::json(row, at + 4)?,
        image_ref: row.get(at + 5)?,
        image_digest: row.get(at + 6)?,
        state: columns::enum_text(row, at + 7)?,
        reason: row.get(at + 8)?,
        created_at: columns::time(row, at + 9)?,
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

fn agent_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Agent> {
    let revision_id: Option<i64> = row.get(7)?;
    Ok(Agent {
        namespace: row.get(0)?,
        name: row.get(1)?,
        kind: row.get(2)?,
        spec: columns::json(row, 3)?,
        created_at: columns::time(row, 4)?,
        updated_at: columns::time(row, 5)?,
        uid: row.get(6)?,
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

fn current(conn: &Connection, namespace: &str, name: &str) -> Result<Option<Current>, StoreError> {
    let row = conn
        .query_row(
            "SELECT a.id, a.kind, a.spec, r.number, r.shape, r.image_digest \
             FROM agents a LEFT JOIN revisions r ON r.agent_id = a.id \
               AND r.number = (SELECT MAX(number) FROM revisions WHERE agent_id = a.id) \
             WHERE a.namespace = ?1 AND a.name = ?2",
            params![namespace, name],
            |row| {
                let number: Option<u32> = row.get(3)?;
                let latest = match number {
                    Some(n) => Some((n, columns::json(row, 4)?, row.get(5)?)),
                    None => None,
                };
                Ok(Current {
                    id: row.get(0)?,
                    kind: row.get(1)?,
                    spec: columns::json(row, 2)?,
                    latest,
                })
            },
        )
        .optional()?;
    Ok(row)
}

fn insert_revision(
    conn: &Connection,
    agent_id: i64,
    a: &AgentApply,
    number: u32,
    now: i64,
) -> Result<String, StoreError> {
    let name = revision_name(&a.name, number);
    conn.execute(
        "INSERT INTO revisions (agent_id, namespace, name, number, shape, image_ref, image_digest, state, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            agent_id,
            a.namespace,
            name,
            number,
            json::to_text(&a.shape, "agent shape")?,
            a.image_ref,
            a.image_digest,
            RevisionState::Ready.as_str(),
            now
        ],
    )?;
    Ok(name)
}

impl SqliteStore {
    pub(crate) fn apply_agent(&self, a: &AgentApply) -> Result<ApplyOutcome, StoreError> {
        self.write(|tx| {
            let now = time::to_millis(time::now());
            let spec = json::to_text(&a.spec, "agent spec")?;
            let Some(cur) = current(tx, &a.namespace, &a.name)? else {
                tx.execute(
                    "INSERT INTO agents (namespace, name, kind, spec, created_at, updated_at, uid) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6)",
                    params![a.namespace, a.name, a.kind, spec, now, new_uid()],
                )?;
                let revision = insert_revision(tx, tx.last_insert_rowid(), a, 1, now)?;
                ensure_history(tx, &a.namespace, &a.name)?;
                return Ok(ApplyOutcome::Created {
                    revision: Some(revision),
                });
            };
            let next_number = match &cur.latest {
                Some((_, shape, digest)) if *shape == a.shape && *digest == a.image_digest => None,
                Some((n, _, _)) => Some(n + 1),
                None => Some(1),
            };
            if next_number.is_none() && cur.kind == a.kind && cur.spec == a.spec {
                return Ok(ApplyOutcome::Unchanged);
            }
            tx.execute(
                "UPDATE agents SET kind = ?2, spec = ?3, updated_at = ?4 WHERE id = ?1",
                params![cur.id, a.kind, spec, now],
            )?;
            let revision = next_number
                .map(|n| insert_revision(tx, cur.id, a, n, now))
                .transpose()?;
            Ok(ApplyOutcome::Configured { revision })
        })
    }

    pub(crate) fn get_agent(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Agent>, StoreError> {
        let sql = format!("{} WHERE a.namespace = ?1 AND a.name = ?2", select_agents());
        let agent = self
            .conn()
            .query_row(&sql, params![namespace, name], agent_from_row)
            .optional()?;
        Ok(agent)
    }

    pub(crate) fn list_agents(&self, namespace: Option<&str>) -> Result<Vec<Agent>, StoreError> {
        let sql = format!(
            "{} WHERE ?1 IS NULL OR a.namespace = ?1 ORDER BY a.namespace, a.name",
            select_agents()
        );
        let conn = self.conn();
        let mut stmt = conn.prepare(&sql)?;
        let rows = stmt.query_map([namespace], agent_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub(crate) fn delete_agent(&self, namespace: &str, name: &str) -> Result<bool, StoreError> {
        Ok(self.write(|tx| {
            let deleted = tx.execute(
                "DELETE FROM agents WHERE namespace = ?1 AND name = ?2",
                params![namespace, name],
            )?;
            drop_history_if_empty(tx, namespace, name)?;
            Ok(deleted)
        })? > 0)
    }

    pub(crate) fn revisions(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Vec<Revision>, StoreError> {
        let conn = self.conn();
        let id = agent_id(&conn, namespace, name)?;
        let sql = format!(
            "SELECT {REVISION_COLUMNS} FROM revisions r JOIN agents a ON a.id = r.agent_id \
             WHERE r.agent_id = ?1 ORDER BY r.number"
        );
        let mut stmt = conn.prepare(&sql)?;
        let rows = stmt.query_map([id], |row| revision_from_row(row, 0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub(crate) fn revision_images(&self) -> Result<Vec<(String, String, String)>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT image_digest, namespace, name FROM revisions ORDER BY image_digest, namespace, name",
        )?;
        let rows = stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Returns whether the revision exists.
    pub(crate) fn set_revision_state(
        &self,
        namespace: &str,
        revision: &str,
        state: RevisionState,
        reason: Option<&str>,
    ) -> Result<bool, StoreError> {
        let changed = self.write(|tx| {
            Ok(tx.execute(
                "UPDATE revisions SET state = ?3, reason = ?4 WHERE namespace = ?1 AND name = ?2",
                params![namespace, revision, state.as_str(), reason],
            )?)
        })?;
        Ok(changed > 0)
    }
}
