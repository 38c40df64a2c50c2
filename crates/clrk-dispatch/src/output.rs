//! The stdout of a non-streaming agent (`spec.streaming.enabled: false`), held until the agent
//! exits so that its status can still follow its exit code (SPECIFICATION §4.3).
//!
//! Held compactly: chunks are copied into blocks of [`BLOCK`] bytes, so what counts against
//! the cap is what memory holds, however small the agent's writes. All the responses of a
//! process share one memory budget ([`set_memory_budget`]): a response that cannot get a
//! block from it goes on in an unlinked temporary file, so however many executions are in
//! flight, held output takes at most the budget of memory and nothing is lost.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::io::SeekFrom;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use futures::StreamExt as _;
use http_body::{Frame, SizeHint};
use tokio::io::{AsyncSeekExt as _, AsyncWriteExt as _};

/// Most stdout one response holds (SPECIFICATION §4.3).
pub const MAX_BUFFERED_OUTPUT: usize = 32 * 1024 * 1024;
/// Memory all held responses of the process share unless [`set_memory_budget`] says otherwise.
pub const DEFAULT_MEMORY_BUDGET: usize = 256 * 1024 * 1024;
/// Size of the blocks output is copied into.
const BLOCK: usize = 64 * 1024;

/// Bytes of memory held responses have now, and the most they may have.
static HELD: AtomicUsize = AtomicUsize::new(0);
static BUDGET: AtomicUsize = AtomicUsize::new(DEFAULT_MEMORY_BUDGET);

/// Sets the memory all held responses of this process share (`--held-output-memory`).
pub fn set_memory_budget(bytes: usize) {
    BUDGET.store(bytes, Ordering::Relaxed);
}

/// Memory held responses have now, in bytes.
pub fn held_memory() -> usize {
    HELD.load(Ordering::Relaxed)
}

/// A share of the memory budget, given back when dropped.
#[derive(Debug, Default)]
pub struct Reservation(usize);

impl Reservation {
    /// Takes `bytes` more from the budget, or nothing when the budget has less left.
    pub fn grow(&mut self, bytes: usize) -> bool {
        let budget = BUDGET.load(Ordering::Relaxed);
        let taken = HELD.fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
            (held + bytes <= budget).then_some(held + bytes)
        });
        if taken.is_ok() {
            self.0 += bytes;
            clrk_metrics::global().held_output(held_memory());
        }
        taken.is_ok()
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.0 > 0 {
            HELD.fetch_sub(self.0, Ordering::AcqRel);
            clrk_metrics::global().held_output(held_memory());
        }
    }
}

/// Why output could not be held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HoldError {
    /// Over the cap: nothing more is kept.
    OverCap {
        /// The cap that was exceeded, in bytes.
        cap: usize,
    },
    /// The temporary file the output went on in could not be made or written.
    Spill(String),
}

impl std::fmt::Display for HoldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HoldError::OverCap { cap } => write!(
                f,
                "the agent wrote more than {} MiB of stdout, the most a response is held in \
                 before the agent exits; set spec.streaming.enabled: true to stream it instead",
                cap / (1024 * 1024)
            ),
            HoldError::Spill(reason) => write!(
                f,
                "clrk could not hold the agent's output: its memory for held output is in use \
                 and a temporary file failed ({reason}); retry, or set \
                 spec.streaming.enabled: true"
            ),
        }
    }
}

/// Stdout held until the agent exits, up to a cap: in memory while the budget has room, then
/// in a temporary file.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use clrk_dispatch::output::OutputBuffer;
/// let mut out = OutputBuffer::new(8);
/// out.push(b"hello ").await.unwrap();
/// assert!(out.push(b"world").await.is_err());
/// # });
/// ```
#[derive(Debug)]
pub struct OutputBuffer {
    cap: usize,
    len: usize,
    full: Vec<Bytes>,
    current: BytesMut,
    memory: Reservation,
    file: Option<tokio::fs::File>,
}

impl OutputBuffer {
    /// An empty buffer that holds at most `cap` bytes.
    pub fn new(cap: usize) -> OutputBuffer {
        OutputBuffer {
            cap,
            len: 0,
            full: Vec::new(),
            current: BytesMut::new(),
            memory: Reservation::default(),
            file: None,
        }
    }

    /// Appends `chunk`; past the cap the buffer is emptied and stays so.
    pub async fn push(&mut self, mut chunk: &[u8]) -> Result<(), HoldError> {
        if self.len + chunk.len() > self.cap {
            // Freed at once: the caller is answered without it.
            self.full = Vec::new();
            self.current = BytesMut::new();
            self.memory = Reservation::default();
            self.file = None;
            return Err(HoldError::OverCap { cap: self.cap });
        }
        self.len += chunk.len();
        while !chunk.is_empty() {
            if let Some(file) = &mut self.file {
                return file
                    .write_all(chunk)
                    .await
                    .map_err(|e| HoldError::Spill(e.to_string()));
            }
            if self.current.capacity() == self.current.len() {
                if !self.memory.grow(BLOCK) {
                    self.spill().await?;
                    continue;
                }
                if !self.current.is_empty() {
                    let block = std::mem::take(&mut self.current).freeze();
                    self.full.push(block);
                }
                self.current.reserve(BLOCK);
            }
            let room = self.current.capacity() - self.current.len();
            let (now, later) = chunk.split_at(room.min(chunk.len()));
            self.current.extend_from_slice(now);
            chunk = later;
        }
        Ok(())
    }

    /// Moves what memory holds into a new unlinked temporary file, which takes the rest.
    async fn spill(&mut self) -> Result<(), HoldError> {
        let file = tokio::task::spawn_blocking(tempfile::tempfile)
            .await
            .map_err(|e| HoldError::Spill(e.to_string()))?
            .map_err(|e| HoldError::Spill(e.to_string()))?;
        let mut file = tokio::fs::File::from_std(file);
        for block in self
            .full
            .drain(..)
            .chain([std::mem::take(&mut self.current).freeze()])
        {
            file.write_all(&block)
                .await
                .map_err(|e| HoldError::Spill(e.to_string()))?;
        }
        self.memory = Reservation::default();
        self.file = Some(file);
        clrk_metrics::global().held_output_spilled();
        Ok(())
    }

    /// Bytes held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The held output as a response body of exactly [`len`](Self::len) bytes; its memory
    /// stays counted until the body is sent.
    pub async fn into_body(mut self) -> Result<Body, HoldError> {
        let remaining = self.len as u64;
        if let Some(mut file) = self.file.take() {
            file.flush()
                .await
                .and(file.seek(SeekFrom::Start(0)).await.map(drop))
                .map_err(|e| HoldError::Spill(e.to_string()))?;
            let frames = tokio_util::io::ReaderStream::with_capacity(file, BLOCK)
                .map(|read| read.map(Frame::data));
            return Ok(Body::new(Sized {
                inner: http_body_util::StreamBody::new(frames),
                remaining,
            }));
        }
        if !self.current.is_empty() {
            self.full.push(self.current.freeze());
        }
        Ok(Body::new(Blocks {
            remaining,
            blocks: self.full.into(),
            _memory: self.memory,
        }))
    }
}

/// A body of a length known up front (the response's Content-Length) read from a stream.
struct Sized<B> {
    inner: B,
    remaining: u64,
}

impl<B> http_body::Body for Sized<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            self.remaining = self.remaining.saturating_sub(data.len() as u64);
        }
        polled
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

/// Blocks sent in order, their total length known up front (the response's Content-Length).
struct Blocks {
    blocks: VecDeque<Bytes>,
    remaining: u64,
    _memory: Reservation,
}

impl http_body::Body for Blocks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let block = self.blocks.pop_front();
        if let Some(block) = &block {
            self.remaining -= block.len() as u64;
        }
        Poll::Ready(block.map(|block| Ok(Frame::data(block))))
    }

    fn is_end_stream(&self) -> bool {
        self.blocks.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt as _;

    use super::*;

    /// What `out` holds, as the response sends it, checked to be as long as it says.
    async fn sent(out: OutputBuffer) -> Bytes {
        let len = out.len() as u64;
        let body = out.into_body().await.unwrap();
        assert_eq!(http_body::Body::size_hint(&body).exact(), Some(len));
        body.collect().await.unwrap().to_bytes()
    }

    #[tokio::test]
    async fn output_comes_back_whole_with_its_length() {
        let mut out = OutputBuffer::new(1 << 20);
        let mut expected = Vec::new();
        for i in 0..2000u32 {
            let chunk = vec![(i % 251) as u8; (i % 300) as usize];
            out.push(&chunk).await.unwrap();
            expected.extend_from_slice(&chunk);
        }
        assert_eq!(out.len(), expected.len());
        assert_eq!(sent(out).await, expected);
    }

    #[tokio::test]
    async fn small_writes_are_held_in_blocks_not_one_allocation_each() {
        let mut out = OutputBuffer::new(1 << 20);
        for _ in 0..BLOCK {
            out.push(b"ab").await.unwrap();
        }
        // Two bytes a write, 64 KiB a block: memory is about what is held, however many
        // writes made it.
        let held: usize = out.full.iter().map(Bytes::len).sum::<usize>() + out.current.capacity();
        assert!(held <= 3 * BLOCK, "{held} bytes held for {}", 2 * BLOCK);
        assert_eq!(sent(out).await.len(), 2 * BLOCK);
    }

    #[tokio::test]
    async fn the_cap_is_exact_and_over_it_nothing_is_held() {
        let mut out = OutputBuffer::new(10);
        out.push(b"0123456789").await.unwrap();
        let err = out.push(b"x").await.unwrap_err();
        assert_eq!(err, HoldError::OverCap { cap: 10 });
        assert_eq!(out.full.len() + out.current.capacity(), 0);
        let said = HoldError::OverCap {
            cap: MAX_BUFFERED_OUTPUT,
        }
        .to_string();
        assert!(said.contains("32 MiB"), "{said}");
        assert!(said.contains("spec.streaming.enabled: true"), "{said}");
    }

    #[tokio::test]
    async fn nothing_written_is_an_empty_body() {
        let body = OutputBuffer::new(10).into_body().await.unwrap();
        assert!(http_body::Body::is_end_stream(&body));
        assert!(body.collect().await.unwrap().to_bytes().is_empty());
    }

    /// Past the shared budget a response goes on in a file: memory stays within the budget,
    /// the output comes back whole, and the memory is given back once the bodies are sent.
    #[tokio::test]
    async fn past_the_shared_budget_output_goes_on_in_a_file_and_nothing_is_lost() {
        set_memory_budget(4 * BLOCK);
        let mut outs: Vec<(OutputBuffer, Vec<u8>)> = Vec::new();
        for n in 0..3u8 {
            let mut out = OutputBuffer::new(1 << 22);
            let mut expected = Vec::new();
            for i in 0..150u32 {
                let chunk = vec![n.wrapping_mul(31).wrapping_add((i % 199) as u8); 1000];
                out.push(&chunk).await.unwrap();
                expected.extend_from_slice(&chunk);
                assert!(held_memory() <= 4 * BLOCK, "{} held", held_memory());
            }
            outs.push((out, expected));
        }
        assert!(
            outs.iter().any(|(out, _)| out.file.is_some()),
            "one spilled"
        );
        assert!(
            outs.iter().any(|(out, _)| out.file.is_none()),
            "one in memory"
        );
        for (out, expected) in outs {
            assert_eq!(sent(out).await, expected);
        }
        assert_eq!(held_memory(), 0);
        set_memory_budget(DEFAULT_MEMORY_BUDGET);
    }
}
