//! Bytes relayed both ways between an agent and an upstream (a TCP connection, passthrough
//! TLS, a switched protocol) until both directions end, or until no byte has passed either
//! way for the idle timeout: a stalled stream must not hold clrk's descriptors for ever.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::time::Instant;

/// What a relay moved, and why it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Relayed {
    /// Bytes from the agent to the upstream.
    pub(crate) sent: u64,
    /// Bytes from the upstream to the agent.
    pub(crate) received: u64,
    /// Whether it was cut off for being idle rather than closed by either side.
    pub(crate) idle: bool,
}

/// Relays `agent` and `upstream` both ways; each direction is closed (shut down) when its
/// source ends, and everything is dropped after `idle` without a byte either way.
pub(crate) async fn both<A, U>(agent: A, upstream: U, idle: Duration) -> Relayed
where
    A: AsyncRead + AsyncWrite,
    U: AsyncRead + AsyncWrite,
{
    let start = Instant::now();
    // Milliseconds from `start` to the last byte either way.
    let last = AtomicU64::new(0);
    let (sent, received) = (AtomicU64::new(0), AtomicU64::new(0));
    let (agent_read, agent_write) = tokio::io::split(agent);
    let (upstream_read, upstream_write) = tokio::io::split(upstream);
    let pumps = async {
        tokio::join!(
            pump(agent_read, upstream_write, &sent, &last, start),
            pump(upstream_read, agent_write, &received, &last, start)
        )
    };
    let watchdog = async {
        loop {
            let deadline = start + Duration::from_millis(last.load(Ordering::Relaxed)) + idle;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    };
    let idle = tokio::select! {
        _ = pumps => false,
        () = watchdog => true,
    };
    Relayed {
        sent: sent.load(Ordering::Relaxed),
        received: received.load(Ordering::Relaxed),
        idle,
    }
}

/// Copies `from` to `to` until `from` ends, then shuts `to` down. An abrupt end (a TLS peer
/// leaving without close_notify, say) is an end like any other.
async fn pump(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    copied: &AtomicU64,
    last: &AtomicU64,
    start: Instant,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                last.store(start.elapsed().as_millis() as u64, Ordering::Relaxed);
                if to.write_all(&buf[..n]).await.is_err() {
                    break;
                }
                copied.fetch_add(n as u64, Ordering::Relaxed);
            }
        }
    }
    let _ = to.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_stream_with_no_bytes_either_way_is_cut_off() {
        let (agent, mut agent_peer) = tokio::io::duplex(64);
        let (upstream, _upstream_peer) = tokio::io::duplex(64);
        let relay = tokio::spawn(both(agent, upstream, Duration::from_secs(600)));
        tokio::time::sleep(Duration::from_secs(300)).await;
        agent_peer.write_all(b"ping").await.unwrap();
        // The byte moved the deadline: 599 s later it still runs.
        tokio::time::sleep(Duration::from_secs(599)).await;
        assert!(!relay.is_finished());
        let relayed = relay.await.unwrap();
        assert_eq!(
            relayed,
            Relayed {
                sent: 4,
                received: 0,
                idle: true
            }
        );
    }

    #[tokio::test]
    async fn both_directions_are_relayed_until_both_close() {
        let (agent, mut agent_peer) = tokio::io::duplex(64);
        let (upstream, mut upstream_peer) = tokio::io::duplex(64);
        let relay = tokio::spawn(both(agent, upstream, Duration::from_secs(600)));
        agent_peer.write_all(b"hello").await.unwrap();
        agent_peer.shutdown().await.unwrap();
        let mut got = Vec::new();
        upstream_peer.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"hello");
        upstream_peer.write_all(b"HI").await.unwrap();
        drop(upstream_peer);
        let mut back = Vec::new();
        agent_peer.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, b"HI");
        let relayed = relay.await.unwrap();
        assert_eq!(
            (relayed.sent, relayed.received, relayed.idle),
            (5, 2, false)
        );
    }
}
