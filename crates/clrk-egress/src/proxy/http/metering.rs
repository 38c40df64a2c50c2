//! The bodies the proxy wraps around what passes: a request body that counts its bytes and is
//! cut off when it stops sending ([`Counted`]), and a response body that counts and meters
//! what passes and finishes the transaction at its end ([`Metered`]).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame};
use hyper::body::Incoming;

use crate::limits::BODY_IDLE_TIMEOUT;
use crate::proxy::body::{BodyError, IdleBody};
use crate::telemetry::transaction::Transaction;
use crate::usage::UsageMeter;

/// A request body that counts what passes, and fails when nothing arrives for
/// [`BODY_IDLE_TIMEOUT`]: an agent that stops sending must not hold a connection (and an
/// upstream one) for ever, while one sending slowly but steadily goes on.
pub(super) struct Counted<B = Incoming> {
    inner: B,
    count: Arc<AtomicU64>,
    /// When the body is cut off unless a piece arrives first.
    idle: Pin<Box<tokio::time::Sleep>>,
}

impl<B> Counted<B> {
    pub(super) fn new(inner: B, count: Arc<AtomicU64>) -> Counted<B> {
        Counted {
            inner,
            count,
            idle: Box::pin(tokio::time::sleep(BODY_IDLE_TIMEOUT)),
        }
    }
}

impl<B> Body for Counted<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BodyError>,
{
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.count.fetch_add(data.len() as u64, Ordering::Relaxed);
                }
                let next = tokio::time::Instant::now() + BODY_IDLE_TIMEOUT;
                self.idle.as_mut().reset(next);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => Poll::Ready(Some(Err(error.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match self.idle.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(IdleBody.into()))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that counts and meters what passes, and finishes the transaction at its
/// end (or when the agent stops reading).
pub(super) struct Metered {
    inner: Incoming,
    meter: Option<UsageMeter>,
    tx: Option<Transaction>,
}

impl Metered {
    /// Meters `inner` with `meter` (a provider's usage), finishing `tx` at its end.
    pub(super) fn new(inner: Incoming, meter: Option<UsageMeter>, tx: Transaction) -> Metered {
        Metered {
            inner,
            meter,
            tx: Some(tx),
        }
    }

    fn end(&mut self) {
        if let Some(mut tx) = self.tx.take() {
            if let Some(meter) = self.meter.take() {
                tx.usage = meter.finish();
            }
            tx.finish();
        }
    }
}

impl Body for Metered {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let this = &mut *self;
                    if let Some(tx) = &mut this.tx {
                        tx.record.response_bytes += data.len() as u64;
                    }
                    if let Some(meter) = &mut this.meter {
                        meter.feed(data);
                    }
                }
            }
            Poll::Ready(None) => self.end(),
            Poll::Ready(Some(Err(error))) => {
                if let Some(tx) = &mut self.tx {
                    tx.record.reason =
                        format!("{}; upstream body failed: {error}", tx.record.reason);
                }
                self.end();
            }
            Poll::Pending => {}
        }
        polled.map_err(Into::into)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Metered {
    fn drop(&mut self) {
        self.end();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt as _;

    /// A body sent in `pieces`, each after `gap`, that stalls for ever after the last.
    fn trickle(
        pieces: usize,
        gap: std::time::Duration,
    ) -> impl Body<Data = Bytes, Error = BodyError> + Unpin {
        use futures::StreamExt as _;
        let stream = futures::stream::iter(0..pieces)
            .then(move |_| async move {
                tokio::time::sleep(gap).await;
                Ok::<_, BodyError>(Frame::data(Bytes::from_static(&[b'x'; 100])))
            })
            .chain(futures::stream::pending());
        http_body_util::StreamBody::new(Box::pin(stream))
    }

    /// Cut off after a silence, however much was sent before it; a slow upload that keeps
    /// sending goes on however long it takes.
    #[tokio::test(start_paused = true)]
    async fn a_body_is_cut_off_when_it_stops_sending_not_when_it_is_slow() {
        use std::time::Duration;
        let count = Arc::new(AtomicU64::new(0));
        let mut slow = Counted::new(trickle(12, Duration::from_secs(20)), Arc::clone(&count));
        let started = tokio::time::Instant::now();
        for _ in 0..12 {
            let frame = slow
                .frame()
                .await
                .unwrap()
                .expect("a steady upload was cut off");
            assert_eq!(frame.into_data().unwrap().len(), 100);
        }
        // 1,200 bytes in four minutes went through; then silence is cut off after 30 s.
        let last = tokio::time::Instant::now();
        assert_eq!(last - started, Duration::from_secs(240));
        let error = slow.frame().await.unwrap().unwrap_err();
        assert!(error.downcast_ref::<IdleBody>().is_some(), "{error}");
        assert_eq!(last.elapsed(), BODY_IDLE_TIMEOUT);
        assert_eq!(count.load(Ordering::Relaxed), 1200);
    }
}
