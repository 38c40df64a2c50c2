//! `clrk agents list`.

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::cli::ListArgs;
use crate::commands::Session;
use crate::commands::agents::spec_field;
use crate::output::{self, Table, age_of, ago, or_dash};
use clrk_wire::{Agent, Execution};

/// Prints the agents of one namespace (or all) as a table, JSON or YAML.
pub async fn run(args: ListArgs, session: &Session) -> anyhow::Result<()> {
    let scope = &args.scope;
    let answer: Value = session
        .api()?
        .get(&["v1", "agents"], &scope.query())
        .await?;
    let empty = if scope.all_namespaces {
        "no agents found".to_string()
    } else {
        format!("no agents found in namespace {}", scope.namespace)
    };
    output::print_list(answer, args.output, &empty, |agents: &[Agent], wide| {
        agents_table(agents, scope.all_namespaces, wide, Utc::now())
    })
}

/// The `agents list` table as of `now`.
pub fn agents_table(
    agents: &[Agent],
    with_namespace: bool,
    wide: bool,
    now: DateTime<Utc>,
) -> Table {
    let mut headers = Vec::new();
    if with_namespace {
        headers.push("NAMESPACE");
    }
    headers.extend([
        "KIND", "NAME", "REVISION", "PHASE", "RESTARTS", "WARM", "ACTIVE", "LAST-RUN",
    ]);
    if wide {
        headers.extend(["IMAGE", "TIMEOUT", "AGE", "CONDITIONS"]);
    }
    let mut table = Table::new(headers);
    for agent in agents {
        // Phase and restarts are a daemon's; a TaskAgent shows `-`.
        let daemon = agent.status.daemon.as_ref();
        let mut row = Vec::new();
        if with_namespace {
            row.push(agent.key.namespace.clone());
        }
        row.extend([
            agent.kind.clone(),
            agent.key.name.clone(),
            or_dash(agent.status.ready_revision.as_ref()),
            or_dash(daemon.map(|d| d.phase.as_str())),
            or_dash(daemon.map(|d| d.restart_count)),
            agent.status.warm.to_string(),
            agent.status.active.to_string(),
            last_run(agent.status.last_run.as_ref(), now),
        ]);
        if wide {
            row.extend([
                spec_field(&agent.spec, "/template/spec/image"),
                spec_field(&agent.spec, "/timeout"),
                age_of(Some(agent.created_at.as_str()), now),
                output::conditions_column(&agent.status.conditions),
            ]);
        }
        table.row(row);
    }
    table
}

/// `Succeeded 2m ago`, timed from the end of the run (its start while it runs); `-` if none.
pub fn last_run(execution: Option<&Execution>, now: DateTime<Utc>) -> String {
    let Some(execution) = execution else {
        return "-".to_string();
    };
    let when = execution
        .ended_at
        .as_deref()
        .or(Some(execution.started_at.as_str()));
    match ago(when, now) {
        age if age == "-" => execution.status.clone(),
        age => format!("{} {age}", execution.status),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-01-01T12:00:00Z")
            .unwrap()
            .to_utc()
    }

    fn agents() -> Vec<Agent> {
        serde_json::from_str(
            r#"[
              {"kind": "TaskAgent", "namespace": "default", "name": "word-count",
               "spec": {"template": {"spec": {"image": "host:"}}, "timeout": "100s"},
               "createdAt": "2026-01-01T11:00:00Z", "updatedAt": "2026-01-01T11:00:00Z",
               "status": {"latestRevision": "word-count-00002", "readyRevision": "word-count-00001",
                          "warm": 1, "active": 2,
                          "lastRun": {"id": "e1", "namespace": "default", "agent": "word-count",
                                      "revision": "word-count-00001", "trigger": "cli",
                                      "status": "Succeeded", "exitCode": 0, "reason": null,
                                      "startedAt": "2026-01-01T11:57:50Z",
                                      "endedAt": "2026-01-01T11:58:00Z", "durationMs": 10000}},
               "revisions": []},
              {"kind": "DaemonAgent", "namespace": "ops", "name": "watcher",
               "spec": {"template": {"spec": {"image": "alpine:3"}}},
               "status": {"latestRevision": null, "readyRevision": null, "warm": 0, "active": 0, "lastRun": null,
                          "phase": "CrashLoopBackOff", "restartCount": 3,
                          "conditions": [{"type": "ReferencesResolved", "status": "False",
                                          "reason": "Unresolved", "message": "m"},
                                         {"type": "SpecHonoured", "status": "False",
                                          "reason": "FieldsIgnored", "message": "m"}]},
               "revisions": []}
            ]"#,
        )
        .unwrap()
    }

    #[test]
    fn default_table_shows_ready_revision_daemon_phase_counts_and_last_run() {
        assert_eq!(
            agents_table(&agents(), false, false, now()).render(),
            "KIND          NAME         REVISION           PHASE              RESTARTS   WARM   ACTIVE   LAST-RUN\n\
             TaskAgent     word-count   word-count-00001   -                  -          1      2        Succeeded 2m ago\n\
             DaemonAgent   watcher      -                  CrashLoopBackOff   3          0      0        -\n"
        );
    }

    #[test]
    fn all_namespaces_and_wide_add_columns() {
        let text = agents_table(&agents(), true, true, now()).render();
        let lines: Vec<&str> = text.lines().collect();
        let header: Vec<&str> = lines[0].split_whitespace().collect();
        assert_eq!(
            header,
            [
                "NAMESPACE",
                "KIND",
                "NAME",
                "REVISION",
                "PHASE",
                "RESTARTS",
                "WARM",
                "ACTIVE",
                "LAST-RUN",
                "IMAGE",
                "TIMEOUT",
                "AGE",
                "CONDITIONS"
            ]
        );
        let first: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(first[0], "default");
        assert_eq!(first[first.len() - 4..], ["host:", "100s", "60m", "-"]);
        let second: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!(second[0], "ops");
        assert_eq!(
            second[second.len() - 4..],
            ["alpine:3", "-", "-", "ReferencesResolved,SpecHonoured"]
        );
    }

    #[test]
    fn a_running_execution_is_timed_from_its_start() {
        let running: Execution = serde_json::from_str(
            r#"{"id": "e2", "status": "Running", "startedAt": "2026-01-01T11:59:30Z", "endedAt": null}"#,
        )
        .unwrap();
        assert_eq!(last_run(Some(&running), now()), "Running 30s ago");
    }
}
