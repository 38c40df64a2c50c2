//! `clrk get KIND [NAME]`: the objects of any kind, or one, as `kubectl get` shows them.
//!
//! Each kind's table is its own list command's (`agents list`, `egress list`, `pools list`,
//! ...); this module only picks the list, narrows it to a kind and a name, and prints it.

use anyhow::bail;
use chrono::Utc;
use clrk_api::Kind;
use serde::Serialize;
use serde_json::{Value, json};

use crate::cli::{GetKindArgs, ListFormat};
use crate::commands::Session;
use crate::commands::agents::{get::manifest, list::agents_table};
use crate::commands::{egress, images, pools, secret, workers};
use crate::output::{self, Table};
use clrk_wire::{Agent, EgressObject, List, LocalImage, Pool, Secret, WorkerView};

/// What `clrk get` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Agents of one kind, or of both (`agents`).
    Agents(Option<Kind>),
    /// Egress objects of one kind.
    Egress(Kind),
    /// Worker pools.
    Pools,
    /// Secrets: names and keys only.
    Secrets,
    /// The server's images.
    Images,
    /// The registered workers.
    Workers,
}

impl Target {
    /// The lowercase singular name used in messages.
    fn label(self) -> &'static str {
        match self {
            Target::Agents(Some(kind)) | Target::Egress(kind) => kind.lower(),
            Target::Agents(None) => "agent",
            Target::Pools => "workerpool",
            Target::Secrets => "secret",
            Target::Images => "image",
            Target::Workers => "worker",
        }
    }
}

/// Reads KIND in any case, singular or plural: a manifest kind (`taskagent`, `EgressGateway`,
/// `credentialinjectionpolicies`), or `agents`, `pools`, `secrets`, `images`, `workers`.
///
/// ```
/// use clrk::commands::get::{Target, parse_target};
/// use clrk_api::Kind;
/// assert_eq!(parse_target("TaskAgents").unwrap(), Target::Agents(Some(Kind::TaskAgent)));
/// assert_eq!(parse_target("agent").unwrap(), Target::Agents(None));
/// assert_eq!(
///     parse_target("credentialinjectionpolicies").unwrap(),
///     Target::Egress(Kind::CredentialInjectionPolicy)
/// );
/// assert!(parse_target("robots").is_err());
/// ```
pub fn parse_target(text: &str) -> anyhow::Result<Target> {
    let lower = text.to_ascii_lowercase();
    let mut spellings = vec![lower.clone()];
    if let Some(stem) = lower.strip_suffix("ies") {
        spellings.push(format!("{stem}y"));
    }
    if let Some(stem) = lower.strip_suffix('s') {
        spellings.push(stem.to_string());
    }
    for spelling in &spellings {
        let target = match spelling.as_str() {
            "agent" => Target::Agents(None),
            "pool" => Target::Pools,
            "secret" => Target::Secrets,
            "image" => Target::Images,
            "worker" => Target::Workers,
            other => match other.parse::<Kind>() {
                Ok(kind @ (Kind::TaskAgent | Kind::DaemonAgent)) => Target::Agents(Some(kind)),
                Ok(Kind::WorkerPool) => Target::Pools,
                Ok(kind) => Target::Egress(kind),
                Err(_) => continue,
            },
        };
        return Ok(target);
    }
    let kinds: Vec<&str> = Kind::ALL.iter().map(Kind::lower).collect();
    bail!(
        "clrk get does not know {text:?}: use a kind ({}) or agents, pools, secrets, images, \
         workers",
        kinds.join(", ")
    )
}

/// Prints the objects KIND names (one, with NAME) as a table, JSON or YAML.
pub async fn run(args: GetKindArgs, session: &Session) -> anyhow::Result<()> {
    // `clrk get taskagent/word-count`, as kubectl takes it.
    let (kind, name) = match (args.kind.split_once('/'), &args.name) {
        (Some((kind, name)), None) if !name.is_empty() => (kind, Some(name.to_string())),
        (Some(_), _) => bail!("give the object as KIND/NAME or as KIND NAME, not both"),
        (None, name) => (args.kind.as_str(), name.clone()),
    };
    let target = parse_target(kind)?;
    let scope = &args.scope;
    let api = session.api()?;
    let shown = Shown {
        target,
        name: name.as_deref(),
        namespace: (!scope.all_namespaces).then_some(scope.namespace.as_str()),
        format: args.output,
    };
    let namespaced = scope.query();
    match target {
        Target::Agents(kind) => {
            let agents: List<Agent> = api.get(&["v1", "agents"], &namespaced).await?;
            let agents = agents
                .items
                .into_iter()
                .filter(|a| kind.is_none_or(|k| a.kind == k.as_str()))
                .collect();
            shown.print(
                agents,
                |a| &a.key.name,
                manifest,
                |items, wide| agents_table(items, scope.all_namespaces, wide, Utc::now()),
            )
        }
        Target::Egress(kind) => {
            let objects: List<EgressObject> = api.get(&["v1", "egress"], &namespaced).await?;
            let objects = objects
                .items
                .into_iter()
                .filter(|o| o.kind == kind.as_str())
                .collect();
            shown.print(
                objects,
                |o| &o.key.name,
                egress::manifest,
                |items, wide| egress::egress_table(items, scope.all_namespaces, wide, Utc::now()),
            )
        }
        Target::Secrets => {
            let secrets: List<Secret> = api.get(&["v1", "secrets"], &namespaced).await?;
            shown.print(
                secrets.items,
                |s| &s.key.name,
                as_json,
                |items, _| secret::secrets_table(items, Utc::now()),
            )
        }
        Target::Pools => {
            let pools: List<Pool> = api.get(&["v1", "pools"], &[]).await?;
            shown.print(
                pools.items,
                |p| &p.name,
                as_json,
                |items, _| pools::pools_table(items),
            )
        }
        Target::Images => {
            let images: List<LocalImage> = api.get(&["v1", "images"], &[]).await?;
            shown.print(
                images.items,
                |i| &i.image.reference,
                as_json,
                images::images_table,
            )
        }
        Target::Workers => {
            let workers: List<WorkerView> = api.get(&["v1", "workers"], &[]).await?;
            shown.print(
                workers.items,
                |w| &w.name,
                as_json,
                |items, _| workers::workers_table(items, Utc::now()),
            )
        }
    }
}

/// What to print of the objects fetched.
struct Shown<'a> {
    target: Target,
    name: Option<&'a str>,
    /// `None` with `-A`.
    namespace: Option<&'a str>,
    format: Option<ListFormat>,
}

impl Shown<'_> {
    /// Narrows `items` to the NAME asked for (an error when none has it), then prints them:
    /// a table, or JSON or YAML of `object` of each, one object alone when NAME was given,
    /// else a `kind: List` of them, which `clrk apply` takes back for agents and egress
    /// objects.
    fn print<T>(
        &self,
        mut items: Vec<T>,
        name_of: impl Fn(&T) -> &String,
        object: impl Fn(&T) -> Value,
        table: impl FnOnce(&[T], bool) -> Table,
    ) -> anyhow::Result<()> {
        let label = self.target.label();
        if let Some(name) = self.name {
            items.retain(|item| name_of(item) == name);
            if items.is_empty() {
                match self.namespace {
                    Some(ns) if self.namespaced() => {
                        bail!("{label} {name:?} not found in namespace {ns}")
                    }
                    _ => bail!("{label} {name:?} not found"),
                }
            }
        }
        let value = match (self.name, &items[..]) {
            (Some(_), [one]) => object(one),
            _ => json!({
                "apiVersion": "v1",
                "kind": "List",
                "items": items.iter().map(&object).collect::<Vec<_>>(),
            }),
        };
        match self.format {
            Some(ListFormat::Json) => output::print_json(&value),
            Some(ListFormat::Yaml) => output::print_yaml(&value),
            format => {
                if items.is_empty() {
                    match self.namespace {
                        Some(ns) if self.namespaced() => eprintln!("no {label}s in namespace {ns}"),
                        _ => eprintln!("no {label}s"),
                    }
                    return Ok(());
                }
                let wide = format == Some(ListFormat::Wide);
                Ok(output::print(&table(&items, wide).render())?)
            }
        }
    }

    /// Whether objects of the target live in a namespace.
    fn namespaced(&self) -> bool {
        matches!(
            self.target,
            Target::Agents(_) | Target::Egress(_) | Target::Secrets
        )
    }
}

/// The object as the server sent it.
fn as_json<T: Serialize>(item: &T) -> Value {
    serde_json::to_value(item).unwrap_or(Value::Null)
}
