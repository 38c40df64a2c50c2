//! Sandbox networks against the real runsc, runc, iproute2 and nftables: the metadata
//! addresses answer, nothing else does, and nothing is left after a sandbox ends or crashes.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use clrk_sandbox::{
    Network, Runtime, RuntimeConfig, RuntimeKind, Sandbox, SandboxAddresses, SandboxSpec,
};
use common::*;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};

/// A TCP server on every host address (dual stack) that answers each connection with the
/// peer's address, and a UDP socket that counts what arrives.
struct HostServer {
    tcp_port: u16,
    udp_port: u16,
    udp_received: Arc<AtomicUsize>,
}

async fn host_server() -> HostServer {
    let tcp = TcpListener::bind("[::]:0").await.unwrap();
    let tcp_port = tcp.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut conn, peer)) = tcp.accept().await {
            let ip = peer.ip().to_canonical();
            let _ = conn.write_all(format!("{ip}\n").as_bytes()).await;
        }
    });
    let udp = UdpSocket::bind("[::]:0").await.unwrap();
    let udp_port = udp.local_addr().unwrap().port();
    let udp_received = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&udp_received);
    tokio::spawn(async move {
        let mut buf = [0u8; 512];
        while let Ok((n, peer)) = udp.recv_from(&mut buf).await {
            counter.fetch_add(1, Ordering::SeqCst);
            let _ = udp.send_to(&buf[..n], peer).await;
        }
    });
    HostServer {
        tcp_port,
        udp_port,
        udp_received,
    }
}

/// Python run inside a sandbox: `tcp HOST PORT` prints the server's reply or `failed`;
/// `udp HOST PORT` prints the echo or `failed`.
const PROBE: &str = r#"
import socket, sys
def tcp(host, port, source=None):
    try:
        s = socket.create_connection((host, int(port)), timeout=3, source_address=source)
        return s.makefile().readline().strip() or "failed"
    except OSError:
        return "failed"
def udp(host, port):
    try:
        s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(3)
        s.sendto(b"ping", (host, int(port)))
        return s.recv(64).decode()
    except OSError:
        return "failed"
args = sys.argv[1:]
while args:
    kind, args = args[0], args[1:]
    source = None
    if kind == "tcp-from":
        source, args = (args[0], 0), args[1:]
    host, port, args = args[0], args[1], args[2:]
    print(kind, host, port, udp(host, port) if kind == "udp" else tcp(host, port, source), flush=True)
"#;

/// The host's own address towards the internet.
fn host_ip() -> String {
    let out = std::process::Command::new("ip")
        .args(["-o", "route", "get", "1.1.1.1"])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let mut words = text.split_whitespace();
    words.find(|w| *w == "src").unwrap();
    words.next().unwrap().to_owned()
}

/// The network namespace file of sandbox `id`, if it exists.
fn netns_of(id: &str) -> Option<PathBuf> {
    let suffix = format!("-{id}");
    std::fs::read_dir("/var/run/netns")
        .ok()?
        .filter_map(std::result::Result::ok)
        .map(|e| e.path())
        .find(|p| p.file_name().unwrap().to_str().unwrap().ends_with(&suffix))
}

/// Host interfaces that belong to sandbox `id` (their alias names its namespace).
fn veths_of(id: &str) -> Vec<String> {
    let suffix = format!("-{id}");
    std::fs::read_dir("/sys/class/net")
        .unwrap()
        .filter_map(std::result::Result::ok)
        .map(|e| e.file_name().to_str().unwrap().to_owned())
        .filter(|name| {
            std::fs::read_to_string(format!("/sys/class/net/{name}/ifalias"))
                .is_ok_and(|a| a.trim_end().ends_with(&suffix))
        })
        .collect()
}

/// `nft list table inet clrk`.
fn firewall() -> String {
    let out = std::process::Command::new("nft")
        .args(["list", "table", "inet", "clrk"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The firewall elements of a veth and its addresses, as `nft list` prints them.
fn elements(veth: &str, addrs: SandboxAddresses) -> [String; 2] {
    [
        format!("\"{veth}\" . {}", addrs.v4),
        format!("\"{veth}\" . {}", addrs.v6),
    ]
}

/// Everything of a sandbox's network that still exists: namespace, veths, firewall elements.
fn leftovers(id: &str, veth: &str, addrs: SandboxAddresses) -> Vec<String> {
    let mut left: Vec<String> = netns_of(id)
        .map(|p| p.display().to_string())
        .into_iter()
        .collect();
    left.extend(veths_of(id));
    let table = firewall();
    left.extend(
        elements(veth, addrs)
            .into_iter()
            .filter(|e| table.contains(e)),
    );
    left
}

fn with_network(mut spec: SandboxSpec) -> SandboxSpec {
    spec.network = Network::Metadata;
    spec
}

/// Reads stdout lines until one starts with `prefix`.
async fn read_until(
    lines: &mut tokio::io::Lines<impl tokio::io::AsyncBufRead + Unpin>,
    prefix: &str,
) -> String {
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let line = lines
                .next_line()
                .await
                .unwrap()
                .expect("sandbox closed stdout");
            if line.starts_with(prefix) {
                return line;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no line starting with {prefix:?}"))
}

/// The one veth of a running sandbox.
fn veth_of(sandbox: &Sandbox) -> String {
    let veths = veths_of(&sandbox.id);
    assert_eq!(veths.len(), 1, "{veths:?}");
    veths.into_iter().next().unwrap()
}

#[tokio::test]
async fn a_runsc_sandbox_reaches_the_metadata_addresses_and_nothing_else() {
    let dir = temp_dir();
    let server = host_server().await;
    let port = server.tcp_port.to_string();
    // Port 80 of the metadata addresses is redirected to this host server.
    let mut config = RuntimeConfig::new(RuntimeKind::Runsc, dir.path().join("sandboxes"));
    config.metadata_port = server.tcp_port;
    let rt = Runtime::new(config);

    // A neighbour that listens, so reaching it would show.
    let neighbour_spec = with_network(host_spec(
        "net-neighbour",
        "exec python3 -c 'import socket; s = socket.socket(); s.bind((\"0.0.0.0\", 8080)); s.listen(); print(\"ready\", flush=True)\nwhile True: s.accept()[0].close()'",
    ));
    let mut neighbour = rt.spawn(&neighbour_spec).await.unwrap();
    let mut neighbour_out = tokio::io::BufReader::new(neighbour.take_stdout().unwrap()).lines();
    read_until(&mut neighbour_out, "ready").await;
    let neighbour_addrs = neighbour.addresses().unwrap();

    let host = host_ip();
    let mut args = vec!["python3".to_owned(), "-c".into(), PROBE.into()];
    for target in [
        "tcp 169.254.169.254 80".to_string(),
        "tcp fd00:ec2::254 80".to_string(),
        // Only redirected connections get in: the same listener on its own port does not.
        format!("tcp 169.254.169.254 {port}"),
        format!("tcp fd00:ec2::254 {port}"),
        format!("tcp {host} {port}"),
        format!("tcp 127.0.0.1 {port}"),
        format!("tcp {} 8080", neighbour_addrs.v4),
        format!("tcp {} 8080", neighbour_addrs.v6),
        format!("udp 169.254.169.254 {}", server.udp_port),
        format!("udp fd00:ec2::254 {}", server.udp_port),
    ] {
        args.extend(target.split(' ').map(str::to_owned));
    }
    let mut spec = with_network(host_spec("net-probe", ""));
    spec.args = args;
    let mut sandbox = rt.spawn(&spec).await.unwrap();
    let addrs = sandbox
        .addresses()
        .expect("a networked sandbox has addresses");
    assert_ne!(addrs, neighbour_addrs);
    let veth = veth_of(&sandbox);

    // The firewall knows exactly this veth with exactly these addresses.
    let table = firewall();
    for element in elements(&veth, addrs) {
        assert!(table.contains(&element), "{element} missing from\n{table}");
    }
    assert!(
        table.contains("iifname . ip saddr != @sandbox_v4 drop"),
        "{table}"
    );
    assert!(
        table.contains("iifname . ip6 saddr != @sandbox_v6 drop"),
        "{table}"
    );

    let (out, err, code) = run_to_end(&mut sandbox, b"").await;
    assert_eq!(code, 0, "stderr: {err}");
    let udp = server.udp_port;
    let expected = format!(
        "tcp 169.254.169.254 80 {v4}\n\
         tcp fd00:ec2::254 80 {v6}\n\
         tcp 169.254.169.254 {port} failed\n\
         tcp fd00:ec2::254 {port} failed\n\
         tcp {host} {port} failed\n\
         tcp 127.0.0.1 {port} failed\n\
         tcp {n4} 8080 failed\n\
         tcp {n6} 8080 failed\n\
         udp 169.254.169.254 {udp} failed\n\
         udp fd00:ec2::254 {udp} failed\n",
        v4 = addrs.v4,
        v6 = addrs.v6,
        n4 = neighbour_addrs.v4,
        n6 = neighbour_addrs.v6,
    );
    assert_eq!(out, expected);
    assert_eq!(
        server.udp_received.load(Ordering::SeqCst),
        0,
        "UDP to a port other than 53 got through"
    );

    sandbox.remove().await.unwrap();
    assert_eq!(sandbox.addresses(), None);
    assert!(!bundle_dir(dir.path(), &spec.id).exists());
    assert_eq!(leftovers(&spec.id, &veth, addrs), Vec::<String>::new());

    let neighbour_veth = veth_of(&neighbour);
    neighbour.stop(Duration::from_secs(5)).await.unwrap();
    assert_eq!(
        leftovers(&neighbour_spec.id, &neighbour_veth, neighbour_addrs),
        Vec::<String>::new()
    );
}

/// A rootfs with only a static busybox and the applets the tests use.
fn busybox_rootfs(root: &Path) {
    let bin = root.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy("/bin/busybox", bin.join("busybox")).unwrap();
    for applet in ["sh", "nc", "sleep"] {
        std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
    }
}

/// runc keeps the namespace's kernel interfaces, so the test can act as a hostile sandbox from
/// the host: add routes and addresses in the namespace and send what gVisor would never send.
#[tokio::test]
async fn the_firewall_drops_spoofed_and_off_limits_packets() {
    let dir = temp_dir();
    let rootfs = dir.path().join("rootfs");
    busybox_rootfs(&rootfs);
    let server = host_server().await;
    let port = server.tcp_port.to_string();
    // Port 80 of the metadata addresses is redirected to this host server.
    let mut config = RuntimeConfig::new(RuntimeKind::Runc, dir.path().join("sandboxes"));
    config.metadata_port = server.tcp_port;
    let rt = Runtime::new(config);

    let mut spec = SandboxSpec::new(
        id("net-runc"),
        &rootfs,
        vec![
            "sh".into(),
            "-c".into(),
            "nc 169.254.169.254 80 </dev/null; echo done; exec sleep 1000".to_string(),
        ],
    );
    spec.env = vec!["PATH=/bin".into()];
    spec.network = Network::Metadata;
    let mut sandbox = rt.spawn(&spec).await.unwrap();
    let addrs = sandbox.addresses().unwrap();
    let mut stdout = tokio::io::BufReader::new(sandbox.take_stdout().unwrap()).lines();
    assert_eq!(read_until(&mut stdout, "").await, addrs.v4.to_string());
    assert_eq!(read_until(&mut stdout, "").await, "done");

    let netns = netns_of(&spec.id).expect("the sandbox's namespace exists");
    let netns_name = netns.file_name().unwrap().to_str().unwrap().to_owned();
    let veth = veth_of(&sandbox);
    let ip = |args: String| {
        let status = std::process::Command::new("ip")
            .args(args.split(' '))
            .status()
            .unwrap();
        assert!(status.success(), "ip {args}");
    };
    let host = host_ip();
    ip(format!("-n {netns_name} route add {host}/32 dev eth0"));
    // Spoofed sources, with host routes back to them: only the firewall stops them.
    ip(format!(
        "-n {netns_name} addr add 169.254.200.1/32 dev eth0"
    ));
    ip(format!(
        "-n {netns_name} addr add fd00:ec2::dead/128 dev eth0 nodad"
    ));
    ip(format!("route replace 169.254.200.1/32 dev {veth}"));
    ip(format!("route replace fd00:ec2::dead/128 dev {veth}"));
    let ns = netns_name.clone();
    let probe = move |targets: &[String]| {
        let mut cmd = std::process::Command::new("ip");
        cmd.args(["netns", "exec", &ns, "python3", "-c", PROBE]);
        for t in targets {
            cmd.args(t.split(' '));
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let out = tokio::task::spawn_blocking({
        let (port, udp) = (port.clone(), server.udp_port);
        let (v4, v6) = (addrs.v4, addrs.v6);
        move || {
            probe(&[
                format!("tcp-from {v4} 169.254.169.254 80"),
                format!("tcp-from {v6} fd00:ec2::254 80"),
                "tcp-from 169.254.200.1 169.254.169.254 80".to_string(),
                "tcp-from fd00:ec2::dead fd00:ec2::254 80".to_string(),
                format!("tcp-from {v4} 169.254.169.254 {port}"),
                format!("tcp-from {v4} {host} {port}"),
                format!("udp 169.254.169.254 {udp}"),
            ])
        }
    })
    .await
    .unwrap();
    let (v4, v6, udp) = (addrs.v4, addrs.v6, server.udp_port);
    assert_eq!(
        out,
        format!(
            "tcp-from 169.254.169.254 80 {v4}\n\
             tcp-from fd00:ec2::254 80 {v6}\n\
             tcp-from 169.254.169.254 80 failed\n\
             tcp-from fd00:ec2::254 80 failed\n\
             tcp-from 169.254.169.254 {port} failed\n\
             tcp-from {host} {port} failed\n\
             udp 169.254.169.254 {udp} failed\n",
            host = host_ip(),
        )
    );
    assert_eq!(server.udp_received.load(Ordering::SeqCst), 0);

    sandbox.stop(Duration::from_secs(5)).await.unwrap();
    assert_eq!(leftovers(&spec.id, &veth, addrs), Vec::<String>::new());
}

#[tokio::test]
async fn remove_all_clears_the_network_of_a_sandbox_whose_driver_was_killed() {
    let dir = temp_dir();
    let rt = runtime(RuntimeKind::Runsc, dir.path());
    let spec = with_network(host_spec("net-crash", "sleep 1000"));
    let mut sandbox = rt.spawn(&spec).await.unwrap();
    let addrs = sandbox.addresses().unwrap();
    let veth = veth_of(&sandbox);

    kill_driver(&mut sandbox).await;
    assert_eq!(
        leftovers(&spec.id, &veth, addrs).len(),
        4,
        "all of it is still there"
    );

    let removed = rt.remove_all().await.unwrap();
    assert_eq!(removed, [spec.id.as_str()]);
    assert_eq!(leftovers(&spec.id, &veth, addrs), Vec::<String>::new());
    eventually("the orphaned sandbox's processes are gone", || {
        host_processes_of(&spec.id).is_empty()
    })
    .await;
    // The handle still cleans up quietly after recovery did the work.
    sandbox.remove().await.unwrap();
}

#[tokio::test]
async fn removing_leftovers_leaves_a_sandbox_started_since_alone() {
    let dir = temp_dir();
    let rt = runtime(RuntimeKind::Runsc, dir.path());
    let old = with_network(host_spec("net-old", "sleep 1000"));
    let mut old_sandbox = rt.spawn(&old).await.unwrap();
    let (old_veth, old_addrs) = (veth_of(&old_sandbox), old_sandbox.addresses().unwrap());
    kill_driver(&mut old_sandbox).await;

    // Found first; a new sandbox of the same runtime, whose names share the leftover's
    // prefixes, starts before the leftover is deleted.
    let found = rt.leftovers().await.unwrap();
    assert_eq!(
        found.ids().into_iter().collect::<Vec<_>>(),
        [old.id.as_str()]
    );
    let new = with_network(host_spec("net-new", "sleep 1000"));
    let mut new_sandbox = rt.spawn(&new).await.unwrap();
    let (new_veth, new_addrs) = (veth_of(&new_sandbox), new_sandbox.addresses().unwrap());
    assert_ne!(new_veth, old_veth, "a leftover's veth holds its slot");
    assert_ne!(new_addrs, old_addrs);

    assert_eq!(found.remove().await.unwrap(), [old.id.as_str()]);
    assert_eq!(
        leftovers(&old.id, &old_veth, old_addrs),
        Vec::<String>::new()
    );
    assert_eq!(
        leftovers(&new.id, &new_veth, new_addrs).len(),
        4,
        "the new sandbox's network is untouched"
    );
    assert_eq!(rt.list().await.unwrap(), [new.id.as_str()]);
    assert!(!new_sandbox.has_exited());

    new_sandbox.stop(Duration::from_secs(5)).await.unwrap();
    assert_eq!(
        leftovers(&new.id, &new_veth, new_addrs),
        Vec::<String>::new()
    );
    old_sandbox.remove().await.unwrap();
}

/// Simulates `kill -9` of clrk: its end of the sandbox's stdin closes and the sandbox keeps
/// running; no runtime process of clrk's is there to die with it (`create` and `start` have
/// exited).
async fn kill_driver(sandbox: &mut Sandbox) {
    let me = std::process::id().to_string();
    let children: Vec<u32> = host_processes_of(&sandbox.id)
        .into_iter()
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|s| s.rsplit(')').next().unwrap().split_whitespace().nth(1) == Some(&me))
        })
        .collect();
    assert!(
        children.is_empty(),
        "runtime processes of the test: {children:?}"
    );
    drop(sandbox.take_stdin());
    assert!(!sandbox.has_exited());
}

#[tokio::test]
async fn without_a_network_there_is_no_namespace_and_no_address() {
    let dir = temp_dir();
    let rt = runtime(RuntimeKind::Runsc, dir.path());
    let spec = host_spec(
        "net-none",
        "python3 -c 'import socket; socket.create_connection((\"169.254.169.254\", 80), timeout=3)' 2>/dev/null || echo unreachable",
    );
    let mut sandbox = rt.spawn(&spec).await.unwrap();
    assert_eq!(sandbox.addresses(), None);
    assert_eq!(netns_of(&spec.id), None);
    let (out, _, _) = run_to_end(&mut sandbox, b"").await;
    sandbox.remove().await.unwrap();
    assert_eq!(out, "unreachable\n");
}
