//! `clrk pools list`.

use serde_json::Value;

use crate::cli::PoolsListArgs;
use crate::commands::Session;
use crate::output::{self, Table};
use clrk_wire::Pool;

/// Prints the worker pools as a table, or the server's answer as JSON or YAML.
pub async fn list(args: PoolsListArgs, session: &Session) -> anyhow::Result<()> {
    let answer: Value = session.api()?.get(&["v1", "pools"], &[]).await?;
    output::print_list(
        answer,
        args.output,
        "no worker pools",
        |pools: &[Pool], _| pools_table(pools),
    )
}

/// The `pools list` table.
pub fn pools_table(pools: &[Pool]) -> Table {
    let mut table = Table::new([
        "NAME",
        "RUNTIME",
        "MAX-EXECUTIONS",
        "RUNNING",
        "QUEUED",
        "WORKERS",
    ]);
    for pool in pools {
        table.row([
            pool.name.clone(),
            pool.runtime.clone(),
            // 0 is no limit, shown as `clrk pools list --help` says.
            match pool.max_executions_per_worker {
                0 => "-".to_string(),
                limit => limit.to_string(),
            },
            pool.running.to_string(),
            pool.queued.to_string(),
            pool.workers.to_string(),
        ]);
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;
    use clrk_wire::List;

    #[test]
    fn pools_render_with_counts() {
        let pools: List<Pool> = serde_json::from_str(
            r#"{"items": [
                {"name": "default", "runtime": "runsc", "maxExecutionsPerWorker": 10, "workers": 1, "capacity": 10, "running": 3, "queued": 2},
                {"name": "gpu", "runtime": "runc", "maxExecutionsPerWorker": 0, "workers": 2, "capacity": 0}
            ]}"#,
        )
        .unwrap();
        assert_eq!(
            pools_table(&pools.items).render(),
            "NAME      RUNTIME   MAX-EXECUTIONS   RUNNING   QUEUED   WORKERS\n\
             default   runsc     10               3         2        1\n\
             gpu       runc      -                0         0        2\n"
        );
    }
}
