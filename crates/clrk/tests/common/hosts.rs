//! Several "hosts" on one machine for cluster tests: network namespaces joined by a bridge.
//!
//! # What [`Hosts::create`]`(n)` makes
//!
//! - A Linux bridge `cthb<K>` in the root namespace with address `10.252.<K>.1/24` (the
//!   [`Hosts::gateway`]). `K` is free on the machine when the hosts are made (a lock file,
//!   `/run/cth-hosts.lock`, serialises the choice across processes), so several test
//!   processes and several `Hosts` in one process each get their own subnet.
//! - `n` network namespaces `cth-<pid>-<K>-<i>` (`pid` is the creating process), each with
//!   its loopback up and an `eth0` at `10.252.<K>.<10 + i>/24`, the peer of the veth
//!   `cth<K>h<i>` that is a port of the bridge. No default route: a host reaches the other
//!   hosts and the gateway address, nothing else.
//! - An nftables table `inet cth_<pid>_<K>` in the root namespace that drops anything the
//!   root namespace would route between the bridge and another interface, whatever the
//!   machine's `ip_forward`. Traffic between hosts is bridged, not routed, so it passes (also
//!   with `br_netfilter`, where bridged packets show the bridge as both interfaces).
//!
//! No name starts with `clrk`: that prefix is how clrk's firewall and recovery recognise
//! sandbox veths and namespaces. clrk's own firewall (`inet clrk`) only matches `clrk*`
//! interfaces, so a `clrk dev` on the machine does not touch the bridge, and a clrk process
//! started on a host gets the namespace's own nftables.
//!
//! Each host has its own loopback: a service bound to `127.0.0.1` in the root namespace (or
//! on another host) is out of its reach. A root-namespace service the hosts must reach binds
//! to [`Hosts::gateway`]; the test process reaches a host's services at [`Host::addr`].
//!
//! # Running something on a host
//!
//! [`Host::command`] is a [`std::process::Command`] for `ip netns exec <ns> <program>` (with
//! the machine's cgroup mounts bound back, for the runtimes): add arguments and spawn it as
//! usual; the `Child` is the program itself (each step execs the next), so killing the child
//! kills the program.
//!
//! ```ignore
//! let hosts = Hosts::create(3);
//! let server = hosts[1].command(clrk_bin()).args(["server", "--listen"])
//!     .arg(hosts[1].addr(8080).to_string()).spawn().unwrap();
//! ```
//!
//! `ip netns exec` also gives the program a mount namespace of its own, with `/sys` showing
//! the host's interfaces (clrk reads `/sys/class/net`). So namespaces the program names with
//! `ip netns add` (a clrk worker's sandboxes) are usable by it and its children but not from
//! the root namespace or from another `command` on the same host, where `/run/netns/<name>`
//! is an empty file; a program started again on the host sees those files and can delete
//! them, as clrk's recovery does.
//!
//! PostgreSQL on a host is a dedicated test cluster from `clrk_store::testing` (feature
//! `testing`), listening on the host's address and reachable from every host:
//!
//! ```ignore
//! let hosts = Hosts::create(2);
//! let pg = TempPostgres::start_on(hosts[0].addr(5432), Some(hosts[0].netns()));
//! let db = pg.create_database().await; // db.url(): postgres://postgres@10.252.K.10:5432/…
//! ```
//!
//! # Clean-up
//!
//! Dropping the [`Hosts`] kills every process still running in its namespaces (`kill -9`),
//! deletes the namespaces, the veths, the nftables table and the bridge, and returns once
//! they are gone. The same clean-up runs when the test process dies any other way (a failed
//! assertion, `kill -9`): a small `sh` watchdog, started first, reads a pipe from the test
//! process and cleans up when the kernel closes it. Should the watchdog die too, the next
//! [`Hosts::create`] on the machine deletes what belongs to dead processes (the bridge's
//! alias names its creating process). Drop the `Hosts` after what runs on them (declare it
//! first), so those processes can stop cleanly before the namespaces go.
//!
//! Only processes in a host's own network namespace are killed: a process that moved to a
//! namespace of its own (a sandbox of a clrk worker on the host) is its owner's to end. Stop
//! workers with SIGTERM before dropping the `Hosts`; after a `kill -9` of the test, such
//! sandboxes are left to clrk's recovery.
//!
//! Root and `ip`, `nft`, `flock` (util-linux) are needed; `python3` and `psql` are handy to
//! probe from a host. Everything is made and removed under `/run/cth-hosts.lock`, so
//! concurrent test processes never take the same subnet or delete each other's hosts.

use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Serialises choosing a subnet, setting up, sweeping leftovers and the watchdogs' clean-up
/// across every process on the machine.
const LOCK_FILE: &str = "/run/cth-hosts.lock";
/// How long clean-up may take on a loaded machine.
const CLEANUP_DEADLINE: Duration = Duration::from_secs(60);
/// Host `i` is `10.252.K.(FIRST_HOST + i)`.
const FIRST_HOST: usize = 10;

/// Network namespaces joined by a bridge; see the module's documentation.
pub struct Hosts {
    hosts: Vec<Host>,
    k: u8,
    bridge: String,
    /// The bridge's alias: whose it is.
    alias: String,
    table: String,
    watchdog: Child,
    /// Closing it is the watchdog's signal to clean up.
    pipe: Option<ChildStdin>,
}

/// One host: a network namespace with an address on the bridge.
#[derive(Debug, Clone)]
pub struct Host {
    /// The namespace's name (`ip netns`).
    pub name: String,
    /// The host's address on the bridge.
    pub ip: Ipv4Addr,
}

impl Host {
    /// A command running `program` inside this host's namespace.
    ///
    /// `ip netns exec` mounts a fresh sysfs (so `/sys/class/net` shows the host's interfaces),
    /// which hides the machine's cgroup mounts under `/sys/fs/cgroup` that the runtimes need.
    /// So the command first enters a private mount namespace where `/mnt` holds a binding of
    /// the cgroup mounts, and inside the host binds that back over `/sys/fs/cgroup` (a mount
    /// can only be bound from the caller's own mount namespace). Every step execs the next:
    /// the `Child` is still the program.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("unshare");
        cmd.args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg(concat!(
                "mount --rbind /sys/fs/cgroup /mnt && ",
                "exec ip netns exec \"$0\" sh -c ",
                "'mount --rbind /mnt /sys/fs/cgroup && exec \"$@\"' sh \"$@\""
            ))
            .arg(&self.name)
            .arg(program);
        cmd
    }

    /// `ip:port` on this host.
    pub fn addr(&self, port: u16) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(self.ip, port))
    }

    /// The namespace's name, for APIs that enter it themselves.
    pub fn netns(&self) -> &str {
        &self.name
    }
}

impl std::ops::Index<usize> for Hosts {
    type Output = Host;
    fn index(&self, i: usize) -> &Host {
        &self.hosts[i]
    }
}

impl Hosts {
    /// Creates `n` hosts (at most 240) on a new bridge.
    ///
    /// # Panics
    ///
    /// When not root, when `ip`/`nft` are missing, or when a step fails (the message names it).
    pub fn create(n: usize) -> Hosts {
        assert!(n <= 240, "a /24 holds at most 240 hosts from .10");
        let lock = Lock::take();
        sweep();
        let k = free_subnet();
        // Unique per `Hosts` of this process, so a watchdog never mistakes a later bridge
        // with the same K for its own.
        static CREATED: AtomicU32 = AtomicU32::new(0);
        let serial = CREATED.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let bridge = format!("cthb{k}");
        let alias = format!(
            "{ALIAS_PREFIX}{pid} pidns={} serial={serial}",
            pid_namespace()
        );
        let table = format!("cth_{pid}_{k}");
        let hosts: Vec<Host> = (0..n)
            .map(|i| Host {
                name: format!("cth-{pid}-{k}-{i}"),
                ip: Ipv4Addr::new(10, 252, k, (FIRST_HOST + i) as u8),
            })
            .collect();

        // The watchdog first: whatever is made after it is cleaned up however we end.
        let mut watchdog = Command::new("sh")
            .arg("-c")
            .arg(WATCHDOG)
            .arg("cth-hosts-watchdog")
            .args([LOCK_FILE, &bridge, &alias, &table])
            .args(hosts.iter().map(|h| &h.name))
            .stdin(Stdio::piped())
            // Not the test's stdout/stderr: a test runner would wait for them to close.
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group: a signal to the test's group must not stop the clean-up.
            .process_group(0)
            .spawn()
            .expect("start the hosts' watchdog `sh`");
        let pipe = watchdog.stdin.take();
        let made = Hosts {
            hosts,
            k,
            bridge,
            alias,
            table,
            watchdog,
            pipe,
        };

        if let Err(message) = made.set_up() {
            // Unlocked first: the watchdog takes the lock to clean up what was made.
            drop(lock);
            drop(made);
            panic!("cannot create the hosts: {message}");
        }
        drop(lock);
        tracing::info!(bridge = %made.bridge, subnet = %made.subnet(), hosts = n, "hosts created");
        made
    }

    /// Makes the bridge, the table and the namespaces (the lock held).
    fn set_up(&self) -> Result<(), String> {
        let b = &self.bridge;
        run("ip", &["link", "add", b, "type", "bridge"])?;
        run("ip", &["link", "set", b, "alias", &self.alias])?;
        let gateway = format!("{}/24", self.gateway());
        run("ip", &["addr", "add", &gateway, "dev", b])?;
        run("ip", &["link", "set", b, "up"])?;
        nft(&guard_table(&self.table, b))?;
        for (i, host) in self.hosts.iter().enumerate() {
            let veth = format!("cth{}h{i}", self.k);
            let ns = &host.name;
            run("ip", &["netns", "add", ns])?;
            let peer = [
                "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", ns,
            ];
            run("ip", &peer)?;
            run("ip", &["link", "set", &veth, "master", b, "up"])?;
            run("ip", &["-n", ns, "link", "set", "lo", "up"])?;
            let cidr = format!("{}/24", host.ip);
            run("ip", &["-n", ns, "addr", "add", &cidr, "dev", "eth0"])?;
            run("ip", &["-n", ns, "link", "set", "eth0", "up"])?;
        }
        Ok(())
    }

    /// The hosts, in order.
    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    /// The bridge's address in the root namespace: where the hosts reach the test process.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 252, self.k, 1)
    }

    /// The hosts' subnet, e.g. `10.252.3.0/24`.
    pub fn subnet(&self) -> String {
        format!("10.252.{}.0/24", self.k)
    }

    /// The bridge's interface name.
    pub fn bridge(&self) -> &str {
        &self.bridge
    }

    /// The root namespace's nftables table (`inet`) that keeps the hosts unrouted.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The clean-up watchdog's process id (tests of the harness kill it).
    pub fn watchdog_pid(&self) -> u32 {
        self.watchdog.id()
    }

    /// Whether any namespace, the table or the bridge of these hosts still exists.
    fn anything_left(&self) -> bool {
        let alias = std::fs::read_to_string(format!("/sys/class/net/{}/ifalias", self.bridge));
        self.hosts
            .iter()
            .any(|h| Path::new("/run/netns").join(&h.name).exists())
            || output("nft", &["list", "tables", "inet"])
                .lines()
                .any(|l| l.trim() == format!("table inet {}", self.table))
            || alias.is_ok_and(|a| a.trim() == self.alias)
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        // The watchdog does the clean-up, under the machine-wide lock; we wait for it.
        drop(self.pipe.take());
        let started = Instant::now();
        while matches!(self.watchdog.try_wait(), Ok(None)) {
            if started.elapsed() > CLEANUP_DEADLINE {
                let _ = self.watchdog.kill();
                let _ = self.watchdog.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _lock = Lock::take();
        if !self.anything_left() {
            return;
        }
        // The watchdog was killed or stuck: do its work here.
        tracing::warn!(bridge = %self.bridge, "the hosts' watchdog did not clean up; cleaning up here");
        for host in &self.hosts {
            kill_all_in(&host.name);
            quiet("ip", &["netns", "del", &host.name]);
        }
        quiet("nft", &["delete", "table", "inet", &self.table]);
        if std::fs::read_to_string(format!("/sys/class/net/{}/ifalias", self.bridge))
            .is_ok_and(|a| a.trim() == self.alias)
        {
            delete_bridge(&self.bridge);
        }
    }
}

/// The watchdog: `sh -c WATCHDOG name LOCK BRIDGE ALIAS TABLE NS...`. It waits for the pipe
/// from the test process to close, then, holding the lock: kills what runs in each namespace
/// and deletes it, deletes the table, and deletes the bridge and its veths if the bridge is
/// still its own (a sweep may have deleted it and another `Hosts` taken its name since).
const WATCHDOG: &str = r#"
lock=$1 bridge=$2 alias=$3 table=$4; shift 4
while read -r _line; do :; done
exec 9>>"$lock"
flock 9
for ns in "$@"; do
  for _round in 1 2 3; do
    pids=$(ip netns pids "$ns" 2>/dev/null)
    [ -z "$pids" ] && break
    kill -9 $pids 2>/dev/null
  done
  ip netns del "$ns" 2>/dev/null
done
nft delete table inet "$table" 2>/dev/null
if [ "$(cat "/sys/class/net/$bridge/ifalias" 2>/dev/null)" = "$alias" ]; then
  for port in "/sys/class/net/$bridge/brif/"*; do
    [ -e "$port" ] && ip link del "${port##*/}" 2>/dev/null
  done
  ip link del "$bridge" 2>/dev/null
fi
exit 0
"#;

/// The start of a bridge's alias; the rest names the creating process.
const ALIAS_PREFIX: &str = "cth-hosts pid=";

/// The root-namespace table that drops routed traffic to or from the bridge. Bridged
/// traffic between hosts has the bridge as both interfaces (or none, without
/// `br_netfilter`), so it passes.
fn guard_table(table: &str, bridge: &str) -> String {
    format!(
        "table inet {table} {{
  chain forward {{
    type filter hook forward priority filter; policy accept;
    iifname \"{bridge}\" oifname != \"{bridge}\" drop
    oifname \"{bridge}\" iifname != \"{bridge}\" drop
  }}
}}
"
    )
}

/// The machine-wide lock, released on drop (or by the kernel when the process dies).
struct Lock(std::fs::File);

impl Lock {
    fn take() -> Lock {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(LOCK_FILE)
            .unwrap_or_else(|e| panic!("cannot open {LOCK_FILE} (hosts need root): {e}"));
        file.lock()
            .unwrap_or_else(|e| panic!("cannot lock {LOCK_FILE}: {e}"));
        Lock(file)
    }
}

/// `pid:[…]` of this process: a pid names a process only within its pid namespace.
fn pid_namespace() -> String {
    std::fs::read_link("/proc/self/ns/pid")
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The first K whose bridge name and subnet nothing on the machine uses.
fn free_subnet() -> u8 {
    let addrs = output("ip", &["-4", "-o", "addr", "show"]);
    (0..=255u8)
        .find(|k| {
            !Path::new(&format!("/sys/class/net/cthb{k}")).exists()
                && !addrs.contains(&format!(" 10.252.{k}."))
        })
        .expect("a free 10.252.K.0/24 (all 256 in use: leftovers?)")
}

/// Deletes the bridges, namespaces and tables of `Hosts` whose process is gone (called with
/// the lock held, so nothing found is half made by a live process).
fn sweep() {
    let ours = pid_namespace();
    let mut live: Vec<(String, String)> = Vec::new();
    for entry in std::fs::read_dir("/sys/class/net")
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(k) = name.strip_prefix("cthb") else {
            continue;
        };
        let alias = std::fs::read_to_string(entry.path().join("ifalias")).unwrap_or_default();
        let owner = alias
            .trim()
            .strip_prefix(ALIAS_PREFIX)
            .and_then(|rest| rest.split(' ').next())
            .map(str::to_owned);
        let other_pid_namespace = !alias.contains(&format!("pidns={ours} "));
        match owner {
            Some(pid) if other_pid_namespace || Path::new(&format!("/proc/{pid}")).exists() => {
                live.push((pid, k.to_owned()));
            }
            _ => {
                tracing::info!(bridge = %name, alias = alias.trim(), "deleting leftover hosts bridge");
                delete_bridge(&name);
            }
        }
    }
    let is_live = |pid: &str, k: &str| live.iter().any(|(p, kk)| p == pid && kk == k);
    // Namespaces `cth-PID-K-I`.
    for entry in std::fs::read_dir("/run/netns")
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        let parts: Vec<&str> = name.split('-').collect();
        if let ["cth", pid, k, _] = parts.as_slice()
            && !is_live(pid, k)
        {
            tracing::info!(netns = %name, "deleting leftover hosts namespace");
            kill_all_in(&name);
            quiet("ip", &["netns", "del", &name]);
        }
    }
    // Tables `cth_PID_K`.
    for line in output("nft", &["list", "tables", "inet"]).lines() {
        let Some(table) = line.trim().strip_prefix("table inet ") else {
            continue;
        };
        let parts: Vec<&str> = table.split('_').collect();
        if let ["cth", pid, k] = parts.as_slice()
            && !is_live(pid, k)
        {
            tracing::info!(table, "deleting leftover hosts table");
            quiet("nft", &["delete", "table", "inet", table]);
        }
    }
}

/// Deletes a bridge and the veths that are its ports.
fn delete_bridge(bridge: &str) {
    let ports = std::fs::read_dir(format!("/sys/class/net/{bridge}/brif"));
    for port in ports.into_iter().flatten().flatten() {
        quiet("ip", &["link", "del", &port.file_name().to_string_lossy()]);
    }
    quiet("ip", &["link", "del", bridge]);
}

/// `kill -9` of every process in namespace `ns`, a few rounds in case one forks meanwhile.
fn kill_all_in(ns: &str) {
    for _ in 0..3 {
        let pids = output("ip", &["netns", "pids", ns]);
        let pids: Vec<&str> = pids.split_whitespace().collect();
        if pids.is_empty() {
            return;
        }
        quiet("kill", &[&["-9"][..], &pids[..]].concat());
    }
}

/// Runs a step of the set-up.
fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {program} (install iproute2 and nftables): {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// `nft -f -` of `rules`.
fn nft(rules: &str) -> Result<(), String> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run nft (install nftables): {e}"))?;
    let mut input = child.stdin.take().ok_or("nft has no stdin")?;
    input
        .write_all(rules.as_bytes())
        .map_err(|e| e.to_string())?;
    drop(input);
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "nft failed on:\n{rules}{}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Runs a clean-up command whose failure (already gone) is fine.
fn quiet(program: &str, args: &[&str]) {
    let _ = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// A command's stdout, empty when it fails.
fn output(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}
