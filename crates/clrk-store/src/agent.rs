//! Agents: apply (create or update, making revisions), get, list, delete.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;

use crate::revision::{self, Revision, RevisionState, revision_name};
use crate::{Store, StoreError, json, time};

/// What `apply_agent` is asked to store.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentApply {
    /// Namespace (`default` when the manifest has none).
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
    /// `TaskAgent` or `DaemonAgent`.
    pub kind: String,
    /// The whole validated spec, as shown back to users.
    pub spec: Value,
    /// The part of the spec that shapes the sandbox; a change makes a new revision.
    pub shape: Value,
    /// Image reference as written.
    pub image_ref: String,
    /// Digest it resolved to; a change makes a new revision.
    pub image_digest: String,
}

/// What an apply did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// It did not exist. Agents get their first revision (`Some`); pools have none.
    Created {
        /// Name of the revision made.
        revision: Option<String>,
    },
    /// It existed and something changed.
    Configured {
        /// `Some` when a new revision was made; `None` when only non-shaping fields changed.
        revision: Option<String>,
    },
    /// Identical to what was stored; nothing was written.
    Unchanged,
}

/// A stored agent.
#[derive(Debug, Clone, PartialEq)]
pub struct Agent {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// `TaskAgent` or `DaemonAgent`.
    pub kind: String,
    /// The spec last applied.
    pub spec: Value,
    /// First apply.
    pub created_at: DateTime<Utc>,
    /// Last apply that changed something.
    pub updated_at: DateTime<Utc>,
    /// Highest-numbered revision, whatever its state.
    pub latest_revision: Option<Revision>,
}

/// The agent's row id, or `AgentNotFound`.
pub(crate) fn agent_id(conn: &Connection, namespace: &str, name: &str) -> Result<i64, StoreError> {
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

/// Agents joined with their latest revision (if any); append WHERE/ORDER BY.
fn select_agents() -> String {
    format!(
        "SELECT a.namespace, a.name, a.kind, a.spec, a.created_at, a.updated_at, r.id, {} \
         FROM agents a LEFT JOIN revisions r ON r.agent_id = a.id \
           AND r.number = (SELECT MAX(number) FROM revisions WHERE agent_id = a.id)",
        revision::COLUMNS
    )
}

fn agent_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Agent> {
    let revision_id: Option<i64> = row.get(6)?;
    Ok(Agent {
        namespace: row.get(0)?,
        name: row.get(1)?,
        kind: row.get(2)?,
        spec: json::column(row, 3)?,
        created_at: time::column(row, 4)?,
        updated_at: time::column(row, 5)?,
        latest_revision: revision_id
            .map(|_| revision::from_row(row, 7))
            .transpose()?,
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
                    Some(n) => Some((n, json::column(row, 4)?, row.get(5)?)),
                    None => None,
                };
                Ok(Current {
                    id: row.get(0)?,
                    kind: row.get(1)?,
                    spec: json::column(row, 2)?,
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
            RevisionState::Ready.to_string(),
            now
        ],
    )?;
    Ok(name)
}

impl Store {
    /// Creates or updates an agent in one transaction. A new revision (state `Ready`) is made
    /// when there is none yet or when `shape` or `image_digest` differ from the latest
    /// revision's. An identical apply returns `Unchanged` and writes nothing.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = clrk_store::Store::open(&dir.path().join("clrk.db")).unwrap();
    /// use clrk_store::{AgentApply, ApplyOutcome};
    /// let apply = AgentApply {
    ///     namespace: "default".into(), name: "echo".into(), kind: "TaskAgent".into(),
    ///     spec: serde_json::json!({"timeout": "100s"}), shape: serde_json::json!({"image": "echo"}),
    ///     image_ref: "echo:latest".into(), image_digest: "sha256:ab".into(),
    /// };
    /// assert_eq!(store.apply_agent(&apply).unwrap(),
    ///            ApplyOutcome::Created { revision: Some("echo-00001".into()) });
    /// assert_eq!(store.apply_agent(&apply).unwrap(), ApplyOutcome::Unchanged);
    /// ```
    pub fn apply_agent(&self, a: &AgentApply) -> Result<ApplyOutcome, StoreError> {
        let outcome = self.write(|tx| {
            let now = time::to_millis(time::now());
            let spec = json::to_text(&a.spec, "agent spec")?;
            let Some(cur) = current(tx, &a.namespace, &a.name)? else {
                tx.execute(
                    "INSERT INTO agents (namespace, name, kind, spec, created_at, updated_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
                    params![a.namespace, a.name, a.kind, spec, now],
                )?;
                let revision = insert_revision(tx, tx.last_insert_rowid(), a, 1, now)?;
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
        })?;
        tracing::info!(namespace = %a.namespace, agent = %a.name, outcome = ?outcome, "agent applied");
        Ok(outcome)
    }

    /// The agent with its latest revision, or `None`.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = clrk_store::Store::open(&dir.path().join("clrk.db")).unwrap();
    /// assert_eq!(store.get_agent("default", "echo").unwrap(), None);
    /// ```
    pub fn get_agent(&self, namespace: &str, name: &str) -> Result<Option<Agent>, StoreError> {
        let sql = format!("{} WHERE a.namespace = ?1 AND a.name = ?2", select_agents());
        let agent = self
            .conn()
            .query_row(&sql, params![namespace, name], agent_from_row)
            .optional()?;
        Ok(agent)
    }

    /// All agents, or those of one namespace, ordered by namespace then name.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = clrk_store::Store::open(&dir.path().join("clrk.db")).unwrap();
    /// assert!(store.list_agents(Some("default")).unwrap().is_empty());
    /// ```
    pub fn list_agents(&self, namespace: Option<&str>) -> Result<Vec<Agent>, StoreError> {
        let sql = format!(
            "{} WHERE ?1 IS NULL OR a.namespace = ?1 ORDER BY a.namespace, a.name",
            select_agents()
        );
        let conn = self.conn();
        let mut stmt = conn.prepare(&sql)?;
        let rows = stmt.query_map([namespace], agent_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Deletes the agent with its revisions, executions and logs. `false` if it did not exist.
    /// A later apply of the same name starts again at revision `00001`.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = clrk_store::Store::open(&dir.path().join("clrk.db")).unwrap();
    /// assert!(!store.delete_agent("default", "echo").unwrap());
    /// ```
    pub fn delete_agent(&self, namespace: &str, name: &str) -> Result<bool, StoreError> {
        let deleted = self.write(|tx| {
            Ok(tx.execute(
                "DELETE FROM agents WHERE namespace = ?1 AND name = ?2",
                params![namespace, name],
            )?)
        })? > 0;
        if deleted {
            tracing::info!(namespace, agent = name, "agent deleted");
        }
        Ok(deleted)
    }
}
