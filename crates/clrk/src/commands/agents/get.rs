//! `clrk agents get NAME`.

use std::fmt::Write;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use crate::cli::{GetArgs, ObjectFormat};
use crate::commands::Session;
use crate::commands::agents::list::last_run;
use crate::commands::agents::spec_field;
use crate::output::{self, Table, age_of, ago, non_empty, or_dash};
use clrk_wire::{Agent, AgentStatus, DaemonRun};

/// Prints one agent as a summary for people, or as a manifest in JSON or YAML that `clrk
/// apply` takes back.
pub async fn run(args: GetArgs, session: &Session) -> anyhow::Result<()> {
    let path = [
        "v1",
        "agents",
        args.namespace.namespace.as_str(),
        args.name.as_str(),
    ];
    let agent: Agent = session.api()?.get(&path, &[]).await?;
    match args.output {
        Some(ObjectFormat::Json) => output::print_json(&manifest(&agent)),
        Some(ObjectFormat::Yaml) => output::print_yaml(&manifest(&agent)),
        None => Ok(output::print(&describe(&agent, Utc::now()))?),
    }
}

/// The agent as a manifest `clrk apply -f` takes back, as `kubectl get -o yaml` prints one:
/// apiVersion, kind, metadata and spec as applied (defaults filled in), then `status`, which
/// apply ignores: the live state, `revisions`, `tokenUsage`, `createdAt` and `updatedAt`.
///
/// ```
/// let agent: clrk_wire::Agent = serde_json::from_value(serde_json::json!({
///     "kind": "TaskAgent", "namespace": "default", "name": "wc",
///     "metadata": {"name": "wc", "namespace": "default", "labels": {}},
///     "spec": {"timeout": "1m"}, "status": {"warm": 1}, "revisions": []})).unwrap();
/// let manifest = clrk::commands::agents::get::manifest(&agent);
/// assert_eq!(manifest["apiVersion"], "clrk.apoxy.dev/v1alpha1");
/// assert_eq!(manifest["metadata"], serde_json::json!({"name": "wc", "namespace": "default"}));
/// assert_eq!(manifest["spec"]["timeout"], "1m");
/// assert_eq!(manifest["status"]["warm"], 1);
/// ```
pub fn manifest(agent: &Agent) -> Value {
    let mut metadata = match &agent.metadata {
        Value::Object(fields) => fields.clone(),
        _ => Map::new(),
    };
    metadata.insert("name".into(), json!(agent.key.name));
    metadata.insert("namespace".into(), json!(agent.key.namespace));
    // Empty label and annotation maps say nothing.
    metadata.retain(|_, value| !matches!(value, Value::Object(m) if m.is_empty()));
    let mut status = match serde_json::to_value(&agent.status) {
        Ok(Value::Object(fields)) => fields,
        _ => Map::new(),
    };
    status.insert("revisions".into(), json!(agent.revisions));
    if let Some(usage) = &agent.token_usage {
        status.insert("tokenUsage".into(), json!(usage));
    }
    for (field, time) in [
        ("createdAt", &agent.created_at),
        ("updatedAt", &agent.updated_at),
    ] {
        if !time.is_empty() {
            status.insert(field.into(), json!(time));
        }
    }
    json!({
        "apiVersion": clrk_api::API_VERSION,
        "kind": agent.kind,
        "metadata": metadata,
        "spec": agent.spec,
        "status": status,
    })
}

/// The human summary of an agent as of `now`.
pub fn describe(agent: &Agent, now: DateTime<Utc>) -> String {
    let status = &agent.status;
    let mut fields = vec![
        ("Kind", agent.kind.clone()),
        ("Name", agent.key.to_string()),
        ("Image", spec_field(&agent.spec, "/template/spec/image")),
    ];
    if agent.spec.get("timeout").is_some() {
        fields.push(("Timeout", spec_field(&agent.spec, "/timeout")));
    }
    if agent.spec.get("schedule").is_some() {
        fields.push(("Schedule", spec_field(&agent.spec, "/schedule")));
        let schedule = status.schedule.clone().unwrap_or_default();
        fields.push(("Last schedule", or_dash(schedule.last_schedule_time)));
        fields.push(("Next schedule", or_dash(schedule.next_schedule_time)));
    }
    if let Some(daemon) = &status.daemon {
        let run = daemon.run.clone().unwrap_or_default();
        fields.push(("Phase", daemon_phase(&daemon.phase, &run)));
        fields.push(("Restarts", daemon.restart_count.to_string()));
        fields.push(("Uptime", age_of(run.up_since.as_deref(), now)));
        if let Some(reason) = run.reason {
            fields.push(("Reason", reason));
        }
    }
    fields.extend([
        ("Latest revision", or_dash(status.latest_revision.as_ref())),
        ("Ready revision", or_dash(status.ready_revision.as_ref())),
        ("Warm", status.warm.to_string()),
        ("Active", status.active.to_string()),
        ("Last run", last_run_with_id(status, now)),
    ]);
    if let Some(usage) = &agent.token_usage {
        fields.push(("Tokens today", usage.today.to_string()));
    }
    let width = fields
        .iter()
        .map(|(label, _)| label.len())
        .max()
        .unwrap_or(0)
        + 1;
    let mut text = String::new();
    for (label, value) in fields {
        let _ = writeln!(
            text,
            "{:<width$} {value}",
            format!("{label}:"),
            width = width
        );
    }
    // What cannot work as things stand, listed only when something is wrong.
    if !status.conditions.is_empty() {
        text.push_str("Conditions:\n");
        let mut table = Table::new(["TYPE", "STATUS", "REASON", "MESSAGE"]);
        for condition in &status.conditions {
            table.row([
                condition.kind.clone(),
                condition.status.clone(),
                condition.reason.clone(),
                condition.message.clone(),
            ]);
        }
        for line in table.render().lines() {
            let _ = writeln!(text, "  {line}");
        }
    }
    text.push_str("Revisions:\n");
    if agent.revisions.is_empty() {
        text.push_str("  (none)\n");
        return text;
    }
    let mut table = Table::new(["NAME", "IMAGE-DIGEST", "STATE", "CREATED"]);
    for revision in &agent.revisions {
        let state = match (revision.state.as_str(), &revision.reason) {
            (state, Some(reason)) if !reason.is_empty() => format!("{state} ({reason})"),
            (state, _) => or_dash(non_empty(state)),
        };
        table.row([
            revision.name.clone(),
            or_dash(non_empty(&revision.image_digest)),
            state,
            ago(Some(revision.created_at.as_str()), now),
        ]);
    }
    for line in table.render().lines() {
        let _ = writeln!(text, "  {line}");
    }
    text
}

/// `CrashLoopBackOff (restart in 4s)` while backing off, else the phase.
fn daemon_phase(phase: &str, run: &DaemonRun) -> String {
    match run.restart_delay_seconds {
        Some(delay) if phase == "CrashLoopBackOff" => format!("{phase} (back-off {delay}s)"),
        _ => phase.to_string(),
    }
}

fn last_run_with_id(status: &AgentStatus, now: DateTime<Utc>) -> String {
    let summary = last_run(status.last_run.as_ref(), now);
    match &status.last_run {
        Some(run) => format!("{summary} (execution {})", run.id),
        None => summary,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_shows_spec_status_and_revisions() {
        let agent: Agent = serde_json::from_str(
            r#"{"kind": "TaskAgent", "namespace": "default", "name": "word-count",
                "spec": {"template": {"spec": {"image": "oci:/img"}}, "timeout": "100s", "schedule": "@hourly"},
                "createdAt": "2026-01-01T11:00:00Z",
                "status": {"latestRevision": "word-count-00002", "readyRevision": "word-count-00001",
                           "warm": 0, "active": 1, "lastRun": null,
                           "nextScheduleTime": "2026-01-01T13:00:00Z"},
                "revisions": [
                  {"name": "word-count-00001", "image": "oci:/img", "imageDigest": "sha256:aa",
                   "state": "Ready", "reason": null, "createdAt": "2026-01-01T11:00:00Z"},
                  {"name": "word-count-00002", "image": "oci:/img", "imageDigest": "",
                   "state": "Failed", "reason": "image not found", "createdAt": "2026-01-01T11:55:00Z"}
                ],
                "tokenUsage": {"today": 1468, "day": "2026-01-01"}}"#,
        )
        .unwrap();
        let now = DateTime::parse_from_rfc3339("2026-01-01T12:00:00Z")
            .unwrap()
            .to_utc();
        let text = describe(&agent, now);
        for expected in [
            "Kind:            TaskAgent\n",
            "Name:            default/word-count\n",
            "Image:           oci:/img\n",
            "Timeout:         100s\n",
            "Schedule:        @hourly\n",
            "Next schedule:   2026-01-01T13:00:00Z\n",
            "Latest revision: word-count-00002\n",
            "Ready revision:  word-count-00001\n",
            "Active:          1\n",
            "Last run:        -\n",
            "Tokens today:    1468\n",
            "Revisions:\n  NAME               IMAGE-DIGEST   STATE                      CREATED\n",
            "  word-count-00001   sha256:aa      Ready                      60m ago\n",
            "  word-count-00002   -              Failed (image not found)   5m ago\n",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in\n{text}");
        }
        assert!(!text.contains("Phase"), "{text}");
        assert!(!text.contains("Conditions"), "{text}");
        let without_usage = Agent {
            token_usage: None,
            ..agent
        };
        assert!(!describe(&without_usage, now).contains("Tokens"));
    }

    #[test]
    fn summary_lists_conditions_that_do_not_hold() {
        let agent: Agent = serde_json::from_str(
            r#"{"kind": "TaskAgent", "namespace": "default", "name": "gpu-job",
                "spec": {"template": {"spec": {"image": "host:"}}},
                "status": {"lastRun": null, "conditions": [{"type": "ReferencesResolved",
                    "status": "False", "reason": "Unresolved",
                    "message": "spec.workerPoolRef: no WorkerPool \"gpu\" exists"}]},
                "revisions": []}"#,
        )
        .unwrap();
        let text = describe(&agent, Utc::now());
        assert!(
            text.contains(
                "Conditions:\n  TYPE                 STATUS   REASON       MESSAGE\n  \
                 ReferencesResolved   False    Unresolved   spec.workerPoolRef: no WorkerPool \"gpu\" exists\n\
                 Revisions:\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn daemon_summary_shows_phase_restarts_and_uptime() {
        let agent: Agent = serde_json::from_str(
            r#"{"kind": "DaemonAgent", "namespace": "default", "name": "echo-bot",
                "spec": {"template": {"spec": {"image": "host:"}}},
                "status": {"phase": "Running", "restartCount": 2,
                           "upSince": "2026-01-01T11:55:00Z", "lastRun": null},
                "revisions": []}"#,
        )
        .unwrap();
        let now = DateTime::parse_from_rfc3339("2026-01-01T12:00:00Z")
            .unwrap()
            .to_utc();
        let text = describe(&agent, now);
        for expected in [
            "Phase:           Running\n",
            "Restarts:        2\n",
            "Uptime:          5m\n",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in\n{text}");
        }

        let backing_off: Agent = serde_json::from_str(
            r#"{"kind": "DaemonAgent", "namespace": "default", "name": "echo-bot",
                "revisions": [],
                "status": {"phase": "CrashLoopBackOff", "restartCount": 3, "upSince": null,
                           "restartDelaySeconds": 8.0, "reason": "exited with code 1"}}"#,
        )
        .unwrap();
        let text = describe(&backing_off, now);
        for expected in [
            "Phase:           CrashLoopBackOff (back-off 8s)\n",
            "Uptime:          -\n",
            "Reason:          exited with code 1\n",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in\n{text}");
        }
    }
}
