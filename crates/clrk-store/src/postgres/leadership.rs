//! Leadership in PostgreSQL: a session advisory lock held on a connection of its own, outside
//! the pool, so that the lock lives exactly as long as that connection and a leader whose
//! connection dies (process killed, network cut, backend terminated) loses it.

use std::time::Duration;

use tokio::sync::watch;
use tokio_postgres::NoTls;

use super::PgStore;
use crate::StoreError;

/// TCP keepalives on the leader's connection: a peer that vanished without closing it (a
/// cut network) is noticed within about idle + interval × retries, not hours later.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(5);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(2);
const KEEPALIVE_RETRIES: u32 = 3;

/// A held leadership: its connection, and a flag that turns true when the connection ends.
pub(crate) struct PgLeadership {
    /// Dropping it closes the connection, which releases the lock.
    _client: tokio_postgres::Client,
    closed: watch::Receiver<bool>,
}

impl PgLeadership {
    /// Resolves once the connection holding the lock has ended.
    pub(crate) async fn lost(&self) {
        let mut closed = self.closed.clone();
        // An error means the connection's task is gone, which is a lost connection too.
        let _ = closed.wait_for(|closed| *closed).await;
    }
}

impl PgStore {
    pub(crate) async fn try_lead(&self, name: &str) -> Result<Option<PgLeadership>, StoreError> {
        // Followers try often (every daemon on every worker of its pool, every 2 s): a
        // leadership held elsewhere is seen on a pooled connection, without opening one.
        if self.led_elsewhere(name).await? {
            return Ok(None);
        }
        let mut config = (*self.config).clone();
        config
            .keepalives(true)
            .keepalives_idle(KEEPALIVE_IDLE)
            .keepalives_interval(KEEPALIVE_INTERVAL)
            .keepalives_retries(KEEPALIVE_RETRIES);
        let (client, connection) =
            config
                .connect(NoTls)
                .await
                .map_err(|source| StoreError::Connect {
                    target: self.target.to_string(),
                    source,
                })?;
        let (closed_tx, closed) = watch::channel(false);
        let target = self.target.clone();
        let lock = name.to_owned();
        // The client's connection must be driven by a task, as the pool does for its own.
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::warn!(database = %target, lock, error = %crate::error::pg_message(&error), "leader's connection ended");
            }
            let _ = closed_tx.send(true);
        });
        let held: bool = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&lock_key(name)])
            .await?
            .try_get(0)?;
        Ok(held.then_some(PgLeadership {
            _client: client,
            closed,
        }))
    }
}

impl PgStore {
    /// Whether some session holds the lock of leadership `name` in this database. A bigint
    /// advisory lock shows in `pg_locks` with its high half as `classid`, its low half as
    /// `objid` and `objsubid` 1.
    async fn led_elsewhere(&self, name: &str) -> Result<bool, StoreError> {
        let [a, b, c, d, e, f, g, h] = lock_key(name).to_be_bytes();
        let (high, low) = (
            u32::from_be_bytes([a, b, c, d]),
            u32::from_be_bytes([e, f, g, h]),
        );
        let held = self
            .client()
            .await?
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted \
                   AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
                   AND classid = $1 AND objid = $2 AND objsubid = 1)",
                &[&high, &low],
            )
            .await?
            .try_get(0)?;
        Ok(held)
    }
}

/// The advisory lock key for leadership `name`: FNV-1a (64 bit) of `clrk-lead:` + name,
/// fixed here rather than left to a hash function that could change between versions, so
/// processes of different clrk versions contend for the same key.
fn lock_key(name: &str) -> i64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let hash = b"clrk-lead:"
        .iter()
        .chain(name.as_bytes())
        .fold(OFFSET, |hash, byte| {
            (hash ^ u64::from(*byte)).wrapping_mul(PRIME)
        });
    i64::from_be_bytes(hash.to_be_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_keys_are_fixed_and_differ_by_name() {
        // Pinned: a change here would let two clrk versions lead at once.
        assert_eq!(lock_key("clrk-sweep"), lock_key("clrk-sweep"));
        assert_ne!(lock_key("clrk-sweep"), lock_key("clrk-cron"));
        assert_eq!(
            lock_key(""),
            i64::from_be_bytes(fnv_of(b"clrk-lead:").to_be_bytes())
        );
    }

    /// Plain FNV-1a as the reference.
    fn fnv_of(bytes: &[u8]) -> u64 {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in bytes {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x100_0000_01b3);
        }
        hash
    }
}
