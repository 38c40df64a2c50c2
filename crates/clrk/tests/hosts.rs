//! The multi-host harness (`common::hosts`) keeps its promises: hosts reach each other and a
//! PostgreSQL on one of them over the bridge, reach nothing of the root namespace but the
//! gateway address, and leave nothing behind, whether the test ends or is killed. Needs root.

mod common;

use std::io::{BufRead as _, BufReader, Read as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use clrk_store::testing::TempPostgres;
use common::hosts::{Host, Hosts};
use common::{DEADLINE, text};

/// Tells the re-spawned test binary to be the process that gets killed.
const CHILD_ENV: &str = "CLRK_TEST_HOSTS_KILLED_CHILD";

/// Connects from `host` to `addr`: `connected <first line>` or `error <errno name>`.
const CONNECT_PY: &str = r#"
import errno, socket, sys
try:
    c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=20)
    print("connected", c.recv(100).decode().strip())
except OSError as e:
    print("error", errno.errorcode.get(e.errno, e.errno))
"#;

/// Listens on `ip`, prints `port N`, greets one client and prints its address.
const LISTEN_PY: &str = r#"
import socket, sys
s = socket.socket()
s.bind((sys.argv[1], 0))
s.listen()
print("port", s.getsockname()[1], flush=True)
c, peer = s.accept()
c.sendall(b"hello from " + sys.argv[1].encode() + b"\n")
print("client", peer[0], flush=True)
"#;

fn connect_from(host: &Host, addr: SocketAddr) -> String {
    let out = host
        .command("python3")
        .args([
            "-c",
            CONNECT_PY,
            &addr.ip().to_string(),
            &addr.port().to_string(),
        ])
        .output()
        .expect("run python3 on the host");
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout).trim().to_owned()
}

/// One line from a child's stdout, failing at [`DEADLINE`].
fn line_of(lines: &mpsc::Receiver<String>, what: &str) -> String {
    lines
        .recv_timeout(DEADLINE)
        .unwrap_or_else(|_| panic!("no {what} before the deadline"))
}

/// A reader thread's channel of `child`'s stdout lines.
fn stdout_lines(child: &mut Child) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().expect("piped stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < DEADLINE,
            "timed out waiting until {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn netns_exists(name: &str) -> bool {
    std::path::Path::new("/run/netns").join(name).exists()
}

/// The interface index of link `name`, if there is one.
fn ifindex(name: &str) -> Option<u32> {
    std::fs::read_to_string(format!("/sys/class/net/{name}/ifindex"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn nft_table_exists(name: &str) -> bool {
    let out = Command::new("nft")
        .args(["list", "tables", "inet"])
        .output()
        .expect("nft");
    text(&out.stdout)
        .lines()
        .any(|l| l.trim() == format!("table inet {name}"))
}

/// Running, not gone and not a zombie waiting for a parent that never reaps.
fn process_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let state = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .next()?
                .to_owned();
            Some(state != "Z" && state != "X")
        })
        .unwrap_or(false)
}

/// What a [`Hosts`] made, to check it is gone. Links are known by name and index: once freed,
/// a name may be taken again at once by hosts of another test.
struct Made {
    namespaces: Vec<String>,
    links: Vec<(String, u32)>,
    table: String,
}

impl Made {
    fn of(hosts: &Hosts) -> Made {
        let k = hosts.bridge().trim_start_matches("cthb").to_owned();
        Made {
            namespaces: hosts.hosts().iter().map(|h| h.name.clone()).collect(),
            links: std::iter::once(hosts.bridge().to_owned())
                .chain((0..hosts.hosts().len()).map(|i| format!("cth{k}h{i}")))
                .map(|name| {
                    let index = ifindex(&name).unwrap_or_else(|| panic!("no link {name}"));
                    (name, index)
                })
                .collect(),
            table: hosts.table().to_owned(),
        }
    }

    fn all_there(&self) -> bool {
        self.namespaces.iter().all(|n| netns_exists(n))
            && self.links.iter().all(|(l, i)| ifindex(l) == Some(*i))
            && nft_table_exists(&self.table)
    }

    fn all_gone(&self) -> bool {
        self.left().is_empty()
    }

    /// What still exists.
    fn left(&self) -> Vec<String> {
        let mut left: Vec<String> = self
            .namespaces
            .iter()
            .filter(|n| netns_exists(n))
            .cloned()
            .collect();
        left.extend(
            self.links
                .iter()
                .filter(|(l, i)| ifindex(l) == Some(*i))
                .map(|(l, _)| l.clone()),
        );
        if nft_table_exists(&self.table) {
            left.push(self.table.clone());
        }
        left
    }
}

#[tokio::test]
async fn postgres_on_one_host_serves_the_others_and_the_store() {
    let hosts = Hosts::create(3);
    let (addr, netns) = (hosts[0].addr(5432), hosts[0].netns().to_owned());
    let pg = tokio::task::spawn_blocking(move || TempPostgres::start_on(addr, Some(&netns)))
        .await
        .unwrap();
    assert_eq!(pg.addr(), addr);
    let db = pg.create_database().await;
    assert!(
        db.url()
            .starts_with(&format!("postgres://postgres@{addr}/")),
        "{}",
        db.url()
    );

    // The store migrates and works through the bridge from the test process.
    let store = db.connect().await;
    assert!(store.list_agents(None).await.unwrap().is_empty());

    // Other hosts connect with the same URL, and the server sees them at their own address.
    for host in &hosts.hosts()[1..] {
        let out = host
            .command("psql")
            .args([
                db.url(),
                "-tAc",
                "select host(inet_client_addr()), count(*) from information_schema.tables \
                 where table_name = 'agents'",
            ])
            .output()
            .expect("run psql on the host");
        assert!(out.status.success(), "psql: {}", text(&out.stderr));
        assert_eq!(text(&out.stdout).trim(), format!("{}|1", host.ip));
    }

    // Dropping the cluster stops its server and deletes it.
    let dir = pg.dir().to_owned();
    drop(pg);
    assert!(!dir.exists(), "{} left behind", dir.display());
    assert!(
        connect_from(&hosts[1], addr).starts_with("error ECONNREFUSED"),
        "nothing listens once the cluster is dropped"
    );

    // A cluster in the root namespace on the gateway address serves the hosts too.
    let port = TcpListener::bind((hosts.gateway(), 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let at_gateway = SocketAddr::from((hosts.gateway(), port));
    let pg = tokio::task::spawn_blocking(move || TempPostgres::start_on(at_gateway, None))
        .await
        .unwrap();
    let db = pg.create_database().await;
    let out = hosts[2]
        .command("psql")
        .args([db.url(), "-tAc", "select host(inet_client_addr())"])
        .output()
        .expect("run psql on the host");
    assert!(out.status.success(), "psql: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), hosts[2].ip.to_string());
}

#[test]
fn hosts_reach_each_other_and_the_gateway_but_nothing_else() {
    let hosts = Hosts::create(3);
    let made = Made::of(&hosts);
    assert!(made.all_there());
    assert_eq!(
        hosts[0].ip,
        Ipv4Addr::new(10, 252, hosts.gateway().octets()[2], 10)
    );
    assert_eq!(hosts[2].ip.octets()[3], 12);

    // Host 2 reaches a listener of host 1, which sees host 2's own address (no NAT).
    let mut listener = hosts[1]
        .command("python3")
        .args(["-c", LISTEN_PY, &hosts[1].ip.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("run python3 on host 1");
    let lines = stdout_lines(&mut listener);
    let port: u16 = line_of(&lines, "port")
        .strip_prefix("port ")
        .and_then(|p| p.parse().ok())
        .expect("port N");
    assert_eq!(
        connect_from(&hosts[2], hosts[1].addr(port)),
        format!("connected hello from {}", hosts[1].ip)
    );
    assert_eq!(line_of(&lines, "client"), format!("client {}", hosts[2].ip));
    assert!(listener.wait().unwrap().success());

    // The root namespace's loopback is out of reach: 127.0.0.1 on a host is its own.
    let root_loopback = TcpListener::bind("127.0.0.1:0").unwrap();
    let loopback_addr = root_loopback.local_addr().unwrap();
    assert_eq!(connect_from(&hosts[1], loopback_addr), "error ECONNREFUSED");

    // A root service on the gateway address is reachable, and sees the host's address.
    let gateway = TcpListener::bind((hosts.gateway(), 0)).unwrap();
    let gateway_addr = gateway.local_addr().unwrap();
    let accepted = std::thread::spawn(move || {
        let (mut conn, peer) = gateway.accept().unwrap();
        std::io::Write::write_all(&mut conn, b"gateway\n").unwrap();
        peer.ip()
    });
    assert_eq!(connect_from(&hosts[0], gateway_addr), "connected gateway");
    assert_eq!(accepted.join().unwrap(), hosts[0].ip);

    // Nothing is routed beyond the subnet: the root namespace's other addresses, where a
    // listener on all addresses waits, are unreachable.
    let everywhere = TcpListener::bind("0.0.0.0:0").unwrap();
    let port = everywhere.local_addr().unwrap().port();
    let outside = Command::new("ip")
        .args(["-4", "-o", "addr", "show", "scope", "global"])
        .output()
        .unwrap();
    let outside: Vec<Ipv4Addr> = text(&outside.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().nth(3)?.split('/').next()?.parse().ok())
        .filter(|ip: &Ipv4Addr| ip.octets()[..2] != [10, 252])
        .collect();
    for ip in outside {
        assert_eq!(
            connect_from(&hosts[0], SocketAddr::from((ip, port))),
            "error ENETUNREACH",
            "{ip} reached from a host"
        );
    }
    // And a host has no route out to reach anything else through.
    let routes = hosts[0]
        .command("ip")
        .args(["-4", "route", "show"])
        .output()
        .unwrap();
    assert!(
        !text(&routes.stdout).contains("default"),
        "{}",
        text(&routes.stdout)
    );

    drop(hosts);
    assert_eq!(made.left(), Vec::<String>::new(), "left behind");
}

#[test]
fn processes_on_hosts_die_with_them() {
    let hosts = Hosts::create(1);
    let mut sleeper = hosts[0]
        .command("sleep")
        .arg("3600")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let pid = sleeper.id();
    let pids = hosts[0]
        .command("sh")
        .args(["-c", "echo $$; ip netns identify $$"])
        .output()
        .unwrap();
    assert!(
        text(&pids.stdout).contains(&hosts[0].name),
        "a command runs in its host's namespace: {}",
        text(&pids.stdout)
    );
    drop(hosts);
    // Killed (`ip netns exec` execs, so the child is `sleep` itself).
    let status = sleeper.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9),
        "sleep {pid}"
    );
}

/// The killed half of [`a_killed_test_leaves_no_hosts_behind`]: a no-op unless spawned by it.
/// Creates hosts with PostgreSQL and a process on them, prints what it made, and waits.
#[tokio::test]
async fn killed_child_with_hosts() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let hosts = Hosts::create(2);
    let (addr, netns) = (hosts[0].addr(5432), hosts[0].netns().to_owned());
    let pg = tokio::task::spawn_blocking(move || TempPostgres::start_on(addr, Some(&netns)))
        .await
        .unwrap();
    let mut sleeper = hosts[1]
        .command("sleep")
        .arg("3600")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let made = Made::of(&hosts);
    // Ends libtest's `test … ` line, so each of ours is a line of its own.
    println!();
    println!("pgdir {}", pg.dir().display());
    println!("sleeper {}", sleeper.id());
    for ns in &made.namespaces {
        println!("netns {ns}");
    }
    for (link, index) in &made.links {
        println!("link {link} {index}");
    }
    println!("table {}", made.table);
    println!("watchdog {}", hosts.watchdog_pid());
    println!("ready");
    // Until killed; or until the parent test goes, which closes this pipe.
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    drop(pg);
    drop(hosts);
    let _ = sleeper.wait();
}

/// A running [`killed_child_with_hosts`] and what it made.
struct Victim {
    child: Child,
    made: Made,
    pgdir: std::path::PathBuf,
    sleeper: u32,
    watchdog: u32,
}

impl Victim {
    fn start() -> Victim {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "killed_child_with_hosts",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = stdout_lines(&mut child);
        let mut made = Made {
            namespaces: Vec::new(),
            links: Vec::new(),
            table: String::new(),
        };
        let (mut pgdir, mut sleeper, mut watchdog) = (None, None, None);
        loop {
            let line = line_of(&lines, "`ready` from the child");
            match line.split_once(' ') {
                Some(("netns", n)) => made.namespaces.push(n.to_owned()),
                Some(("link", l)) => {
                    let (name, index) = l.split_once(' ').expect("link NAME INDEX");
                    made.links.push((name.to_owned(), index.parse().unwrap()));
                }
                Some(("table", t)) => made.table = t.to_owned(),
                Some(("pgdir", d)) => pgdir = Some(std::path::PathBuf::from(d)),
                Some(("sleeper", p)) => sleeper = p.parse::<u32>().ok(),
                Some(("watchdog", p)) => watchdog = p.parse::<u32>().ok(),
                _ if line == "ready" => break,
                _ => {}
            }
        }
        let victim = Victim {
            child,
            made,
            pgdir: pgdir.expect("pgdir"),
            sleeper: sleeper.expect("sleeper"),
            watchdog: watchdog.expect("watchdog"),
        };
        assert_eq!(victim.made.namespaces.len(), 2);
        assert!(victim.made.all_there() && victim.pgdir.exists() && process_alive(victim.sleeper));
        victim
    }

    /// SIGKILL: no destructor runs.
    fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

#[test]
fn a_killed_test_leaves_no_hosts_behind() {
    let mut victim = Victim::start();
    victim.kill();
    wait_until("the killed test's hosts are gone", || {
        victim.made.all_gone()
    });
    wait_until("its PostgreSQL cluster is deleted", || {
        !victim.pgdir.exists()
    });
    wait_until("the process on its host is killed", || {
        !process_alive(victim.sleeper)
    });
}

#[test]
fn hosts_created_later_sweep_what_a_killed_test_and_its_watchdog_left() {
    let mut victim = Victim::start();
    let status = Command::new("kill")
        .args(["-9", &victim.watchdog.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    wait_until("the watchdog is dead", || !process_alive(victim.watchdog));
    victim.kill();
    assert!(
        process_alive(victim.sleeper),
        "nothing killed the host's process yet"
    );

    let later = Hosts::create(1);
    assert_eq!(
        victim.made.left(),
        Vec::<String>::new(),
        "leftovers of a dead test"
    );
    wait_until("the process on its host is killed", || {
        !process_alive(victim.sleeper)
    });
    let made = Made::of(&later);
    drop(later);
    assert_eq!(made.left(), Vec::<String>::new(), "left behind");
}
