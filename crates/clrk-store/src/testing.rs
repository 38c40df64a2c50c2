//! A throwaway PostgreSQL cluster for tests (feature `testing`): started on first use in a
//! test process, a fresh database per test, stopped and deleted when the process exits.
//!
//! The cluster is a copy of a template made once by `initdb` and kept in the temp dir
//! (`clrk-pg-template-<version>-<uid>-w1`), so a test process pays for a copy and a server
//! start, not for `initdb`; the copy lives in `/dev/shm` when there is one. The server listens on a free loopback port with its socket inside
//! its own temp dir and runs without fsync: nothing in it must survive the process. As root
//! it runs as the `postgres` system user, since PostgreSQL refuses to run as root.
//!
//! The server runs under a small `sh` watchdog whose stdin is a pipe from the test process.
//! When the test process ends, however it ends (normal exit, failed assertion, `kill -9`),
//! the kernel closes the pipe, the watchdog's `read` returns, and it stops the server
//! (immediate shutdown), waits for it and deletes the cluster's directory, so no `postgres`
//! process or cluster outlives its test. This happens just after the process has gone
//! (tens of milliseconds), not before it exits. Directories left by a watchdog that was itself
//! killed are deleted by the next test process that starts a cluster.
//!
//! A test that needs PostgreSQL on another address (a host of a multi-host test) starts a
//! dedicated cluster of its own with [`TempPostgres::start_on`]: the same template copy and
//! watchdog, listening on the given address and port, optionally inside a named network
//! namespace, and accepting any client of the subnets it is on (trust: a test-only cluster).
//! It stops and is deleted when dropped, or when the process ends like the shared one.

use std::io::Read as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::Store;

/// How long the server may take to accept connections on a loaded machine.
const START_DEADLINE: Duration = Duration::from_secs(60);

/// The one cluster of this process, or why it could not start.
static CLUSTER: OnceLock<Result<TempPostgres, String>> = OnceLock::new();

/// How long a dedicated cluster's watchdog may take to stop the server and delete it.
const STOP_DEADLINE: Duration = Duration::from_secs(60);

/// A PostgreSQL server of this test process. Get the shared one with
/// [`TempPostgres::shared`], or a fresh database on it with [`TempPostgres::database`]; or a
/// dedicated one on an address of your choice with [`TempPostgres::start_on`].
#[derive(Debug)]
pub struct TempPostgres {
    addr: SocketAddr,
    dir: PathBuf,
    databases: AtomicU64,
    /// The write end of the watchdog's stdin. Never written; closed by [`Drop`] for a
    /// dedicated cluster. The shared cluster is a static, never dropped: the kernel closes it
    /// when the process ends.
    pipe: Option<ChildStdin>,
    watchdog: Child,
}

/// A database of its own for one test, on the process's [`TempPostgres`].
#[derive(Debug, Clone)]
pub struct TempDatabase {
    name: String,
    url: String,
}

impl TempPostgres {
    /// The process's cluster, started on first call (blocking for about a second, more the
    /// first time on a machine, when the template is made).
    ///
    /// # Panics
    ///
    /// When PostgreSQL's binaries are missing or the server does not start; the message says
    /// what to install or which log to read.
    pub fn shared() -> &'static TempPostgres {
        match CLUSTER.get_or_init(start_shared) {
            Ok(cluster) => cluster,
            Err(message) => panic!("{message}"),
        }
    }

    /// A new, empty database on the process's cluster (no schema yet: [`Store::connect`]
    /// migrates it).
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let db = clrk_store::testing::TempPostgres::database().await;
    /// let store = db.connect().await;
    /// assert!(store.list_agents(None).await.unwrap().is_empty());
    /// # }
    /// ```
    pub async fn database() -> TempDatabase {
        let cluster = match CLUSTER.get() {
            Some(_) => TempPostgres::shared(),
            // Starting blocks; keep it off the runtime's worker so other tasks go on.
            None => tokio::task::spawn_blocking(TempPostgres::shared)
                .await
                .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic())),
        };
        cluster.create_database().await
    }

    /// A dedicated cluster listening on `addr`, inside network namespace `netns` (as
    /// `ip netns` names it; that needs root) or in this process's namespace. Any client of
    /// the subnets the server's address is on may connect as `postgres` without a password.
    /// Blocks for about a second: call it from `spawn_blocking` in async code.
    ///
    /// Dropping it stops the server and deletes the cluster, returning once they are gone; if
    /// the process ends first, the watchdog does so just after.
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use clrk_store::testing::TempPostgres;
    /// let pg = TempPostgres::start_on("10.252.0.10:5432".parse().unwrap(), Some("host0"));
    /// let db = pg.create_database().await;
    /// assert_eq!(db.url(), "postgres://postgres@10.252.0.10:5432/clrk_test_0");
    /// # }
    /// ```
    ///
    /// # Panics
    ///
    /// When PostgreSQL's binaries are missing or the server does not start (the address is
    /// not one of the namespace's, the port is taken); the message says what to install or
    /// which log to read.
    pub fn start_on(addr: SocketAddr, netns: Option<&str>) -> TempPostgres {
        start(Listen::Dedicated { addr, netns }).unwrap_or_else(|message| panic!("{message}"))
    }

    /// A new, empty database on this cluster (no schema yet: [`Store::connect`] migrates
    /// it). [`TempPostgres::database`] is this on the shared cluster.
    ///
    /// # Panics
    ///
    /// When the server cannot be reached or refuses.
    pub async fn create_database(&self) -> TempDatabase {
        let n = self.databases.fetch_add(1, Ordering::Relaxed);
        let name = format!("clrk_test_{n}");
        let (client, connection) =
            tokio_postgres::connect(&self.url("postgres"), tokio_postgres::NoTls)
                .await
                .unwrap_or_else(|e| {
                    panic!(
                        "cannot connect to the test PostgreSQL at {}: {}; see {}",
                        self.addr,
                        crate::error::pg_message(&e),
                        self.dir.join("server.log").display()
                    )
                });
        let connection = tokio::spawn(connection);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "cannot create test database {name}: {}",
                    crate::error::pg_message(&e)
                )
            });
        drop(client);
        let _ = connection.await;
        TempDatabase {
            url: self.url(&name),
            name,
        }
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The address the server listens on (127.0.0.1 for the shared cluster).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The cluster's directory (data, socket, server log).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A URL for database `name` as the superuser `postgres` (trust authentication):
    /// `postgres://postgres@ADDR:PORT/NAME`.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@{}/{name}", self.addr)
    }
}

impl Drop for TempPostgres {
    /// Stops a dedicated cluster: closing the pipe has the watchdog stop the server and
    /// delete the directory; this waits for that, up to a deadline.
    fn drop(&mut self) {
        drop(self.pipe.take());
        let started = Instant::now();
        while matches!(self.watchdog.try_wait(), Ok(None)) {
            if started.elapsed() > STOP_DEADLINE {
                tracing::warn!(dir = %self.dir.display(), "test PostgreSQL's watchdog did not finish");
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl TempDatabase {
    /// `postgres://postgres@ADDR:PORT/NAME` (`127.0.0.1` on the shared cluster).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A [`Store`] on this database (migrating it on first connect).
    ///
    /// # Panics
    ///
    /// When the store cannot connect or migrate.
    pub async fn connect(&self) -> Store {
        Store::connect(&self.url)
            .await
            .unwrap_or_else(|e| panic!("cannot connect a store to {}: {e}", self.url))
    }
}

/// Who runs the server: the `postgres` user when we are root, else ourselves.
#[derive(Clone, Copy)]
struct RunAs {
    uid: u32,
    gid: u32,
    switch: bool,
}

fn run_as() -> Result<RunAs, String> {
    let euid = rustix::process::geteuid();
    if !euid.is_root() {
        return Ok(RunAs {
            uid: euid.as_raw(),
            gid: rustix::process::getegid().as_raw(),
            switch: false,
        });
    }
    Ok(RunAs {
        uid: postgres_id("-u")?,
        gid: postgres_id("-g")?,
        switch: true,
    })
}

/// The `postgres` user's uid (`-u`) or primary gid (`-g`), as `id` reports it (through NSS,
/// so not only from `/etc/passwd`).
fn postgres_id(which: &str) -> Result<u32, String> {
    let missing = || {
        "PostgreSQL refuses to run as root and there is no `postgres` user; \
         install Debian's postgresql package (scripts/setup.sh)"
            .to_owned()
    };
    let out = Command::new("id")
        .args([which, "postgres"])
        .stderr(Stdio::null())
        .output()
        .map_err(|e| {
            format!("cannot run `id` to look up the postgres user: {e}; install coreutils")
        })?;
    if !out.status.success() {
        return Err(missing());
    }
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .map_err(|_| missing())
}

impl RunAs {
    fn command(self, program: &Path) -> Command {
        let mut cmd = Command::new(program);
        if self.switch {
            cmd.uid(self.uid).gid(self.gid);
        }
        cmd
    }

    fn chown(self, path: &Path) -> Result<(), String> {
        if self.switch {
            std::os::unix::fs::chown(path, Some(self.uid), Some(self.gid))
                .map_err(|e| format!("cannot hand {} to the postgres user: {e}", path.display()))?;
        }
        Ok(())
    }
}

/// The newest `/usr/lib/postgresql/<version>/bin`, or `CLRK_TEST_PG_BIN`.
fn bin_dir() -> Result<(String, PathBuf), String> {
    if let Some(dir) = std::env::var_os("CLRK_TEST_PG_BIN") {
        return Ok(("custom".into(), PathBuf::from(dir)));
    }
    let root = Path::new("/usr/lib/postgresql");
    let newest = std::fs::read_dir(root)
        .ok()
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let version: u32 = name.parse().ok()?;
            e.path()
                .join("bin/postgres")
                .exists()
                .then_some((version, name, e.path().join("bin")))
        })
        .max_by_key(|(version, _, _)| *version);
    newest.map(|(_, name, bin)| (name, bin)).ok_or_else(|| {
        "no PostgreSQL server under /usr/lib/postgresql; install Debian's postgresql package \
         (scripts/setup.sh) or set CLRK_TEST_PG_BIN to the directory holding `postgres`"
            .to_owned()
    })
}

/// Where a cluster listens.
#[derive(Clone, Copy)]
enum Listen<'a> {
    /// The shared cluster: a free port on 127.0.0.1.
    Shared,
    /// A dedicated cluster on `addr`, in network namespace `netns` if any.
    Dedicated {
        addr: SocketAddr,
        netns: Option<&'a str>,
    },
}

fn start_shared() -> Result<TempPostgres, String> {
    start(Listen::Shared)
}

fn start(listen: Listen<'_>) -> Result<TempPostgres, String> {
    let began = Instant::now();
    let who = run_as()?;
    let (version, bin) = bin_dir()?;
    let template = template(who, &version, &bin)?;

    let parent = cluster_parent();
    remove_orphans(&parent);
    let dir = tempfile::Builder::new()
        .prefix("clrk-pg-")
        .tempdir_in(&parent)
        .map_err(|e| format!("cannot make a temp dir for PostgreSQL: {e}"))?
        .keep();
    std::fs::write(dir.join(OWNER_FILE), std::process::id().to_string())
        .map_err(|e| format!("cannot write to {}: {e}", dir.display()))?;
    who.chown(&dir)?;
    let data = dir.join("data");
    let copied = Command::new("cp")
        .arg("-a")
        .arg(&template)
        .arg(&data)
        .status()
        .map_err(|e| format!("cannot run cp: {e}"))?;
    if !copied.success() {
        return Err(format!(
            "cannot copy the PostgreSQL template {} to {}",
            template.display(),
            data.display()
        ));
    }

    let addr = match listen {
        Listen::Shared => SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), free_port()?),
        Listen::Dedicated { addr, .. } => {
            // Clients come from other hosts: let in whoever is on the server's subnets.
            let mut hba = std::fs::OpenOptions::new()
                .append(true)
                .open(data.join("pg_hba.conf"))
                .map_err(|e| format!("cannot open {}/pg_hba.conf: {e}", data.display()))?;
            std::io::Write::write_all(&mut hba, b"host all all samenet trust\n")
                .map_err(|e| format!("cannot write {}/pg_hba.conf: {e}", data.display()))?;
            addr
        }
    };
    let log_path = dir.join("server.log");
    let log = std::fs::File::create(&log_path)
        .map_err(|e| format!("cannot create {}: {e}", log_path.display()))?;
    let mut cmd = match listen {
        Listen::Dedicated {
            netns: Some(netns), ..
        } => {
            // Entering a namespace needs root, so this watchdog stays root and the server
            // becomes the postgres user on its way in (`ip` and `setpriv` exec, so `$!` in
            // the watchdog is the server itself).
            let mut cmd = Command::new("sh");
            cmd.arg("-c")
                .arg(WATCHDOG)
                .arg("clrk-pg-watchdog")
                .arg(&dir)
                .args(["ip", "netns", "exec", netns]);
            if who.switch {
                cmd.args([
                    "setpriv",
                    &format!("--reuid={}", who.uid),
                    &format!("--regid={}", who.gid),
                    "--clear-groups",
                ]);
            }
            cmd
        }
        // The watchdog runs as the server's user, so it can signal the server and delete the
        // directory it owns.
        _ => {
            let mut cmd = who.command(Path::new("sh"));
            cmd.arg("-c")
                .arg(WATCHDOG)
                .arg("clrk-pg-watchdog")
                .arg(&dir);
            cmd
        }
    };
    cmd.arg(bin.join("postgres"))
        .arg("-D")
        .arg(&data)
        .arg("-k")
        .arg(&dir)
        .args(["-p", &addr.port().to_string()])
        .arg("-c")
        .arg(format!("listen_addresses={}", addr.ip()))
        .args(["-c", "fsync=off"])
        .args(["-c", "synchronous_commit=off"])
        .args(["-c", "full_page_writes=off"])
        .args(["-c", "max_connections=200"])
        .args(["-c", "shared_buffers=16MB"])
        .stdin(Stdio::piped())
        // Not the test's stdout/stderr: a test runner would wait for them to close.
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log)
        // A new process group: a Ctrl-C or a runner's signal to the test's group must not
        // kill the watchdog before it has cleaned up; the closing pipe is its only signal.
        .process_group(0);
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start the PostgreSQL watchdog `sh`: {e}"))?;
    let watchdog = child
        .stdin
        .take()
        .ok_or_else(|| "the PostgreSQL watchdog has no stdin pipe".to_owned())?;

    if let Err(message) = wait_ready(&dir, &data, &log_path, &mut child) {
        // Closing the pipe has the watchdog stop what did start and delete the directory.
        drop(watchdog);
        return Err(message);
    }
    tracing::info!(%addr, watchdog_pid = child.id(), dir = %dir.display(), elapsed_ms = began.elapsed().as_millis() as u64, "test PostgreSQL started");
    Ok(TempPostgres {
        addr,
        dir,
        databases: AtomicU64::new(0),
        pipe: Some(watchdog),
        watchdog: child,
    })
}

/// The watchdog: `sh -c WATCHDOG name DIR POSTGRES ARGS...`. It starts the server in the
/// background, and a reader of the pipe from the test process (kept on fd 3; background jobs
/// get /dev/null as stdin) that stops the server once the pipe closes. When the server has
/// exited it records the status in `server.exit` (so a failed start is seen at once), waits
/// for the test process to end, and deletes the directory.
const WATCHDOG: &str = r#"
dir=$1; shift
exec 3<&0 </dev/null
"$@" 3<&- &
server=$!
{ read -r _line <&3; kill -QUIT "$server" 2>/dev/null; } &
reader=$!
exec 3<&-
wait "$server"
echo "$?" > "$dir/server.exit"
wait "$reader"
rm -rf "$dir"
"#;

/// Waits for `postmaster.pid` to say the server accepts connections; fails when the server
/// or its watchdog exits first.
fn wait_ready(
    dir: &Path,
    data: &Path,
    log_path: &Path,
    watchdog: &mut Child,
) -> Result<(), String> {
    let deadline = Instant::now() + START_DEADLINE;
    loop {
        let status = std::fs::read_to_string(data.join("postmaster.pid")).unwrap_or_default();
        // Line 8 is the server's status once it has written one.
        if status.lines().nth(7).is_some_and(|l| l.trim() == "ready") {
            return Ok(());
        }
        let exited =
            dir.join("server.exit").exists() || watchdog.try_wait().is_ok_and(|s| s.is_some());
        if exited || Instant::now() > deadline {
            let mut log = String::new();
            let _ = std::fs::File::open(log_path).and_then(|mut f| f.read_to_string(&mut log));
            return Err(format!(
                "test PostgreSQL did not become ready; its log ({}):\n{log}",
                log_path.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The initialised data directory to copy, made by `initdb` once per machine, version and
/// user. Made under a private name and renamed into place, so concurrent test processes
/// either see a whole template or none.
fn template(who: RunAs, version: &str, bin: &Path) -> Result<PathBuf, String> {
    // `-w1`: made with 1 MB WAL segments (the default 16 MB would be most of each copy).
    let path = std::env::temp_dir().join(format!("clrk-pg-template-{version}-{}-w1", who.uid));
    if path.join("PG_VERSION").exists() {
        return Ok(path);
    }
    let scratch = tempfile::Builder::new()
        .prefix("clrk-pg-initdb-")
        .tempdir()
        .map_err(|e| format!("cannot make a temp dir for initdb: {e}"))?;
    who.chown(scratch.path())?;
    let data = scratch.path().join("data");
    let out = who
        .command(&bin.join("initdb"))
        .arg("-D")
        .arg(&data)
        .args([
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ])
        .arg("--wal-segsize=1")
        .output()
        .map_err(|e| format!("cannot run initdb: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "initdb failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    if std::fs::rename(&data, &path).is_err() && !path.join("PG_VERSION").exists() {
        return Err(format!(
            "cannot move the PostgreSQL template to {}",
            path.display()
        ));
    }
    Ok(path)
}

/// Where clusters go: memory (`/dev/shm`) when there is one, since copying the template and
/// creating databases on a busy disk costs seconds per test process; else the temp dir.
fn cluster_parent() -> PathBuf {
    let shm = Path::new("/dev/shm");
    let writable =
        std::fs::metadata(shm).is_ok_and(|m| m.is_dir()) && tempfile::tempdir_in(shm).is_ok();
    if writable {
        shm.to_owned()
    } else {
        std::env::temp_dir()
    }
}

/// Names the test process a cluster directory belongs to.
const OWNER_FILE: &str = "owner.pid";

/// Deletes the directories of clusters whose test process is gone but whose watchdog did not
/// clean up (it was killed too, or the machine went down), so memory in `/dev/shm` does not
/// fill up over many runs.
fn remove_orphans(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        if !entry.file_name().to_string_lossy().starts_with("clrk-pg-") {
            continue;
        }
        let path = entry.path();
        let Some(owner) = std::fs::read_to_string(path.join(OWNER_FILE))
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
            .and_then(rustix::process::Pid::from_raw)
        else {
            // Being set up right now, or not one of ours.
            continue;
        };
        let gone = rustix::process::test_kill_process(owner) == Err(rustix::io::Errno::SRCH);
        if gone {
            tracing::debug!(dir = %path.display(), owner = owner.as_raw_nonzero().get(), "removing an orphaned test cluster");
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

/// A loopback port nothing listens on now.
fn free_port() -> Result<u16, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| format!("cannot find a free port: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}
