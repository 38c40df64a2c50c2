//! Agents and revisions: apply, read, delete, revision state.

use super::{Store, dispatch};
use crate::{Agent, AgentApply, ApplyOutcome, Revision, RevisionState, StoreError};

impl Store {
    /// Creates or updates an agent in one transaction. A new revision (state `Ready`) is made
    /// when there is none yet or when `shape` or `image_digest` differ from the latest
    /// revision's. An identical apply returns `Unchanged` and writes nothing.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = clrk_store::Store::open(&dir.path().join("clrk.db")).unwrap();
    /// use clrk_store::{AgentApply, ApplyOutcome};
    /// let apply = AgentApply {
    ///     namespace: "default".into(), name: "echo".into(), kind: "TaskAgent".into(),
    ///     spec: serde_json::json!({"timeout": "100s"}), shape: serde_json::json!({"image": "echo"}),
    ///     image_ref: "echo:latest".into(), image_digest: "sha256:ab".into(),
    /// };
    /// assert_eq!(store.apply_agent(&apply).await.unwrap(),
    ///            ApplyOutcome::Created { revision: Some("echo-00001".into()) });
    /// assert_eq!(store.apply_agent(&apply).await.unwrap(), ApplyOutcome::Unchanged);
    /// # }
    /// ```
    pub async fn apply_agent(&self, a: &AgentApply) -> Result<ApplyOutcome, StoreError> {
        let outcome = dispatch!(self.apply_agent(a))?;
        tracing::info!(namespace = %a.namespace, agent = %a.name, outcome = ?outcome, "agent applied");
        Ok(outcome)
    }

    /// The agent with its latest revision, or `None`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = clrk_store::Store::open(&dir.path().join("clrk.db")).unwrap();
    /// assert_eq!(store.get_agent("default", "echo").await.unwrap(), None);
    /// # }
    /// ```
    pub async fn get_agent(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Agent>, StoreError> {
        dispatch!(self.get_agent(namespace, name))
    }

    /// All agents, or those of one namespace, ordered by namespace then name.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = clrk_store::Store::open(&dir.path().join("clrk.db")).unwrap();
    /// assert!(store.list_agents(Some("default")).await.unwrap().is_empty());
    /// # }
    /// ```
    pub async fn list_agents(&self, namespace: Option<&str>) -> Result<Vec<Agent>, StoreError> {
        dispatch!(self.list_agents(namespace))
    }

    /// Deletes the agent with its revisions. `false` if it did not exist. Its executions and
    /// logs are kept in its name's history, under the name's caps; a later apply of the name
    /// makes another agent (another uid) that starts again at revision `00001`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = clrk_store::Store::open(&dir.path().join("clrk.db")).unwrap();
    /// assert!(!store.delete_agent("default", "echo").await.unwrap());
    /// # }
    /// ```
    pub async fn delete_agent(&self, namespace: &str, name: &str) -> Result<bool, StoreError> {
        let deleted = dispatch!(self.delete_agent(namespace, name))?;
        if deleted {
            tracing::info!(namespace, agent = name, "agent deleted");
        }
        Ok(deleted)
    }

    /// All revisions of an agent, oldest first.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = clrk_store::Store::open(&dir.path().join("clrk.db")).unwrap();
    /// assert!(store.revisions("default", "missing").await.is_err());
    /// # }
    /// ```
    pub async fn revisions(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Vec<Revision>, StoreError> {
        dispatch!(self.revisions(namespace, name))
    }

    /// Every stored revision's image digest with the revision's namespace and name, by
    /// digest: what `clrk images list` shows as users and `clrk images prune` keeps.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = clrk_store::Store::open(&dir.path().join("clrk.db")).unwrap();
    /// assert!(store.revision_images().await.unwrap().is_empty());
    /// # }
    /// ```
    pub async fn revision_images(&self) -> Result<Vec<(String, String, String)>, StoreError> {
        dispatch!(self.revision_images())
    }

    /// Sets a revision's state, e.g. `Failed` with the image-pull error as `reason`.
    ///
    /// Revision names are unique per namespace, hence `namespace`.
    pub async fn set_revision_state(
        &self,
        namespace: &str,
        revision: &str,
        state: RevisionState,
        reason: Option<&str>,
    ) -> Result<(), StoreError> {
        if !dispatch!(self.set_revision_state(namespace, revision, state, reason))? {
            return Err(StoreError::RevisionNotFound {
                namespace: namespace.to_owned(),
                revision: revision.to_owned(),
            });
        }
        tracing::info!(namespace, revision, state = %state, reason, "revision state set");
        Ok(())
    }
}
