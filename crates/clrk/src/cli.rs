//! Command-line definitions (clap derive). Nothing here does I/O.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

const QUICK_START: &str = "\
Quick start (example):
  clrk dev &                                   # run everything locally
  clrk apply -f taskagent.yaml                 # create or update agents
  clrk agents run-task word-count -i '{\"text\":\"hello world\"}'
  clrk agents logs word-count";

/// clrk turns a script into a sandboxed agent described by a YAML manifest.
#[derive(Debug, Parser)]
#[command(name = "clrk", version, after_help = QUICK_START)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(subcommand)]
    pub command: Command,
}

/// Options every command accepts.
#[derive(Debug, Clone, Default, Args)]
pub struct GlobalArgs {
    /// Control API base URL (default: the one in $CLRK_DIR/dev.json).
    #[arg(
        long,
        env = "CLRK_SERVER",
        global = true,
        hide_env_values = true,
        value_name = "URL"
    )]
    pub server: Option<String>,

    /// Control API token (default: the one in $CLRK_DIR/dev.json).
    #[arg(long, env = "CLRK_TOKEN", global = true, hide_env_values = true)]
    pub token: Option<String>,

    /// Ingress base URL used by run-task (default: the one in $CLRK_DIR/dev.json).
    #[arg(
        long,
        env = "CLRK_INGRESS",
        global = true,
        hide_env_values = true,
        value_name = "URL"
    )]
    pub ingress: Option<String>,

    /// Show more detail (execution ids, debug logs).
    #[arg(short, long, global = true)]
    pub verbose: bool,
}

/// The top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the control API, ingress and a worker on this machine.
    Dev(DevArgs),
    /// Run a cluster server: control API, ingress and placement over PostgreSQL.
    Server(ServerArgs),
    /// Run a cluster worker: the sandboxes of this host, placed by the servers.
    Worker(WorkerArgs),
    /// Install servers and workers on Kubernetes (or print the objects with --dry-run).
    Install(InstallArgs),
    /// Replace the clrk image on Kubernetes: workers one node at a time, then servers.
    Upgrade(UpgradeArgs),
    /// Create or update the resources in manifest files.
    Apply(ApplyArgs),
    /// Show what applying manifest files would change, and whether it makes a new revision.
    Diff(DiffArgs),
    /// Delete the resources named in manifest files.
    Delete(DeleteArgs),
    /// Show the objects of any kind, or one, as kubectl get does.
    Get(GetKindArgs),
    /// Inspect, invoke and delete agents.
    #[command(subcommand)]
    Agents(AgentsCommand),
    /// Inspect worker pools.
    #[command(subcommand)]
    Pools(PoolsCommand),
    /// List the workers that run sandboxes, and drain one.
    #[command(subcommand)]
    Workers(WorkersCommand),
    /// List, import and prune the server's images.
    #[command(subcommand)]
    Images(ImagesCommand),
    /// Store registry credentials where clrk (and docker, skopeo) read them.
    #[command(subcommand)]
    Registry(RegistryCommand),
    /// Set, list and delete secrets (values go in, never come out).
    #[command(subcommand)]
    Secret(SecretCommand),
    /// Inspect egress gateways, routes and policies (create them with apply).
    #[command(subcommand)]
    Egress(EgressCommand),
}

/// `clrk dev`.
#[derive(Debug, Args)]
#[command(after_help = "\
Example:
  clrk dev -f taskagent.yaml
  # then, in another terminal:
  clrk agents run-task word-count -i '{\"text\":\"hi\"}'")]
pub struct DevArgs {
    /// Where the store and image cache live [default: $CLRK_DIR/dev].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Ingress listen address.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:18080")]
    pub listen: SocketAddr,

    /// Control API listen address.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:17070")]
    pub api: SocketAddr,

    /// Manifest file or directory to apply at start (repeatable).
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    pub files: Vec<PathBuf>,

    #[command(flatten)]
    pub registries: InsecureRegistries,

    /// The DNS server agents' questions are forwarded to, once their egress gateway allows
    /// the name [default: the first nameserver of /etc/resolv.conf].
    #[arg(long, value_name = "ADDR", env = "CLRK_DNS_UPSTREAM")]
    pub dns_upstream: Option<SocketAddr>,

    #[command(flatten)]
    pub ingress_limits: IngressLimits,
    #[command(flatten)]
    pub metrics: MetricsListener,
}

/// `clrk server`.
#[derive(Debug, Args)]
#[command(after_help = "\
Any number of servers may share one database; put them behind a load balancer. They hold
no sandboxes: start workers (clrk worker) on the machines that run agents.

Example:
  clrk server --database postgres://clrk@db:5432/clrk --listen 0.0.0.0:8080 \\
    --api 0.0.0.0:7070 --token-file /etc/clrk/token --cluster-secret-file /etc/clrk/secret
  clrk --server http://HOST:7070 --token \"$(cat /etc/clrk/token)\" workers list")]
pub struct ServerArgs {
    /// The shared PostgreSQL database (postgres://USER[:PASSWORD]@HOST:PORT/DB).
    #[arg(
        long,
        value_name = "URL",
        env = "CLRK_DATABASE",
        hide_env_values = true
    )]
    pub database: String,

    /// Ingress listen address.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:18080")]
    pub listen: SocketAddr,

    /// Control API listen address (also /healthz and /readyz, without token).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:17070")]
    pub api: SocketAddr,

    /// The control API token; created (mode 0600) when missing. Give every server the same.
    #[arg(long, value_name = "FILE")]
    pub token_file: PathBuf,

    /// The secret servers and workers prove to each other (64 hex digits, mode 0600);
    /// created when missing: copy that file to every other server and worker.
    #[arg(long, value_name = "FILE")]
    pub cluster_secret_file: PathBuf,

    /// Where apply caches image metadata [default: $CLRK_DIR/server].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Accept agents whose image is `host:` (the workers' own root filesystem).
    #[arg(long)]
    pub allow_host_rootfs: bool,

    #[command(flatten)]
    pub registries: InsecureRegistries,

    #[command(flatten)]
    pub ingress_limits: IngressLimits,
    #[command(flatten)]
    pub metrics: MetricsListener,
}

/// `clrk worker`.
#[derive(Debug, Args)]
#[command(after_help = "\
A worker registers itself in the database and heartbeats every 2 s; servers place
executions on it over its --listen address (TLS, both sides proving the cluster secret).
SIGTERM drains it: no new executions, those in flight finish, then it leaves.

Example:
  clrk worker --database postgres://clrk@db:5432/clrk --pool default \\
    --listen 0.0.0.0:7071 --advertise 10.0.0.12:7071 --data-dir /var/lib/clrk \\
    --cluster-secret-file /etc/clrk/secret")]
pub struct WorkerArgs {
    /// The shared PostgreSQL database (postgres://USER[:PASSWORD]@HOST:PORT/DB).
    #[arg(
        long,
        value_name = "URL",
        env = "CLRK_DATABASE",
        hide_env_values = true
    )]
    pub database: String,

    /// The WorkerPool whose agents this worker runs.
    #[arg(long, value_name = "NAME", default_value = "default")]
    pub pool: String,

    /// Where servers reach this worker.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:17071")]
    pub listen: SocketAddr,

    /// The address servers dial, when not --listen (NAT, 0.0.0.0).
    #[arg(long, value_name = "ADDR")]
    pub advertise: Option<SocketAddr>,

    /// /healthz and /readyz, for orchestrators.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:17072")]
    pub health: SocketAddr,

    /// Images and sandbox state of this worker.
    #[arg(long, value_name = "DIR")]
    pub data_dir: PathBuf,

    /// The secret servers and workers prove to each other (the servers' file).
    #[arg(long, value_name = "FILE")]
    pub cluster_secret_file: PathBuf,

    /// Its name in the cluster [default: the host name].
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,

    /// Run `host:` images (this machine's root filesystem, read-only, under gVisor).
    #[arg(long)]
    pub allow_host_rootfs: bool,

    #[command(flatten)]
    pub registries: InsecureRegistries,

    /// The DNS server agents' allowed questions go to [default: the first nameserver of
    /// /etc/resolv.conf].
    #[arg(long, value_name = "ADDR", env = "CLRK_DNS_UPSTREAM")]
    pub dns_upstream: Option<SocketAddr>,

    #[command(flatten)]
    pub metrics: MetricsListener,
}

/// `clrk install`.
#[derive(Debug, Args)]
#[command(after_help = "\
Installs clrk on the Kubernetes cluster kubectl points at: a Namespace, a Deployment of
servers with a Service for the ingress (clrk-ingress, port 80) and one for the control API
(clrk-api, port 7070), and a DaemonSet of privileged workers per pool on the nodes labelled
clrk.apoxy.dev/worker-pool=POOL. Everything goes through `kubectl apply --server-side`, so
running it again converges. The Secrets clrk-api-token and clrk-cluster-secret are made with
random values when missing and never overwritten. The database URL comes from the Secret
--database-secret (key `url`), which you create first, unless --demo-postgres.

Examples:
  kubectl create namespace clrk
  kubectl -n clrk create secret generic clrk-database \\
    --from-literal=url='postgres://clrk:PASSWORD@db.example.com:5432/clrk'
  clrk install --image registry.example.com/clrk:0.1.0
  kubectl label node node-1 clrk.apoxy.dev/worker-pool=default
  clrk install --dry-run -o yaml | kubernetes-validate -   # what would be applied
  clrk install --demo-postgres --print-commands            # the kubectl calls, in order

See docs/kubernetes.md.")]
pub struct InstallArgs {
    /// Print the objects instead of applying them (no cluster needed).
    #[arg(long)]
    pub dry_run: bool,

    /// With --dry-run: the format of the objects [default: yaml].
    #[arg(short, long, value_enum, requires = "dry_run")]
    pub output: Option<ObjectFormat>,

    /// Print the kubectl commands install would run, in order, and run none.
    #[arg(long, conflicts_with = "dry_run")]
    pub print_commands: bool,

    /// With --dry-run: write the objects as a kustomize base in DIR (one file per family and
    /// kustomization.yaml), as deploy/kubernetes/ holds them.
    #[arg(
        long,
        value_name = "DIR",
        requires = "dry_run",
        conflicts_with = "output"
    )]
    pub write_base: Option<PathBuf>,

    /// The namespace of every object (created when missing).
    #[arg(short = 'n', long, value_name = "NS", default_value = "clrk")]
    pub namespace: String,

    /// How many servers (the Deployment's replicas).
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub servers: u32,

    /// The clrk image for servers and workers, with a tag or digest (`docker build -t
    /// REPO/clrk:TAG .` from the repository, then push it where the nodes pull from).
    #[arg(long, value_name = "REF", default_value_t = default_image())]
    pub image: String,

    /// The Secret whose key `url` holds the PostgreSQL URL with its password [default:
    /// clrk-database]; create it before installing.
    #[arg(long, value_name = "NAME", conflicts_with = "demo_postgres")]
    pub database_secret: Option<String>,

    /// Also run a single-pod PostgreSQL (StatefulSet clrk-postgres, 1 GiB volume) with a
    /// generated password. For trying clrk out, NOT for production: no replica, no backup.
    #[arg(long)]
    pub demo_postgres: bool,

    /// A worker pool: one DaemonSet each, on nodes labelled clrk.apoxy.dev/worker-pool=POOL
    /// (repeatable).
    #[arg(long = "pool", value_name = "POOL", default_value = "default")]
    pub pools: Vec<String>,

    /// Where workers keep pulled images and sandbox state: host-path (/var/lib/clrk/POOL on
    /// the node, outlives pods) or empty-dir (gone with the pod).
    #[arg(long, value_enum, default_value = "host-path")]
    pub worker_cache: WorkerCache,

    /// Servers and workers also serve Prometheus metrics without the API token on PORT of
    /// each pod (`--metrics 0.0.0.0:PORT`), announced by `prometheus.io/*` pod annotations.
    /// Without it, /metrics is only on the servers' API, with the token.
    #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub metrics_port: Option<u16>,
}

/// How a worker keeps its image cache and sandbox state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WorkerCache {
    /// A directory of the node (`/var/lib/clrk/POOL`): pulled images outlive the pod.
    HostPath,
    /// A directory that lives as long as the pod: every new pod pulls again.
    EmptyDir,
}

/// `clrk:VERSION`: the image `docker build -t clrk:VERSION .` makes from this checkout.
pub fn default_image() -> String {
    format!("clrk:{}", env!("CARGO_PKG_VERSION"))
}

/// `clrk upgrade`.
#[derive(Debug, Args)]
#[command(after_help = "\
Replaces the image of an installed clrk, in order: each pool's worker DaemonSet (one node at
a time: the old pod is drained by its preStop hook and SIGTERM, finishing what it runs, before
its replacement starts), waiting for each rollout; then the servers' Deployment (a new server
ready before an old one goes). Give the pools you installed.

Examples:
  clrk upgrade --image registry.example.com/clrk:0.2.0
  clrk upgrade --image registry.example.com/clrk:0.2.0 --pool default --pool gpu
  clrk upgrade --image clrk:0.2.0 --print-commands   # the kubectl calls, in order

Then run `clrk install --image` with the same image (and your other flags) when you next
install, or it would put back the image it names.")]
pub struct UpgradeArgs {
    /// The new clrk image, with a tag or digest.
    #[arg(long, value_name = "REF")]
    pub image: String,

    /// The namespace clrk was installed in.
    #[arg(short = 'n', long, value_name = "NS", default_value = "clrk")]
    pub namespace: String,

    /// A worker pool to upgrade (repeatable): every pool you installed.
    #[arg(long = "pool", value_name = "POOL", default_value = "default")]
    pub pools: Vec<String>,

    /// How long to wait for each rollout (kubectl's --timeout: 30m, 1h).
    #[arg(long, value_name = "DURATION", default_value = "30m")]
    pub timeout: String,

    /// Print the kubectl commands upgrade would run, in order, and run none.
    #[arg(long)]
    pub print_commands: bool,
}

/// `--metrics`, shared by the commands that run clrk.
#[derive(Debug, Args)]
pub struct MetricsListener {
    /// Serve /metrics (Prometheus) here, without the API token: ADDR:PORT, or a bare PORT
    /// on 127.0.0.1. The control API serves it with the token too; a worker has it only here.
    #[arg(
        long = "metrics",
        value_name = "ADDR",
        value_parser = clrk_server::metrics::parse_address
    )]
    pub addr: Option<SocketAddr>,
}

/// `--insecure-registry`, shared by the commands that pull images.
#[derive(Debug, Args)]
pub struct InsecureRegistries {
    /// A registry (`HOST` or `HOST:PORT`) to pull from over plain HTTP instead of HTTPS;
    /// repeatable, or a comma-separated list in CLRK_INSECURE_REGISTRIES, e.g.
    /// --insecure-registry registry.lan:5000. Registries on loopback (localhost, 127.0.0.0/8,
    /// ::1) are plain HTTP without it, as docker has it.
    #[arg(
        long = "insecure-registry",
        value_name = "HOST",
        env = "CLRK_INSECURE_REGISTRIES",
        value_delimiter = ','
    )]
    pub insecure_registries: Vec<String>,
}

/// The ingress's connection caps, shared by `clrk dev` and `clrk server`.
#[derive(Debug, Args)]
pub struct IngressLimits {
    /// Connections the ingress holds open at once; beyond it a new connection gets 503 and
    /// is closed. Each takes a file descriptor: stay well below `ulimit -Hn`.
    #[arg(long, value_name = "N", default_value_t = 4096)]
    pub max_connections: usize,

    /// Connections one client address may hold open on the ingress at once; beyond it its new
    /// connections get 503 and are closed. Raise it when a load balancer or NAT puts many
    /// clients behind one address.
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub max_connections_per_client: usize,

    /// Memory all responses waiting for their agent's exit share (output is held so the
    /// status can follow the exit code, up to 32 MiB each); past it a response goes on in a
    /// temporary file under $TMPDIR. A quantity like 256Mi or 1Gi.
    #[arg(long, value_name = "SIZE", default_value = "256Mi")]
    pub held_output_memory: clrk_api::Memory,
}

impl IngressLimits {
    /// Makes the limits that are the process's own, not one listener's, hold.
    pub fn apply(&self) {
        let bytes = usize::try_from(self.held_output_memory.bytes()).unwrap_or(usize::MAX);
        clrk_dispatch::output::set_memory_budget(bytes);
    }
}

/// Manifest files to read: `-f FILE...` with optional recursion.
#[derive(Debug, Args)]
pub struct FileArgs {
    /// Manifest file, directory (its *.yaml, *.yml, *.json) or '-' for stdin (repeatable).
    #[arg(short = 'f', long = "filename", value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,

    /// Read directories recursively.
    #[arg(short = 'R', long)]
    pub recursive: bool,
}

/// `clrk apply`.
#[derive(Debug, Args)]
#[command(after_help = "\
Example:
  clrk apply -f taskagent.yaml
  taskagent/word-count created
  clrk apply -f agents/ -R
  clrk apply -f taskagent.yaml --dry-run=server
  taskagent/word-count configured (revision word-count-00002) (server dry run)

--dry-run (or --dry-run=client) checks the files here and sends nothing; --dry-run=server
has the server validate them and resolve their images, and say what applying would do
(created, configured and the revision it would make, unchanged) without changing anything.
clrk diff -f FILE shows the changes themselves.")]
pub struct ApplyArgs {
    #[command(flatten)]
    pub input: FileArgs,

    /// Change nothing: `client` checks the files here, `server` asks the server what applying
    /// would do.
    #[arg(
        long,
        value_enum,
        value_name = "WHERE",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "client"
    )]
    pub dry_run: Option<DryRun>,

    /// Accepted for compatibility with the guide; changes nothing.
    #[arg(long)]
    pub local: bool,
}

/// Where `apply --dry-run` checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DryRun {
    /// Parse and validate the files here; send nothing.
    Client,
    /// Full validation and image resolution by the server; nothing changes.
    Server,
}

/// `clrk diff`.
#[derive(Debug, Args)]
#[command(after_help = "\
For each object the files name: the lines of the manifest the server holds (- ) and of the
one the file would apply (+ ) that differ, with 3 lines around each change (@@ stands for
those left out), then what applying would do, as apply --dry-run=server says it: created,
configured with the revision it would make (a new revision replaces the running sandboxes),
or unchanged. Exits 0 when nothing would change, 1 when something would, as kubectl diff
does. spec.otlp.headers values show as <redacted>.

Example:
  clrk diff -f taskagent.yaml
  --- default/word-count (applied)
  +++ default/word-count (taskagent.yaml)
  @@
      scheduleInput: {}
  -   timeout: 1m40s
  +   timeout: 2m
      warmPoolIdleTTL: 10m0s
  @@
  taskagent/word-count: would be configured, no new revision")]
pub struct DiffArgs {
    #[command(flatten)]
    pub input: FileArgs,
}

/// `clrk delete`.
#[derive(Debug, Args)]
#[command(after_help = "\
Example:
  clrk delete -f taskagent.yaml
  taskagent/word-count deleted
  clrk delete -f taskagent.yaml --ignore-not-found   # exits 0 when it is gone already")]
pub struct DeleteArgs {
    #[command(flatten)]
    pub input: FileArgs,

    #[command(flatten)]
    pub missing: IgnoreNotFound,
}

/// `--ignore-not-found`, shared by the delete commands.
#[derive(Debug, Clone, Default, Args)]
pub struct IgnoreNotFound {
    /// Succeed, printing nothing, when the object does not exist.
    #[arg(long)]
    pub ignore_not_found: bool,
}

/// `clrk get`.
#[derive(Debug, Args)]
#[command(after_help = "\
KIND is a manifest kind in any case, singular or plural (taskagent, DaemonAgents, workerpool,
egressgateway, egressl4route, credentialinjectionpolicy, aiproviderroute), or agents, pools,
secrets, images or workers. Each shows its list command's table; -o json|yaml prints one
object with NAME, else a `kind: List` of them. Agents and egress objects print as manifests
`clrk apply -f` takes back; secrets show names and keys, never values.

Examples:
  clrk get taskagents
  clrk get daemonagent echo-bot -o wide
  clrk get taskagent/word-count -o yaml > word-count.yaml && clrk apply -f word-count.yaml
  clrk get egressgateways -A")]
pub struct GetKindArgs {
    /// What to show: a kind, or agents, pools, secrets, images, workers; KIND/NAME for one.
    #[arg(value_name = "KIND")]
    pub kind: String,

    /// Only the object of this name.
    pub name: Option<String>,

    #[command(flatten)]
    pub scope: NamespaceScope,

    /// Output format (default: a table).
    #[arg(short, long, value_enum)]
    pub output: Option<ListFormat>,
}

/// Output formats for lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ListFormat {
    /// The table, with more columns where there is more to show.
    Wide,
    /// The server's answer as JSON.
    Json,
    /// The server's answer as YAML.
    Yaml,
}

/// Output formats for single objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ObjectFormat {
    /// The server's answer as JSON.
    Json,
    /// The server's answer as YAML.
    Yaml,
}

/// The namespace an agent command works in.
#[derive(Debug, Clone, Args)]
pub struct NamespaceArg {
    /// Namespace of the agent.
    #[arg(short, long, default_value = "default")]
    pub namespace: String,
}

/// `clrk agents ...`.
#[derive(Debug, Subcommand)]
pub enum AgentsCommand {
    /// List agents with their ready revision, daemon phase, sandboxes and last run.
    #[command(after_help = "\
Example:
  clrk agents list
  KIND          NAME         REVISION           PHASE     RESTARTS   WARM   ACTIVE   LAST-RUN
  TaskAgent     word-count   word-count-00001   -         -          0      0        Succeeded 2m ago
  DaemonAgent   echo-bot     echo-bot-00002     Running   1          0      1        Running 5m ago

PHASE and RESTARTS are a DaemonAgent's (Pending, Running, CrashLoopBackOff or Stopped, and its
restarts on this revision); ACTIVE counts running executions, a running daemon included.")]
    List(ListArgs),

    /// Show one agent: spec, status and revisions.
    #[command(after_help = "\
Example:
  clrk agents get word-count
  clrk agents get word-count -o yaml")]
    Get(GetArgs),

    /// Delete an agent and stop its sandboxes.
    #[command(after_help = "\
Example:
  clrk agents delete word-count
  taskagent/word-count deleted
  clrk agents delete word-count --ignore-not-found")]
    Delete(AgentDeleteArgs),

    /// Print an agent's logs, each line tagged with its execution id.
    #[command(after_help = "\
Example:
  clrk agents logs word-count --tail 20 -f
  clrk agents logs word-count --tail -1      # every line kept (the default)")]
    Logs(LogsArgs),

    /// List an agent's recent executions.
    #[command(after_help = "\
Example:
  clrk agents invocations word-count --limit 5")]
    Invocations(InvocationsArgs),

    /// Show an execution's trace as a waterfall: admission, warm take or sandbox start, run
    /// and each egress call.
    #[command(after_help = "\
One line per span, children indented under their parent: its start after the first span, its
duration and a bar placing it in the whole (scaled to the terminal, 60 columns otherwise). A
span that failed is marked `!`. The trace id is the caller's when it sent a `traceparent`.

Example:
  clrk agents traces summarize
  clrk agents traces summarize --execution 9f1c2e7a
  clrk agents traces summarize -f
  clrk agents traces summarize -o json")]
    Traces(TracesArgs),

    /// Run a TaskAgent once through the ingress and stream its output.
    #[command(after_help = "\
Input (-i): a JSON literal, @FILE with JSON, or '-' for JSON on stdin.
Exit codes: 0 succeeded, 1 agent failed, 124 timed out, 77 rejected by the ingress.

Example:
  clrk agents run-task word-count -i '{\"text\":\"hello world\"}'
  clrk agents run-task word-count -i @event.json -H x-request-id=abc --timeout 30s")]
    RunTask(RunTaskArgs),

    /// List an agent's recent egress transactions, newest first.
    #[command(after_help = "\
One row per HTTP request, TLS or TCP connection, or refused DNS question that went through
the agent's egress gateway, newest first. Columns: TIME, EXECUTION (the first 8 characters of
its id), VERDICT (allowed or denied), DESTINATION (name and address), REQUEST (method and
path, or the protocol), STATUS, BYTES (sent/received), TOKENS (input/output, for LLM calls),
REASON (the rule that allowed it, or why it was refused).

Example:
  clrk agents egress summarize --limit 20
  clrk agents egress summarize -o json")]
    Egress(AgentEgressArgs),
}

/// `-n NS` or `-A`: which namespaces a list covers.
#[derive(Debug, Clone, Args)]
pub struct NamespaceScope {
    /// Only this namespace.
    #[arg(
        short,
        long,
        default_value = "default",
        conflicts_with = "all_namespaces"
    )]
    pub namespace: String,

    /// Every namespace.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
}

impl NamespaceScope {
    /// The list endpoints' query: `namespace=NS`, or nothing for all namespaces.
    pub fn query(&self) -> Vec<(&'static str, String)> {
        if self.all_namespaces {
            Vec::new()
        } else {
            vec![("namespace", self.namespace.clone())]
        }
    }
}

/// `clrk agents list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub scope: NamespaceScope,

    /// Output format (default: a table).
    #[arg(short, long, value_enum)]
    pub output: Option<ListFormat>,
}

/// `clrk agents get`.
#[derive(Debug, Args)]
pub struct GetArgs {
    /// Agent name.
    pub name: String,

    #[command(flatten)]
    pub namespace: NamespaceArg,

    /// Output format (default: a summary for people).
    #[arg(short, long, value_enum)]
    pub output: Option<ObjectFormat>,
}

/// `clrk agents delete`.
#[derive(Debug, Args)]
pub struct AgentDeleteArgs {
    /// Agent name.
    pub name: String,

    #[command(flatten)]
    pub namespace: NamespaceArg,

    #[command(flatten)]
    pub missing: IgnoreNotFound,
}

/// `clrk agents logs`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Agent name.
    pub name: String,

    #[command(flatten)]
    pub namespace: NamespaceArg,

    /// Keep printing new lines until Ctrl-C.
    #[arg(short, long)]
    pub follow: bool,

    /// Start with only the last N lines (-1: all of them, the default).
    #[arg(long, value_name = "N", allow_negative_numbers = true, value_parser = parse_tail)]
    pub tail: Option<Tail>,

    /// Only the lines of this execution (its id is in `agents invocations`, and printed by a
    /// failed `run-task`).
    #[arg(long, value_name = "ID")]
    pub execution: Option<String>,

    /// Output format (default: `<execution-id> <line>`, control characters escaped on a
    /// terminal).
    #[arg(short, long, value_enum)]
    pub output: Option<LogFormat>,
}

/// Output formats for log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line, as the server sends it: the text unchanged.
    Json,
}

/// `clrk agents traces`.
#[derive(Debug, Args)]
pub struct TracesArgs {
    /// Agent name.
    pub name: String,

    #[command(flatten)]
    pub namespace: NamespaceArg,

    /// This execution's trace (its id is in `agents invocations`); default: the latest.
    #[arg(long, value_name = "ID")]
    pub execution: Option<String>,

    /// Then print each newer execution's trace as it ends, until Ctrl-C.
    #[arg(short, long)]
    pub follow: bool,

    /// Output format (default: the waterfall).
    #[arg(short, long, value_enum)]
    pub output: Option<ObjectFormat>,
}

/// `clrk agents invocations`.
#[derive(Debug, Args)]
pub struct InvocationsArgs {
    /// Agent name.
    pub name: String,

    #[command(flatten)]
    pub namespace: NamespaceArg,

    /// How many recent executions to show (at least 1).
    #[arg(long, default_value_t = 20, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub limit: u32,

    /// Output format (default: a table).
    #[arg(short, long, value_enum)]
    pub output: Option<ObjectFormat>,
}

/// `clrk agents egress`.
#[derive(Debug, Args)]
pub struct AgentEgressArgs {
    /// Agent name.
    pub name: String,

    #[command(flatten)]
    pub namespace: NamespaceArg,

    /// How many recent transactions to show (1 to 1000).
    #[arg(long, default_value_t = 50, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub limit: u32,

    /// Output format (default: a table).
    #[arg(short, long, value_enum)]
    pub output: Option<ObjectFormat>,
}

/// `clrk agents run-task`.
#[derive(Debug, Args)]
pub struct RunTaskArgs {
    /// TaskAgent name.
    pub name: String,

    #[command(flatten)]
    pub namespace: NamespaceArg,

    /// Event data: a JSON literal, @FILE, or '-' for stdin.
    #[arg(short, long, value_name = "JSON|@FILE|-")]
    pub input: Option<String>,

    /// Extra request header as NAME=VALUE (repeatable).
    #[arg(short = 'H', long = "header", value_name = "NAME=VALUE", value_parser = parse_header)]
    pub headers: Vec<(String, String)>,

    /// Lower the execution's timeout to this duration (e.g. 30s, 1m30s).
    #[arg(long, value_name = "DURATION", value_parser = parse_timeout)]
    pub timeout: Option<String>,
}

/// `clrk pools ...`.
#[derive(Debug, Subcommand)]
pub enum PoolsCommand {
    /// List worker pools with their runtime, capacity and workers.
    #[command(after_help = "\
Example:
  clrk pools list
  NAME      RUNTIME   MAX-EXECUTIONS   RUNNING   QUEUED   WORKERS
  default   runsc     10               3         0        1

MAX-EXECUTIONS is spec.maxExecutionsPerWorker (- when unlimited); an invocation over it waits
in a queue of 4 per slot for up to 30 s, then gets 429.")]
    List(PoolsListArgs),
}

/// `clrk pools list`.
#[derive(Debug, Args)]
pub struct PoolsListArgs {
    /// Output format (default: a table).
    #[arg(short, long, value_enum)]
    pub output: Option<ListFormat>,
}

/// Parses `NAME=VALUE` (or curl's `NAME: VALUE`) into a header pair.
///
/// ```
/// use clrk::cli::parse_header;
/// assert_eq!(parse_header("x-request-id=abc").unwrap(), ("x-request-id".into(), "abc".into()));
/// ```
pub fn parse_header(raw: &str) -> Result<(String, String), String> {
    // Header names never contain '=' or ':', so the first of either ends the name.
    let Some(split) = raw.find(['=', ':']) else {
        return Err(format!(
            "header '{raw}' has no value: write it as NAME=VALUE"
        ));
    };
    let name = raw[..split].trim();
    let value = raw[split + 1..].trim();
    if name.is_empty() {
        return Err(format!(
            "header '{raw}' has no name: write it as NAME=VALUE"
        ));
    }
    http::HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("'{name}' is not a valid HTTP header name"))?;
    http::HeaderValue::from_str(value)
        .map_err(|_| format!("the value of header '{name}' has characters HTTP does not allow"))?;
    Ok((name.to_string(), value.to_string()))
}

/// `--tail N`: the last N lines, or all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tail {
    /// Every line kept (`--tail -1`, as kubectl writes it).
    All,
    /// Only the last N.
    Last(u64),
}

/// Parses `--tail`: a count, or -1 for every line.
///
/// ```
/// use clrk::cli::{Tail, parse_tail};
/// assert_eq!(parse_tail("20"), Ok(Tail::Last(20)));
/// assert_eq!(parse_tail("-1"), Ok(Tail::All));
/// assert!(parse_tail("-2").is_err());
/// ```
pub fn parse_tail(raw: &str) -> Result<Tail, String> {
    match raw.trim() {
        "-1" => Ok(Tail::All),
        n => n
            .parse()
            .map(Tail::Last)
            .map_err(|_| format!("--tail {raw:?}: give a number of lines, or -1 for all of them")),
    }
}

fn parse_timeout(raw: &str) -> Result<String, String> {
    crate::duration::validate(raw).map(|()| raw.to_string())
}

/// `clrk images ...`.
#[derive(Debug, Subcommand)]
pub enum ImagesCommand {
    /// List the images the server holds and the revisions that use them.
    #[command(after_help = "\
Example:
  clrk images list
  REFERENCE                          DIGEST          SIZE      IMPORTED   USED-BY
  localhost:5000/word-count:latest   sha256:3f2a…    52.4 MB   no         default/word-count-00001")]
    List(ImagesListArgs),

    /// Load a `docker save` tarball or an OCI archive into the server's image store.
    #[command(after_help = "\
Then a manifest can use the image by its name, with no registry:
  docker save my-agent:1.0 -o agent.tar      # on a machine with docker
  clrk images import agent.tar
  clrk images import oci-image.tar --name my-agent:1.0
  # image: my-agent:1.0 in a manifest now resolves to the imported image")]
    Import(ImportArgs),

    /// Delete images (and their cached layers) that no revision uses; imported images stay.
    #[command(after_help = "\
Example:
  clrk images prune
  pruned 2 images: 14 blobs, 9 layers, 2 root filesystems")]
    Prune,
}

/// `clrk images list`.
#[derive(Debug, Args)]
pub struct ImagesListArgs {
    /// Output format (default: a table; wide shows whole digests).
    #[arg(short, long, value_enum)]
    pub output: Option<ListFormat>,
}

/// `clrk images import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The archive: `docker save` output or a tarred OCI image layout.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,

    /// Name to import the image under (required when the archive names no image), e.g.
    /// my-agent:1.0 or registry.example.com/team/agent:2.
    #[arg(long, value_name = "REF")]
    pub name: Option<String>,
}

/// `clrk registry ...`.
#[derive(Debug, Subcommand)]
pub enum RegistryCommand {
    /// Check credentials against a registry and store them in docker's config.json.
    #[command(after_help = "\
The credentials go to $DOCKER_CONFIG/config.json (else ~/.docker/config.json), mode 0600,
where the clrk server, docker and skopeo read them. The server reads them at each pull.

Example:
  clrk registry login registry.example.com -u ci-bot --password-stdin < token.txt
  clrk registry login localhost:5000 -u dev --insecure     # a plain-HTTP registry")]
    Login(LoginArgs),
}

/// `clrk registry login`.
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// Registry host, with a port if not 443 (e.g. ghcr.io, localhost:5000).
    #[arg(value_name = "HOST")]
    pub registry: String,

    /// User name.
    #[arg(short, long)]
    pub username: String,

    /// Read the password (or token) from stdin instead of prompting.
    #[arg(long)]
    pub password_stdin: bool,

    /// Talk to the registry over plain HTTP (for a registry in --insecure-registry; one on
    /// loopback always is).
    #[arg(long)]
    pub insecure: bool,
}

/// `clrk secret ...`.
#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// Create or replace a secret with the given keys (all its old keys are dropped).
    #[command(after_help = "\
Values are sent to the server and stored in its database (mode 0600); no command or API call
returns them, and no sandbox can read them: the egress proxy injects them into requests.

Example:
  clrk secret set anthropic --from-env token=ANTHROPIC_API_KEY
  clrk secret set github --from-file token=./gh-token.txt --from-literal user=ci-bot
  secret/github created (keys: token, user)")]
    Set(SecretSetArgs),

    /// List secrets with their keys (never their values).
    #[command(after_help = "\
Example:
  clrk secret list
  NAMESPACE   NAME        KEYS          UPDATED
  default     anthropic   token         2m ago")]
    List(SecretListArgs),

    /// Delete a secret.
    #[command(after_help = "\
Example:
  clrk secret delete github
  clrk secret delete github --ignore-not-found")]
    Delete(SecretDeleteArgs),
}

/// `clrk secret set`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("source").required(true).multiple(true)))]
pub struct SecretSetArgs {
    /// Secret name (a DNS-1123 label, e.g. anthropic).
    pub name: String,

    #[command(flatten)]
    pub namespace: SecretNamespaceArg,

    /// KEY=VALUE taken literally (repeatable). Beware: it lands in your shell history.
    #[arg(long = "from-literal", value_name = "KEY=VALUE", group = "source")]
    pub literals: Vec<String>,

    /// KEY=PATH: the value is the file's content (repeatable).
    #[arg(long = "from-file", value_name = "KEY=PATH", group = "source")]
    pub files: Vec<String>,

    /// KEY=VAR: the value is environment variable VAR of this shell (repeatable).
    #[arg(long = "from-env", value_name = "KEY=VAR", group = "source")]
    pub envs: Vec<String>,
}

/// `clrk secret list`.
#[derive(Debug, Args)]
pub struct SecretListArgs {
    #[command(flatten)]
    pub scope: NamespaceScope,

    /// Output format (default: a table). Every format shows names and keys, never values.
    #[arg(short, long, value_enum)]
    pub output: Option<ListFormat>,
}

/// `clrk secret delete`.
#[derive(Debug, Args)]
pub struct SecretDeleteArgs {
    /// Secret name.
    pub name: String,

    #[command(flatten)]
    pub namespace: SecretNamespaceArg,

    #[command(flatten)]
    pub missing: IgnoreNotFound,
}

/// The namespace a secret command works in.
#[derive(Debug, Clone, Args)]
pub struct SecretNamespaceArg {
    /// Namespace of the secret.
    #[arg(short, long, default_value = "default")]
    pub namespace: String,
}

/// `clrk workers ...`.
#[derive(Debug, Subcommand)]
pub enum WorkersCommand {
    /// List the registered workers with their state, load and last heartbeat.
    #[command(after_help = "\
Example:
  clrk workers list
  NAME     POOL   ADDRESS      STATE   RUNNING   WARM   LAST-HEARTBEAT
  laptop   *      in-process   Ready   2         0      1s ago

POOL * serves every pool (clrk dev's embedded worker). STATE is Ready, Draining (takes no new
executions) or Lost (missed three heartbeats; its running executions failed with reason
`worker lost`). A worker heartbeats every 2 s.")]
    List(WorkersListArgs),

    /// Drain a worker: it takes no new executions and finishes those it runs.
    #[command(after_help = "\
Example:
  clrk workers drain node-2
  worker/node-2 Draining")]
    Drain(WorkersDrainArgs),
}

/// `clrk workers list`.
#[derive(Debug, Args)]
pub struct WorkersListArgs {
    /// Output format (default: a table).
    #[arg(short, long, value_enum)]
    pub output: Option<ListFormat>,
}

/// `clrk workers drain`.
#[derive(Debug, Args)]
pub struct WorkersDrainArgs {
    /// The worker's name, as `clrk workers list` shows it.
    pub name: String,
}

/// `clrk egress ...`.
#[derive(Debug, Subcommand)]
pub enum EgressCommand {
    /// List egress gateways, routes, credential policies and AI provider routes.
    #[command(after_help = "\
Example:
  clrk egress list
  KIND                        NAME        SUMMARY                                             AGE
  AIProviderRoute             llm         anthropic @ llm.test, budget 1000/execution         2m
  CredentialInjectionPolicy   anthropic   x-api-key ← secret anthropic/token for llm.test     2m
  EgressGateway               main        deny-all, Terminate, otlp → http://collector:4318   2m
  EgressL4Route               github      *.github.com port 443; 10.0.0.0/8 any port          2m")]
    List(EgressListArgs),

    /// Print one egress object's manifest (OTLP header values are shown as <redacted>).
    #[command(after_help = "\
KIND is EgressGateway, EgressL4Route, CredentialInjectionPolicy or AIProviderRoute, in
either case.

Example:
  clrk egress get egressgateway/main
  clrk egress get AIProviderRoute/llm -n team -o json")]
    Get(EgressGetArgs),
}

/// `clrk egress list`.
#[derive(Debug, Args)]
pub struct EgressListArgs {
    #[command(flatten)]
    pub scope: NamespaceScope,

    /// Output format (default: a table).
    #[arg(short, long, value_enum)]
    pub output: Option<ListFormat>,
}

/// `clrk egress get`.
#[derive(Debug, Args)]
pub struct EgressGetArgs {
    /// The object as KIND/NAME, e.g. egressgateway/main.
    #[arg(value_name = "KIND/NAME")]
    pub object: String,

    /// Namespace of the object.
    #[arg(short, long, default_value = "default")]
    pub namespace: String,

    /// Output format [default: yaml].
    #[arg(short, long, value_enum)]
    pub output: Option<ObjectFormat>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("clrk").chain(args.iter().copied()))
    }

    #[test]
    fn definitions_are_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn apply_takes_several_files_and_the_guides_local_flag() {
        let cli = parse(&["apply", "-f", "a.yaml", "-f", "dir", "-R", "--local"]).unwrap();
        let Command::Apply(args) = cli.command else {
            panic!("expected apply, got {:?}", cli.command)
        };
        assert_eq!(
            args.input.files,
            [PathBuf::from("a.yaml"), PathBuf::from("dir")]
        );
        assert!(args.input.recursive);
        assert!(args.local);
    }

    #[test]
    fn dry_run_is_client_unless_server_is_asked_for() {
        let dry_run = |args: &[&str]| match parse(args).unwrap().command {
            Command::Apply(apply) => apply.dry_run,
            other => panic!("expected apply, got {other:?}"),
        };
        assert_eq!(dry_run(&["apply", "-f", "a.yaml"]), None);
        assert_eq!(
            dry_run(&["apply", "-f", "a.yaml", "--dry-run"]),
            Some(DryRun::Client)
        );
        assert_eq!(
            dry_run(&["apply", "--dry-run=server", "-f", "a.yaml"]),
            Some(DryRun::Server)
        );
        assert!(parse(&["apply", "-f", "a.yaml", "--dry-run=maybe"]).is_err());
    }

    #[test]
    fn apply_without_files_is_refused() {
        assert!(parse(&["apply"]).is_err());
    }

    #[test]
    fn run_task_collects_input_headers_and_timeout() {
        let cli = parse(&[
            "agents",
            "run-task",
            "word-count",
            "-n",
            "team",
            "-i",
            "@event.json",
            "-H",
            "x-request-id=abc",
            "-H",
            "X-Extra: a=b",
            "--timeout",
            "1m30s",
        ])
        .unwrap();
        let Command::Agents(AgentsCommand::RunTask(args)) = cli.command else {
            panic!("expected run-task, got {:?}", cli.command)
        };
        assert_eq!(args.name, "word-count");
        assert_eq!(args.namespace.namespace, "team");
        assert_eq!(args.input.as_deref(), Some("@event.json"));
        assert_eq!(
            args.headers,
            [
                ("x-request-id".to_string(), "abc".to_string()),
                ("X-Extra".to_string(), "a=b".to_string())
            ]
        );
        assert_eq!(args.timeout.as_deref(), Some("1m30s"));
    }

    #[test]
    fn run_task_refuses_a_malformed_timeout() {
        let err = parse(&["agents", "run-task", "x", "--timeout", "soon"]).unwrap_err();
        assert!(err.to_string().contains("soon"), "{err}");
    }

    #[test]
    fn list_namespace_and_all_namespaces_conflict() {
        assert!(parse(&["agents", "list", "-n", "a", "-A"]).is_err());
        let cli = parse(&["agents", "list", "-A", "-o", "wide"]).unwrap();
        let Command::Agents(AgentsCommand::List(args)) = cli.command else {
            panic!("expected list")
        };
        assert!(args.scope.all_namespaces);
        assert!(parse(&["secret", "list", "-n", "a", "-A"]).is_err());
        assert_eq!(args.output, Some(ListFormat::Wide));
    }

    #[test]
    fn get_accepts_only_json_or_yaml() {
        assert!(parse(&["agents", "get", "x", "-o", "wide"]).is_err());
        assert!(parse(&["agents", "get", "x", "-o", "yaml"]).is_ok());
    }

    #[test]
    fn egress_commands_take_scope_limit_and_format() {
        let cli = parse(&["egress", "list", "-A", "-o", "json"]).unwrap();
        let Command::Egress(EgressCommand::List(args)) = cli.command else {
            panic!("expected egress list, got {:?}", cli.command)
        };
        assert!(args.scope.all_namespaces);
        assert_eq!(args.output, Some(ListFormat::Json));
        let cli = parse(&["egress", "get", "egressgateway/main", "-n", "team"]).unwrap();
        let Command::Egress(EgressCommand::Get(args)) = cli.command else {
            panic!("expected egress get, got {:?}", cli.command)
        };
        assert_eq!(
            (args.object.as_str(), args.namespace.as_str()),
            ("egressgateway/main", "team")
        );
        let cli = parse(&["agents", "egress", "a", "--limit", "5"]).unwrap();
        let Command::Agents(AgentsCommand::Egress(args)) = cli.command else {
            panic!("expected agents egress, got {:?}", cli.command)
        };
        assert_eq!((args.name.as_str(), args.limit), ("a", 5));
        for list in [
            &["egress", "list"][..],
            &["workers", "list"],
            &["pools", "list"],
            &["secret", "list"],
            &["images", "list"],
        ] {
            for format in ["wide", "json", "yaml"] {
                let args = [list, &["-o", format]].concat();
                assert!(parse(&args).is_ok(), "{args:?}");
            }
        }
        assert!(parse(&["workers", "drain"]).is_err(), "drain needs a name");
    }

    #[test]
    fn tail_takes_a_count_or_minus_one_for_all() {
        let logs = |tail: &str| match parse(&["agents", "logs", "a", "--tail", tail]) {
            Ok(Cli {
                command: Command::Agents(AgentsCommand::Logs(args)),
                ..
            }) => Ok(args.tail),
            Ok(other) => panic!("expected logs, got {other:?}"),
            Err(err) => Err(err.to_string()),
        };
        assert_eq!(logs("-1"), Ok(Some(Tail::All)));
        assert_eq!(logs("5"), Ok(Some(Tail::Last(5))));
        assert!(logs("-3").unwrap_err().contains("-1 for all"));
    }

    #[test]
    fn deletes_take_ignore_not_found() {
        for args in [
            &["delete", "-f", "a.yaml", "--ignore-not-found"][..],
            &["agents", "delete", "a", "--ignore-not-found"],
            &["secret", "delete", "a", "--ignore-not-found"],
        ] {
            assert!(parse(args).is_ok(), "{args:?}");
        }
    }

    #[test]
    fn dev_has_documented_defaults() {
        let Command::Dev(args) = parse(&["dev"]).unwrap().command else {
            panic!("expected dev")
        };
        assert_eq!(args.listen, "127.0.0.1:18080".parse().unwrap());
        assert_eq!(args.api, "127.0.0.1:17070".parse().unwrap());
        assert!(args.data_dir.is_none());
        assert!(args.files.is_empty());
    }

    #[test]
    fn global_flags_work_after_the_subcommand() {
        let cli = parse(&[
            "agents",
            "list",
            "--server",
            "http://h:1",
            "--token",
            "t",
            "-v",
        ])
        .unwrap();
        assert_eq!(cli.global.server.as_deref(), Some("http://h:1"));
        assert_eq!(cli.global.token.as_deref(), Some("t"));
        assert!(cli.global.verbose);
    }

    #[test]
    fn header_parsing_explains_mistakes() {
        assert!(parse_header("novalue").unwrap_err().contains("NAME=VALUE"));
        assert!(parse_header("=v").unwrap_err().contains("no name"));
        assert!(
            parse_header("bad name=v")
                .unwrap_err()
                .contains("not a valid HTTP header name")
        );
        assert_eq!(parse_header("a=").unwrap(), ("a".into(), String::new()));
    }
}
