//! The host firewall for sandbox networks: one nftables table, `inet clrk`.
//!
//! The rules are the same for every sandbox and every clrk process on the host: they match
//! host veth ends by their name prefix, and a packet from one passes only if its interface and
//! source address are a pair clrk registered (a set element per sandbox) and it was redirected
//! by one of the rules below to a clrk listener (so no other service of the host that listens
//! on all addresses is reachable on the metadata address). Forwarding from and to sandbox veths is dropped.
//! So a sandbox reaches the host's metadata services and nothing else, and the source address
//! of what it sends is the one clrk gave it.
//!
//! An egress sandbox also has elements in the egress maps: its TCP connections to any other
//! address (IPv4 or IPv6) are redirected to its clrk's egress proxy, and its DNS questions (UDP port 53,
//! to any address) to its clrk's resolver. Both arrive at the metadata address, so the input
//! rules above let them in; without an element the redirect does not apply and the packet is
//! dropped on the forward hook.

use crate::SandboxError;
use crate::addresses::{METADATA_PORT, METADATA_V4, METADATA_V6, SandboxAddresses, VETH_PREFIX};
use crate::host_tool::{self, NFT};

/// The table, in the `inet` family so one set of chains covers IPv4 and IPv6.
pub(crate) const TABLE: &str = "inet clrk";
/// Set of (host veth name, sandbox IPv4 address) pairs.
const SET_V4: &str = "sandbox_v4";
/// Set of (host veth name, sandbox IPv6 address) pairs.
const SET_V6: &str = "sandbox_v6";
/// Map of host veth name → port of the clrk process whose sandbox it is.
const PORT_MAP: &str = "metadata_port";
/// Map of host veth name → egress proxy port, for egress sandboxes.
const EGRESS_MAP: &str = "egress_port";
/// Map of host veth name → DNS resolver port, for egress sandboxes.
const DNS_MAP: &str = "dns_port";

/// The whole table as one `nft -f` transaction. Declaring existing objects is a no-op and the
/// chains are flushed before their rules are added, so applying it again (another clrk
/// process, a restart) converges to the same rules and keeps every sandbox's set elements.
fn ruleset() -> String {
    let veths = format!("\"{VETH_PREFIX}*\"");
    format!(
        "table {TABLE} {{
  set {SET_V4} {{ type ifname . ipv4_addr; }}
  set {SET_V6} {{ type ifname . ipv6_addr; }}
  map {PORT_MAP} {{ type ifname : inet_service; }}
  map {EGRESS_MAP} {{ type ifname : inet_service; }}
  map {DNS_MAP} {{ type ifname : inet_service; }}
  chain prerouting {{ type nat hook prerouting priority dstnat; policy accept; }}
  chain input {{ type filter hook input priority filter - 10; policy accept; }}
  chain forward {{ type filter hook forward priority filter - 10; policy accept; }}
  chain sandbox_in {{ }}
}}
flush chain {TABLE} prerouting
flush chain {TABLE} input
flush chain {TABLE} forward
flush chain {TABLE} sandbox_in
add rule {TABLE} prerouting iifname {veths} ip daddr {METADATA_V4} tcp dport {METADATA_PORT} redirect to : iifname map @{PORT_MAP}
add rule {TABLE} prerouting iifname {veths} ip6 daddr {METADATA_V6} tcp dport {METADATA_PORT} redirect to : iifname map @{PORT_MAP}
add rule {TABLE} prerouting iifname {veths} udp dport 53 redirect to : iifname map @{DNS_MAP}
add rule {TABLE} prerouting iifname {veths} ip daddr != {METADATA_V4} meta l4proto tcp redirect to : iifname map @{EGRESS_MAP}
add rule {TABLE} prerouting iifname {veths} ip6 daddr != {METADATA_V6} meta l4proto tcp redirect to : iifname map @{EGRESS_MAP}
add rule {TABLE} input iifname {veths} jump sandbox_in
add rule {TABLE} forward iifname {veths} drop
add rule {TABLE} forward oifname {veths} drop
add rule {TABLE} sandbox_in icmpv6 type {{ nd-neighbor-solicit, nd-neighbor-advert }} ip6 hoplimit 255 accept
add rule {TABLE} sandbox_in iifname . ip saddr != @{SET_V4} drop
add rule {TABLE} sandbox_in iifname . ip6 saddr != @{SET_V6} drop
add rule {TABLE} sandbox_in ip daddr {METADATA_V4} ct status dnat accept
add rule {TABLE} sandbox_in ip6 daddr {METADATA_V6} ct status dnat accept
add rule {TABLE} sandbox_in drop
"
    )
}

/// The `nft` commands adding (`verb` = `add`) or deleting a sandbox's set elements.
fn elements(verb: &str, veth: &str, addrs: SandboxAddresses) -> String {
    format!(
        "{verb} element {TABLE} {SET_V4} {{ \"{veth}\" . {} }}\n\
         {verb} element {TABLE} {SET_V6} {{ \"{veth}\" . {} }}\n",
        addrs.v4, addrs.v6
    )
}

/// The `nft` command pointing `veth`'s metadata connections at `port`.
fn port_element(verb: &str, veth: &str, port: Option<u16>) -> String {
    match port {
        Some(port) => format!("{verb} element {TABLE} {PORT_MAP} {{ \"{veth}\" : {port} }}\n"),
        None => format!("{verb} element {TABLE} {PORT_MAP} {{ \"{veth}\" }}\n"),
    }
}

/// Creates or refreshes the table; idempotent, safe while sandboxes run.
pub(crate) fn ensure() -> Result<(), SandboxError> {
    host_tool::run(NFT, &["-f", "-"], Some(&ruleset()))?;
    tracing::debug!(table = TABLE, "sandbox firewall in place");
    Ok(())
}

/// Where an egress sandbox's traffic is redirected on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EgressPorts {
    /// The egress proxy's TCP port.
    pub proxy: u16,
    /// The DNS resolver's UDP port.
    pub dns: u16,
}

/// The `nft` commands adding or deleting `veth`'s egress redirects.
fn egress_elements(verb: &str, veth: &str, ports: Option<EgressPorts>) -> String {
    match ports {
        Some(EgressPorts { proxy, dns }) => format!(
            "{verb} element {TABLE} {EGRESS_MAP} {{ \"{veth}\" : {proxy} }}\n\
             {verb} element {TABLE} {DNS_MAP} {{ \"{veth}\" : {dns} }}\n"
        ),
        None => format!(
            "{verb} element {TABLE} {EGRESS_MAP} {{ \"{veth}\" }}\n\
             {verb} element {TABLE} {DNS_MAP} {{ \"{veth}\" }}\n"
        ),
    }
}

/// Lets packets from `veth` with source `addrs` through to the metadata addresses, with
/// port 80 redirected to `metadata_port`, and with `egress` the redirects to the egress proxy
/// and resolver, all in one transaction.
pub(crate) fn allow(
    veth: &str,
    addrs: SandboxAddresses,
    metadata_port: u16,
    egress: Option<EgressPorts>,
) -> Result<(), SandboxError> {
    let mut batch = elements("add", veth, addrs) + &port_element("add", veth, Some(metadata_port));
    if egress.is_some() {
        batch += &egress_elements("add", veth, egress);
    }
    host_tool::run(NFT, &["-f", "-"], Some(&batch)).map(drop)
}

/// Removes what [`allow`] added, with `egress` its egress redirects too; elements already
/// gone are fine (they go in one transaction, so either all exist or none).
pub(crate) fn revoke(
    veth: &str,
    addrs: SandboxAddresses,
    egress: bool,
) -> Result<(), SandboxError> {
    // Apart, because a missing element fails the whole transaction it is in, and a sandbox
    // found after a crash may or may not have had egress.
    if egress {
        host_tool::run_tolerating(
            NFT,
            &["-f", "-"],
            Some(&egress_elements("delete", veth, None)),
            &["No such file or directory"],
        )?;
    }
    host_tool::run_tolerating(
        NFT,
        &["-f", "-"],
        Some(&(elements("delete", veth, addrs) + &port_element("delete", veth, None))),
        &["No such file or directory"],
    )
    .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sandbox_packet_goes_through_the_address_check_before_any_accept() {
        let rules = ruleset();
        let pos = |needle: &str| {
            rules
                .find(needle)
                .unwrap_or_else(|| panic!("{needle} missing"))
        };
        assert!(rules.contains("iifname \"clrk*\" jump sandbox_in"));
        let anti_spoof =
            pos("ip saddr != @sandbox_v4 drop").max(pos("ip6 saddr != @sandbox_v6 drop"));
        let first_accept = pos("ip daddr 169.254.169.254 ct status dnat accept");
        assert!(anti_spoof < first_accept);
        // Neighbour discovery is the one exception: IPv6 needs it before any address works,
        // and hop limit 255 keeps it on the link.
        assert!(pos("nd-neighbor-solicit") < anti_spoof);
        assert!(rules.trim_end().ends_with("sandbox_in drop"));
        assert!(rules.contains("ip6 daddr fd00:ec2::254 ct status dnat accept"));
        // Only redirected traffic is let in: nothing accepts by port.
        assert!(!rules.contains("dport 53 accept") && !rules.contains("l4proto tcp accept"));
    }

    #[test]
    fn reapplying_flushes_the_chains_but_never_the_sets() {
        let rules = ruleset();
        assert_eq!(rules.matches("flush chain").count(), 4);
        assert!(!rules.contains("flush set") && !rules.contains("delete"));
    }

    #[test]
    fn elements_pair_the_veth_with_both_addresses() {
        let addrs = SandboxAddresses {
            v4: "169.254.64.1".parse().unwrap(),
            v6: "fd00:ec2::a9fe:4001".parse().unwrap(),
        };
        assert_eq!(
            elements("add", "clrk0", addrs),
            "add element inet clrk sandbox_v4 { \"clrk0\" . 169.254.64.1 }\n\
             add element inet clrk sandbox_v6 { \"clrk0\" . fd00:ec2::a9fe:4001 }\n"
        );
    }
}
