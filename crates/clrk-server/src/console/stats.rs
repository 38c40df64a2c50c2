//! An agent's last hour in numbers: runs, error rate and latency percentiles.

use chrono::{DateTime, Duration, Utc};
use clrk_store::{Execution, ExecutionStatus};

/// Executions read for the hour's numbers at most: a busier agent's hour is its latest 500.
pub const HOUR_EXECUTIONS: usize = 500;

/// What an agent's finished executions of the last hour add up to.
#[derive(Debug, Default, PartialEq)]
pub struct Hour {
    /// Finished executions that started in the hour.
    pub runs: usize,
    /// Those that failed or timed out.
    pub errors: usize,
    pub p50_ms: Option<i64>,
    pub p99_ms: Option<i64>,
    /// Their durations, oldest first, for a chart.
    pub durations_ms: Vec<i64>,
}

impl Hour {
    /// The hour before `now` of `executions` (any order); running ones are left out.
    pub fn before(now: DateTime<Utc>, executions: &[Execution]) -> Hour {
        let since = now - Duration::hours(1);
        let mut finished: Vec<&Execution> = executions
            .iter()
            .filter(|e| e.started_at >= since && e.status != ExecutionStatus::Running)
            .collect();
        finished.sort_by_key(|e| e.started_at);
        let errors = finished
            .iter()
            .filter(|e| {
                matches!(
                    e.status,
                    ExecutionStatus::Failed | ExecutionStatus::TimedOut
                )
            })
            .count();
        let durations_ms: Vec<i64> = finished.iter().filter_map(|e| e.duration_ms).collect();
        let mut sorted = durations_ms.clone();
        sorted.sort_unstable();
        Hour {
            runs: finished.len(),
            errors,
            p50_ms: percentile(&sorted, 50),
            p99_ms: percentile(&sorted, 99),
            durations_ms,
        }
    }

    /// Errors as a percentage of runs, `—` without runs.
    pub fn error_rate(&self) -> String {
        match self.runs {
            0 => "—".into(),
            runs => format!("{:.0}%", self.errors as f64 * 100.0 / runs as f64),
        }
    }
}

/// The nearest-rank percentile of sorted values.
fn percentile(sorted: &[i64], p: usize) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    Some(sorted[rank - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn execution(minutes_ago: i64, status: ExecutionStatus, ms: i64) -> Execution {
        let now = Utc::now();
        Execution {
            id: format!("e{minutes_ago}"),
            namespace: "default".into(),
            agent: "a".into(),
            revision: "a-00001".into(),
            trigger: "http".into(),
            status,
            exit_code: None,
            reason: None,
            started_at: now - Duration::minutes(minutes_ago),
            ended_at: None,
            duration_ms: (status != ExecutionStatus::Running).then_some(ms),
            start: clrk_store::Start::Cold,
            worker: None,
            agent_uid: "0b5e7c1a-0000-4000-8000-000000000000".into(),
            agent_deleted: false,
        }
    }

    #[test]
    fn the_hour_counts_finished_runs_errors_and_percentiles() {
        use ExecutionStatus::*;
        let mut executions: Vec<Execution> =
            (1..=50).map(|i| execution(i, Succeeded, i * 10)).collect();
        executions.push(execution(51, Failed, 1000));
        executions.push(execution(52, TimedOut, 2000));
        executions.push(execution(0, Running, 0));
        executions.push(execution(90, Failed, 5));
        let hour = Hour::before(Utc::now(), &executions);
        assert_eq!((hour.runs, hour.errors), (52, 2));
        assert_eq!(hour.p50_ms, Some(260));
        assert_eq!(hour.p99_ms, Some(2000));
        assert_eq!(hour.error_rate(), "4%");
        // Oldest first.
        assert_eq!(hour.durations_ms.first(), Some(&2000));
        assert_eq!(hour.durations_ms.last(), Some(&10));
    }

    #[test]
    fn an_hour_without_runs_has_no_numbers() {
        let hour = Hour::before(Utc::now(), &[]);
        assert_eq!(hour, Hour::default());
        assert_eq!(hour.error_rate(), "—");
        assert_eq!(percentile(&[7], 99), Some(7));
    }
}
