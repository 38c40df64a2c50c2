//! The budgets stage: a request to a provider route with a token budget goes only while the
//! execution's and the agent's day's tokens (stored, plus those of finished transactions not
//! stored yet) are under it.

use http::StatusCode;

use super::connection::Connection;
use super::refusal::Refusal;
use crate::policy;
use crate::telemetry::transaction::Transaction;

/// Refuses (429) a request for `name` over a budget of the routes covering it, and (503) one
/// whose budget cannot be checked because the counts are unreadable.
pub(super) async fn check(conn: &Connection, tx: &Transaction, name: &str) -> Result<(), Refusal> {
    let budgets = policy::budgets(&conn.config, name);
    if budgets.is_empty() {
        return Ok(());
    }
    let store = conn.ctx.store.clone();
    let execution = tx.record.execution_id.clone();
    let (namespace, agent) = (tx.record.namespace.clone(), tx.record.agent.clone());
    let day = tx.record.started_at.date_naive();
    let used = async {
        let per_execution = match &execution {
            Some(id) => store.execution_tokens(id).await?,
            None => 0,
        };
        Ok::<_, clrk_store::StoreError>((
            per_execution,
            store.tokens_on(&namespace, &agent, day).await?,
        ))
    }
    .await;
    let (pending_execution, pending_day) = conn.ctx.recorder.pending_tokens(&tx.ledger_keys());
    let (per_execution, today) = match used {
        Ok((e, d)) => (e + pending_execution, d + pending_day),
        other => {
            tracing::error!(?other, "token counts unreadable");
            return Err(Refusal::denied(
                StatusCode::SERVICE_UNAVAILABLE,
                "token budget unknown: the gateway could not read its counts",
            ));
        }
    };
    for (route, budget) in budgets {
        let over = match (budget.max_tokens_per_execution, budget.max_tokens_per_day) {
            (Some(max), _) if per_execution >= max => Some(format!(
                "token budget exceeded: aiproviderroute {route} allows {max} tokens per execution and this execution used {per_execution}"
            )),
            (_, Some(max)) if today >= max => Some(format!(
                "token budget exceeded: aiproviderroute {route} allows {max} tokens per day and agent {} used {today} today (UTC)",
                tx.record.agent
            )),
            _ => None,
        };
        if let Some(reason) = over {
            return Err(Refusal::denied(StatusCode::TOO_MANY_REQUESTS, reason));
        }
    }
    Ok(())
}
