//! `clrk diff -f FILE`: what applying the files would change, and whether it makes a new
//! revision, with nothing changed.

use clrk_api::{Kind, Resource};
use clrk_wire::{Agent, ApplyResult, EgressObject};
use serde_json::Value;

use crate::cli::DiffArgs;
use crate::client::ApiClient;
use crate::commands::Session;
use crate::commands::agents::get::manifest;
use crate::commands::apply;
use crate::error::{CliError, is_not_found};
use crate::line_diff;
use crate::manifests;
use crate::output;

/// Shown instead of a value the server never returns.
const REDACTED: &str = "<redacted>";

/// Prints, per object, the diff of the manifest applied and the file's, then what applying
/// would do (the server's dry run); fails with [`CliError::Differs`] when anything would
/// change.
pub async fn run(args: DiffArgs, session: &Session) -> anyhow::Result<()> {
    let documents = manifests::load(&args.input.files, args.input.recursive)?;
    let api = session.api()?;
    let results = apply::send(&api, &documents, true).await?;
    let mut changing = 0;
    for (document, result) in documents.iter().zip(&results) {
        let current = applied(&api, &document.document.resource).await?;
        let wanted = comparable(document.document.resource.to_stored());
        let label = format!("{}/{}", result.key.namespace, result.key.name);
        let mut text = String::new();
        match current {
            Current::Unknown => {}
            Current::Absent => {
                text.push_str(&format!(
                    "--- {label} (not applied)\n+++ {label} ({})\n",
                    document.source
                ));
                text.push_str(&line_diff::diff("", &yaml(&wanted)?).unwrap_or_default());
            }
            Current::Applied(current) => {
                if let Some(diff) = line_diff::diff(&yaml(&current)?, &yaml(&wanted)?) {
                    text.push_str(&format!(
                        "--- {label} (applied)\n+++ {label} ({})\n",
                        document.source
                    ));
                    text.push_str(&diff);
                }
            }
        }
        if result.outcome != "unchanged" {
            changing += 1;
        }
        text.push_str(&format!("{}: {}\n", document.display_name(), would(result)));
        output::print(&text)?;
    }
    if changing > 0 {
        return Err(CliError::Differs { objects: changing }.into());
    }
    Ok(())
}

/// What the server's dry run says applying would do, in words.
///
/// ```
/// let result: clrk_wire::ApplyResult = serde_json::from_str(
///     r#"{"kind":"TaskAgent","namespace":"default","name":"wc","outcome":"configured","revision":"wc-00002"}"#,
/// ).unwrap();
/// assert_eq!(
///     clrk::commands::diff::would(&result),
///     "would be configured, making revision wc-00002 (its sandboxes are replaced)"
/// );
/// ```
pub fn would(result: &ApplyResult) -> String {
    match (result.outcome.as_str(), &result.revision) {
        ("unchanged", _) => "unchanged".to_string(),
        ("created", Some(revision)) => format!("would be created, with revision {revision}"),
        ("configured", Some(revision)) => {
            format!("would be configured, making revision {revision} (its sandboxes are replaced)")
        }
        ("configured", None) => "would be configured, no new revision".to_string(),
        (outcome, _) => format!("would be {outcome}"),
    }
}

/// What the server holds of an object.
enum Current {
    /// Its manifest, comparable with a file's.
    Applied(Value),
    /// Nothing of that kind and name.
    Absent,
    /// The server does not show this kind's manifest (worker pools).
    Unknown,
}

/// The manifest the server holds for `resource`'s kind and name.
async fn applied(api: &ApiClient, resource: &Resource) -> anyhow::Result<Current> {
    let meta = resource.metadata();
    let kind = resource.kind();
    let found: Option<Value> = match kind {
        Kind::TaskAgent | Kind::DaemonAgent => {
            let path = ["v1", "agents", meta.namespace.as_str(), meta.name.as_str()];
            missing_is_none(api.get::<Agent>(&path, &[]).await)?
                .filter(|agent| agent.kind == kind.as_str())
                .map(|agent| manifest(&agent))
        }
        Kind::WorkerPool => return Ok(Current::Unknown),
        kind => {
            let path = [
                "v1",
                "egress",
                meta.namespace.as_str(),
                kind.as_str(),
                meta.name.as_str(),
            ];
            missing_is_none(api.get::<EgressObject>(&path, &[]).await)?.map(|o| o.manifest)
        }
    };
    Ok(match found {
        Some(value) => Current::Applied(comparable(value)),
        None => Current::Absent,
    })
}

fn missing_is_none<T>(answer: anyhow::Result<T>) -> anyhow::Result<Option<T>> {
    match answer {
        Ok(value) => Ok(Some(value)),
        Err(error) if is_not_found(&error) => Ok(None),
        Err(error) => Err(error),
    }
}

/// A manifest as both sides are compared: no `status`, no empty label or annotation maps,
/// and the values the server never returns redacted on both sides.
fn comparable(mut manifest: Value) -> Value {
    if let Value::Object(fields) = &mut manifest {
        fields.remove("status");
    }
    if let Some(Value::Object(metadata)) = manifest.get_mut("metadata") {
        metadata.retain(|_, value| !matches!(value, Value::Object(m) if m.is_empty()));
    }
    if let Some(Value::Object(headers)) = manifest.pointer_mut("/spec/otlp/headers") {
        for value in headers.values_mut() {
            *value = Value::String(REDACTED.to_string());
        }
    }
    manifest
}

fn yaml(value: &Value) -> anyhow::Result<String> {
    Ok(serde_saphyr::to_string(value)?)
}
