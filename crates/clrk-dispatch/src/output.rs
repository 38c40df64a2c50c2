//! The stdout of a non-streaming agent (`spec.streaming.enabled: false`), held in memory until
//! the agent exits so that its status can still follow its exit code (SPECIFICATION §4.3).
//!
//! Held compactly: chunks are copied into blocks of [`BLOCK`] bytes, so what counts against
//! the cap is what memory holds, however small the agent's writes.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use http_body::{Frame, SizeHint};

/// Most stdout one response holds (SPECIFICATION §4.3): the cap is per response, so clrk holds
/// at most this times the executions in flight of non-streaming agents.
pub const MAX_BUFFERED_OUTPUT: usize = 32 * 1024 * 1024;
/// Size of the blocks output is copied into.
const BLOCK: usize = 64 * 1024;

/// Output over the cap: nothing more is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverCap {
    /// The cap that was exceeded, in bytes.
    pub cap: usize,
}

impl std::fmt::Display for OverCap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the agent wrote more than {} MiB of stdout, the most a response is held in \
             before the agent exits; set spec.streaming.enabled: true to stream it instead",
            self.cap / (1024 * 1024)
        )
    }
}

/// Stdout held until the agent exits, up to a cap.
///
/// ```
/// use clrk_dispatch::output::OutputBuffer;
/// let mut out = OutputBuffer::new(8);
/// out.push(b"hello ").unwrap();
/// assert!(out.push(b"world").is_err());
/// ```
#[derive(Debug)]
pub struct OutputBuffer {
    cap: usize,
    len: usize,
    full: Vec<Bytes>,
    current: BytesMut,
}

impl OutputBuffer {
    /// An empty buffer that holds at most `cap` bytes.
    pub fn new(cap: usize) -> OutputBuffer {
        OutputBuffer {
            cap,
            len: 0,
            full: Vec::new(),
            current: BytesMut::new(),
        }
    }

    /// Appends `chunk`; past the cap the buffer is emptied and stays so.
    pub fn push(&mut self, mut chunk: &[u8]) -> Result<(), OverCap> {
        if self.len + chunk.len() > self.cap {
            // Freed at once: the caller is answered without it.
            self.full = Vec::new();
            self.current = BytesMut::new();
            return Err(OverCap { cap: self.cap });
        }
        self.len += chunk.len();
        while !chunk.is_empty() {
            if self.current.capacity() == self.current.len() {
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

    /// Bytes held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The held output as a response body of exactly [`len`](Self::len) bytes.
    pub fn into_body(mut self) -> Body {
        if !self.current.is_empty() {
            self.full.push(self.current.freeze());
        }
        Body::new(Blocks {
            remaining: self.len as u64,
            blocks: self.full.into(),
        })
    }
}

/// Blocks sent in order, their total length known up front (the response's Content-Length).
struct Blocks {
    blocks: VecDeque<Bytes>,
    remaining: u64,
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

    #[tokio::test]
    async fn output_comes_back_whole_with_its_length() {
        let mut out = OutputBuffer::new(1 << 20);
        let mut expected = Vec::new();
        for i in 0..2000u32 {
            let chunk = vec![(i % 251) as u8; (i % 300) as usize];
            out.push(&chunk).unwrap();
            expected.extend_from_slice(&chunk);
        }
        assert_eq!(out.len(), expected.len());
        let body = out.into_body();
        assert_eq!(
            http_body::Body::size_hint(&body).exact(),
            Some(expected.len() as u64)
        );
        assert_eq!(body.collect().await.unwrap().to_bytes(), expected);
    }

    #[tokio::test]
    async fn small_writes_are_held_in_blocks_not_one_allocation_each() {
        let mut out = OutputBuffer::new(1 << 20);
        for _ in 0..BLOCK {
            out.push(b"ab").unwrap();
        }
        // Two bytes a write, 64 KiB a block: memory is about what is held, however many
        // writes made it.
        let held: usize = out.full.iter().map(Bytes::len).sum::<usize>() + out.current.capacity();
        assert!(held <= 3 * BLOCK, "{held} bytes held for {}", 2 * BLOCK);
        let body = out.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body.len(), 2 * BLOCK);
    }

    #[test]
    fn the_cap_is_exact_and_over_it_nothing_is_held() {
        let mut out = OutputBuffer::new(10);
        out.push(b"0123456789").unwrap();
        let err = out.push(b"x").unwrap_err();
        assert_eq!(err, OverCap { cap: 10 });
        assert_eq!(out.full.len() + out.current.capacity(), 0);
        let said = OverCap {
            cap: MAX_BUFFERED_OUTPUT,
        }
        .to_string();
        assert!(said.contains("32 MiB"), "{said}");
        assert!(said.contains("spec.streaming.enabled: true"), "{said}");
    }

    #[tokio::test]
    async fn nothing_written_is_an_empty_body() {
        let body = OutputBuffer::new(10).into_body();
        assert!(http_body::Body::is_end_stream(&body));
        assert!(body.collect().await.unwrap().to_bytes().is_empty());
    }
}
