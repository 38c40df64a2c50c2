//! `clrk workers list` and `clrk workers drain`.

use chrono::{DateTime, Utc};
use clrk_wire::{DrainAnswer, WorkerView};
use serde_json::Value;

use crate::cli::{WorkersDrainArgs, WorkersListArgs};
use crate::commands::Session;
use crate::output::{self, Table, ago};

/// Prints the registered workers as a table, or the server's answer as JSON or YAML.
pub async fn list(args: WorkersListArgs, session: &Session) -> anyhow::Result<()> {
    let answer: Value = session.api()?.get(&["v1", "workers"], &[]).await?;
    output::print_list(
        answer,
        args.output,
        "no workers registered",
        |workers: &[WorkerView], _| workers_table(workers, Utc::now()),
    )
}

/// Drains one worker and prints its state now.
pub async fn drain(args: WorkersDrainArgs, session: &Session) -> anyhow::Result<()> {
    let answer: DrainAnswer = session
        .api()?
        .post(
            &["v1", "workers", args.name.as_str(), "drain"],
            &serde_json::json!({}),
        )
        .await?;
    output::print(&format!("worker/{} {}\n", answer.worker, answer.state))?;
    Ok(())
}

/// The `workers list` table.
pub fn workers_table(workers: &[WorkerView], now: DateTime<Utc>) -> Table {
    let mut table = Table::new([
        "NAME",
        "POOL",
        "ADDRESS",
        "STATE",
        "RUNNING",
        "WARM",
        "LAST-HEARTBEAT",
    ]);
    for w in workers {
        table.row([
            w.name.clone(),
            w.pool.clone(),
            w.address.clone(),
            w.state.clone(),
            w.running.to_string(),
            w.warm.to_string(),
            ago(output::non_empty(&w.heartbeat_at), now),
        ]);
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;
    use clrk_wire::List;

    #[test]
    fn workers_render_with_state_load_and_heartbeat_age() {
        let workers: List<WorkerView> = serde_json::from_str(
            r#"{"items": [
                {"name": "laptop", "pool": "*", "address": "in-process", "capacity": 16, "state": "Ready",
                 "startedAt": "2026-01-01T11:00:00+00:00", "heartbeatAt": "2026-01-01T11:59:57+00:00",
                 "running": 2, "warm": 1},
                {"name": "node-2", "pool": "gpu", "address": "10.0.0.2:7070", "state": "Lost",
                 "heartbeatAt": "2026-01-01T11:58:00+00:00"}
            ]}"#,
        )
        .unwrap();
        let now = DateTime::parse_from_rfc3339("2026-01-01T12:00:00Z")
            .unwrap()
            .to_utc();
        assert_eq!(
            workers_table(&workers.items, now).render(),
            "NAME     POOL   ADDRESS         STATE   RUNNING   WARM   LAST-HEARTBEAT\n\
             laptop   *      in-process      Ready   2         1      3s ago\n\
             node-2   gpu    10.0.0.2:7070   Lost    0         0      2m ago\n"
        );
    }
}
