//! Tokens counted but not yet in the store: a transaction's record is written off the
//! request path, so a budget check right after it would otherwise miss its tokens.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::NaiveDate;

/// Tokens in flight to the store, per execution and per agent and day.
#[derive(Debug, Default)]
pub(crate) struct TokenLedger {
    pending: Mutex<HashMap<String, u64>>,
}

/// What a budget is counted against.
#[derive(Debug, Clone)]
pub(crate) struct LedgerKeys {
    execution: Option<String>,
    day: String,
}

impl LedgerKeys {
    pub(crate) fn new(
        namespace: &str,
        agent: &str,
        execution: Option<&str>,
        day: NaiveDate,
    ) -> Self {
        LedgerKeys {
            execution: execution.map(|e| format!("execution {e}")),
            day: format!("day {namespace}/{agent} {day}"),
        }
    }

    fn all(&self) -> impl Iterator<Item = &String> {
        self.execution.iter().chain(std::iter::once(&self.day))
    }
}

impl TokenLedger {
    /// Counts `tokens` as on their way to the store.
    pub(crate) fn add(&self, keys: &LedgerKeys, tokens: u64) {
        let mut pending = self.pending.lock().expect("ledger");
        for key in keys.all() {
            *pending.entry(key.clone()).or_default() += tokens;
        }
    }

    /// The store has them now.
    pub(crate) fn settle(&self, keys: &LedgerKeys, tokens: u64) {
        let mut pending = self.pending.lock().expect("ledger");
        for key in keys.all() {
            if let Some(n) = pending.get_mut(key) {
                *n = n.saturating_sub(tokens);
                if *n == 0 {
                    pending.remove(key);
                }
            }
        }
    }

    /// Pending tokens of the execution and of the agent's day.
    pub(crate) fn pending(&self, keys: &LedgerKeys) -> (u64, u64) {
        let pending = self.pending.lock().expect("ledger");
        let get = |k: Option<&String>| k.and_then(|k| pending.get(k)).copied().unwrap_or(0);
        (get(keys.execution.as_ref()), get(Some(&keys.day)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_tokens_count_until_settled() {
        let ledger = TokenLedger::default();
        let day = NaiveDate::from_ymd_opt(2026, 12, 1).unwrap();
        let a = LedgerKeys::new("default", "a", Some("e1"), day);
        let b = LedgerKeys::new("default", "a", Some("e2"), day);
        ledger.add(&a, 25);
        ledger.add(&b, 5);
        assert_eq!(ledger.pending(&a), (25, 30));
        ledger.settle(&a, 25);
        assert_eq!(ledger.pending(&a), (0, 5));
        assert_eq!(ledger.pending(&b), (5, 5));
    }
}
