//! Agent log lines: persisted in the store and broadcast to whoever follows them
//! (`clrk dev`'s terminal, `clrk agents logs -f`).

use chrono::Utc;
use clrk_store::{NewLogLine, Store};
use futures::StreamExt as _;
use tokio::io::AsyncRead;
use tokio::sync::broadcast;
use tokio_util::codec::{FramedRead, LinesCodec, LinesCodecError};

/// Longest line kept; a longer one is replaced by a note so one runaway line cannot exhaust
/// memory.
const MAX_LINE: usize = 64 * 1024;

/// One line as it is broadcast.
#[derive(Debug, Clone)]
pub struct LogEvent {
    pub namespace: String,
    pub agent: String,
    pub execution_id: String,
    pub stream: String,
    pub line: String,
}

/// Fan-out of agent log lines; cloning shares the same bus.
#[derive(Clone)]
pub struct LogBus {
    store: Store,
    tx: broadcast::Sender<LogEvent>,
}

/// Who a stream of lines belongs to.
#[derive(Debug, Clone)]
pub struct LogSource {
    pub namespace: String,
    pub agent: String,
    pub execution_id: String,
    pub stream: &'static str,
}

impl LogBus {
    pub fn new(store: Store) -> LogBus {
        let (tx, _) = broadcast::channel(4096);
        LogBus { store, tx }
    }

    /// Receives every line written after this call.
    pub fn subscribe(&self) -> broadcast::Receiver<LogEvent> {
        self.tx.subscribe()
    }

    /// Persists the lines (one transaction), then broadcasts them.
    pub fn write(&self, source: &LogSource, lines: Vec<String>) {
        let now = Utc::now();
        let rows: Vec<NewLogLine> = lines
            .iter()
            .map(|line| NewLogLine {
                execution_id: source.execution_id.clone(),
                namespace: source.namespace.clone(),
                agent: source.agent.clone(),
                stream: source.stream.to_string(),
                time: now,
                line: line.clone(),
            })
            .collect();
        if let Err(error) = self.store.append_logs(&rows) {
            tracing::error!(%error, execution = %source.execution_id, "could not persist log lines");
        }
        for line in lines {
            // No subscriber is fine: the lines are in the store.
            let _ = self.tx.send(LogEvent {
                namespace: source.namespace.clone(),
                agent: source.agent.clone(),
                execution_id: source.execution_id.clone(),
                stream: source.stream.to_string(),
                line,
            });
        }
    }

    /// Reads `reader` line by line until EOF, writing lines in batches of what is available.
    pub async fn pump<R: AsyncRead + Unpin>(&self, reader: R, source: LogSource) {
        let lines = FramedRead::new(reader, LinesCodec::new_with_max_length(MAX_LINE));
        let mut batches = lines.ready_chunks(256);
        while let Some(batch) = batches.next().await {
            let mut out = Vec::with_capacity(batch.len());
            for item in batch {
                match item {
                    Ok(line) => out.push(line),
                    Err(LinesCodecError::MaxLineLengthExceeded) => out.push(format!(
                        "(a line longer than {} KiB was dropped)",
                        MAX_LINE / 1024
                    )),
                    Err(LinesCodecError::Io(error)) => {
                        tracing::warn!(%error, execution = %source.execution_id, "reading agent output");
                        self.write(&source, out);
                        return;
                    }
                }
            }
            self.write(&source, out);
        }
    }
}
