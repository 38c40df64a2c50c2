//! What the gateway tells about each exchange: the transaction record stored per exchange (each
//! started by the [`recorder`]), the tokens counted against budgets before the store has them,
//! W3C trace context, and OTLP spans.

pub(crate) mod ledger;
pub(crate) mod otlp;
pub(crate) mod recorder;
pub(crate) mod trace_context;
pub(crate) mod transaction;
