//! `clrk agents invocations NAME`.

use super::{RecentList, agent_exists};
use crate::cli::InvocationsArgs;
use crate::commands::Session;
use crate::duration::format_millis;
use crate::output::{Table, ago, non_empty, or_dash};
use chrono::{DateTime, Utc};
use clrk_server::terminal::escape_controls;
use clrk_wire::{Execution, List};

/// Prints an agent's recent executions, newest first as the server orders them, with those
/// of deleted agents of the same name marked.
pub async fn run(args: InvocationsArgs, session: &Session) -> anyhow::Result<()> {
    let list = RecentList {
        namespace: &args.namespace,
        name: &args.name,
        what: "invocations",
        limit: args.limit,
        output: args.output,
        empty: "has not run yet",
    };
    let answer = list.fetch(session).await?;
    // Only a deleted agent's executions: the agent may be gone (a name never used is the
    // server's 404), or created again and not run yet.
    let items: List<Execution> = serde_json::from_value(answer.clone())?;
    if items.items.iter().all(|e| e.agent_deleted)
        && !items.items.is_empty()
        && !agent_exists(session, &args.namespace.namespace, &args.name).await?
    {
        eprintln!(
            "agent {}/{} is deleted: showing the executions of the deleted agent",
            args.namespace.namespace, args.name
        );
    }
    list.show(answer, invocations_table)
}

/// The revision an execution ran, marked with its agent's short uid when that agent is deleted.
///
/// ```
/// let e: clrk_wire::Execution = serde_json::from_str(
///     r#"{"id": "9f1c", "revision": "a-00001", "status": "Succeeded", "exitCode": 0,
///         "reason": null, "endedAt": null, "durationMs": null,
///         "agentUid": "0b5e7c1a-8f36-4e53-9a8e-2d7c41f0a9b2", "agentDeleted": true}"#,
/// ).unwrap();
/// assert_eq!(clrk::commands::agents::invocations::revision(&e), "a-00001 (deleted agent uid 0b5e7c1a)");
/// ```
pub fn revision(execution: &Execution) -> String {
    let revision = or_dash(non_empty(&execution.revision));
    if !execution.agent_deleted {
        return revision;
    }
    let uid = execution.agent_uid.split('-').next().unwrap_or_default();
    format!("{revision} (deleted agent uid {uid})")
}

/// The `agents invocations` table as of `now`.
pub fn invocations_table(executions: &[Execution], now: DateTime<Utc>) -> Table {
    let mut table = Table::new([
        "ID", "REVISION", "TRIGGER", "STATUS", "EXIT", "DURATION", "START", "STARTED", "REASON",
    ]);
    for execution in executions {
        table.row([
            execution.id.clone(),
            revision(execution),
            or_dash(non_empty(&execution.trigger)),
            execution.status.clone(),
            or_dash(execution.exit_code),
            execution.duration_ms.map_or_else(
                || "-".to_string(),
                |ms| format_millis(u64::try_from(ms).unwrap_or(0)),
            ),
            or_dash(non_empty(&execution.start)),
            ago(Some(execution.started_at.as_str()), now),
            // Why it failed, when it says more than the exit code; it may quote the agent's
            // stderr, which must not drive the terminal.
            or_dash(
                execution
                    .reason
                    .as_deref()
                    .filter(|r| !r.starts_with("agent exited with code"))
                    .map(escape_controls),
            ),
        ]);
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn executions_render_one_per_row() {
        let executions: List<Execution> = serde_json::from_str(
            r#"{"items": [
              {"id": "9f1c", "namespace": "default", "agent": "a", "revision": "a-00001", "trigger": "cli",
               "status": "Succeeded", "exitCode": 0, "reason": null,
               "startedAt": "2026-01-01T11:59:00Z", "endedAt": "2026-01-01T11:59:01Z", "durationMs": 1250, "start": "warm"},
              {"id": "77aa", "namespace": "default", "agent": "a", "revision": "a-00001", "trigger": "http",
               "status": "Running", "exitCode": null, "reason": null,
               "startedAt": "2026-01-01T11:59:58Z", "endedAt": null, "durationMs": null, "start": "cold"},
              {"id": "5e0b", "namespace": "default", "agent": "a", "revision": "a-00001", "trigger": "http",
               "status": "Failed", "exitCode": 137, "reason": "killed: memory limit 128Mi exceeded",
               "startedAt": "2026-01-01T11:58:00Z", "endedAt": "2026-01-01T11:58:02Z", "durationMs": 2000, "start": "cold"},
              {"id": "3c2d", "namespace": "default", "agent": "a", "revision": "a-00001", "trigger": "http",
               "status": "Failed", "exitCode": 3, "reason": "agent exited with code 3",
               "startedAt": "2026-01-01T11:57:00Z", "endedAt": "2026-01-01T11:57:01Z", "durationMs": 1000, "start": "warm",
               "agentUid": "0b5e7c1a-8f36-4e53-9a8e-2d7c41f0a9b2", "agentDeleted": true}
            ]}"#,
        )
        .unwrap();
        let now = DateTime::parse_from_rfc3339("2026-01-01T12:00:00Z")
            .unwrap()
            .to_utc();
        assert_eq!(
            invocations_table(&executions.items, now).render(),
            "ID     REVISION                               TRIGGER   STATUS      EXIT   DURATION   START   STARTED   REASON\n\
             9f1c   a-00001                                cli       Succeeded   0      1.2s       warm    60s ago   -\n\
             77aa   a-00001                                http      Running     -      -          cold    2s ago    -\n\
             5e0b   a-00001                                http      Failed      137    2s         cold    2m ago    killed: memory limit 128Mi exceeded\n\
             3c2d   a-00001 (deleted agent uid 0b5e7c1a)   http      Failed      3      1s         warm    3m ago    -\n"
        );
    }
}
