//! Destinations no sandbox may reach, whatever its allowlist says, even "allow all": the worker
//! itself (its loopback, its interfaces), link-local addresses (the cloud metadata service and
//! the sandboxes' own veth addresses), the sandboxes' IPv6 range, and addresses that name no
//! single host (unspecified, multicast, broadcast).
//!
//! Private ranges such as 10/8 are not here: reaching a service on the worker's network is a
//! policy decision, made by the allowlist.
//!
//! The examples below are not run as doctests: this module is internal to the crate.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// How long a listing of the host's interfaces is trusted: interfaces come and go (DHCP,
/// container networks), but listing them on every connection would be wasteful.
const REFRESH_EVERY: Duration = Duration::from_secs(5);

/// fd00:ec2::/96, where the sandboxes' IPv6 addresses are.
const SANDBOX_V6_PREFIX: [u16; 6] = [0xfd00, 0x0ec2, 0, 0, 0, 0];

/// 64:ff9b::/96, the well-known NAT64 prefix: on a NAT64 network it reaches the IPv4 address in
/// its last 32 bits, so that address must pass the same checks.
const NAT64_PREFIX: [u16; 6] = [0x0064, 0xff9b, 0, 0, 0, 0];

/// Why `ip` is on the worker itself or otherwise off limits, as a short phrase for logs and
/// error messages; `None` when the allowlist may decide. Covers loopback (127/8, ::1),
/// unspecified (0/8, ::), link-local (169.254/16, fe80::/10: the metadata service and the
/// sandboxes' addresses), multicast, broadcast, the sandboxes' range fd00:ec2::/96, the
/// IPv4-mapped, IPv4-compatible and NAT64 forms of the IPv4 ones, and every address of the
/// host's own interfaces.
///
/// ```ignore
/// use clrk_egress::destination::{HostAddresses, forbidden_reason};
/// let host = HostAddresses::new();
/// assert_eq!(forbidden_reason("127.0.0.1".parse().unwrap(), &host), Some("loopback address"));
/// assert_eq!(
///     forbidden_reason("::ffff:169.254.169.254".parse().unwrap(), &host),
///     Some("link-local address")
/// );
/// assert_eq!(forbidden_reason("93.184.216.34".parse().unwrap(), &host), None);
/// ```
pub fn forbidden_reason(ip: IpAddr, host: &HostAddresses) -> Option<&'static str> {
    let reason = match ip {
        IpAddr::V4(v4) => v4_reason(v4),
        IpAddr::V6(v6) => v6_reason(v6),
    };
    reason.or_else(|| host.contains(ip).then_some("address of this worker"))
}

/// The addresses of the host's own interfaces, listed again when more than 5 s old at the time
/// of use.
///
/// ```ignore
/// use clrk_egress::destination::HostAddresses;
/// let host = HostAddresses::new();
/// assert!(host.contains("127.0.0.1".parse().unwrap()));
/// ```
#[derive(Debug)]
pub struct HostAddresses {
    listing: Mutex<Listing>,
}

#[derive(Debug, Default)]
struct Listing {
    /// `None` until the interfaces have been listed once.
    addresses: Option<HashSet<IpAddr>>,
    /// When the last listing was attempted, successful or not.
    listed_at: Option<Instant>,
}

impl HostAddresses {
    /// Addresses listed on first use.
    ///
    /// ```ignore
    /// let host = clrk_egress::destination::HostAddresses::new();
    /// assert!(!host.contains("93.184.216.34".parse().unwrap()));
    /// ```
    pub fn new() -> HostAddresses {
        HostAddresses {
            listing: Mutex::new(Listing::default()),
        }
    }

    /// Whether `ip` (or the IPv4 address an IPv4-mapped `ip` stands for) is an address of one
    /// of the host's interfaces. Should the interfaces never have been listable, every address
    /// counts as the host's: refusing all traffic is safer than letting a sandbox reach the
    /// worker's own services.
    ///
    /// ```ignore
    /// let host = clrk_egress::destination::HostAddresses::new();
    /// assert!(host.contains("::1".parse().unwrap()));
    /// ```
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            IpAddr::V4(_) => ip,
        };
        let mut listing = self.lock();
        let now = Instant::now();
        if listing
            .listed_at
            .is_none_or(|at| now.duration_since(at) >= REFRESH_EVERY)
        {
            listing.refresh(now);
        }
        listing
            .addresses
            .as_ref()
            .is_none_or(|addresses| addresses.contains(&ip))
    }

    #[cfg(test)]
    fn with_addresses(addresses: impl IntoIterator<Item = IpAddr>) -> HostAddresses {
        HostAddresses {
            listing: Mutex::new(Listing {
                addresses: Some(addresses.into_iter().collect()),
                // Far enough in the future that the test's list is never replaced.
                listed_at: Some(Instant::now() + Duration::from_secs(3600)),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Listing> {
        // The listing is replaced whole, so a panic elsewhere cannot leave it half made.
        self.listing.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Default for HostAddresses {
    fn default() -> Self {
        Self::new()
    }
}

impl Listing {
    fn refresh(&mut self, now: Instant) {
        self.listed_at = Some(now);
        match if_addrs::get_if_addrs() {
            Ok(interfaces) => {
                self.addresses = Some(interfaces.iter().map(if_addrs::Interface::ip).collect());
            }
            // The previous listing, if any, is the best knowledge left; without one, contains()
            // refuses everything until a listing succeeds.
            Err(error) => tracing::warn!(
                %error,
                have_previous = self.addresses.is_some(),
                "cannot list the host's network interfaces"
            ),
        }
    }
}

fn v4_reason(ip: Ipv4Addr) -> Option<&'static str> {
    if ip.is_loopback() {
        Some("loopback address")
    } else if ip.octets()[0] == 0 {
        // Linux delivers 0.0.0.0 (and treats 0/8 as "this host") to local sockets.
        Some("unspecified address")
    } else if ip.is_link_local() {
        Some("link-local address")
    } else if ip.is_multicast() {
        Some("multicast address")
    } else if ip.is_broadcast() {
        Some("broadcast address")
    } else {
        None
    }
}

fn v6_reason(ip: Ipv6Addr) -> Option<&'static str> {
    let segments = ip.segments();
    if ip.is_loopback() {
        Some("loopback address")
    } else if ip.is_unspecified() {
        Some("unspecified address")
    } else if ip.is_unicast_link_local() {
        Some("link-local address")
    } else if ip.is_multicast() {
        Some("multicast address")
    } else if segments[..6] == SANDBOX_V6_PREFIX {
        Some("sandbox address")
    } else {
        embedded_v4(ip).and_then(v4_reason)
    }
}

/// The IPv4 address an IPv4-mapped (::ffff:a.b.c.d), IPv4-compatible (::a.b.c.d) or NAT64
/// (64:ff9b::a.b.c.d) address stands for.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = ip.to_ipv4() {
        return Some(v4);
    }
    let segments = ip.segments();
    (segments[..6] == NAT64_PREFIX).then(|| {
        let [.., a, b, c, d] = ip.octets();
        Ipv4Addr::new(a, b, c, d)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(ip: &str) -> Option<&'static str> {
        forbidden_reason(ip.parse().unwrap(), &HostAddresses::with_addresses([]))
    }

    #[test]
    fn loopback_is_forbidden() {
        for ip in [
            "127.0.0.1",
            "127.255.0.9",
            "::1",
            "::ffff:127.0.0.1",
            "::127.0.0.1",
        ] {
            assert_eq!(reason(ip), Some("loopback address"), "{ip}");
        }
    }

    #[test]
    fn unspecified_is_forbidden() {
        for ip in ["0.0.0.0", "0.1.2.3", "::", "::ffff:0.0.0.0"] {
            assert_eq!(reason(ip), Some("unspecified address"), "{ip}");
        }
    }

    #[test]
    fn link_local_is_forbidden() {
        for ip in [
            "169.254.169.254",
            "169.254.64.1",
            "fe80::1",
            "febf::1",
            "::ffff:169.254.169.254",
            "::169.254.169.254",
            "64:ff9b::169.254.169.254",
        ] {
            assert_eq!(reason(ip), Some("link-local address"), "{ip}");
        }
    }

    #[test]
    fn multicast_and_broadcast_are_forbidden() {
        for ip in [
            "224.0.0.1",
            "239.255.255.250",
            "ff02::1",
            "::ffff:224.0.0.251",
        ] {
            assert_eq!(reason(ip), Some("multicast address"), "{ip}");
        }
        assert_eq!(reason("255.255.255.255"), Some("broadcast address"));
        assert_eq!(reason("::ffff:255.255.255.255"), Some("broadcast address"));
    }

    #[test]
    fn sandbox_range_is_forbidden() {
        assert_eq!(reason("fd00:ec2::a9fe:4001"), Some("sandbox address"));
        assert_eq!(reason("fd00:ec2::ffff:ffff"), Some("sandbox address"));
        assert_eq!(reason("fd00:ec2:0:1::1"), None);
    }

    #[test]
    fn public_and_private_addresses_are_left_to_the_allowlist() {
        for ip in [
            "93.184.216.34",
            "10.0.0.1",
            "192.168.1.1",
            "2606:2800:220:1:248:1893:25c8:1946",
            "::ffff:93.184.216.34",
            "64:ff9b::93.184.216.34",
            "fe00::1",
        ] {
            assert_eq!(reason(ip), None, "{ip}");
        }
    }

    #[test]
    fn host_addresses_are_forbidden_in_every_form() {
        let host = HostAddresses::with_addresses(["10.0.0.5".parse().unwrap()]);
        for ip in ["10.0.0.5", "::ffff:10.0.0.5"] {
            assert_eq!(
                forbidden_reason(ip.parse().unwrap(), &host),
                Some("address of this worker"),
                "{ip}"
            );
        }
        assert_eq!(forbidden_reason("10.0.0.6".parse().unwrap(), &host), None);
    }

    #[test]
    fn this_hosts_own_interface_addresses_are_forbidden() {
        let host = HostAddresses::new();
        let own = if_addrs::get_if_addrs()
            .unwrap()
            .into_iter()
            .map(|i| i.ip())
            .find(|ip| !ip.is_loopback() && reason(&ip.to_string()).is_none());
        // A host with only loopback or link-local addresses has nothing more to check.
        if let Some(ip) = own {
            assert_eq!(
                forbidden_reason(ip, &host),
                Some("address of this worker"),
                "{ip}"
            );
        }
        assert!(host.contains("127.0.0.1".parse().unwrap()));
        assert!(!host.contains("93.184.216.34".parse().unwrap()));
    }

    #[test]
    fn an_unlisted_host_refuses_everything() {
        let listing = Listing::default();
        let host = HostAddresses {
            listing: Mutex::new(Listing {
                listed_at: Some(Instant::now() + Duration::from_secs(3600)),
                ..listing
            }),
        };
        assert!(host.contains("93.184.216.34".parse().unwrap()));
    }
}
