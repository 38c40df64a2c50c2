//! Where every exchange's [`Transaction`] starts: it carries the store the record goes to, the
//! ledger of tokens not yet stored, and the OTLP exporter of the gateway that governs it (one
//! exporter per endpoint, started on first use).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use clrk_api::EgressGateway;
use clrk_store::Store;

use crate::peers::SandboxIdentity;
use crate::telemetry::ledger::{LedgerKeys, TokenLedger};
use crate::telemetry::otlp::OtlpExporter;
use crate::telemetry::transaction::Transaction;

/// Starts transactions and keeps what they share. Cloning shares it.
#[derive(Clone)]
pub(crate) struct Recorder {
    store: Store,
    ledger: Arc<TokenLedger>,
    exporters: Arc<Mutex<HashMap<String, OtlpExporter>>>,
}

impl Recorder {
    /// Records go to `store`.
    pub(crate) fn new(store: Store) -> Recorder {
        Recorder {
            store,
            ledger: Arc::default(),
            exporters: Arc::default(),
        }
    }

    /// Starts the record of an exchange of `identity`'s with `destination`, exported as a
    /// span when `gateway` has an OTLP endpoint.
    pub(crate) fn begin(
        &self,
        identity: &Arc<SandboxIdentity>,
        protocol: &str,
        destination: String,
        gateway: Option<&EgressGateway>,
    ) -> Transaction {
        Transaction::begin(
            &self.store,
            &self.ledger,
            identity,
            protocol,
            destination,
            gateway.map(|g| g.metadata.name.as_str()),
            self.exporter(gateway),
        )
    }

    /// Tokens of finished transactions the store does not have yet: (this execution's, the
    /// agent's today).
    pub(crate) fn pending_tokens(&self, keys: &LedgerKeys) -> (u64, u64) {
        self.ledger.pending(keys)
    }

    /// The exporter of `gateway`'s OTLP endpoint, if it has one.
    pub(crate) fn exporter(&self, gateway: Option<&EgressGateway>) -> Option<OtlpExporter> {
        let otlp = gateway?.spec.otlp.as_ref()?;
        let key = serde_json::to_string(otlp).ok()?;
        let mut exporters = self.exporters.lock().expect("exporters");
        if let Some(e) = exporters.get(&key) {
            return Some(e.clone());
        }
        let headers = otlp
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        match OtlpExporter::spawn(&otlp.endpoint, headers, "clrk-egress") {
            Ok(e) => {
                exporters.insert(key, e.clone());
                Some(e)
            }
            Err(error) => {
                tracing::warn!(endpoint = %otlp.endpoint, %error, "OTLP exporter not started");
                None
            }
        }
    }
}
