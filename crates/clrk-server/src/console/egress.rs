//! The egress records table the agent and execution pages share: each transaction with its
//! decision and the reason for it.

use clrk_store::EgressRecord;
use maud::{Markup, html};

use super::layout::{execution_href, time};

/// `records`, newest first, or a line saying there are none.
pub fn table<'a>(records: impl IntoIterator<Item = &'a EgressRecord>) -> Markup {
    let records: Vec<&EgressRecord> = records.into_iter().collect();
    html! {
        @if records.is_empty() {
            p.muted #no-egress { "no egress recorded" }
        } @else {
            table #egress {
                thead { tr {
                    th { "Time" } th { "Execution" } th { "Decision" } th { "Reason" }
                    th { "Destination" } th { "Request" } th.num { "Status" }
                    th.num { "Duration" } th.num { "Bytes out/in" } th.num { "Tokens" }
                } }
                tbody {
                    @for r in &records { (row(r)) }
                }
            }
        }
    }
}

fn row(r: &EgressRecord) -> Markup {
    let destination = r.destination_name.as_deref().unwrap_or(&r.destination_addr);
    let tokens = r.input_tokens.unwrap_or(0) + r.output_tokens.unwrap_or(0);
    html! {
        tr.egress-record {
            td { (time(&r.started_at)) }
            td {
                @if let Some(id) = &r.execution_id {
                    a href=(execution_href(id)) { code { (id.get(..8).unwrap_or(id)) } }
                } @else { "—" }
            }
            @if r.allowed { td.allow { "allowed" } } @else { td.deny { "denied" } }
            td { (r.reason) }
            td { code { (destination) } " " span.muted { (r.protocol) } }
            td { code { (r.method.as_deref().unwrap_or("")) " " (r.path.as_deref().unwrap_or("")) } }
            td.num { @if let Some(s) = r.status { (s) } @else { "—" } }
            td.num { (r.duration_ms) " ms" }
            td.num { (r.request_bytes) "/" (r.response_bytes) }
            td.num {
                @if tokens > 0 {
                    (tokens)
                    @if let Some(model) = &r.model { " " span.muted { (model) } }
                } @else { "—" }
            }
        }
    }
}

/// The records of one execution among an agent's latest.
pub fn of_execution<'a>(
    records: &'a [EgressRecord],
    execution_id: &'a str,
) -> impl Iterator<Item = &'a EgressRecord> {
    records
        .iter()
        .filter(move |r| r.execution_id.as_deref() == Some(execution_id))
}
