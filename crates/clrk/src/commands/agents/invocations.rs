//! `clrk agents invocations NAME`.

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::cli::{InvocationsArgs, ObjectFormat};
use crate::commands::Session;
use crate::duration::format_millis;
use crate::models::{Execution, List};
use crate::output::{self, Table, ago, or_dash};

/// Prints an agent's recent executions, newest first as the server orders them.
pub async fn run(args: InvocationsArgs, session: &Session) -> anyhow::Result<()> {
    let path = [
        "v1",
        "agents",
        args.namespace.namespace.as_str(),
        args.name.as_str(),
        "invocations",
    ];
    let query = [("limit", args.limit.to_string())];
    let answer: Value = session.api()?.get(&path, &query).await?;
    match args.output {
        Some(ObjectFormat::Json) => output::print_json(&answer),
        Some(ObjectFormat::Yaml) => output::print_yaml(&answer),
        None => {
            let executions: List<Execution> = serde_json::from_value(answer)?;
            if executions.items.is_empty() {
                eprintln!(
                    "agent {}/{} has not run yet",
                    args.namespace.namespace, args.name
                );
                return Ok(());
            }
            Ok(output::print(
                &invocations_table(&executions.items, Utc::now()).render(),
            )?)
        }
    }
}

/// The `agents invocations` table as of `now`.
pub fn invocations_table(executions: &[Execution], now: DateTime<Utc>) -> Table {
    let mut table = Table::new([
        "ID", "TRIGGER", "STATUS", "EXIT", "DURATION", "START", "STARTED",
    ]);
    for execution in executions {
        table.row([
            execution.id.clone(),
            or_dash(execution.trigger.as_ref()),
            execution.status.clone(),
            or_dash(execution.exit_code),
            execution
                .duration_ms
                .map_or_else(|| "-".to_string(), format_millis),
            or_dash(execution.start.as_ref()),
            ago(execution.started_at.as_deref(), now),
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
