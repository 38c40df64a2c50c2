//! `clrk apply`: parse locally, then create or update through the control API.

use clrk_wire::{ApplyEvent, ApplyRequest, ApplyResult};

use crate::cli::{ApplyArgs, DryRun};
use crate::client::{self, ApiClient};
use crate::commands::Session;
use crate::error::CliError;
use crate::manifests::{self, SourcedDocument};
use crate::output;
use crate::pull_progress::PullDisplay;

/// Asks the server to stream the apply: pull progress, then the results.
const NDJSON: &str = "application/x-ndjson";

/// Parses every file first (nothing is applied if one is invalid), then applies them all,
/// showing image pulls as the server reports them. `--dry-run` changes nothing.
pub async fn run(args: ApplyArgs, session: &Session) -> anyhow::Result<()> {
    let documents = manifests::load(&args.input.files, args.input.recursive)?;
    if args.dry_run == Some(DryRun::Client) {
        for document in &documents {
            output::print(&format!(
                "{} checked (client dry run)\n",
                document.display_name()
            ))?;
        }
        return Ok(());
    }
    let dry_run = args.dry_run == Some(DryRun::Server);
    let results = send(&session.api()?, &documents, dry_run).await?;
    for (i, result) in results.iter().enumerate() {
        // The server may repeat warnings the local parse already printed.
        let printed = documents
            .get(i)
            .map(|d| d.document.warnings.as_slice())
            .unwrap_or_default();
        for warning in result.warnings.iter().filter(|w| !printed.contains(w)) {
            eprintln!("warning: {warning}");
        }
        let suffix = if dry_run { " (server dry run)" } else { "" };
        output::print(&format!("{}{suffix}\n", outcome_line(result)))?;
    }
    Ok(())
}

/// Sends the documents to `POST /v1/apply` (a dry run when `dry_run`), showing image pulls
/// as the server reports them; one result per document, in order.
pub(crate) async fn send(
    api: &ApiClient,
    documents: &[SourcedDocument],
    dry_run: bool,
) -> anyhow::Result<Vec<ApplyResult>> {
    let request = ApplyRequest {
        documents: documents.iter().map(SourcedDocument::to_apply).collect(),
        dry_run,
    };
    let response = api.post_for(&["v1", "apply"], &request, NDJSON).await?;
    let mut pulls = PullDisplay::new();
    let mut outcome = None;
    client::read_json_lines(response, |event: ApplyEvent| {
        match event {
            ApplyEvent::Progress { progress } => pulls.update(&progress),
            ApplyEvent::Done { results } => outcome = Some(Ok(results)),
            ApplyEvent::Failed { error, status } => {
                outcome = Some(Err(CliError::Api {
                    status,
                    message: error,
                }));
            }
        }
        Ok(())
    })
    .await?;
    for line in pulls.finish() {
        eprintln!("{line}");
    }
    let results = outcome.ok_or_else(|| {
        anyhow::anyhow!("the clrk server ended the apply without saying how it went: check its log, then apply again")
    })??;
    Ok(results)
}

/// The line `apply` prints for one result, e.g. `taskagent/word-count configured (revision word-count-00002)`.
///
/// ```
/// let result: clrk_wire::ApplyResult = serde_json::from_str(
///     r#"{"kind":"TaskAgent","namespace":"default","name":"word-count","outcome":"created","revision":"word-count-00001"}"#,
/// ).unwrap();
/// assert_eq!(clrk::commands::apply::outcome_line(&result), "taskagent/word-count created");
/// ```
pub fn outcome_line(result: &ApplyResult) -> String {
    let object = format!("{}/{}", result.kind.to_lowercase(), result.key.name);
    match (result.outcome.as_str(), &result.revision) {
        ("configured", Some(revision)) => format!("{object} configured (revision {revision})"),
        (outcome, _) => format!("{object} {outcome}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(outcome: &str, revision: Option<&str>) -> ApplyResult {
        ApplyResult {
            kind: "TaskAgent".into(),
            key: clrk_api::ObjectKey::new("default", "word-count"),
            outcome: outcome.into(),
            revision: revision.map(Into::into),
            warnings: Vec::new(),
        }
    }

    #[test]
    fn lines_match_the_documented_forms() {
        assert_eq!(
            outcome_line(&result("created", Some("word-count-00001"))),
            "taskagent/word-count created"
        );
        assert_eq!(
            outcome_line(&result("configured", Some("word-count-00002"))),
            "taskagent/word-count configured (revision word-count-00002)"
        );
        assert_eq!(
            outcome_line(&result("configured", None)),
            "taskagent/word-count configured"
        );
        assert_eq!(
            outcome_line(&result("unchanged", None)),
            "taskagent/word-count unchanged"
        );
    }
}
