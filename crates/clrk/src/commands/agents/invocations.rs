//! `clrk agents invocations NAME`.

use super::RecentList;
use crate::cli::InvocationsArgs;
use crate::commands::Session;
use crate::duration::format_millis;
use crate::output::{Table, ago, non_empty, or_dash};
use chrono::{DateTime, Utc};
use clrk_server::terminal::escape_controls;
use clrk_wire::Execution;

/// Prints an agent's recent executions, newest first as the server orders them.
pub async fn run(args: InvocationsArgs, session: &Session) -> anyhow::Result<()> {
    RecentList {
        namespace: &args.namespace,
        name: &args.name,
        what: "invocations",
        limit: args.limit,
        output: args.output,
        empty: "has not run yet",
    }
    .print(session, invocations_table)
    .await
}

/// The `agents invocations` table as of `now`.
pub fn invocations_table(executions: &[Execution], now: DateTime<Utc>) -> Table {
    let mut table = Table::new([
        "ID", "TRIGGER", "STATUS", "EXIT", "DURATION", "START", "STARTED", "REASON",
    ]);
    for execution in executions {
        table.row([
            execution.id.clone(),
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
    use clrk_wire::List;

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
               "startedAt": "2026-01-01T11:57:00Z", "endedAt": "2026-01-01T11:57:01Z", "durationMs": 1000, "start": "warm"}
            ]}"#,
        )
        .unwrap();
        let now = DateTime::parse_from_rfc3339("2026-01-01T12:00:00Z")
            .unwrap()
            .to_utc();
        assert_eq!(
            invocations_table(&executions.items, now).render(),
            "ID     TRIGGER   STATUS      EXIT   DURATION   START   STARTED   REASON\n\
             9f1c   cli       Succeeded   0      1.2s       warm    60s ago   -\n\
             77aa   http      Running     -      -          cold    2s ago    -\n\
             5e0b   http      Failed      137    2s         cold    2m ago    killed: memory limit 128Mi exceeded\n\
             3c2d   http      Failed      3      1s         warm    3m ago    -\n"
        );
    }
}
