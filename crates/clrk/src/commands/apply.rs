//! `clrk apply`: parse locally, then create or update through the control API.

use clrk_wire::{ApplyEvent, ApplyRequest, ApplyResult};

use crate::cli::ApplyArgs;
use crate::client;
use crate::commands::Session;
use crate::error::CliError;
use crate::manifests;
use crate::output;
use crate::pull_progress::PullDisplay;

/// Asks the server to stream the apply: pull progress, then the results.
const NDJSON: &str = "application/x-ndjson";

/// Parses every file first (nothing is applied if one is invalid), then applies them all,
/// showing image pulls as the server reports them.
pub async fn run(args: ApplyArgs, session: &Session) -> anyhow::Result<()> {
    let documents = manifests::load(&args.input.files, args.input.recursive)?;
    let api = session.api()?;
    let request = ApplyRequest {
        documents: documents
            .iter()
            .map(crate::manifests::SourcedDocument::to_apply)
            .collect(),
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
    for (i, result) in results.iter().enumerate() {
        // The server may repeat warnings the local parse already printed.
        let printed = documents
            .get(i)
            .map(|d| d.document.warnings.as_slice())
            .unwrap_or_default();
        for warning in result.warnings.iter().filter(|w| !printed.contains(w)) {
            eprintln!("warning: {warning}");
        }
        output::print(&format!("{}\n", outcome_line(result)))?;
    }
    Ok(())
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
