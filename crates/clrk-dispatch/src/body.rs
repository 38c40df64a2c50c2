//! Reading a request body into memory within bounds: a size limit, a deadline between two
//! pieces and for the whole body, and a byte budget shared by every body being read, so
//! that clients (or sandboxes) sending bodies slowly or all at once cannot make clrk hold
//! more than the budget.
//!
//! The budget is a semaphore of bytes: each piece takes its size from it before it is kept,
//! and the permit travels with the body until the caller drops it. When the budget is spent
//! the read fails at once with [`BodyError::Busy`] (a 503 to retry) instead of waiting, so a
//! stalled upload never makes others queue behind it.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt as _;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// How a body must arrive.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    /// Most bytes accepted.
    pub max: usize,
    /// Longest wait for the next piece.
    pub idle: Duration,
    /// Longest time for the whole body.
    pub total: Duration,
}

/// Why a body was not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("the request body is larger than the {limit_mib} MiB limit")]
    TooLarge { limit_mib: usize },
    #[error("the request body is malformed, or the connection broke while sending it: {0}")]
    Malformed(String),
    #[error("the request body did not arrive in time: {0}")]
    TimedOut(String),
    #[error(
        "clrk is receiving too many bodies at once ({budget_mib} MiB in flight); retry shortly"
    )]
    Busy { budget_mib: usize },
}

/// Bytes of bodies being held at once, shared by every reader. Cloning shares it.
#[derive(Clone)]
pub struct BodyBudget {
    bytes: Arc<Semaphore>,
    total: usize,
}

impl BodyBudget {
    /// A budget of `total` bytes.
    pub fn new(total: usize) -> BodyBudget {
        BodyBudget {
            bytes: Arc::new(Semaphore::new(total)),
            total,
        }
    }

    /// Bytes not taken by a body right now.
    pub fn available(&self) -> usize {
        self.bytes.available_permits()
    }

    fn take(&self, n: usize) -> Result<OwnedSemaphorePermit, BodyError> {
        let n = u32::try_from(n).map_err(|_| self.busy())?;
        Arc::clone(&self.bytes)
            .try_acquire_many_owned(n)
            .map_err(|_| self.busy())
    }

    fn busy(&self) -> BodyError {
        BodyError::Busy {
            budget_mib: self.total / (1024 * 1024),
        }
    }
}

/// A body read into memory, with its share of the budget; the share returns when dropped.
pub struct HeldBody {
    pub bytes: Bytes,
    permit: BodyPermit,
}

/// A body's share of a [`BodyBudget`], returned when dropped.
#[derive(Debug)]
pub struct BodyPermit {
    _held: Option<OwnedSemaphorePermit>,
}

impl HeldBody {
    /// The bytes and, apart, their share of the budget: the share can outlive this copy of
    /// the bytes when they are moved into something else (an envelope).
    pub fn into_parts(self) -> (Bytes, BodyPermit) {
        (self.bytes, self.permit)
    }
}

impl std::fmt::Debug for HeldBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HeldBody({} bytes)", self.bytes.len())
    }
}

/// Reads `body` within `limits`, taking its bytes from `budget` as they arrive.
/// `declared` is the Content-Length, when there is one: a body declared too large is refused
/// before anything is read, and a declared size is taken from the budget at once.
pub async fn read<B>(
    body: B,
    declared: Option<u64>,
    limits: BodyLimits,
    budget: &BodyBudget,
) -> Result<HeldBody, BodyError>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let too_large = BodyError::TooLarge {
        limit_mib: limits.max / (1024 * 1024),
    };
    if declared.is_some_and(|n| n > limits.max as u64) {
        return Err(too_large);
    }
    let mut body = body;
    let mut permit: Option<OwnedSemaphorePermit> = None;
    let mut reserved = 0usize;
    let mut buffer = BytesMut::new();
    if let Some(n) = declared.filter(|&n| n > 0) {
        let n = n as usize;
        permit = Some(budget.take(n)?);
        reserved = n;
        buffer.reserve(n);
    }
    let end = Instant::now() + limits.total;
    loop {
        let next = Instant::now() + limits.idle;
        let frame = match tokio::time::timeout_at(next.min(end), body.frame()).await {
            Ok(Some(Ok(frame))) => frame,
            Ok(Some(Err(e))) => return Err(BodyError::Malformed(e.to_string())),
            Ok(None) => break,
            Err(_) if Instant::now() >= end => {
                return Err(BodyError::TimedOut(format!(
                    "not complete within {}s",
                    limits.total.as_secs()
                )));
            }
            Err(_) => {
                return Err(BodyError::TimedOut(format!(
                    "nothing received for {}s",
                    limits.idle.as_secs()
                )));
            }
        };
        let Ok(data) = frame.into_data() else {
            continue; // trailers carry nothing the envelope needs
        };
        let len = buffer.len() + data.len();
        if len > limits.max {
            return Err(too_large);
        }
        if len > reserved {
            let more = budget.take(len - reserved)?;
            match permit.as_mut() {
                Some(p) => p.merge(more),
                None => permit = Some(more),
            }
            reserved = len;
        }
        buffer.extend_from_slice(&data);
    }
    Ok(HeldBody {
        bytes: buffer.freeze(),
        permit: BodyPermit { _held: permit },
    })
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use futures::StreamExt as _;
    use http_body::Frame;
    use http_body_util::StreamBody;

    use super::*;

    const MIB: usize = 1024 * 1024;

    fn limits() -> BodyLimits {
        BodyLimits {
            max: 4 * MIB,
            idle: Duration::from_millis(200),
            total: Duration::from_secs(2),
        }
    }

    /// A body of `pieces`, each after `gap`.
    fn body(
        pieces: Vec<&'static [u8]>,
        gap: Duration,
    ) -> StreamBody<impl futures::Stream<Item = Result<Frame<Bytes>, Infallible>> + Unpin> {
        let stream = futures::stream::iter(pieces).then(move |piece| async move {
            tokio::time::sleep(gap).await;
            Ok(Frame::data(Bytes::from_static(piece)))
        });
        StreamBody::new(Box::pin(stream))
    }

    #[tokio::test]
    async fn a_body_is_read_and_its_bytes_return_to_the_budget_when_dropped() {
        let budget = BodyBudget::new(MIB);
        let held = read(
            body(vec![b"hello ", b"world"], Duration::ZERO),
            None,
            limits(),
            &budget,
        )
        .await
        .unwrap();
        assert_eq!(held.bytes, "hello world");
        assert_eq!(budget.available(), MIB - 11);
        drop(held);
        assert_eq!(budget.available(), MIB);
    }

    #[tokio::test]
    async fn a_declared_size_over_the_limit_or_the_budget_is_refused_before_reading() {
        let budget = BodyBudget::new(MIB);
        let never = body(vec![b"x"], Duration::from_secs(3600));
        let err = read(never, Some(5 * MIB as u64), limits(), &budget)
            .await
            .unwrap_err();
        assert_eq!(err, BodyError::TooLarge { limit_mib: 4 });
        let never = body(vec![b"x"], Duration::from_secs(3600));
        let err = read(never, Some(2 * MIB as u64), limits(), &budget)
            .await
            .unwrap_err();
        assert_eq!(err, BodyError::Busy { budget_mib: 1 });
    }

    #[tokio::test]
    async fn a_body_growing_past_the_limit_is_too_large() {
        static BIG: [u8; 3 * 1024 * 1024] = [b'a'; 3 * 1024 * 1024];
        let budget = BodyBudget::new(64 * MIB);
        let err = read(
            body(vec![&BIG, &BIG], Duration::ZERO),
            None,
            limits(),
            &budget,
        )
        .await
        .unwrap_err();
        assert_eq!(err, BodyError::TooLarge { limit_mib: 4 });
        assert_eq!(budget.available(), 64 * MIB);
    }

    #[tokio::test]
    async fn a_stalled_body_times_out_and_so_does_a_slow_one() {
        let budget = BodyBudget::new(MIB);
        let stalled = body(vec![b"a", b"b"], Duration::from_secs(3600));
        let err = read(stalled, None, limits(), &budget).await.unwrap_err();
        assert!(matches!(err, BodyError::TimedOut(ref why) if why.contains("nothing received")));
        // Each piece within the idle timeout, the whole past the total.
        let slow = body(vec![b"a"; 40], Duration::from_millis(100));
        let err = read(slow, None, limits(), &budget).await.unwrap_err();
        assert!(matches!(err, BodyError::TimedOut(ref why) if why.contains("not complete")));
        assert_eq!(budget.available(), MIB);
    }

    #[tokio::test]
    async fn bodies_in_flight_together_cannot_pass_the_budget() {
        let budget = BodyBudget::new(10);
        let first = read(
            body(vec![b"123456"], Duration::ZERO),
            None,
            limits(),
            &budget,
        )
        .await
        .unwrap();
        let err = read(
            body(vec![b"123456"], Duration::ZERO),
            None,
            limits(),
            &budget,
        )
        .await
        .unwrap_err();
        assert_eq!(err, BodyError::Busy { budget_mib: 0 });
        drop(first);
        read(
            body(vec![b"123456"], Duration::ZERO),
            None,
            limits(),
            &budget,
        )
        .await
        .unwrap();
    }
}
