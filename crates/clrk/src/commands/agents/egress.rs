//! `clrk agents egress NAME`.

use super::RecentList;
use crate::cli::AgentEgressArgs;
use crate::commands::Session;
use crate::output::{Table, ago, or_dash};
use chrono::{DateTime, Utc};
use clrk_wire::EgressRecord;

/// The REQUEST column is cut to this many characters.
const REQUEST_WIDTH: usize = 40;
/// The EXECUTION column shows this many characters of the id.
const EXECUTION_WIDTH: usize = 8;

/// Prints an agent's recent egress transactions, newest first as the server orders them.
pub async fn run(args: AgentEgressArgs, session: &Session) -> anyhow::Result<()> {
    RecentList {
        namespace: &args.namespace,
        name: &args.name,
        what: "egress",
        limit: args.limit,
        output: args.output,
        empty: "has no egress transactions recorded",
    }
    .print(session, egress_table)
    .await
}

/// The `agents egress` table as of `now`.
pub fn egress_table(records: &[EgressRecord], now: DateTime<Utc>) -> Table {
    let mut table = Table::new([
        "TIME",
        "EXECUTION",
        "VERDICT",
        "DESTINATION",
        "REQUEST",
        "STATUS",
        "BYTES",
        "TOKENS",
        "REASON",
    ]);
    for record in records {
        table.row([
            ago(Some(record.started_at.as_str()), now),
            or_dash(
                record
                    .execution_id
                    .as_deref()
                    .map(|id| truncate(id, EXECUTION_WIDTH, "")),
            ),
            if record.allowed { "allowed" } else { "denied" }.to_string(),
            destination(record),
            request(record),
            or_dash(record.status),
            format!("{}/{}", record.request_bytes, record.response_bytes),
            tokens(record),
            or_dash(Some(record.reason.as_str()).filter(|r| !r.is_empty())),
        ]);
    }
    table
}

/// `name (address:port)`, or the address alone when no name is known.
fn destination(record: &EgressRecord) -> String {
    match &record.destination_name {
        Some(name) if !name.is_empty() => format!("{name} ({})", record.destination_addr),
        _ => record.destination_addr.clone(),
    }
}

/// `METHOD path` for HTTP, else the protocol (`tls`, `tcp`, `dns`).
fn request(record: &EgressRecord) -> String {
    match (&record.method, &record.path) {
        (Some(method), Some(path)) => truncate(&format!("{method} {path}"), REQUEST_WIDTH, "…"),
        (Some(method), None) => method.clone(),
        _ => record.protocol.clone(),
    }
}

/// `input/output` tokens of an LLM call; `-` for other traffic.
fn tokens(record: &EgressRecord) -> String {
    match (record.input_tokens, record.output_tokens) {
        (None, None) => "-".to_string(),
        (input, output) => format!("{}/{}", or_dash(input), or_dash(output)),
    }
}

/// `text` cut to `width` characters, the last one replaced by `ellipsis` when cut.
fn truncate(text: &str, width: usize, ellipsis: &str) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    let keep = width - ellipsis.chars().count();
    text.chars().take(keep).chain(ellipsis.chars()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clrk_wire::List;

    #[test]
    fn records_render_one_per_row() {
        let records: List<EgressRecord> = serde_json::from_str(
            r#"{"items": [
              {"namespace": "default", "agent": "a", "revision": "a-00001",
               "executionId": "9f1c2b7a-5d1e-4c2a-9b0e-1f2e3d4c5b6a", "startedAt": "2026-01-01T11:59:55Z",
               "durationMs": 120, "protocol": "https", "destinationName": "llm.test",
               "destinationAddr": "203.0.113.7:443", "method": "POST", "path": "/v1/messages",
               "status": 200, "requestBytes": 812, "responseBytes": 1533, "allowed": true,
               "reason": "aiproviderroute/llm", "injectedHeader": "x-api-key",
               "provider": "anthropic", "model": "claude", "inputTokens": 120, "outputTokens": 348},
              {"namespace": "default", "agent": "a", "revision": "a-00001",
               "executionId": "9f1c2b7a-5d1e-4c2a-9b0e-1f2e3d4c5b6a", "startedAt": "2026-01-01T11:59:54Z",
               "durationMs": 0, "protocol": "tls", "destinationName": "example.com",
               "destinationAddr": "93.184.215.14:443", "method": null, "path": null,
               "status": null, "requestBytes": 0, "responseBytes": 0, "allowed": false,
               "reason": "no route allows example.com", "injectedHeader": null,
               "provider": null, "model": null, "inputTokens": null, "outputTokens": null},
              {"namespace": "default", "agent": "a", "revision": "a-00001",
               "executionId": null, "startedAt": "2026-01-01T11:58:00Z",
               "durationMs": 30, "protocol": "http", "destinationName": null,
               "destinationAddr": "10.1.2.3:80", "method": "GET",
               "path": "/a/very/long/path/that/goes/on/and/on?with=query",
               "status": 404, "requestBytes": 90, "responseBytes": 12, "allowed": true,
               "reason": "egressl4route/internal", "injectedHeader": null,
               "provider": null, "model": null, "inputTokens": null, "outputTokens": null}
            ]}"#,
        )
        .unwrap();
        let now = DateTime::parse_from_rfc3339("2026-01-01T12:00:00Z")
            .unwrap()
            .to_utc();
        assert_eq!(
            egress_table(&records.items, now).render(),
            "TIME     EXECUTION   VERDICT   DESTINATION                       REQUEST                                    STATUS   BYTES      TOKENS    REASON\n\
             5s ago   9f1c2b7a    allowed   llm.test (203.0.113.7:443)        POST /v1/messages                          200      812/1533   120/348   aiproviderroute/llm\n\
             6s ago   9f1c2b7a    denied    example.com (93.184.215.14:443)   tls                                        -        0/0        -         no route allows example.com\n\
             2m ago   -           allowed   10.1.2.3:80                       GET /a/very/long/path/that/goes/on/and/…   404      90/12      -         egressl4route/internal\n"
        );
    }

    #[test]
    fn truncation_counts_characters() {
        assert_eq!(truncate("abc", 3, "…"), "abc");
        assert_eq!(truncate("abcd", 3, "…"), "ab…");
        assert_eq!(truncate("ééééé", 4, ""), "éééé");
    }
}
