//! A throwaway PostgreSQL cluster for tests (feature `testing`): started on first use in a
//! test process, a fresh database per test, stopped and deleted when the process exits.
//!
//! The cluster is a copy of a template made once by `initdb` and kept in the temp dir
//! (`clrk-pg-template-<version>-<uid>-w1`), so a test process pays for a copy and a server
//! start, not for `initdb`; the copy lives in `/dev/shm` when there is one. The server listens on a free loopback port with its socket inside
//! its own temp dir and runs without fsync: nothing in it must survive the process. As root
//! it runs as the `postgres` system user, since PostgreSQL refuses to run as root.
//!
//! The server is stopped by an exit hook (normal exit, failed assertions included) and, if
//! the test process is killed, by the parent-death signal it was started with, so no
//! `postgres` process outlives its test.

#![allow(unsafe_code)] // TEMPORARY

use std::ffi::CString;
use std::io::Read as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::Store;

/// How long the server may take to accept connections on a loaded machine.
const START_DEADLINE: Duration = Duration::from_secs(60);

/// The running server's pid for the exit hook; 0 when none.
static SERVER_PID: AtomicI32 = AtomicI32::new(0);
/// The cluster's directory for the exit hook to delete.
static SERVER_DIR: OnceLock<PathBuf> = OnceLock::new();
/// The one cluster of this process, or why it could not start.
static CLUSTER: OnceLock<Result<TempPostgres, String>> = OnceLock::new();

/// A PostgreSQL server of this test process. Get it with [`TempPostgres::shared`], or a
/// fresh database on it with [`TempPostgres::database`].
#[derive(Debug)]
pub struct TempPostgres {
    port: u16,
    dir: PathBuf,
    databases: AtomicU64,
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
        match CLUSTER.get_or_init(start) {
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

    /// The port the server listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The cluster's directory (data, socket, server log).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A URL for database `name` as the superuser `postgres` (trust authentication).
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    async fn create_database(&self) -> TempDatabase {
        let n = self.databases.fetch_add(1, Ordering::Relaxed);
        let name = format!("clrk_test_{n}");
        let (client, connection) =
            tokio_postgres::connect(&self.url("postgres"), tokio_postgres::NoTls)
                .await
                .unwrap_or_else(|e| {
                    panic!(
                        "cannot connect to the test PostgreSQL on port {}: {}; see {}",
                        self.port,
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
}

impl TempDatabase {
    /// `postgres://postgres@127.0.0.1:PORT/NAME`.
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
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        // SAFETY: as above.
        let gid = unsafe { libc::getegid() };
        return Ok(RunAs {
            uid: euid,
            gid,
            switch: false,
        });
    }
    let name = CString::new("postgres").map_err(|e| e.to_string())?;
    // SAFETY: `name` is a valid C string; the returned record is read at once, before any
    // other getpw* call could overwrite it.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        return Err(
            "PostgreSQL refuses to run as root and there is no `postgres` user; \
             install Debian's postgresql package (scripts/setup.sh)"
                .into(),
        );
    }
    // SAFETY: checked non-null above.
    let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
    Ok(RunAs {
        uid,
        gid,
        switch: true,
    })
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
        .filter_map(std::result::Result::ok)
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

fn start() -> Result<TempPostgres, String> {
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
    let _ = SERVER_DIR.set(dir.clone());
    // SAFETY: `stop_server` is an `extern "C" fn()` that only uses atomics, signals and the
    // file system; registering it has no preconditions.
    unsafe { libc::atexit(stop_server) };
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

    let port = free_port()?;
    let log_path = dir.join("server.log");
    let log = std::fs::File::create(&log_path)
        .map_err(|e| format!("cannot create {}: {e}", log_path.display()))?;
    let mut cmd = who.command(&bin.join("postgres"));
    cmd.arg("-D")
        .arg(&data)
        .arg("-k")
        .arg(&dir)
        .args(["-p", &port.to_string()])
        .args(["-c", "listen_addresses=127.0.0.1"])
        .args(["-c", "fsync=off"])
        .args(["-c", "synchronous_commit=off"])
        .args(["-c", "full_page_writes=off"])
        .args(["-c", "max_connections=200"])
        .args(["-c", "shared_buffers=16MB"])
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log);
    // SAFETY: prctl is async-signal-safe. Set after the uid switch (which clears it): if this
    // process dies without running its exit hook, the server gets SIGQUIT (immediate
    // shutdown) instead of living on.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGQUIT) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }

    // The parent-death signal fires when the spawning *thread* ends, so spawn from a thread
    // that lives as long as the server, waiting on it.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("test-postgres".into())
        .spawn(move || match cmd.spawn() {
            Ok(mut child) => {
                let pid = i32::try_from(child.id()).unwrap_or(0);
                SERVER_PID.store(pid, Ordering::SeqCst);
                let _ = tx.send(Ok(pid));
                let status = child.wait();
                SERVER_PID.store(0, Ordering::SeqCst);
                tracing::debug!(?status, "test PostgreSQL exited");
            }
            Err(e) => {
                let _ = tx.send(Err(format!("cannot start postgres: {e}")));
            }
        })
        .map_err(|e| format!("cannot start a thread: {e}"))?;
    let pid = rx
        .recv()
        .map_err(|_| "the PostgreSQL starter thread died".to_owned())??;

    wait_ready(&data, &log_path)?;
    tracing::info!(port, pid, dir = %dir.display(), elapsed_ms = began.elapsed().as_millis() as u64, "test PostgreSQL started");
    Ok(TempPostgres {
        port,
        dir,
        databases: AtomicU64::new(0),
    })
}

/// Waits for `postmaster.pid` to say the server accepts connections.
fn wait_ready(data: &Path, log_path: &Path) -> Result<(), String> {
    let deadline = Instant::now() + START_DEADLINE;
    loop {
        let status = std::fs::read_to_string(data.join("postmaster.pid")).unwrap_or_default();
        // Line 8 is the server's status once it has written one.
        if status.lines().nth(7).is_some_and(|l| l.trim() == "ready") {
            return Ok(());
        }
        if SERVER_PID.load(Ordering::SeqCst) == 0 || Instant::now() > deadline {
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

/// Deletes the directories of clusters whose test process was killed (its exit hook never
/// ran; the server itself got the parent-death signal), so memory in `/dev/shm` does not
/// fill up over many runs.
fn remove_orphans(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.filter_map(std::result::Result::ok) {
        if !entry.file_name().to_string_lossy().starts_with("clrk-pg-") {
            continue;
        }
        let path = entry.path();
        let Some(owner) = std::fs::read_to_string(path.join(OWNER_FILE))
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
        else {
            // Being set up right now, or not one of ours.
            continue;
        };
        // SAFETY: signal 0 only asks whether the process exists.
        let gone = unsafe { libc::kill(owner, 0) } != 0
            && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
        if gone {
            tracing::debug!(dir = %path.display(), owner, "removing an orphaned test cluster");
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

/// The exit hook: immediate shutdown of the server, then its directory goes.
extern "C" fn stop_server() {
    let pid = SERVER_PID.load(Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: signalling a pid we started; at worst it has exited and this fails.
        unsafe { libc::kill(pid, libc::SIGQUIT) };
        let deadline = Instant::now() + Duration::from_secs(30);
        // The starter thread reaps it and clears the pid.
        while SERVER_PID.load(Ordering::SeqCst) != 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    if let Some(dir) = SERVER_DIR.get() {
        let _ = std::fs::remove_dir_all(dir);
    }
}
