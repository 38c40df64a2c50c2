//! Per-sandbox networks: a fresh network namespace holding one end of a veth pair.
//!
//! Layout for the sandbox in slot `n` (0 ≤ n < [`SLOTS`]):
//! - host end `clrk<n>` in the host namespace, carrying `169.254.169.254/32` and
//!   `fd00:ec2::254/128` (every host end carries both), with a host route to the sandbox's
//!   address; its interface alias is the namespace's name, which is how crash recovery finds it;
//! - sandbox end `eth0` in namespace `clrk-<tag>-<id>` (`/var/run/netns/`), carrying
//!   `169.254.<64 + n / 254>.<1 + n % 254>/32` and the same IPv4 address embedded in
//!   `fd00:ec2::/96`, with routes to the two metadata addresses only.
//!
//! The slot is claimed by creating the host end: the kernel refuses a second interface of the
//! same name, so concurrent clrk processes never share an address. The address follows from
//! the slot, so a stale firewall element can only ever name the address its slot would get.
//! `<tag>` is derived from the runtime's state dir, so one runtime's recovery leaves other
//! runtimes' sandboxes alone. runsc moves the namespace's addresses into its own netstack and
//! removes them from the kernel, so a namespace is never reused.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::SandboxError;
use crate::addresses::{METADATA_V4, METADATA_V6, SandboxAddresses, VETH_PREFIX};
use crate::firewall;
use crate::firewall::EgressPorts;
use crate::host_tool::{self, IP};

/// Where `ip netns` keeps named namespaces.
const NETNS_DIR: &str = "/var/run/netns";
/// Where the kernel lists the host namespace's interfaces.
const SYS_NET: &str = "/sys/class/net";
/// The sandbox end's name inside its namespace.
const PEER: &str = "eth0";
/// Sandbox addresses use third octets 64..=127 of 169.254.0.0/16 (clear of the metadata
/// address) and fourth octets 1..=254.
const FIRST_THIRD_OCTET: u32 = 64;
const HOSTS_PER_OCTET: u32 = 254;
/// How many sandboxes can have a network at the same time on one host.
pub(crate) const SLOTS: u32 = 64 * HOSTS_PER_OCTET;

/// The addresses of slot `slot`.
fn slot_addresses(slot: u32) -> SandboxAddresses {
    let third = (FIRST_THIRD_OCTET + slot / HOSTS_PER_OCTET) as u8;
    let fourth = (1 + slot % HOSTS_PER_OCTET) as u8;
    let v4 = Ipv4Addr::new(169, 254, third, fourth);
    let [a, b, c, d] = v4.octets();
    let v6 = Ipv6Addr::new(
        0xfd00,
        0xec2,
        0,
        0,
        0,
        0,
        u16::from_be_bytes([a, b]),
        u16::from_be_bytes([c, d]),
    );
    SandboxAddresses { v4, v6 }
}

/// The host veth end of slot `slot`.
fn veth_name(slot: u32) -> String {
    format!("{VETH_PREFIX}{slot}")
}

/// The slot of a host veth end, if `name` is one.
fn slot_of(name: &str) -> Option<u32> {
    let digits = name.strip_prefix(VETH_PREFIX)?;
    let slot: u32 = digits.parse().ok()?;
    (slot < SLOTS && veth_name(slot) == name).then_some(slot)
}

/// Where the search for a free slot starts: spread by id, so concurrent starts rarely collide.
fn first_slot(id: &str) -> u32 {
    let digest = Sha256::digest(id.as_bytes());
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]) % SLOTS
}

/// The network side of one runtime: names its namespaces so that its recovery finds them.
#[derive(Debug)]
pub(crate) struct NetworkScope {
    /// `clrk-<tag>-`, the start of each of this runtime's namespace names.
    prefix: String,
    /// Where connections to the metadata service's port 80 are redirected.
    metadata_port: u16,
    /// Where an egress sandbox's other TCP connections and DNS questions are redirected.
    egress_ports: Option<EgressPorts>,
}

impl NetworkScope {
    /// The scope of the runtime whose state lives in `state_dir`.
    pub(crate) fn new(
        state_dir: &Path,
        metadata_port: u16,
        egress_ports: Option<EgressPorts>,
    ) -> NetworkScope {
        let dir = std::path::absolute(state_dir).unwrap_or_else(|_| state_dir.to_owned());
        let digest = Sha256::digest(dir.as_os_str().as_encoded_bytes());
        let tag: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
        NetworkScope {
            prefix: format!("clrk-{tag}-"),
            metadata_port,
            egress_ports,
        }
    }

    /// Whether this scope can give sandboxes egress.
    pub(crate) fn serves_egress(&self) -> bool {
        self.egress_ports.is_some()
    }

    fn netns_name(&self, id: &str) -> String {
        format!("{}{id}", self.prefix)
    }

    /// The namespace file sandbox `id`'s OCI config joins.
    pub(crate) fn netns_path(&self, id: &str) -> PathBuf {
        Path::new(NETNS_DIR).join(self.netns_name(id))
    }

    /// Creates sandbox `id`'s namespace, veth pair, addresses, routes and firewall elements;
    /// with `egress`, a default route to the host end and the redirects to the egress proxy.
    /// On failure nothing of it is left.
    pub(crate) fn create(&self, id: &str, egress: bool) -> Result<SandboxNetwork, SandboxError> {
        let egress_ports = match (egress, self.egress_ports) {
            (false, _) => None,
            (true, Some(ports)) => Some(ports),
            (true, None) => {
                return Err(SandboxError::NoEgressProxy { id: id.to_owned() });
            }
        };
        let netns = self.netns_name(id);
        host_tool::run(IP, &["netns", "add", &netns], None)?;
        let slot = match claim_slot(id, &netns) {
            Ok(slot) => slot,
            Err(e) => {
                if let Err(error) = host_tool::run(IP, &["netns", "del", &netns], None) {
                    tracing::warn!(id, netns, %error, "could not delete namespace after a failed setup");
                }
                return Err(e);
            }
        };
        let network = SandboxNetwork {
            netns,
            veth: veth_name(slot),
            addresses: slot_addresses(slot),
            egress: egress_ports.is_some(),
        };
        if let Err(e) = network.configure(self.metadata_port, egress_ports) {
            if let Err(error) = network.destroy() {
                tracing::warn!(id, %error, "could not undo a failed network setup");
            }
            return Err(e);
        }
        tracing::debug!(id, veth = %network.veth, v4 = %network.addresses.v4, v6 = %network.addresses.v6, "sandbox network created");
        Ok(network)
    }

    /// Crash recovery: this runtime's sandbox networks that exist now (veths with their
    /// firewall elements, namespaces), by sandbox id. Only what is found here is removed later,
    /// so sandboxes started meanwhile, whose names share the prefix, are left alone.
    pub(crate) fn find_leftovers(&self) -> Result<BTreeMap<String, LeftoverNetwork>, SandboxError> {
        let mut found: BTreeMap<String, LeftoverNetwork> = BTreeMap::new();
        for veth in dir_names(Path::new(SYS_NET))? {
            let (Some(slot), Some(netns)) = (slot_of(&veth), alias_of(&veth)) else {
                continue;
            };
            let Some(id) = netns.strip_prefix(&self.prefix) else {
                continue;
            };
            let leftover = found.entry(id.to_owned()).or_default();
            leftover.netns = Some(netns.clone());
            leftover.veths.push(SandboxNetwork {
                veth,
                addresses: slot_addresses(slot),
                netns,
                // Whether it had egress is not known after a crash.
                egress: true,
            });
        }
        for netns in dir_names(Path::new(NETNS_DIR))? {
            if let Some(id) = netns.strip_prefix(&self.prefix).map(str::to_owned) {
                found.entry(id).or_default().netns = Some(netns);
            }
        }
        Ok(found)
    }
}

/// What a previous run left of one sandbox's network.
#[derive(Debug, Default)]
pub(crate) struct LeftoverNetwork {
    /// Its namespace's name.
    netns: Option<String>,
    /// Its host veth ends (one, unless a crash came mid-setup), each holding its slot until
    /// deleted: no new sandbox gets that name or those addresses before.
    veths: Vec<SandboxNetwork>,
}

impl LeftoverNetwork {
    /// Deletes the firewall elements, veths and namespace; whatever is gone already is skipped.
    pub(crate) fn remove(&self) -> Result<(), SandboxError> {
        for veth in &self.veths {
            veth.destroy()?;
        }
        match &self.netns {
            Some(netns) => delete_netns(netns),
            None => Ok(()),
        }
    }
}

/// Creates the veth pair in the first free slot from [`first_slot`]; returns the slot.
fn claim_slot(id: &str, netns: &str) -> Result<u32, SandboxError> {
    let taken: BTreeSet<String> = dir_names(Path::new(SYS_NET))?.into_iter().collect();
    let start = first_slot(id);
    for slot in (0..SLOTS).map(|k| (start + k) % SLOTS) {
        let veth = veth_name(slot);
        if taken.contains(&veth) {
            continue;
        }
        let args = [
            "link", "add", &veth, "type", "veth", "peer", "name", PEER, "netns", netns,
        ];
        // "File exists": another process claimed this slot since the listing.
        if host_tool::run_tolerating(IP, &args, None, &["File exists"])? {
            return Ok(slot);
        }
    }
    Err(SandboxError::AddressPoolExhausted {
        id: id.to_owned(),
        slots: SLOTS,
    })
}

/// One sandbox's network, from [`NetworkScope::create`] until [`SandboxNetwork::destroy`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SandboxNetwork {
    /// The namespace's name under [`NETNS_DIR`]; also the host veth end's alias.
    pub(crate) netns: String,
    /// The host veth end.
    pub(crate) veth: String,
    /// The sandbox end's addresses.
    pub(crate) addresses: SandboxAddresses,
    /// Whether it may have egress redirects to remove.
    pub(crate) egress: bool,
}

impl SandboxNetwork {
    /// Addresses, routes and firewall elements on both ends of a fresh veth pair.
    fn configure(
        &self,
        metadata_port: u16,
        egress: Option<EgressPorts>,
    ) -> Result<(), SandboxError> {
        let (veth, netns) = (&self.veth, &self.netns);
        let SandboxAddresses { v4, v6 } = self.addresses;
        // The alias first: from here on, recovery can find the veth.
        let host = format!(
            "link set {veth} alias {netns}
addr add {METADATA_V4}/32 dev {veth}
addr add {METADATA_V6}/128 dev {veth} nodad
link set {veth} up
route add {v4}/32 dev {veth} src {METADATA_V4}
route add {v6}/128 dev {veth}
"
        );
        host_tool::run(IP, &["-batch", "-"], Some(&host))?;
        let inside = format!(
            "addr add {v4}/32 dev {PEER}
addr add {v6}/128 dev {PEER} nodad
link set lo up
link set {PEER} up
route add {METADATA_V4}/32 dev {PEER} src {v4}
route add {METADATA_V6}/128 dev {PEER}
"
        );
        let default_route = match egress {
            Some(_) => format!(
                "route add default via {METADATA_V4} dev {PEER} onlink src {v4}\n\
                 route add ::/0 via {METADATA_V6} dev {PEER} onlink\n"
            ),
            None => String::new(),
        };
        host_tool::run(
            IP,
            &["-n", netns, "-batch", "-"],
            Some(&(inside + &default_route)),
        )?;
        firewall::allow(veth, self.addresses, metadata_port, egress)
    }

    /// Removes the firewall elements, the veth pair and the namespace; whatever is already
    /// gone is skipped. The veth is only touched while its alias says it is still this
    /// sandbox's: once it is gone its slot (name and addresses) may belong to another sandbox.
    pub(crate) fn destroy(&self) -> Result<(), SandboxError> {
        if alias_of(&self.veth).as_deref() == Some(self.netns.as_str()) {
            firewall::revoke(&self.veth, self.addresses, self.egress)?;
            host_tool::run_tolerating(
                IP,
                &["link", "del", &self.veth],
                None,
                &["Cannot find device"],
            )?;
        }
        // Also destroys a veth whose alias was never set (a crash mid-setup) with the namespace.
        delete_netns(&self.netns)?;
        tracing::debug!(netns = %self.netns, veth = %self.veth, "sandbox network removed");
        Ok(())
    }
}

fn delete_netns(netns: &str) -> Result<(), SandboxError> {
    host_tool::run_tolerating(
        IP,
        &["netns", "del", netns],
        None,
        &["No such file or directory"],
    )
    .map(drop)
}

/// The interface alias of host interface `name`, if it exists and has one.
fn alias_of(name: &str) -> Option<String> {
    let alias = std::fs::read_to_string(Path::new(SYS_NET).join(name).join("ifalias")).ok()?;
    let alias = alias.trim_end();
    (!alias.is_empty()).then(|| alias.to_owned())
}

/// Entry names of `dir`; a missing dir has none.
fn dir_names(dir: &Path) -> Result<Vec<String>, SandboxError> {
    let entries = match std::fs::read_dir(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        other => other.map_err(SandboxError::io(dir))?,
    };
    entries
        .map(|e| {
            e.map(|e| e.file_name().to_string_lossy().into_owned())
                .map_err(SandboxError::io(dir))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addresses::METADATA_PORT;
    use std::net::IpAddr;

    #[test]
    fn slots_map_to_distinct_link_local_addresses_clear_of_the_metadata_address() {
        let mut seen = BTreeSet::new();
        for slot in 0..SLOTS {
            let a = slot_addresses(slot);
            let [x, y, third, fourth] = a.v4.octets();
            assert_eq!((x, y), (169, 254));
            assert!(
                (64..=127).contains(&third) && (1..=254).contains(&fourth),
                "{}",
                a.v4
            );
            assert_ne!(a.v4, METADATA_V4);
            assert!(seen.insert(a.v4), "{} twice", a.v4);
        }
        assert_eq!(slot_addresses(0).v4, Ipv4Addr::new(169, 254, 64, 1));
        assert_eq!(
            slot_addresses(SLOTS - 1).v4,
            Ipv4Addr::new(169, 254, 127, 254)
        );
    }

    #[test]
    fn the_ipv6_address_embeds_the_ipv4_one() {
        let a = slot_addresses(255);
        assert_eq!(a.v4, Ipv4Addr::new(169, 254, 65, 2));
        assert_eq!(a.v6, "fd00:ec2::169.254.65.2".parse::<Ipv6Addr>().unwrap());
        assert_ne!(a.v6, METADATA_V6);
    }

    #[test]
    fn veth_names_round_trip_and_fit_the_kernel_limit() {
        for slot in [0, 1, 253, SLOTS - 1] {
            let name = veth_name(slot);
            assert!(name.len() <= 15, "{name}");
            assert_eq!(slot_of(&name), Some(slot));
        }
        for other in [
            "clrk",
            "clrkx",
            "clrk01",
            "eth0",
            "clrk-br",
            &veth_name(SLOTS),
        ] {
            assert_eq!(slot_of(other), None, "{other}");
        }
    }

    #[test]
    fn namespaces_are_named_per_runtime() {
        let a = NetworkScope::new(
            Path::new("/var/lib/clrk/sandboxes/runsc"),
            METADATA_PORT,
            None,
        );
        let b = NetworkScope::new(
            Path::new("/var/lib/clrk/sandboxes/runc"),
            METADATA_PORT,
            None,
        );
        assert_ne!(a.prefix, b.prefix);
        assert_eq!(
            a.prefix,
            NetworkScope::new(
                Path::new("/var/lib/clrk/sandboxes/runsc"),
                METADATA_PORT,
                None
            )
            .prefix
        );
        let path = a.netns_path("clrk-1");
        assert!(path.starts_with(NETNS_DIR));
        let name = path.file_name().unwrap().to_str().unwrap();
        assert!(
            name.starts_with("clrk-") && name.ends_with("-clrk-1"),
            "{name}"
        );
        assert_eq!(name.len(), "clrk-".len() + 8 + 1 + "clrk-1".len());
    }

    #[test]
    fn addresses_match_mapped_peers() {
        let a = slot_addresses(7);
        assert!(a.contains(IpAddr::V4(a.v4)));
        assert!(a.contains(IpAddr::V6(a.v6)));
        assert!(a.contains(IpAddr::V6(a.v4.to_ipv6_mapped())));
        assert!(!a.contains(IpAddr::V4(slot_addresses(8).v4)));
        assert!(!a.contains(IpAddr::V6(slot_addresses(8).v6)));
    }

    #[test]
    fn first_slots_are_in_range_and_spread() {
        let slots: BTreeSet<u32> = (0..100).map(|i| first_slot(&format!("clrk-{i}"))).collect();
        assert!(slots.iter().all(|&s| s < SLOTS));
        assert!(slots.len() > 90);
    }
}
