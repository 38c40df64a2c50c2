//! `clrk agents ...`: one module per subcommand.

pub mod delete;
pub mod egress;
pub mod get;
pub mod invocations;
pub mod list;
pub mod logs;
pub mod traces;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::cli::{NamespaceArg, ObjectFormat};
use crate::commands::Session;
use crate::output::{self, Table};
use clrk_wire::List;

/// One of an agent's recent-items lists (`invocations`, `egress`): what to fetch and how to
/// show it.
pub(crate) struct RecentList<'a> {
    pub namespace: &'a NamespaceArg,
    pub name: &'a str,
    /// The path segment after the agent: `/v1/agents/NS/NAME/<what>`.
    pub what: &'a str,
    pub limit: u32,
    pub output: Option<ObjectFormat>,
    /// Printed to stderr, after `agent NS/NAME `, when there is nothing.
    pub empty: &'a str,
}

impl RecentList<'_> {
    /// Fetches the list and prints it: JSON or YAML as the server sent it, else the table
    /// `table` makes of the items as of now.
    pub(crate) async fn print<T: DeserializeOwned>(
        self,
        session: &Session,
        table: impl FnOnce(&[T], DateTime<Utc>) -> Table,
    ) -> anyhow::Result<()> {
        let answer = self.fetch(session).await?;
        self.show(answer, table)
    }

    /// The server's answer.
    pub(crate) async fn fetch(&self, session: &Session) -> anyhow::Result<Value> {
        let path = [
            "v1",
            "agents",
            self.namespace.namespace.as_str(),
            self.name,
            self.what,
        ];
        let query = [("limit", self.limit.to_string())];
        session.api()?.get(&path, &query).await
    }

    /// Prints an answer [`RecentList::fetch`] got.
    pub(crate) fn show<T: DeserializeOwned>(
        self,
        answer: Value,
        table: impl FnOnce(&[T], DateTime<Utc>) -> Table,
    ) -> anyhow::Result<()> {
        match self.output {
            Some(ObjectFormat::Json) => output::print_json(&answer),
            Some(ObjectFormat::Yaml) => output::print_yaml(&answer),
            None => {
                let list: List<T> = serde_json::from_value(answer)?;
                if list.items.is_empty() {
                    eprintln!(
                        "agent {}/{} {}",
                        self.namespace.namespace, self.name, self.empty
                    );
                    return Ok(());
                }
                Ok(output::print(&table(&list.items, Utc::now()).render())?)
            }
        }
    }
}

/// Whether agent `namespace/name` exists now; `false` on the server's 404.
pub(crate) async fn agent_exists(
    session: &Session,
    namespace: &str,
    name: &str,
) -> anyhow::Result<bool> {
    let path = ["v1", "agents", namespace, name];
    match session.api()?.get::<Value>(&path, &[]).await {
        Ok(_) => Ok(true),
        Err(error)
            if error
                .downcast_ref::<crate::error::CliError>()
                .is_some_and(|e| matches!(e, crate::error::CliError::Api { status: 404, .. })) =>
        {
            Ok(false)
        }
        Err(error) => Err(error),
    }
}

/// The text of a field of an agent's spec, e.g. `/template/spec/image`; `-` when unset.
///
/// ```
/// let spec = serde_json::json!({"timeout": "100s", "maxConcurrent": 2});
/// assert_eq!(clrk::commands::agents::spec_field(&spec, "/timeout"), "100s");
/// assert_eq!(clrk::commands::agents::spec_field(&spec, "/maxConcurrent"), "2");
/// assert_eq!(clrk::commands::agents::spec_field(&spec, "/schedule"), "-");
/// ```
pub fn spec_field(spec: &Value, pointer: &str) -> String {
    match spec.pointer(pointer) {
        None | Some(Value::Null) => "-".to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}
