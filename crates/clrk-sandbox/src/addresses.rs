//! The addresses every sandbox network is built from: the metadata service's addresses and
//! port on each host veth end, the host ends' name prefix, and a sandbox's own addresses.
//! Both the per-sandbox network and the host firewall are written in these terms.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The metadata service's IPv4 address, on the host end of every sandbox's veth.
pub const METADATA_V4: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 254);
/// The metadata service's IPv6 address, on the host end of every sandbox's veth.
pub const METADATA_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254);
/// The port `CLRK_METADATA_URL` implies; redirected per sandbox to its clrk's service.
pub const METADATA_PORT: u16 = 80;
/// Name prefix of every host veth end clrk creates; the firewall matches on it.
pub(crate) const VETH_PREFIX: &str = "clrk";
/// A sandbox's own addresses, the source of everything it sends; the firewall drops packets
/// from its veth with any other source, so these identify the sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SandboxAddresses {
    /// Its IPv4 address, in `169.254.64.0/18`.
    pub v4: Ipv4Addr,
    /// Its IPv6 address: the IPv4 address embedded in `fd00:ec2::/96`.
    pub v6: Ipv6Addr,
}

impl SandboxAddresses {
    /// Whether `ip` (a connection's peer address) is this sandbox; an IPv4-mapped IPv6 address,
    /// as a dual-stack listener reports IPv4 peers, counts as its IPv4 address.
    ///
    /// ```
    /// # use clrk_sandbox::SandboxAddresses;
    /// let a = SandboxAddresses { v4: "169.254.64.1".parse().unwrap(), v6: "fd00:ec2::a9fe:4001".parse().unwrap() };
    /// assert!(a.contains("::ffff:169.254.64.1".parse().unwrap()));
    /// assert!(!a.contains("169.254.64.2".parse().unwrap()));
    /// ```
    pub fn contains(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(v4) => v4 == self.v4,
            IpAddr::V6(v6) => v6 == self.v6 || v6.to_ipv4_mapped() == Some(self.v4),
        }
    }
}
