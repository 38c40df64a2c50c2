//! Revisions: immutable snapshots of what shapes an agent's sandbox (SPECIFICATION §3 Revisions).

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use rusqlite::params;
use serde_json::Value;

use crate::agent::agent_id;
use crate::{Store, StoreError, enum_column, json, time};

/// Whether a revision can take executions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevisionState {
    /// Not usable yet (e.g. its image is still being pulled).
    Pending,
    /// Usable; new revisions start here.
    Ready,
    /// Never usable; `reason` says why.
    Failed,
}

impl RevisionState {
    fn as_str(self) -> &'static str {
        match self {
            RevisionState::Pending => "Pending",
            RevisionState::Ready => "Ready",
            RevisionState::Failed => "Failed",
        }
    }
}

impl fmt::Display for RevisionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RevisionState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "Pending" => Ok(RevisionState::Pending),
            "Ready" => Ok(RevisionState::Ready),
            "Failed" => Ok(RevisionState::Failed),
            other => Err(format!(
                "unknown revision state {other:?}; expected Pending, Ready or Failed"
            )),
        }
    }
}

/// One immutable revision of an agent.
#[derive(Debug, Clone, PartialEq)]
pub struct Revision {
    /// `<agent>-00001`: the agent name and a 5-digit, zero-padded number.
    pub name: String,
    /// Namespace of the agent.
    pub namespace: String,
    /// Agent name.
    pub agent: String,
    /// 1 for the first revision of the agent, then +1 each.
    pub number: u32,
    /// Everything that shapes the sandbox, as given to `apply_agent`.
    pub shape: Value,
    /// Image reference as written in the manifest.
    pub image_ref: String,
    /// Digest the reference resolved to.
    pub image_digest: String,
    /// Whether it can take executions.
    pub state: RevisionState,
    /// Why it is `Failed` (or any note set with the state).
    pub reason: Option<String>,
    /// When it was made.
    pub created_at: DateTime<Utc>,
}

/// The revision name for `agent`'s revision `number`.
pub(crate) fn revision_name(agent: &str, number: u32) -> String {
    format!("{agent}-{number:05}")
}

/// Columns read by [`from_row`]; `r` is revisions, `a` is agents.
pub(crate) const COLUMNS: &str = "r.name, a.namespace, a.name, r.number, r.shape, r.image_ref, \
     r.image_digest, r.state, r.reason, r.created_at";

/// Maps a row selected with [`COLUMNS`] starting at column `at`.
pub(crate) fn from_row(row: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<Revision> {
    Ok(Revision {
        name: row.get(at)?,
        namespace: row.get(at + 1)?,
        agent: row.get(at + 2)?,
        number: row.get(at + 3)?,
        shape: json::column(row, at + 4)?,
        image_ref: row.get(at + 5)?,
        image_digest: row.get(at + 6)?,
        state: enum_column::column(row, at + 7)?,
        reason: row.get(at + 8)?,
        created_at: time::column(row, at + 9)?,
    })
}

impl Store {
    /// All revisions of an agent, oldest first.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = clrk_store::Store::open(&dir.path().join("clrk.db")).unwrap();
    /// assert!(store.revisions("default", "missing").is_err());
    /// ```
    pub fn revisions(&self, namespace: &str, name: &str) -> Result<Vec<Revision>, StoreError> {
        let conn = self.conn();
        let id = agent_id(&conn, namespace, name)?;
        let sql = format!(
            "SELECT {COLUMNS} FROM revisions r JOIN agents a ON a.id = r.agent_id \
             WHERE r.agent_id = ?1 ORDER BY r.number"
        );
        let mut stmt = conn.prepare(&sql)?;
        let rows = stmt.query_map([id], |row| from_row(row, 0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Every stored revision's image digest with the revision's namespace and name, by
    /// digest: what `clrk images list` shows as users and `clrk images prune` keeps.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = clrk_store::Store::open(&dir.path().join("clrk.db")).unwrap();
    /// assert!(store.revision_images().unwrap().is_empty());
    /// ```
    pub fn revision_images(&self) -> Result<Vec<(String, String, String)>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT image_digest, namespace, name FROM revisions ORDER BY image_digest, namespace, name",
        )?;
        let rows = stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Sets a revision's state, e.g. `Failed` with the image-pull error as `reason`.
    ///
    /// Revision names are unique per namespace, hence `namespace`.
    pub fn set_revision_state(
        &self,
        namespace: &str,
        revision: &str,
        state: RevisionState,
        reason: Option<&str>,
    ) -> Result<(), StoreError> {
        let changed = self.write(|tx| {
            Ok(tx.execute(
                "UPDATE revisions SET state = ?3, reason = ?4 WHERE namespace = ?1 AND name = ?2",
                params![namespace, revision, state.as_str(), reason],
            )?)
        })?;
        if changed == 0 {
            return Err(StoreError::RevisionNotFound {
                namespace: namespace.to_owned(),
                revision: revision.to_owned(),
            });
        }
        tracing::info!(namespace, revision, state = %state, reason, "revision state set");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revision_names_are_five_digit_zero_padded() {
        assert_eq!(revision_name("echo", 1), "echo-00001");
        assert_eq!(revision_name("echo", 12345), "echo-12345");
    }

    #[test]
    fn state_text_round_trips() {
        for s in [
            RevisionState::Pending,
            RevisionState::Ready,
            RevisionState::Failed,
        ] {
            assert_eq!(s.to_string().parse::<RevisionState>(), Ok(s));
        }
        assert!("ready".parse::<RevisionState>().is_err());
    }
}
