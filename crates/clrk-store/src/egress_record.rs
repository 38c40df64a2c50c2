//! What went through the egress gateway: one record per transaction (an HTTP request, a TLS
//! or TCP connection, a refused DNS question), and the tokens agents spent per day.

use chrono::{DateTime, NaiveDate, Utc};
use rusqlite::{OptionalExtension, params};

use crate::{Store, StoreError, time};

/// Transactions kept per agent: the oldest go as new ones are recorded.
pub const EGRESS_RECORDS_PER_AGENT: usize = 10_000;

/// One transaction through the egress gateway.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EgressRecord {
    pub namespace: String,
    pub agent: String,
    pub revision: String,
    /// The execution (TaskAgent) or run (DaemonAgent) it belongs to.
    pub execution_id: Option<String>,
    pub started_at: DateTime<Utc>,
    pub duration_ms: u64,
    /// `http`, `https`, `tls`, `tcp` or `dns`.
    pub protocol: String,
    /// The name the agent asked for (Host, SNI or DNS question), when known.
    pub destination_name: Option<String>,
    /// `address:port` it was going to.
    pub destination_addr: String,
    pub method: Option<String>,
    pub path: Option<String>,
    /// The HTTP status the agent got.
    pub status: Option<u16>,
    pub request_bytes: u64,
    pub response_bytes: u64,
    pub allowed: bool,
    /// Which rule allowed it, or why it was refused or failed.
    pub reason: String,
    /// The header the proxy set from a secret (never its value).
    pub injected_header: Option<String>,
    pub provider: Option<String>,
    pub model: Option<String>,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
}

impl Store {
    /// Stores a record; returns its id.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = clrk_store::Store::open(&dir.path().join("clrk.db")).unwrap();
    /// let record = clrk_store::EgressRecord {
    ///     namespace: "default".into(), agent: "a".into(), execution_id: Some("e1".into()),
    ///     input_tokens: Some(3), output_tokens: Some(4), ..Default::default()
    /// };
    /// store.insert_egress_record(&record).unwrap();
    /// assert_eq!(store.egress_records("default", "a", 10).unwrap()[0].agent, "a");
    /// assert_eq!(store.execution_tokens("e1").unwrap(), 7);
    /// ```
    pub fn insert_egress_record(&self, r: &EgressRecord) -> Result<i64, StoreError> {
        self.insert_egress_record_keeping(r, EGRESS_RECORDS_PER_AGENT)
    }

    /// [`Store::insert_egress_record`], keeping the newest `keep` records of the agent.
    fn insert_egress_record_keeping(
        &self,
        r: &EgressRecord,
        keep: usize,
    ) -> Result<i64, StoreError> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO egress_records (namespace, agent, revision, execution_id, started_at, \
                 duration_ms, protocol, destination_name, destination_addr, method, path, status, \
                 request_bytes, response_bytes, allowed, reason, injected_header, provider, model, \
                 input_tokens, output_tokens) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, \
                 ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21)",
                params![
                    r.namespace,
                    r.agent,
                    r.revision,
                    r.execution_id,
                    time::to_millis(r.started_at),
                    r.duration_ms as i64,
                    r.protocol,
                    r.destination_name,
                    r.destination_addr,
                    r.method,
                    r.path,
                    r.status,
                    r.request_bytes as i64,
                    r.response_bytes as i64,
                    r.allowed,
                    r.reason,
                    r.injected_header,
                    r.provider,
                    r.model,
                    r.input_tokens.map(|t| t as i64),
                    r.output_tokens.map(|t| t as i64),
                ],
            )?;
            let id = tx.last_insert_rowid();
            tx.execute(
                "DELETE FROM egress_records WHERE namespace = ?1 AND agent = ?2 AND id < \
                 (SELECT id FROM egress_records WHERE namespace = ?1 AND agent = ?2 \
                  ORDER BY id DESC LIMIT 1 OFFSET ?3)",
                params![r.namespace, r.agent, keep.saturating_sub(1) as i64],
            )?;
            Ok(id)
        })
    }

    /// The latest `limit` records of an agent, newest first.
    pub fn egress_records(
        &self,
        namespace: &str,
        agent: &str,
        limit: usize,
    ) -> Result<Vec<EgressRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT namespace, agent, revision, execution_id, started_at, duration_ms, protocol, \
             destination_name, destination_addr, method, path, status, request_bytes, \
             response_bytes, allowed, reason, injected_header, provider, model, input_tokens, \
             output_tokens FROM egress_records WHERE namespace = ?1 AND agent = ?2 \
             ORDER BY id DESC LIMIT ?3",
        )?;
        let rows = stmt.query_map(params![namespace, agent, limit as i64], |row| {
            Ok(EgressRecord {
                namespace: row.get(0)?,
                agent: row.get(1)?,
                revision: row.get(2)?,
                execution_id: row.get(3)?,
                started_at: time::column(row, 4)?,
                duration_ms: row.get::<_, i64>(5)? as u64,
                protocol: row.get(6)?,
                destination_name: row.get(7)?,
                destination_addr: row.get(8)?,
                method: row.get(9)?,
                path: row.get(10)?,
                status: row.get(11)?,
                request_bytes: row.get::<_, i64>(12)? as u64,
                response_bytes: row.get::<_, i64>(13)? as u64,
                allowed: row.get(14)?,
                reason: row.get(15)?,
                injected_header: row.get(16)?,
                provider: row.get(17)?,
                model: row.get(18)?,
                input_tokens: row.get::<_, Option<i64>>(19)?.map(|t| t as u64),
                output_tokens: row.get::<_, Option<i64>>(20)?.map(|t| t as u64),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Tokens (input plus output) recorded for one execution.
    pub fn execution_tokens(&self, execution_id: &str) -> Result<u64, StoreError> {
        let conn = self.conn();
        let total: i64 = conn.query_row(
            "SELECT COALESCE(SUM(COALESCE(input_tokens, 0) + COALESCE(output_tokens, 0)), 0) \
             FROM egress_records WHERE execution_id = ?1",
            [execution_id],
            |row| row.get(0),
        )?;
        Ok(total as u64)
    }

    /// Adds `tokens` to an agent's count for `day` (UTC); returns the new count.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = clrk_store::Store::open(&dir.path().join("clrk.db")).unwrap();
    /// let day = chrono::NaiveDate::from_ymd_opt(2026, 12, 1).unwrap();
    /// store.add_tokens("default", "a", day, 5).unwrap();
    /// assert_eq!(store.add_tokens("default", "a", day, 7).unwrap(), 12);
    /// assert_eq!(store.tokens_on("default", "a", day).unwrap(), 12);
    /// ```
    pub fn add_tokens(
        &self,
        namespace: &str,
        agent: &str,
        day: NaiveDate,
        tokens: u64,
    ) -> Result<u64, StoreError> {
        self.write(|tx| {
            let total: i64 = tx.query_row(
                "INSERT INTO token_usage (namespace, agent, day, tokens) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (namespace, agent, day) DO UPDATE SET tokens = tokens + ?4 \
                 RETURNING tokens",
                params![namespace, agent, day.to_string(), tokens as i64],
                |row| row.get(0),
            )?;
            Ok(total as u64)
        })
    }

    /// An agent's token count for `day` (UTC).
    pub fn tokens_on(
        &self,
        namespace: &str,
        agent: &str,
        day: NaiveDate,
    ) -> Result<u64, StoreError> {
        let conn = self.conn();
        let total: Option<i64> = conn
            .query_row(
                "SELECT tokens FROM token_usage WHERE namespace = ?1 AND agent = ?2 AND day = ?3",
                params![namespace, agent, day.to_string()],
                |row| row.get(0),
            )
            .optional()?;
        Ok(total.unwrap_or(0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_newest_records_of_an_agent_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("clrk.db")).unwrap();
        let record = |agent: &str, path: &str| EgressRecord {
            namespace: "default".into(),
            agent: agent.into(),
            path: Some(path.into()),
            ..EgressRecord::default()
        };
        store
            .insert_egress_record_keeping(&record("other", "/x"), 3)
            .unwrap();
        for i in 0..5 {
            store
                .insert_egress_record_keeping(&record("a", &format!("/{i}")), 3)
                .unwrap();
        }
        let kept: Vec<String> = store
            .egress_records("default", "a", 10)
            .unwrap()
            .into_iter()
            .map(|r| r.path.unwrap())
            .collect();
        assert_eq!(kept, ["/4", "/3", "/2"]);
        assert_eq!(
            store.egress_records("default", "other", 10).unwrap().len(),
            1
        );
    }
}
