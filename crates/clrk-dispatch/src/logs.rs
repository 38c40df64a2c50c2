//! Agent log lines: persisted in the store within limits, and broadcast to whoever follows
//! them (`clrk dev`'s terminal, `clrk agents logs -f`).
//!
//! An execution (or a daemon's run) keeps at most its log limit; past it lines are
//! read, counted and dropped, so the agent never blocks on its output and the store does not
//! grow, and one marker line says how much went. Each line counts its text plus
//! [`clrk_store::LOG_ROW_COST`], so empty lines fill the limit too. A daemon's run instead
//! keeps its newest lines: past the limit its oldest lines are deleted, every so many bytes,
//! and one marker line says so. An agent keeps at most
//! [`clrk_api::MAX_LOG_LIMIT_BYTES`] over all its executions: the oldest go first.

use std::sync::{Arc, Mutex, PoisonError};

use chrono::Utc;
use clrk_store::{NewLogLine, Store, log_line_cost};
use tokio::io::{AsyncRead, AsyncReadExt as _};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tracing::Instrument as _;

/// Longest line kept; the rest of a longer one is read and dropped, so one runaway line
/// cannot exhaust memory.
const MAX_LINE: usize = 64 * 1024;

/// Longest line sent on the bus. The bus keeps up to [`BUS_CAPACITY`] lines for its slowest
/// follower, so this bounds its memory (16 MiB); followers that need whole lines read them
/// from the store.
const BUS_LINE: usize = 16 * 1024;

/// Lines the bus holds for a follower that has not read them yet.
const BUS_CAPACITY: usize = 1024;

/// Bytes read from an output stream at a time: one store write per read at most.
const READ_CHUNK: usize = 64 * 1024;

/// Every this many bytes kept by one execution, its agent's total is checked, so a long
/// daemon run cannot grow the agent's logs far past the cap before it ends.
const EXPIRE_EVERY: u64 = 8 << 20;

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

/// Bytes of log one execution keeps, as the agent's `spec.logLimit` says.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LogLimit {
    bytes: u64,
    text: String,
}

impl LogLimit {
    /// The limit of `spec.logLimit`, or the default (1Mi) when it is not set.
    ///
    /// ```
    /// let limit = clrk_dispatch::LogLimit::from_spec(None);
    /// assert_eq!(limit.bytes(), 1 << 20);
    /// ```
    pub fn from_spec(limit: Option<&clrk_api::LogLimit>) -> LogLimit {
        match limit {
            Some(limit) => LogLimit {
                bytes: limit.bytes(),
                text: limit.to_string(),
            },
            None => LogLimit {
                bytes: clrk_api::DEFAULT_LOG_LIMIT_BYTES,
                text: "1Mi".to_string(),
            },
        }
    }

    /// Bytes kept, each line costing its text plus [`clrk_store::LOG_ROW_COST`].
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl LogBus {
    pub fn new(store: Store) -> LogBus {
        let (tx, _) = broadcast::channel(BUS_CAPACITY);
        LogBus { store, tx }
    }

    /// Receives every line written after this call.
    pub fn subscribe(&self) -> broadcast::Receiver<LogEvent> {
        self.tx.subscribe()
    }

    /// The log of one execution; its streams share `limit` and keep their first lines. The
    /// marker line (if anything was dropped) is written when the last clone and pump are gone.
    pub fn execution(
        &self,
        namespace: &str,
        agent: &str,
        execution_id: &str,
        limit: LogLimit,
    ) -> ExecutionLog {
        self.log(namespace, agent, execution_id, limit, None)
    }

    /// The log of one daemon run; its streams share `limit` and keep their newest lines, so
    /// a run up for weeks still shows what it does now.
    pub fn daemon_run(
        &self,
        namespace: &str,
        agent: &str,
        run_id: &str,
        limit: LogLimit,
    ) -> ExecutionLog {
        let rolling = Rolling::new(&limit);
        self.log(namespace, agent, run_id, limit, Some(rolling))
    }

    fn log(
        &self,
        namespace: &str,
        agent: &str,
        execution_id: &str,
        limit: LogLimit,
        rolling: Option<Rolling>,
    ) -> ExecutionLog {
        ExecutionLog {
            inner: Arc::new(Inner {
                bus: self.clone(),
                namespace: namespace.to_string(),
                agent: agent.to_string(),
                execution_id: execution_id.to_string(),
                limit,
                budget: Mutex::new(Budget::default()),
                rolling: rolling.map(tokio::sync::Mutex::new),
                last_stderr: Mutex::new(None),
            }),
        }
    }

    /// Persists the lines (one transaction), then broadcasts them.
    async fn write(&self, log: &Inner, stream: &'static str, lines: Vec<String>) {
        let rows: Vec<NewLogLine> = lines
            .into_iter()
            .map(|line| log.row(stream, line))
            .collect();
        if let Err(error) = self.store.append_logs(&rows).await {
            tracing::error!(%error, execution = %log.execution_id, "could not persist log lines");
            return;
        }
        self.broadcast(rows);
    }

    fn broadcast(&self, rows: Vec<NewLogLine>) {
        if self.tx.receiver_count() == 0 {
            return;
        }
        for row in rows {
            let mut line = row.line;
            if line.len() > BUS_LINE {
                line.truncate(floor_char_boundary(&line, BUS_LINE));
                line.push_str(
                    " [clrk] cut here on the terminal: the whole line is in clrk agents logs",
                );
            }
            // No subscriber is fine: the lines are in the store.
            let _ = self.tx.send(LogEvent {
                namespace: row.namespace,
                agent: row.agent,
                execution_id: row.execution_id,
                stream: row.stream,
                line,
            });
        }
    }
}

/// The log of one execution or daemon run. Cloning shares it.
#[derive(Clone)]
pub struct ExecutionLog {
    inner: Arc<Inner>,
}

struct Inner {
    bus: LogBus,
    namespace: String,
    agent: String,
    execution_id: String,
    limit: LogLimit,
    budget: Mutex<Budget>,
    /// Set for a daemon's run, which keeps its newest lines; held while a batch is written,
    /// so its streams take turns and the bytes it keeps are known exactly.
    rolling: Option<tokio::sync::Mutex<Rolling>>,
    /// The last line written on stderr, kept or not: the runtime's own error when a sandbox
    /// could not start its program.
    last_stderr: Mutex<Option<String>>,
}

/// What a daemon's run keeps: its newest lines, within its limit with the marker.
#[derive(Debug)]
struct Rolling {
    /// Bytes of the run's lines in the store.
    stored: u64,
    /// The marker line, written once when the first lines are deleted.
    marker: String,
    /// Its `seq` once written; trims keep it.
    marker_seq: Option<i64>,
    /// Bytes the lines may take once the marker is in: the limit less the marker.
    room: u64,
    /// Bytes under `room` a trim leaves free, so the next trim comes this many bytes later.
    slack: u64,
}

impl Rolling {
    fn new(limit: &LogLimit) -> Rolling {
        let marker = format!(
            "[clrk] log limit {}: older lines of this run are deleted as new ones arrive",
            limit.text
        );
        let room = limit.bytes.saturating_sub(log_line_cost(&marker));
        Rolling {
            stored: 0,
            marker,
            marker_seq: None,
            room,
            slack: room / 8,
        }
    }

    /// Before writing a batch: the bytes the run's older lines (the marker aside) may keep
    /// so that the batch fits, or `None` when it fits as things are. Cuts the batch to its
    /// newest lines when it alone would not fit.
    fn make_room(&mut self, limit: u64, lines: &mut Vec<String>) -> Option<u64> {
        let cost: u64 = lines.iter().map(|l| log_line_cost(l)).sum();
        if self.stored + cost <= limit {
            return None;
        }
        let most = self.room - self.slack;
        let mut cost = 0u64;
        let mut start = lines.len();
        for (i, line) in lines.iter().enumerate().rev() {
            let c = log_line_cost(line);
            if cost + c > most {
                break;
            }
            cost += c;
            start = i;
        }
        lines.drain(..start);
        Some(most - cost)
    }
}

/// What an execution kept and dropped so far.
#[derive(Debug, Default)]
struct Budget {
    kept: u64,
    since_expiry: u64,
    full: bool,
    dropped_bytes: u64,
    dropped_lines: u64,
}

impl Budget {
    /// Keeps the lines that fit under `limit`; once one does not, drops it and every later
    /// line, counting them. Returns the kept lines and whether the agent's total is due a check.
    fn admit(&mut self, limit: u64, lines: Vec<String>) -> (Vec<String>, bool) {
        let mut kept = Vec::with_capacity(lines.len());
        for line in lines {
            let cost = log_line_cost(&line);
            if !self.full && self.kept + cost > limit {
                self.full = true;
            }
            if self.full {
                self.dropped_bytes += line.len() as u64;
                self.dropped_lines += 1;
                continue;
            }
            self.kept += cost;
            self.since_expiry += cost;
            kept.push(line);
        }
        (kept, self.expiry_due())
    }

    /// Counts `cost` bytes written by a daemon's run; returns whether the agent's total is
    /// due a check.
    fn count_kept(&mut self, cost: u64) -> bool {
        self.kept += cost;
        self.since_expiry += cost;
        self.expiry_due()
    }

    fn expiry_due(&mut self) -> bool {
        let expire = self.since_expiry >= EXPIRE_EVERY;
        if expire {
            self.since_expiry = 0;
        }
        expire
    }

    /// The line that ends an execution's log when something was dropped.
    fn marker(&self, limit: &LogLimit) -> Option<String> {
        self.full.then(|| {
            format!(
                "[clrk] log limit {} reached: {} more bytes ({} lines) dropped",
                limit.text, self.dropped_bytes, self.dropped_lines
            )
        })
    }
}

impl ExecutionLog {
    /// Copies `reader` into the log line by line until EOF, in a task of its own.
    pub fn pump<R: AsyncRead + Unpin + Send + 'static>(
        &self,
        reader: R,
        stream: &'static str,
    ) -> JoinHandle<()> {
        let log = self.clone();
        // In the caller's span: an execution's output events are logged in its span.
        tokio::spawn(async move { log.copy(reader, stream).await }.in_current_span())
    }

    async fn copy<R: AsyncRead + Unpin>(&self, mut reader: R, stream: &'static str) {
        let mut lines = LineSplitter::new(MAX_LINE);
        let mut chunk = vec![0u8; READ_CHUNK];
        loop {
            let n = match reader.read(&mut chunk).await {
                Ok(0) => break,
                Ok(n) => n,
                Err(error) => {
                    tracing::warn!(%error, execution = %self.inner.execution_id, "reading agent output");
                    break;
                }
            };
            let complete = lines.push(&chunk[..n]);
            self.note_last(stream, &complete);
            self.keep(stream, complete).await;
        }
        let rest: Vec<String> = lines.finish().into_iter().collect();
        self.note_last(stream, &rest);
        self.keep(stream, rest).await;
    }

    fn note_last(&self, stream: &str, lines: &[String]) {
        if stream == "stderr"
            && let Some(line) = lines.iter().rev().find(|l| !l.trim().is_empty())
        {
            *self.inner.last_stderr.lock().expect("last stderr line") = Some(line.clone());
        }
    }

    /// The last non-blank line written on stderr so far.
    pub fn last_stderr_line(&self) -> Option<String> {
        self.inner
            .last_stderr
            .lock()
            .expect("last stderr line")
            .clone()
    }

    async fn keep(&self, stream: &'static str, lines: Vec<String>) {
        if lines.is_empty() {
            return;
        }
        let inner = &self.inner;
        if let Some(rolling) = &inner.rolling {
            let mut rolling = rolling.lock().await;
            return self.keep_newest(&mut rolling, stream, lines).await;
        }
        let (kept, expire) = inner
            .budget
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .admit(inner.limit.bytes, lines);
        if !kept.is_empty() {
            inner.bus.write(inner, stream, kept).await;
        }
        if expire {
            let expiry = inner.expiry();
            // Deleting old executions' lines can take a while: not on an async worker.
            let runtime = tokio::runtime::Handle::current();
            let _ = tokio::task::spawn_blocking(move || runtime.block_on(expiry.run())).await;
        }
    }
}

impl ExecutionLog {
    /// A daemon run's batch: deletes the run's oldest lines first if the batch would take it
    /// past its limit, writing the marker the first time.
    async fn keep_newest(
        &self,
        rolling: &mut Rolling,
        stream: &'static str,
        mut lines: Vec<String>,
    ) {
        let inner = &self.inner;
        if let Some(max) = rolling.make_room(inner.limit.bytes, &mut lines) {
            if rolling.marker_seq.is_none() {
                let row = inner.row("stderr", rolling.marker.clone());
                match inner.bus.store.append_log(&row).await {
                    Ok(seq) => {
                        rolling.marker_seq = Some(seq);
                        rolling.stored += log_line_cost(&row.line);
                        inner.bus.broadcast(vec![row]);
                    }
                    Err(error) => {
                        tracing::error!(%error, execution = %inner.execution_id, "could not persist the log limit marker");
                    }
                }
            }
            let keep = rolling.marker_seq;
            let trimmed = inner
                .bus
                .store
                .trim_execution_logs(
                    &inner.namespace,
                    &inner.agent,
                    &inner.execution_id,
                    max,
                    keep,
                )
                .await;
            match trimmed {
                Ok(deleted) => rolling.stored = rolling.stored.saturating_sub(deleted),
                Err(error) => {
                    tracing::error!(%error, execution = %inner.execution_id, "could not delete a run's oldest log lines");
                }
            }
        }
        if lines.is_empty() {
            return;
        }
        let cost: u64 = lines.iter().map(|l| log_line_cost(l)).sum();
        rolling.stored += cost;
        let expire = inner
            .budget
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .count_kept(cost);
        inner.bus.write(inner, stream, lines).await;
        if expire {
            let expiry = inner.expiry();
            // Deleting old executions' lines can take a while: not on an async worker.
            let runtime = tokio::runtime::Handle::current();
            let _ = tokio::task::spawn_blocking(move || runtime.block_on(expiry.run())).await;
        }
    }
}

impl Inner {
    fn row(&self, stream: &str, line: String) -> NewLogLine {
        NewLogLine {
            execution_id: self.execution_id.clone(),
            namespace: self.namespace.clone(),
            agent: self.agent.clone(),
            stream: stream.to_string(),
            time: Utc::now(),
            line,
        }
    }

    fn expiry(&self) -> Expiry {
        Expiry {
            store: self.bus.store.clone(),
            namespace: self.namespace.clone(),
            agent: self.agent.clone(),
        }
    }
}

impl Drop for Inner {
    /// Every stream has ended: the counts are final.
    fn drop(&mut self) {
        let budget = self.budget.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(marker) = budget.marker(&self.limit) {
            let row = self.row("stderr", marker);
            let bus = self.bus.clone();
            let execution = self.execution_id.clone();
            finish_in_drop(async move {
                match bus.store.append_logs(std::slice::from_ref(&row)).await {
                    Ok(()) => bus.broadcast(vec![row]),
                    Err(error) => {
                        tracing::error!(%error, %execution, "could not persist the log limit marker");
                    }
                }
            });
        }
        let kept = budget.kept;
        drop(budget);
        if kept == 0 {
            // Nothing added: the agent's total did not grow.
            return;
        }
        // Deleting old executions' lines can take a while: not on an async worker.
        let log = self.expiry();
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(
                runtime
                    .clone()
                    .spawn_blocking(move || runtime.block_on(log.run())),
            ),
            Err(_) => finish_in_drop(async move { log.run().await }),
        }
    }
}

/// Runs a store write that a `Drop` must make. On SQLite the write never waits, so it is
/// done here and now, as before the store was async; a write that waits (PostgreSQL) goes on
/// as a task of the current runtime, and is lost only if there is none.
fn finish_in_drop(write: impl Future<Output = ()> + Send + 'static) {
    let mut write = Box::pin(write);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    if write.as_mut().poll(&mut cx).is_ready() {
        return;
    }
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => drop(runtime.spawn(write)),
        Err(_) => tracing::error!("a log write was dropped: no async runtime to finish it on"),
    }
}

/// Holds an agent under its total, oldest executions first.
struct Expiry {
    store: Store,
    namespace: String,
    agent: String,
}

impl Expiry {
    async fn run(&self) {
        if let Err(error) = self
            .store
            .expire_logs(&self.namespace, &self.agent, clrk_api::MAX_LOG_LIMIT_BYTES)
            .await
        {
            // The agent may have been deleted meanwhile, its logs with it.
            tracing::debug!(%error, agent = %self.agent, "could not expire old log lines");
        }
    }
}

/// Splits bytes into lines whatever the chunk boundaries, keeping at most `max` bytes of each
/// (the rest is read past and dropped, with a note on the line). Invalid UTF-8 is replaced.
#[derive(Debug)]
pub struct LineSplitter {
    max: usize,
    pending: Vec<u8>,
    /// The current line was cut: its remaining bytes are dropped up to the newline.
    cutting: bool,
}

impl LineSplitter {
    pub fn new(max: usize) -> LineSplitter {
        LineSplitter {
            max,
            pending: Vec::new(),
            cutting: false,
        }
    }

    /// Adds a chunk and returns the lines it completes, without their newlines.
    ///
    /// ```
    /// let mut lines = clrk_dispatch::logs::LineSplitter::new(8);
    /// assert!(lines.push(b"ab").is_empty());
    /// assert_eq!(lines.push(b"c\nd\r\n"), ["abc", "d"]);
    /// ```
    pub fn push(&mut self, mut chunk: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        while !chunk.is_empty() {
            let newline = chunk.iter().position(|&b| b == b'\n');
            let (part, rest) = match newline {
                Some(i) => (&chunk[..i], &chunk[i + 1..]),
                None => (chunk, &[][..]),
            };
            if !self.cutting {
                let room = self.max - self.pending.len();
                if part.len() > room {
                    self.pending.extend_from_slice(&part[..room]);
                    out.push(self.take_line(true));
                    self.cutting = true;
                } else {
                    self.pending.extend_from_slice(part);
                }
            }
            if newline.is_some() {
                if self.cutting {
                    self.cutting = false;
                } else {
                    out.push(self.take_line(false));
                }
            }
            chunk = rest;
        }
        out
    }

    /// The last line when the stream ended without a newline.
    pub fn finish(mut self) -> Option<String> {
        (!self.pending.is_empty() && !self.cutting).then(|| self.take_line(false))
    }

    fn take_line(&mut self, cut: bool) -> String {
        if !cut && self.pending.last() == Some(&b'\r') {
            self.pending.pop();
        }
        let mut line = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        if cut {
            line.push_str(&format!(
                " [clrk] line cut at {} KiB: the rest was dropped",
                self.max / 1024
            ));
        }
        line
    }
}

/// The largest index `<= at` on a char boundary of `s`.
fn floor_char_boundary(s: &str, at: usize) -> usize {
    (0..=at.min(s.len()))
        .rev()
        .find(|&i| s.is_char_boundary(i))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_lines_fill_the_limit_too() {
        let mut budget = Budget::default();
        let limit = 100 * clrk_store::LOG_ROW_COST;
        let (kept, _) = budget.admit(limit, vec![String::new(); 65_536]);
        assert_eq!(kept.len(), 100);
        assert_eq!(budget.dropped_lines, 65_436);
    }

    #[test]
    fn a_run_makes_room_for_its_newest_lines() {
        let limit = LogLimit::from_spec(Some(&"4Ki".parse().unwrap()));
        let mut rolling = Rolling::new(&limit);
        let line = |i: usize| format!("{i:036}"); // 100 bytes with its row
        let mut batch: Vec<String> = (0..40).map(line).collect();
        assert_eq!(rolling.make_room(4096, &mut batch), None, "4,000 bytes fit");
        rolling.stored = 4000;
        // One more does not: the older lines make room for it and for the slack.
        let mut batch = vec![line(40)];
        let max = rolling.make_room(4096, &mut batch).unwrap();
        assert_eq!(batch.len(), 1);
        assert_eq!(max, rolling.room - rolling.slack - 100);
        // A batch past the limit alone keeps its newest lines only.
        let mut batch: Vec<String> = (0..100).map(line).collect();
        // Nothing older may stay beside them, bar what a line would not fill.
        assert!(rolling.make_room(4096, &mut batch).unwrap() < 100);
        assert_eq!(batch.last().unwrap(), &line(99));
        assert!(batch.len() as u64 * 100 <= rolling.room - rolling.slack);
        assert!(
            rolling
                .marker
                .starts_with("[clrk] log limit 4Ki: older lines")
        );
    }

    #[test]
    fn lines_survive_any_chunking() {
        let stream = b"one\ntwo\r\n\nthree";
        for size in 1..stream.len() {
            let mut lines = LineSplitter::new(64);
            let mut out = Vec::new();
            for chunk in stream.chunks(size) {
                out.extend(lines.push(chunk));
            }
            out.extend(lines.finish());
            assert_eq!(out, ["one", "two", "", "three"], "chunk size {size}");
        }
    }

    #[test]
    fn a_long_line_is_cut_and_the_next_one_is_whole() {
        for size in [1, 3, 7, 1000, 10_000] {
            let mut stream = vec![b'x'; 5000];
            stream.extend_from_slice(b"\nnext\n");
            let mut lines = LineSplitter::new(2048);
            let mut out = Vec::new();
            for chunk in stream.chunks(size) {
                out.extend(lines.push(chunk));
            }
            assert!(lines.finish().is_none());
            assert_eq!(out.len(), 2, "{out:?}");
            let cut = format!("{} [clrk] line cut at 2 KiB", "x".repeat(2048));
            assert!(out[0].starts_with(&cut), "{out:?}");
            assert_eq!(out[1], "next");
        }
    }

    #[test]
    fn past_the_limit_lines_are_counted_and_dropped() {
        let mut budget = Budget::default();
        let lines = |n: usize| (0..n).map(|_| "0123456789".to_string()).collect::<Vec<_>>();
        // Each line costs 10 bytes of text and a row: 74.
        let (kept, _) = budget.admit(230, lines(3));
        assert_eq!(kept.len(), 3);
        let (kept, _) = budget.admit(230, lines(2));
        assert!(kept.is_empty(), "the next line would pass the limit");
        // A line that would still fit is dropped too: the log stops at the limit.
        let (kept, _) = budget.admit(230, vec!["x".to_string()]);
        assert!(kept.is_empty());
        let limit = LogLimit {
            bytes: 230,
            text: "230".into(),
        };
        assert_eq!(
            budget.marker(&limit).unwrap(),
            "[clrk] log limit 230 reached: 21 more bytes (3 lines) dropped"
        );
        assert!(Budget::default().marker(&limit).is_none());
    }
}
