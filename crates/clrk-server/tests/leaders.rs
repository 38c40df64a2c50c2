//! Cron and daemons across several processes sharing one store, at library level: several
//! `Cron`s and daemon `Supervisor`s, each in a [`Process`] of its own (a runtime with its own
//! store connections and tasks), as separate servers and workers would be. Killing one drops
//! all of it at once, as `kill -9` would: its connections close and PostgreSQL releases its
//! locks. The last test runs two `clrk worker`s as the command starts them.
//!
//! No sandbox runs here. Cron's fires are counted from its events (each fire is one "cron
//! fired" or "cron tick could not start an execution" event naming its tick: no worker is
//! registered, so each fire is refused by placement, once). The daemon's pool has no
//! WorkerPool object, so each start fails at once and is recorded as a run of the worker
//! that supervises it: which worker runs the daemon is read from its runs, as a user reads it
//! from `clrk agents executions`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use clrk_dispatch::placement::cluster::Cluster;
use clrk_dispatch::{Dispatcher, Launcher, LogBus, RevisionShape, Worker, Workers};
use clrk_image::{ImageConfig, ImageStore, ResolvedImage, StoreOptions};
use clrk_link::{ClusterSecret, LinkClient};
use clrk_sandbox::{Runtime, RuntimeConfig, RuntimeKind};
use clrk_server::cron::Cron;
use clrk_server::daemons::{ClusterWorker, Supervisor};
use clrk_store::testing::{TempDatabase, TempPostgres};
use clrk_store::{AgentApply, RevisionState, ScheduleTimes, Store};
use tracing_subscriber::layer::SubscriberExt as _;

/// Generous for a loaded 2-core machine; the promises checked are tighter and measured.
const DEADLINE: Duration = Duration::from_secs(60);
/// A follower takes cron over within this of the leader's connection ending.
const TAKEOVER: chrono::TimeDelta = chrono::TimeDelta::seconds(10);

// ---- processes -----------------------------------------------------------------------------

/// What a process runs.
enum Part {
    Cron(Cron),
    Daemons(Supervisor),
}

/// A server or worker: its own runtime (one thread), store connections (named after it, so
/// PostgreSQL's sessions show whose a lock is) and tasks.
struct Process {
    name: String,
    /// `true`: stop as on SIGTERM; `false`: die as on `kill -9`.
    end: Option<tokio::sync::oneshot::Sender<bool>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

type Make = Box<dyn FnOnce(&Store, &Path, &str) -> Part + Send>;

impl Process {
    async fn start(name: &str, db: &TempDatabase, dir: &Path, make: Make) -> Process {
        let (end, ended) = tokio::sync::oneshot::channel::<bool>();
        let (started, running) = tokio::sync::oneshot::channel();
        let url = format!("{}?application_name={name}", db.url());
        let (own, dir): (String, PathBuf) = (name.to_owned(), dir.to_owned());
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let store = Store::connect(&url).await.unwrap();
                let part = make(&store, &dir, &own);
                let _ = started.send(());
                if ended.await.unwrap_or(false) {
                    match part {
                        Part::Cron(cron) => cron.shutdown(),
                        Part::Daemons(daemons) => daemons.shutdown(Duration::from_secs(15)).await,
                    }
                }
            });
            // Every task of the process ends here, its connections with them.
            drop(runtime);
        });
        running.await.expect("the process started");
        Process {
            name: name.to_owned(),
            end: Some(end),
            thread: Some(thread),
        }
    }

    /// As `kill -9`: nothing is stopped or recorded, everything just ends.
    async fn kill(mut self) {
        self.finish(false).await;
    }

    /// As SIGTERM.
    async fn stop(mut self) {
        self.finish(true).await;
    }

    async fn finish(&mut self, graceful: bool) {
        let _ = self.end.take().unwrap().send(graceful);
        let thread = self.thread.take().unwrap();
        tokio::task::spawn_blocking(move || thread.join().unwrap())
            .await
            .unwrap();
    }
}

/// The process whose session holds the one advisory lock taken in `db` (the leader).
async fn leader(db: &TempDatabase) -> String {
    let (admin, connection) = tokio_postgres::connect(db.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let holders = admin
        .query(
            "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
             WHERE l.locktype = 'advisory' AND l.granted \
               AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(holders.len(), 1, "exactly one process leads");
    holders[0].get(0)
}

/// Waits until a process other than `not` leads, and names it.
async fn new_leader(db: &TempDatabase, not: &str) -> String {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let (admin, connection) = tokio_postgres::connect(db.url(), tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        let holders: Vec<String> = admin
            .query(
                "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
                 WHERE l.locktype = 'advisory' AND l.granted \
                   AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect();
        assert!(holders.len() <= 1, "two processes lead: {holders:?}");
        if let Some(holder) = holders.into_iter().find(|h| h != not) {
            return holder;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "nobody took over from {not} within {DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---- cron ----------------------------------------------------------------------------------

/// Every cron fire seen in this test process, by tick.
fn fires() -> &'static Mutex<BTreeMap<DateTime<Utc>, u32>> {
    static FIRES: OnceLock<Mutex<BTreeMap<DateTime<Utc>, u32>>> = OnceLock::new();
    FIRES.get_or_init(|| {
        let layer = FireCounter;
        tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer))
            .expect("the only subscriber of this test process");
        Mutex::new(BTreeMap::new())
    })
}

/// Counts cron's fire events (one per fire, whatever became of the execution) by tick.
struct FireCounter;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for FireCounter {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        #[derive(Default)]
        struct Fields {
            message: String,
            tick: String,
        }
        impl tracing::field::Visit for Fields {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                match field.name() {
                    "message" => self.message = format!("{value:?}"),
                    "tick" => self.tick = format!("{value:?}"),
                    _ => {}
                }
            }
        }
        if event.metadata().target() != "clrk_server::cron" {
            return;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        if fields.message != "cron fired"
            && fields.message != "cron tick could not start an execution"
        {
            return;
        }
        let tick: DateTime<Utc> = fields.tick.parse().expect("a fire names its tick");
        *fires().lock().unwrap().entry(tick).or_default() += 1;
    }
}

fn fired() -> BTreeMap<DateTime<Utc>, u32> {
    fires().lock().unwrap().clone()
}

/// A cron over `store`, placing onto the registered workers (there are none).
fn cron(store: &Store, dir: &Path) -> Cron {
    let secret = ClusterSecret::load_or_create(&dir.join("cluster-secret")).unwrap();
    let client = LinkClient::new(secret).unwrap();
    let dispatcher = Dispatcher::new(
        store.clone(),
        LogBus::new(store.clone()),
        Workers::Cluster(Cluster::new(client, store.clone())),
        Dispatcher::default_body_budget(),
    );
    Cron::start(store.clone(), dispatcher)
}

/// A `clrk server`'s cron.
fn server() -> Make {
    Box::new(|store, dir, _| Part::Cron(cron(store, dir)))
}

/// Applies `manifest` (one agent) as apply would, its revision ready.
async fn apply(store: &Store, manifest: &str) {
    let document = clrk_api::parse_manifests("test", manifest)
        .unwrap()
        .remove(0);
    let image = ResolvedImage {
        reference: "registry.local/echo:latest".into(),
        digest: "sha256:1111".into(),
        config: ImageConfig::default(),
    };
    let shape = RevisionShape::of(&document.resource, image.clone()).unwrap();
    let meta = document.resource.metadata().clone();
    store
        .apply_agent(&AgentApply {
            namespace: meta.namespace.clone(),
            name: meta.name.clone(),
            kind: document.resource.kind().to_string(),
            spec: document.resource.to_stored(),
            shape: shape.to_json(),
            image_ref: image.reference,
            image_digest: image.digest,
        })
        .await
        .unwrap();
    let agent = store
        .get_agent(&meta.namespace, &meta.name)
        .await
        .unwrap()
        .unwrap();
    let revision = agent.latest_revision.unwrap().name;
    store
        .set_revision_state(&meta.namespace, &revision, RevisionState::Ready, None)
        .await
        .unwrap();
}

const EVERY_SECOND: &str = r#"
apiVersion: clrk.apoxy.dev/v1alpha1
kind: TaskAgent
metadata: {name: tick}
spec:
  schedule: "@every 1s"
  template: {spec: {image: registry.local/echo:latest}}
"#;

/// Waits until `check` holds of the fires so far, and returns them.
async fn fires_until(
    what: &str,
    check: impl Fn(&BTreeMap<DateTime<Utc>, u32>) -> bool,
) -> BTreeMap<DateTime<Utc>, u32> {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let fired = fired();
        if check(&fired) {
            return fired;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not within {DEADLINE:?}: {what}; fired {fired:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Each tick fired once, and the ticks are one series of the schedule (a second apart at
/// least): two servers firing would make two series, or fire a tick twice.
fn assert_one_series(fired: &BTreeMap<DateTime<Utc>, u32>) {
    for (tick, count) in fired {
        assert_eq!(*count, 1, "tick {tick} fired {count} times: {fired:?}");
    }
    let ticks: Vec<_> = fired.keys().collect();
    for pair in ticks.windows(2) {
        assert!(
            *pair[1] - *pair[0] >= chrono::TimeDelta::seconds(1),
            "two series of ticks: {} then {}",
            pair[0],
            pair[1]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_one_of_two_servers_fires_and_the_other_fires_the_next_tick_once_it_leads() {
    fires();
    let dir = tempfile::tempdir().unwrap();
    let db = TempPostgres::database().await;
    let store = db.connect().await;
    apply(&store, EVERY_SECOND).await;
    let a = Process::start("server-a", &db, dir.path(), server()).await;
    let b = Process::start("server-b", &db, dir.path(), server()).await;

    let before = fires_until("three ticks fire", |f| f.len() >= 3).await;
    assert_one_series(&before);

    let holder = leader(&db).await;
    let (dead, alive) = if holder == a.name { (a, b) } else { (b, a) };
    dead.kill().await;
    let killed = Utc::now();
    let after = fires_until("the other server fires three ticks", |f| {
        f.keys().filter(|tick| **tick > killed).count() >= 3
    })
    .await;
    assert_eq!(new_leader(&db, &holder).await, alive.name);
    assert_one_series(&after);
    let first_after = after.keys().find(|tick| **tick > killed).unwrap();
    assert!(
        *first_after - killed <= TAKEOVER,
        "the next tick fired {} after the leader went",
        *first_after - killed
    );
    // The stored times follow the new leader's fires.
    let times = store.schedule_times("default", "tick").await.unwrap();
    assert!(times.last_schedule_time.unwrap() > killed, "{times:?}");
    alive.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_schedulers_that_both_lead_fire_each_tick_once() {
    fires();
    // Two handles on one SQLite file both lead, as two servers might for a moment while the
    // old leader has not yet learnt that its connection is gone.
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (
        Store::open(&dir.path().join("clrk.db")).unwrap(),
        Store::open(&dir.path().join("clrk.db")).unwrap(),
    );
    apply(&a, EVERY_SECOND).await;
    // The series the old leader fired: both continue it.
    let last = Utc::now() - chrono::TimeDelta::milliseconds(300);
    a.set_schedule_times(
        "default",
        "tick",
        &ScheduleTimes {
            last_schedule_time: Some(last),
            next_schedule_time: None,
        },
    )
    .await
    .unwrap();
    let first = cron(&a, dir.path());
    let second = cron(&b, dir.path());
    let fired = fires_until("four ticks fire", |f| f.len() >= 4).await;
    assert_one_series(&fired);
    first.shutdown();
    second.shutdown();
}

// ---- daemons -------------------------------------------------------------------------------

/// A daemon of pool `gpu`, for which no WorkerPool exists: every start fails at once and
/// is recorded, and it is restarted (after a back-off of 1 s, 2 s, ...).
const DAEMON: &str = r#"
apiVersion: clrk.apoxy.dev/v1alpha1
kind: DaemonAgent
metadata: {name: bot}
spec:
  workerPoolRef: gpu
  restartPolicy: Always
  template: {spec: {image: registry.local/echo:latest}}
"#;

/// A worker named `name` of `pool` (its launcher never gets to start a sandbox here) with
/// its daemon supervisor.
fn supervisor(store: &Store, dir: &Path, name: &str, pool: &str) -> Supervisor {
    let dir = dir.join(name);
    let images = Arc::new(
        ImageStore::open_with(
            &dir.join("images"),
            StoreOptions {
                insecure_registries: Vec::new(),
                docker_config: None,
            },
        )
        .unwrap(),
    );
    let runtime = |kind, sub: &str| Runtime::new(RuntimeConfig::new(kind, dir.join(sub)));
    let launcher = Launcher::new(
        images,
        runtime(RuntimeKind::Runsc, "sandboxes"),
        runtime(RuntimeKind::Runc, "sandboxes-runc"),
        Vec::new(),
        None,
        false,
    );
    let worker = Worker::new(
        store.clone(),
        launcher,
        LogBus::new(store.clone()),
        Dispatcher::default_body_budget(),
    );
    Supervisor::start_on_worker(
        store.clone(),
        worker,
        ClusterWorker {
            name: name.into(),
            pool: pool.into(),
        },
    )
}

/// A `clrk worker` of `pool` with its daemon supervisor.
fn worker(pool: &'static str) -> Make {
    Box::new(move |store, dir, name| Part::Daemons(supervisor(store, dir, name, pool)))
}

/// The workers of the daemon's runs, oldest first.
async fn runs(store: &Store) -> Vec<String> {
    let mut runs = store.executions("default", "bot", 1000).await.unwrap();
    runs.sort_by_key(|run| run.started_at);
    runs.into_iter()
        .map(|run| run.worker.unwrap_or_default())
        .collect()
}

async fn runs_until(store: &Store, what: &str, check: impl Fn(&[String]) -> bool) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let runs = runs(store).await;
        if check(&runs) {
            return runs;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not within {DEADLINE:?}: {what}; runs on {runs:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_a_daemon_runs_on_one_worker_of_its_pool_and_moves_when_that_one_goes() {
    let dir = tempfile::tempdir().unwrap();
    let db = TempPostgres::database().await;
    let store = db.connect().await;
    apply(&store, DAEMON).await;
    let mut gpu = Vec::new();
    for name in ["w1", "w2", "w3"] {
        gpu.push(Process::start(name, &db, dir.path(), worker("gpu")).await);
    }
    let other_pool = Process::start("w4", &db, dir.path(), worker("default")).await;

    let before = runs_until(&store, "the daemon runs twice", |r| r.len() >= 2).await;
    let holder = before[0].clone();
    assert!(
        before.iter().all(|w| *w == holder),
        "one worker runs it: {before:?}"
    );
    assert_eq!(leader(&db).await, holder);
    let restarts = store
        .daemon_state("default", "bot")
        .await
        .unwrap()
        .unwrap()
        .restart_count;

    let at = gpu.iter().position(|p| p.name == holder).unwrap();
    gpu.remove(at).kill().await;
    let killed = Utc::now();
    let taker = new_leader(&db, &holder).await;
    let after = runs_until(&store, "another worker runs it twice", |r| {
        r.iter().filter(|w| **w == taker).count() >= 2
    })
    .await;
    let first_taken = after.iter().position(|w| *w == taker).unwrap();
    assert!(
        after[..first_taken].iter().all(|w| *w == holder),
        "one worker at a time: {after:?}"
    );
    assert!(
        after[first_taken..].iter().all(|w| *w == taker),
        "one worker at a time: {after:?}"
    );
    let state = store.daemon_state("default", "bot").await.unwrap().unwrap();
    assert!(
        state.restart_count > restarts,
        "the restart count carries over: {restarts} before, {} after",
        state.restart_count
    );
    let first_on_taker = store
        .executions("default", "bot", 1000)
        .await
        .unwrap()
        .iter()
        .filter(|run| run.worker.as_deref() == Some(taker.as_str()))
        .map(|run| run.started_at)
        .min()
        .unwrap();
    assert!(
        first_on_taker - killed <= TAKEOVER,
        "taken over {} after the holder went",
        first_on_taker - killed
    );

    // A worker that stops hands it over to the one left.
    let at = gpu.iter().position(|p| p.name == taker).unwrap();
    gpu.remove(at).stop().await;
    let last = gpu.pop().unwrap();
    assert_eq!(new_leader(&db, &taker).await, last.name);
    let moved = runs_until(&store, "the last worker runs it", |r| {
        r.last().is_some_and(|w| *w == last.name)
    })
    .await;
    assert!(
        !moved.iter().any(|w| w == "w4"),
        "a worker of another pool never runs it: {moved:?}"
    );
    last.stop().await;
    other_pool.stop().await;
}

/// `clrk worker` as the command runs it (its host, registration, link and supervisor), with
/// its data under `dir`.
async fn cluster_worker(
    db: &TempDatabase,
    dir: &Path,
    name: &str,
) -> clrk_server::cluster::worker::RunningWorker {
    let secret = dir.join("cluster-secret");
    ClusterSecret::load_or_create(&secret).unwrap();
    let loopback = "127.0.0.1:0".parse().unwrap();
    clrk_server::cluster::worker::start(clrk_server::cluster::worker::WorkerOptions {
        database: db.url().to_owned(),
        pool: "gpu".into(),
        listen: loopback,
        advertise: None,
        health: loopback,
        metrics: None,
        data_dir: dir.join(name),
        cluster_secret_file: secret,
        name: Some(name.into()),
        allow_host_rootfs: false,
        insecure_registries: Vec::new(),
        dns_upstream: None,
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_workers_run_a_daemon_of_their_pool_once_and_hand_it_over_when_drained() {
    let dir = tempfile::tempdir().unwrap();
    let db = TempPostgres::database().await;
    let store = db.connect().await;
    apply(&store, DAEMON).await;
    let w1 = cluster_worker(&db, dir.path(), "w1").await;
    let w2 = cluster_worker(&db, dir.path(), "w2").await;

    let before = runs_until(&store, "the daemon runs twice", |r| r.len() >= 2).await;
    let holder = before[0].clone();
    assert!(
        before.iter().all(|w| *w == holder),
        "one worker runs it: {before:?}"
    );

    // `clrk workers drain` of the holder: the daemon moves to the other worker.
    assert!(store.drain_worker(&holder).await.unwrap());
    let other = if holder == "w1" { "w2" } else { "w1" };
    let after = runs_until(&store, "the other worker runs it", |r| {
        r.iter().filter(|w| *w == other).count() >= 2
    })
    .await;
    let first_moved = after.iter().position(|w| w == other).unwrap();
    assert!(
        after[first_moved..].iter().all(|w| w == other),
        "the drained worker let it go: {after:?}"
    );
    let state = store.daemon_state("default", "bot").await.unwrap().unwrap();
    assert_ne!(state.phase, clrk_store::DaemonPhase::Stopped, "{state:?}");

    // An apply through some server reaches the workers through the store alone, within
    // their 2 s resync (not the 30 s of `clrk dev`, which its own API triggers).
    let applied = Utc::now();
    apply(&store, &DAEMON.replace("name: bot", "name: bot2")).await;
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let first = loop {
        let runs = store.executions("default", "bot2", 10).await.unwrap();
        if let Some(run) = runs.first() {
            break run.clone();
        }
        assert!(tokio::time::Instant::now() < deadline, "bot2 never ran");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        first.worker.as_deref(),
        Some(other),
        "only the Ready worker runs it"
    );
    assert!(
        first.started_at - applied <= chrono::TimeDelta::seconds(15),
        "started {} after the apply",
        first.started_at - applied
    );
    w1.stop().await;
    w2.stop().await;
}
