//! Provider request bodies read whole (the model is in them) within bounds: a size limit, a
//! deadline for the whole body, and a byte budget shared by every body the gateway holds, so
//! that sandboxes sending bodies slowly or all at once cannot make clrk hold more than the
//! budget. The wait between two pieces is bounded by the body itself ([`IdleBody`]).
//!
//! The budget is a semaphore of bytes: each piece takes its size from it before it is kept,
//! and the share lasts until the caller drops the [`HeldBody`]. When the budget is spent the
//! read fails at once (a 503 to retry) instead of waiting, so a stalled upload never makes
//! others queue behind it.
//!
//! The body types every part of the proxy passes around ([`ProxyBody`], [`BodyError`]) are
//! defined here too.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http::StatusCode;
use http_body_util::BodyExt as _;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::limits::{BODY_IDLE_TIMEOUT, MAX_PROVIDER_REQUEST, PROVIDER_BODY_TIMEOUT};

/// Why a body failed: hyper's error, or the gateway's own (a body arriving too slowly).
pub(crate) type BodyError = Box<dyn std::error::Error + Send + Sync>;

/// A request or response body as the proxy passes it on, whatever it was made from.
pub(crate) type ProxyBody = http_body_util::combinators::BoxBody<Bytes, BodyError>;

/// The gateway's own cut-off of a body that sent nothing for [`BODY_IDLE_TIMEOUT`].
#[derive(Debug, thiserror::Error)]
#[error(
    "the request body sent nothing for {}: cut off",
    clrk_api::GoDuration(BODY_IDLE_TIMEOUT)
)]
pub(crate) struct IdleBody;

/// Why a body was not read whole.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    #[error("the request body is larger than the gateway's {} MiB limit for provider calls", MAX_PROVIDER_REQUEST / MIB)]
    TooLarge,
    #[error(
        "the request body was not complete within {}",
        clrk_api::GoDuration(PROVIDER_BODY_TIMEOUT)
    )]
    TooSlow,
    #[error(
        "gateway busy: the provider request bodies it is reading fill its {budget_mib} MiB; retry shortly"
    )]
    Busy { budget_mib: usize },
    #[error("the request body could not be read: {0}")]
    Broken(BodyError),
}

impl ReadError {
    /// What to answer the agent.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            ReadError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ReadError::TooSlow => StatusCode::REQUEST_TIMEOUT,
            ReadError::Busy { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ReadError::Broken(e) if e.downcast_ref::<IdleBody>().is_some() => {
                StatusCode::REQUEST_TIMEOUT
            }
            ReadError::Broken(_) => StatusCode::BAD_REQUEST,
        }
    }
}

const MIB: usize = 1024 * 1024;

/// Bytes of bodies being held at once, shared by every reader. Cloning shares it.
#[derive(Clone)]
pub(crate) struct BodyBudget {
    bytes: Arc<Semaphore>,
    total: usize,
}

impl BodyBudget {
    /// A budget of `total` bytes.
    pub(crate) fn new(total: usize) -> BodyBudget {
        BodyBudget {
            bytes: Arc::new(Semaphore::new(total)),
            total,
        }
    }

    fn take(&self, n: usize) -> Result<OwnedSemaphorePermit, ReadError> {
        let busy = || ReadError::Busy {
            budget_mib: self.total / MIB,
        };
        let n = u32::try_from(n).map_err(|_| busy())?;
        Arc::clone(&self.bytes)
            .try_acquire_many_owned(n)
            .map_err(|_| busy())
    }

    #[cfg(test)]
    fn available(&self) -> usize {
        self.bytes.available_permits()
    }
}

/// A body read into memory with its share of the budget; the share returns when dropped.
pub(crate) struct HeldBody {
    pub(crate) bytes: Bytes,
    _share: Option<OwnedSemaphorePermit>,
}

impl std::fmt::Debug for HeldBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HeldBody({} bytes)", self.bytes.len())
    }
}

/// Reads `body` whole, taking its bytes from `budget` as they arrive (a declared length at
/// once), within [`MAX_PROVIDER_REQUEST`] and [`PROVIDER_BODY_TIMEOUT`].
pub(crate) async fn read<B>(body: B, budget: &BodyBudget) -> Result<HeldBody, ReadError>
where
    B: http_body::Body<Data = Bytes, Error = BodyError> + Unpin,
{
    let mut body = body;
    let declared = body.size_hint().exact();
    if declared.is_some_and(|n| n > MAX_PROVIDER_REQUEST as u64) {
        return Err(ReadError::TooLarge);
    }
    let mut share: Option<OwnedSemaphorePermit> = None;
    let mut reserved = 0usize;
    let mut buffer = BytesMut::new();
    if let Some(n) = declared.filter(|&n| n > 0) {
        let n = n as usize;
        share = Some(budget.take(n)?);
        reserved = n;
        buffer.reserve(n);
    }
    let end = Instant::now() + PROVIDER_BODY_TIMEOUT;
    loop {
        let frame = match tokio::time::timeout_at(end, body.frame()).await {
            Ok(Some(Ok(frame))) => frame,
            Ok(Some(Err(e))) => return Err(ReadError::Broken(e)),
            Ok(None) => break,
            Err(_) => return Err(ReadError::TooSlow),
        };
        let Ok(data) = frame.into_data() else {
            continue; // trailers say nothing about the model
        };
        let len = buffer.len() + data.len();
        if len > MAX_PROVIDER_REQUEST {
            return Err(ReadError::TooLarge);
        }
        if len > reserved {
            let more = budget.take(len - reserved)?;
            match share.as_mut() {
                Some(s) => s.merge(more),
                None => share = Some(more),
            }
            reserved = len;
        }
        buffer.extend_from_slice(&data);
    }
    Ok(HeldBody {
        bytes: buffer.freeze(),
        _share: share,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures::StreamExt as _;
    use http_body::Frame;
    use http_body_util::StreamBody;

    use super::*;

    /// A body of `pieces`, each after `gap`, then silence for ever when `stall`.
    fn body(
        pieces: Vec<Bytes>,
        gap: Duration,
        stall: bool,
    ) -> impl http_body::Body<Data = Bytes, Error = BodyError> + Unpin {
        let stream = futures::stream::iter(pieces)
            .then(move |piece| async move {
                tokio::time::sleep(gap).await;
                Ok::<_, BodyError>(Frame::data(piece))
            })
            .chain(futures::stream::once(async move {
                if stall {
                    std::future::pending::<()>().await;
                }
                Err(BodyError::from("end"))
            }))
            .take_while(|r| std::future::ready(r.is_ok()));
        StreamBody::new(Box::pin(stream))
    }

    #[tokio::test(start_paused = true)]
    async fn bodies_share_one_budget_and_give_it_back() {
        let budget = BodyBudget::new(MIB);
        let piece = || Bytes::from(vec![b'x'; 3 * MIB / 4]);
        let held = read(body(vec![piece()], Duration::ZERO, false), &budget)
            .await
            .unwrap();
        assert_eq!(held.bytes.len(), 3 * MIB / 4);
        let refused = read(body(vec![piece()], Duration::ZERO, false), &budget).await;
        assert!(
            matches!(refused, Err(ReadError::Busy { budget_mib: 1 })),
            "{refused:?}"
        );
        drop(held);
        assert_eq!(budget.available(), MIB);
        assert!(
            read(body(vec![piece()], Duration::ZERO, false), &budget)
                .await
                .is_ok()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_never_ends_is_cut_off_at_the_deadline() {
        let budget = BodyBudget::new(MIB);
        let started = Instant::now();
        let piece = Bytes::from_static(b"{\"model\":");
        let failed = read(body(vec![piece], Duration::from_secs(1), true), &budget).await;
        assert!(matches!(failed, Err(ReadError::TooSlow)), "{failed:?}");
        assert_eq!(failed.err().unwrap().status(), StatusCode::REQUEST_TIMEOUT);
        assert!(started.elapsed() <= PROVIDER_BODY_TIMEOUT + Duration::from_secs(1));
        assert_eq!(budget.available(), MIB);
    }
}
