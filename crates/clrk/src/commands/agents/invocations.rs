//! `clrk agents invocations NAME`.

use super::RecentList;
use crate::cli::InvocationsArgs;
use crate::commands::Session;
use crate::duration::format_millis;
use crate::output::{Table, ago, non_empty, or_dash};
use chrono::{DateTime, Utc};
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
        "ID", "TRIGGER", "STATUS", "EXIT", "DURATION", "START", "STARTED",
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
               "startedAt": "2026-01-01T11:59:58Z", "endedAt": null, "durationMs": null, "start": "cold"}
            ]}"#,
        )
        .unwrap();
        let now = DateTime::parse_from_rfc3339("2026-01-01T12:00:00Z")
            .unwrap()
            .to_utc();
        assert_eq!(
            invocations_table(&executions.items, now).render(),
            "ID     TRIGGER   STATUS      EXIT   DURATION   START   STARTED\n\
             9f1c   cli       Succeeded   0      1.2s       warm    60s ago\n\
             77aa   http      Running     -      -          cold    2s ago\n"
        );
    }
}
