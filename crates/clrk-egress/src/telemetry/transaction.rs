//! One transaction through the gateway, from its first byte to its record and span.
//!
//! A [`Transaction`] is filled in as the exchange goes and finished exactly once: when the
//! response body ends, or when whatever carries it is dropped (the agent hung up). Finishing
//! stores the record, adds the tokens to the agent's day, counts both in the process's
//! metrics, and exports a span when the gateway has an OTLP endpoint.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use chrono::Utc;
use clrk_store::{EgressRecord, Store};

use crate::peers::SandboxIdentity;
use crate::telemetry::ledger::{LedgerKeys, TokenLedger};
use crate::telemetry::otlp::{AttributeValue, OtlpExporter, Span};
use crate::telemetry::trace_context::TraceContext;
use crate::usage::TokenUsage;

/// What the gateway learned about one exchange.
pub struct Transaction {
    pub record: EgressRecord,
    pub identity: Arc<SandboxIdentity>,
    /// The provider (`gen_ai.system`) when a provider route covers the destination.
    pub provider: Option<&'static str>,
    pub usage: Option<TokenUsage>,
    pub trace: TraceContext,
    pub parent_span: Option<[u8; 8]>,
    /// The gateway that governs it (none when the agent's `egressRefs` name none that
    /// exists), for its metrics.
    gateway: Option<String>,
    started: Instant,
    wall_start: SystemTime,
    exporter: Option<OtlpExporter>,
    store: Store,
    ledger: Arc<TokenLedger>,
    finished: bool,
}

impl Transaction {
    /// Starts the record of an exchange of `identity`'s with `destination_addr`.
    pub fn begin(
        store: &Store,
        ledger: &Arc<TokenLedger>,
        identity: &Arc<SandboxIdentity>,
        protocol: &str,
        destination_addr: String,
        gateway: Option<&str>,
        exporter: Option<OtlpExporter>,
    ) -> Transaction {
        let run_span = identity.run_span();
        let record = EgressRecord {
            namespace: identity.namespace.clone(),
            agent: identity.agent.clone(),
            revision: identity.revision.clone(),
            execution_id: identity.execution(),
            started_at: Utc::now(),
            protocol: protocol.to_owned(),
            destination_addr,
            ..EgressRecord::default()
        };
        Transaction {
            record,
            identity: Arc::clone(identity),
            provider: None,
            usage: None,
            // A child of its execution's run when the sandbox serves one; an agent's own
            // `traceparent` may still take its place (the HTTP trace stage).
            trace: run_span.map_or_else(TraceContext::new_root, |run| run.child()),
            parent_span: run_span.map(|run| run.span_id),
            gateway: gateway.map(str::to_owned),
            started: Instant::now(),
            wall_start: SystemTime::now(),
            exporter,
            store: store.clone(),
            ledger: Arc::clone(ledger),
            finished: false,
        }
    }

    /// Marks it refused with `reason`.
    pub fn deny(&mut self, reason: impl Into<String>) {
        self.record.allowed = false;
        self.record.reason = reason.into();
    }

    /// Marks it allowed by `reason`.
    pub fn allow(&mut self, reason: impl Into<String>) {
        self.record.allowed = true;
        self.record.reason = reason.into();
    }

    /// Stores the record (and tokens) and exports the span; later calls do nothing.
    pub fn finish(&mut self) {
        if std::mem::replace(&mut self.finished, true) {
            return;
        }
        self.record.duration_ms = self.started.elapsed().as_millis() as u64;
        if let Some(usage) = &self.usage {
            self.record.input_tokens = Some(usage.input_tokens);
            self.record.output_tokens = Some(usage.output_tokens);
            if self.record.model.is_none() {
                self.record.model = usage.model.clone();
            }
        }
        self.record.provider = self.provider.map(str::to_owned);
        self.count();
        let span = self.span();
        // Kept with its execution too (SPECIFICATION §9.7), in the same background write.
        let stored = self
            .record
            .execution_id
            .clone()
            .map(|execution| (execution, span.to_record()));
        if let Some(exporter) = &self.exporter {
            exporter.export(span);
        }
        let record = std::mem::take(&mut self.record);
        let tokens = self
            .usage
            .as_ref()
            .map_or(0, crate::usage::TokenUsage::total);
        let store = self.store.clone();
        let day = record.started_at.date_naive();
        let keys = self.ledger_keys();
        let ledger = Arc::clone(&self.ledger);
        ledger.add(&keys, tokens);
        let work = async move {
            if tokens > 0
                && let Err(error) = store
                    .add_tokens(&record.namespace, &record.agent, day, tokens)
                    .await
            {
                tracing::error!(%error, agent = %record.agent, "could not count tokens");
            }
            if let Err(error) = store.insert_egress_record(&record).await {
                tracing::error!(%error, agent = %record.agent, "could not record an egress transaction");
            }
            if let Some((execution, span)) = stored
                && let Err(error) = store.insert_spans(&execution, &[span]).await
            {
                tracing::error!(%error, agent = %record.agent, "could not keep an egress span");
            }
            ledger.settle(&keys, tokens);
            tracing::info!(
                agent = %record.agent, execution = ?record.execution_id, protocol = %record.protocol,
                destination = %record.destination_addr, name = ?record.destination_name,
                status = ?record.status, allowed = record.allowed, reason = %record.reason,
                "egress"
            );
        };
        match tokio::runtime::Handle::try_current() {
            // Off the async workers, as a SQLite write blocks its thread while it runs.
            Ok(handle) => drop(handle.clone().spawn_blocking(move || handle.block_on(work))),
            Err(_) => finish_now(work),
        }
    }

    /// Its share of the process's metrics (SPECIFICATION §18): the transaction by its
    /// gateway and decision, and its tokens.
    fn count(&self) {
        let metrics = clrk_metrics::global();
        let r = &self.record;
        let gateway = self.gateway.as_deref().unwrap_or("none");
        metrics.egress_transaction(gateway, r.allowed);
        if let (Some(provider), Some(usage)) = (self.provider, &self.usage) {
            metrics.tokens(
                &r.namespace,
                &r.agent,
                provider,
                r.model.as_deref(),
                usage.input_tokens,
                usage.output_tokens,
            );
        }
    }

    fn span(&self) -> Span {
        let r = &self.record;
        let mut attributes: Vec<(String, AttributeValue)> = Vec::new();
        let mut text =
            |k: &str, v: &str| attributes.push((k.into(), AttributeValue::String(v.into())));
        text("agent.kind", &self.identity.kind);
        text("agent.namespace", &r.namespace);
        text("agent.name", &r.agent);
        text("agent.revision", &r.revision);
        if let Some(id) = &r.execution_id {
            text("invocation.id", id);
        }
        text(
            "clrk.dst.name",
            r.destination_name.as_deref().unwrap_or(&r.destination_addr),
        );
        text("clrk.dst.address", &r.destination_addr);
        text("clrk.protocol", &r.protocol);
        text("clrk.verdict", if r.allowed { "allowed" } else { "denied" });
        text("clrk.reason", &r.reason);
        if let Some(m) = &r.method {
            text("http.request.method", m);
        }
        if let Some(p) = &r.path {
            text("url.path", p);
        }
        if let Some(h) = &r.injected_header {
            text("clrk.credential.header", h);
        }
        if let Some(p) = self.provider {
            text("gen_ai.system", p);
        }
        if let Some(m) = r
            .model
            .as_deref()
            .or(self.usage.as_ref().and_then(|u| u.model.as_deref()))
        {
            text("gen_ai.request.model", m);
        }
        let int = |k: &str, v: u64| {
            (
                k.to_owned(),
                AttributeValue::Int(i64::try_from(v).unwrap_or(i64::MAX)),
            )
        };
        attributes.push(int("clrk.req.bytes", r.request_bytes));
        attributes.push(int("clrk.resp.bytes", r.response_bytes));
        attributes.push(int("clrk.duration_ms", r.duration_ms));
        if let Some(s) = r.status {
            attributes.push(int("http.response.status_code", s.into()));
        }
        if let Some(u) = &self.usage {
            attributes.push(int("gen_ai.usage.input_tokens", u.input_tokens));
            attributes.push(int("gen_ai.usage.output_tokens", u.output_tokens));
        }
        let name = match (&r.method, &r.destination_name) {
            (Some(m), Some(n)) => format!("{m} {n}"),
            (Some(m), None) => format!("{m} {}", r.destination_addr),
            (None, n) => format!(
                "{} {}",
                r.protocol,
                n.as_deref().unwrap_or(&r.destination_addr)
            ),
        };
        let failed = !r.allowed || r.status.is_some_and(|s| s >= 500);
        Span {
            context: self.trace,
            parent_span_id: self.parent_span,
            name,
            kind_client: true,
            start: self.wall_start,
            end: self.wall_start + self.started.elapsed(),
            attributes,
            error: failed.then(|| r.reason.clone()),
        }
    }

    /// The budgets it counts against.
    pub(crate) fn ledger_keys(&self) -> LedgerKeys {
        LedgerKeys::new(
            &self.record.namespace,
            &self.record.agent,
            self.record.execution_id.as_deref(),
            self.record.started_at.date_naive(),
        )
    }
}

impl Drop for Transaction {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Without a runtime (a transaction dropped after it ended): a SQLite write never waits, so
/// it completes here; one that would wait (PostgreSQL) cannot, and is reported lost.
fn finish_now(work: impl Future<Output = ()>) {
    let mut work = std::pin::pin!(work);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    if work.as_mut().poll(&mut cx).is_pending() {
        tracing::error!("an egress record was not stored: no async runtime to finish it on");
    }
}
