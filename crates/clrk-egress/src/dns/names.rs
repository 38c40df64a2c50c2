//! Which names each sandbox resolved to which addresses through clrk, so hostname rules can
//! judge connections that carry only an IP.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Names a [`NameCache`] keeps per sandbox.
const MAX_NAMES: usize = 4096;
/// The shortest a [`NameCache`] entry lives, whatever its TTL: programs keep using an answer
/// a while after its TTL.
const MIN_LIFETIME: Duration = Duration::from_secs(60);
/// The longest a [`NameCache`] entry lives, whatever its TTL.
const MAX_LIFETIME: Duration = Duration::from_secs(3600);

/// Names that resolved to addresses, per sandbox (`K` identifies one), so a connection to an
/// address can be judged by the hostname rules that let its name resolve.
///
/// An entry lives for its TTL, at least a minute (programs keep using an answer a while after
/// its TTL) and at most an hour; each sandbox keeps at most 4096 entries, the soonest to expire
/// making way for new ones.
///
/// ```
/// use clrk_egress::dns::NameCache;
/// let cache = NameCache::new();
/// let ip = "93.184.216.34".parse().unwrap();
/// cache.insert(&"sandbox-1", "Example.com.", ip, 30);
/// assert_eq!(cache.names_for(&"sandbox-1", ip), vec!["example.com".to_string()]);
/// assert!(cache.names_for(&"sandbox-2", ip).is_empty());
/// cache.forget(&"sandbox-1");
/// assert!(cache.names_for(&"sandbox-1", ip).is_empty());
/// ```
#[derive(Debug)]
pub struct NameCache<K> {
    sandboxes: Mutex<HashMap<K, SandboxNames>>,
}

/// One sandbox's entries: per address, the names and when each expires.
#[derive(Debug, Default)]
struct SandboxNames {
    by_address: HashMap<IpAddr, Vec<(String, Instant)>>,
    len: usize,
}

impl<K: Hash + Eq + Clone> NameCache<K> {
    /// An empty cache.
    ///
    /// ```
    /// let cache: clrk_egress::dns::NameCache<u32> = clrk_egress::dns::NameCache::new();
    /// assert!(cache.names_for(&1, "10.0.0.1".parse().unwrap()).is_empty());
    /// ```
    pub fn new() -> Self {
        NameCache {
            sandboxes: Mutex::new(HashMap::new()),
        }
    }

    /// Records that `name` resolved to `ip` for sandbox `key`, for `ttl` seconds (see the type's
    /// limits). Case and a trailing dot do not matter, nor whether an IPv4 address is written
    /// IPv4-mapped.
    ///
    /// ```
    /// let cache = clrk_egress::dns::NameCache::new();
    /// cache.insert(&1, "api.example.com", "10.0.0.1".parse().unwrap(), 300);
    /// ```
    pub fn insert(&self, key: &K, name: &str, ip: IpAddr, ttl: u32) {
        self.insert_at(key, name, ip, ttl, Instant::now());
    }

    /// The names that resolved to `ip` for sandbox `key` and have not expired.
    ///
    /// ```
    /// let cache = clrk_egress::dns::NameCache::new();
    /// let ip = "10.0.0.1".parse().unwrap();
    /// cache.insert(&1, "a.example.com", ip, 300);
    /// cache.insert(&1, "b.example.com", ip, 300);
    /// let mut names = cache.names_for(&1, ip);
    /// names.sort();
    /// assert_eq!(names, ["a.example.com", "b.example.com"]);
    /// ```
    pub fn names_for(&self, key: &K, ip: IpAddr) -> Vec<String> {
        self.names_for_at(key, ip, Instant::now())
    }

    /// Drops everything remembered for sandbox `key`, when it goes away.
    ///
    /// ```
    /// let cache = clrk_egress::dns::NameCache::new();
    /// cache.forget(&"gone");
    /// ```
    pub fn forget(&self, key: &K) {
        self.lock().remove(key);
    }

    fn insert_at(&self, key: &K, name: &str, ip: IpAddr, ttl: u32, now: Instant) {
        let name = clrk_api::normal_name(name);
        // A connection to ::ffff:a.b.c.d reaches a.b.c.d, so both spellings share entries.
        let ip = ip.to_canonical();
        let lifetime = Duration::from_secs(ttl.into()).clamp(MIN_LIFETIME, MAX_LIFETIME);
        let expires = now + lifetime;
        let mut sandboxes = self.lock();
        let names = match sandboxes.get_mut(key) {
            Some(names) => names,
            None => sandboxes.entry(key.clone()).or_default(),
        };
        names.insert(name, ip, expires, now);
    }

    fn names_for_at(&self, key: &K, ip: IpAddr, now: Instant) -> Vec<String> {
        let sandboxes = self.lock();
        let ip = ip.to_canonical();
        let Some(entries) = sandboxes.get(key).and_then(|n| n.by_address.get(&ip)) else {
            return Vec::new();
        };
        entries
            .iter()
            .filter(|(_, expires)| *expires > now)
            .map(|(name, _)| name.clone())
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, SandboxNames>> {
        // A panic elsewhere cannot leave a half-made entry worth refusing to read.
        self.sandboxes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl<K: Hash + Eq + Clone> Default for NameCache<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl SandboxNames {
    fn insert(&mut self, name: String, ip: IpAddr, expires: Instant, now: Instant) {
        if let Some(entry) = self
            .by_address
            .get_mut(&ip)
            .and_then(|entries| entries.iter_mut().find(|(n, _)| *n == name))
        {
            // The sandbox may still use the earlier answer, so a shorter TTL never shortens it.
            entry.1 = entry.1.max(expires);
            return;
        }
        if self.len >= MAX_NAMES {
            self.remove_expired(now);
        }
        if self.len >= MAX_NAMES {
            self.remove_soonest_expiring();
        }
        self.by_address.entry(ip).or_default().push((name, expires));
        self.len += 1;
    }

    fn remove_expired(&mut self, now: Instant) {
        self.by_address.retain(|_, entries| {
            entries.retain(|(_, expires)| *expires > now);
            !entries.is_empty()
        });
        self.len = self.by_address.values().map(Vec::len).sum();
    }

    fn remove_soonest_expiring(&mut self) {
        let soonest = self
            .by_address
            .iter()
            .flat_map(|(ip, entries)| entries.iter().enumerate().map(move |(i, e)| (e.1, *ip, i)))
            .min();
        let Some((_, ip, index)) = soonest else {
            return;
        };
        if let Some(entries) = self.by_address.get_mut(&ip) {
            entries.swap_remove(index);
            if entries.is_empty() {
                self.by_address.remove(&ip);
            }
            self.len -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn name_cache_lifetime_is_ttl_within_a_minute_and_an_hour() {
        let cache = NameCache::new();
        let ip: IpAddr = "93.184.216.34".parse().unwrap();
        let now = Instant::now();
        cache.insert_at(&1, "short.example.com", ip, 5, now);
        cache.insert_at(&1, "medium.example.com", ip, 600, now);
        cache.insert_at(&1, "long.example.com", ip, 86_400, now);

        let names_at = |secs| {
            let mut names = cache.names_for_at(&1, ip, now + Duration::from_secs(secs));
            names.sort();
            names
        };
        assert_eq!(
            names_at(59),
            [
                "long.example.com",
                "medium.example.com",
                "short.example.com"
            ]
        );
        assert_eq!(names_at(61), ["long.example.com", "medium.example.com"]);
        assert_eq!(names_at(601), ["long.example.com"]);
        assert!(names_at(3601).is_empty());
    }

    #[test]
    fn name_cache_reinsert_never_shortens_and_normalises_names() {
        let cache = NameCache::new();
        let ip: IpAddr = "10.1.2.3".parse().unwrap();
        let now = Instant::now();
        cache.insert_at(&"a", "API.Example.com.", ip, 600, now);
        cache.insert_at(&"a", "api.example.com", ip, 5, now);
        assert_eq!(
            cache.names_for_at(&"a", ip, now + Duration::from_secs(300)),
            ["api.example.com"]
        );
    }

    #[test]
    fn name_cache_keeps_sandboxes_apart_and_forgets() {
        let cache = NameCache::new();
        let ip: IpAddr = "10.1.2.3".parse().unwrap();
        cache.insert(&"a", "a.example.com", ip, 300);
        cache.insert(&"b", "b.example.com", ip, 300);
        assert_eq!(cache.names_for(&"a", ip), ["a.example.com"]);
        let mapped: IpAddr = "::ffff:10.1.2.3".parse().unwrap();
        assert_eq!(cache.names_for(&"a", mapped), ["a.example.com"]);
        assert!(
            cache
                .names_for(&"a", "10.1.2.4".parse().unwrap())
                .is_empty()
        );
        cache.forget(&"a");
        assert!(cache.names_for(&"a", ip).is_empty());
        assert_eq!(cache.names_for(&"b", ip), ["b.example.com"]);
    }

    #[test]
    fn name_cache_is_bounded_per_sandbox() {
        let cache = NameCache::new();
        let now = Instant::now();
        let ip = |i: usize| IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + u32::try_from(i).unwrap()));
        // The first entry expires soonest, so it is the one to go.
        cache.insert_at(&1, "first.example.com", ip(0), 60, now);
        for i in 1..MAX_NAMES {
            cache.insert_at(&1, &format!("n{i}.example.com"), ip(i), 600, now);
        }
        cache.insert_at(&1, "late.example.com", ip(MAX_NAMES), 600, now);
        assert!(cache.names_for_at(&1, ip(0), now).is_empty());
        assert_eq!(
            cache.names_for_at(&1, ip(MAX_NAMES), now),
            ["late.example.com"]
        );
        assert_eq!(cache.names_for_at(&1, ip(1), now), ["n1.example.com"]);
        assert_eq!(cache.lock()[&1].len, MAX_NAMES);
    }
}
