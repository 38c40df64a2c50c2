//! The bounds the gateway puts on what one sandbox can make clrk hold: connections and DNS
//! questions at once, request body memory, and how long a silent or slow client keeps a
//! connection. They are
//! together so they can be read, and changed, as one policy: whatever a sandbox does, clrk
//! keeps descriptors and time for the other sandboxes and for its own API.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Connections one sandbox may have open through the proxy at once, both address families
/// together. A relayed connection costs clrk two descriptors (the agent's and the
/// upstream's), so one sandbox holds at most about 512; beyond the cap its new connections
/// are closed as soon as they are accepted.
pub(crate) const MAX_CONNECTIONS_PER_SANDBOX: usize = 256;

/// Connections open through the proxy at once, all sandboxes together (two descriptors
/// each): whatever several sandboxes do together, clrk keeps descriptors for its API, its
/// ingress and new sandboxes. Well below the hard file-descriptor limit clrk raises itself to.
pub(crate) const MAX_CONNECTIONS_TOTAL: usize = 4096;

/// DNS questions of one sandbox being answered at once; each forwarded one holds a socket
/// until the upstream resolver answers. Questions beyond it are dropped (the agent's
/// resolver asks again).
pub(crate) const MAX_DNS_IN_FLIGHT_PER_SANDBOX: usize = 64;

/// A sandbox's refused connections are recorded at most this often, each record with the
/// number refused since the last: a flood of refusals must not become a flood of records.
pub(crate) const REFUSAL_RECORD_EVERY: Duration = Duration::from_secs(1);

/// Longest an agent's TLS handshake with a terminating gateway may take.
pub(crate) const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest the gateway waits for a request's headers, from when it starts waiting for the
/// request: a client trickling its headers is cut off, and so is a kept-alive connection
/// left idle this long.
pub(crate) const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// A request body that sends nothing for this long is cut off (408): a stalled upload must
/// not hold a connection, an upstream one and what it sent so far. A slow upload that keeps
/// sending, however slowly, is not cut off by this; a streamed one is bounded by the
/// gateway's `requestTimeout`, a buffered one by [`PROVIDER_BODY_TIMEOUT`].
pub(crate) const BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Largest request body of a provider call, which the gateway reads whole to find the model.
pub(crate) const MAX_PROVIDER_REQUEST: usize = 32 * 1024 * 1024;

/// Longest a provider call's request body may take to arrive whole (408 after): it is held
/// in memory while it arrives.
pub(crate) const PROVIDER_BODY_TIMEOUT: Duration = Duration::from_secs(300);

/// Bytes of provider request bodies the gateway holds at once, all sandboxes together. A body
/// that would go beyond it is refused at once (503, retry shortly): whatever sandboxes send,
/// the gateway holds at most this much of it.
pub(crate) const PROVIDER_BODY_BUDGET: usize = 256 * 1024 * 1024;

/// A relayed stream (TCP, passthrough TLS, a protocol switch) silent both ways for an hour is
/// closed. Generous on purpose: a daemon's pooled database connection or SSH session may be
/// quiet for many minutes and is not a stalled one. What bounds how many can idle is the
/// per-sandbox cap ([`MAX_CONNECTIONS_PER_SANDBOX`]), not this timeout.
pub(crate) const RELAY_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);

/// What one sandbox holds of the gateway, counted against the caps above.
#[derive(Debug, Default)]
pub(crate) struct SandboxLimits {
    pub(crate) connections: Slots,
    pub(crate) dns_questions: Slots,
    pub(crate) refused: Refusals,
}

/// A count of things in use; a slot taken is given back when its [`Slot`] drops. Cloning
/// shares the count.
#[derive(Debug, Default, Clone)]
pub(crate) struct Slots {
    used: Arc<AtomicUsize>,
}

/// One slot of [`Slots`], given back on drop.
#[derive(Debug)]
pub(crate) struct Slot {
    used: Arc<AtomicUsize>,
}

impl Slots {
    /// A slot, unless `cap` are in use.
    pub(crate) fn take(&self, cap: usize) -> Option<Slot> {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < cap).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot {
                used: Arc::clone(&self.used),
            })
    }

    #[cfg(test)]
    pub(crate) fn in_use(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.used.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Refusals counted between records.
#[derive(Debug, Default)]
pub(crate) struct Refusals {
    state: Mutex<RefusalState>,
}

#[derive(Debug, Default)]
struct RefusalState {
    last_record: Option<Instant>,
    /// Refused since the last record.
    count: u64,
}

impl Refusals {
    /// Counts a refusal; `Some(n)` when it is time to record the `n` refused since the last
    /// record (this one included).
    pub(crate) fn note(&self) -> Option<u64> {
        self.note_at(Instant::now())
    }

    fn note_at(&self, now: Instant) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.count += 1;
        if state
            .last_record
            .is_some_and(|at| now.duration_since(at) < REFUSAL_RECORD_EVERY)
        {
            return None;
        }
        state.last_record = Some(now);
        Some(std::mem::take(&mut state.count))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_stop_at_the_cap_and_come_back_when_dropped() {
        let slots = Slots::default();
        let held: Vec<Slot> = (0..3).map_while(|_| slots.take(3)).collect();
        assert_eq!(held.len(), 3);
        assert!(slots.take(3).is_none());
        drop(held);
        assert_eq!(slots.in_use(), 0);
        assert!(slots.take(3).is_some());
    }

    #[test]
    fn refusals_are_recorded_once_a_second_with_their_count() {
        let refusals = Refusals::default();
        let start = Instant::now();
        assert_eq!(refusals.note_at(start), Some(1));
        for _ in 0..99 {
            assert_eq!(refusals.note_at(start + Duration::from_millis(500)), None);
        }
        assert_eq!(refusals.note_at(start + REFUSAL_RECORD_EVERY), Some(100));
        assert_eq!(refusals.note_at(start + REFUSAL_RECORD_EVERY), None);
    }
}
