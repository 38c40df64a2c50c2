//! Every family clrk keeps, with its labels, and the events that move it. Recording is a
//! label lookup and an atomic add: no lock is held beyond the lookup, nothing waits.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use crate::bounded::BoundedValues;

/// Distinct model names labelled as they are, per process; the rest are `other`.
const MODELS: usize = 32;
/// Distinct provider names: clrk's own dialects, which are few, with room to spare.
const PROVIDERS: usize = 16;

/// What a process does, and so which families it exposes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Admission and placement (`clrk server`; `clrk dev`): queues and 429s per pool.
    Placement,
    /// Sandboxes (`clrk worker`; `clrk dev`): executions, sandbox starts, warm pools, egress,
    /// tokens, daemon restarts.
    Worker,
}

/// Whether an execution ran in a sandbox started for it or in a warm one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    Cold,
    Warm,
}

impl Start {
    fn label(self) -> &'static str {
        match self {
            Start::Cold => "cold",
            Start::Warm => "warm",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ExecutionLabels {
    namespace: String,
    agent: String,
    trigger: &'static str,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TimingLabels {
    namespace: String,
    agent: String,
    start: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AgentLabels {
    namespace: String,
    agent: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SandboxStartLabels {
    runtime: &'static str,
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RuntimeLabels {
    runtime: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    pool: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusalLabels {
    pool: String,
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EgressLabels {
    gateway: String,
    decision: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenLabels {
    namespace: String,
    agent: String,
    provider: String,
    model: String,
    kind: &'static str,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// From 50 ms to about 7 minutes: an execution's length and its first byte.
fn execution_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.05, 2.0, 14))
}

/// From 50 ms to about 25 s: a sandbox's start, image preparation included.
fn start_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.05, 2.0, 10))
}

/// The families of one process. Agents, pools and gateways in labels are the operator's
/// (applied with the API token); what agents and upstreams choose is bounded.
pub struct Metrics {
    executions: Family<ExecutionLabels, Counter>,
    execution_duration: Histograms<TimingLabels>,
    first_byte: Histograms<TimingLabels>,
    sandbox_starts: Family<SandboxStartLabels, Counter>,
    sandbox_start_duration: Histograms<RuntimeLabels>,
    warm_ready: Family<AgentLabels, Gauge>,
    warm_wanted: Family<AgentLabels, Gauge>,
    queue_depth: Family<PoolLabels, Gauge>,
    refusals: Family<RefusalLabels, Counter>,
    egress: Family<EgressLabels, Counter>,
    tokens: Family<TokenLabels, Counter>,
    daemon_restarts: Family<AgentLabels, Counter>,
    held_output: Gauge,
    held_output_spills: Counter,
    models: BoundedValues,
    providers: BoundedValues,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics {
            executions: Family::default(),
            execution_duration: Family::new_with_constructor(execution_buckets),
            first_byte: Family::new_with_constructor(execution_buckets),
            sandbox_starts: Family::default(),
            sandbox_start_duration: Family::new_with_constructor(start_buckets),
            warm_ready: Family::default(),
            warm_wanted: Family::default(),
            queue_depth: Family::default(),
            refusals: Family::default(),
            egress: Family::default(),
            tokens: Family::default(),
            daemon_restarts: Family::default(),
            held_output: Gauge::default(),
            held_output_spills: Counter::default(),
            models: BoundedValues::new(MODELS),
            providers: BoundedValues::new(PROVIDERS),
        }
    }
}

fn agent(namespace: &str, agent: &str) -> AgentLabels {
    AgentLabels {
        namespace: namespace.to_owned(),
        agent: agent.to_owned(),
    }
}

impl Metrics {
    /// An execution ended with `outcome` (`succeeded`, `failed`, `timed_out`) after
    /// `elapsed`; `trigger` is bounded by [`crate::trigger`].
    pub fn execution_finished(
        &self,
        namespace: &str,
        name: &str,
        trigger: &str,
        outcome: &'static str,
        start: Start,
        elapsed: Duration,
    ) {
        self.executions
            .get_or_create(&ExecutionLabels {
                namespace: namespace.to_owned(),
                agent: name.to_owned(),
                trigger: crate::trigger(trigger),
                outcome,
            })
            .inc();
        self.execution_duration
            .get_or_create(&timing(namespace, name, start))
            .observe(elapsed.as_secs_f64());
    }

    /// An execution's first byte of output (or its Metadata-mode answer) came `elapsed` after
    /// it started.
    pub fn first_byte(&self, namespace: &str, name: &str, start: Start, elapsed: Duration) {
        self.first_byte
            .get_or_create(&timing(namespace, name, start))
            .observe(elapsed.as_secs_f64());
    }

    /// A sandbox of `runtime` (`runsc`, `runc`) started, or failed to, within `elapsed`.
    pub fn sandbox_started(&self, runtime: &'static str, started: bool, elapsed: Duration) {
        let result = if started { "started" } else { "failed" };
        // Timed before counted: a scrape never shows more starts than timings.
        self.sandbox_start_duration
            .get_or_create(&RuntimeLabels { runtime })
            .observe(elapsed.as_secs_f64());
        self.sandbox_starts
            .get_or_create(&SandboxStartLabels { runtime, result })
            .inc();
    }

    /// The warm pools as they are now: (namespace, agent, ready, wanted) each; agents not
    /// listed have none.
    pub fn set_warm_pools(&self, pools: impl IntoIterator<Item = (String, String, i64, i64)>) {
        self.warm_ready.clear();
        self.warm_wanted.clear();
        for (namespace, name, ready, wanted) in pools {
            let labels = AgentLabels {
                namespace,
                agent: name,
            };
            self.warm_ready.get_or_create(&labels).set(ready);
            self.warm_wanted.get_or_create(&labels).set(wanted);
        }
    }

    /// An invocation waits in worker pool `pool`'s queue until the guard is dropped.
    pub fn queued(&self, pool: &str) -> Queued {
        let gauge = self.queue_depth.get_or_create_owned(&PoolLabels {
            pool: pool.to_owned(),
        });
        gauge.inc();
        Queued(gauge)
    }

    /// An invocation of an agent of `pool` was answered 429: `reason` is `max_concurrent`,
    /// `queue_full` or `queue_timeout`.
    pub fn refused(&self, pool: &str, reason: &'static str) {
        self.refusals
            .get_or_create(&RefusalLabels {
                pool: pool.to_owned(),
                reason,
            })
            .inc();
    }

    /// A transaction through `gateway` ended, allowed or denied.
    pub fn egress_transaction(&self, gateway: &str, allowed: bool) {
        let decision = if allowed { "allowed" } else { "denied" };
        self.egress
            .get_or_create(&EgressLabels {
                gateway: gateway.to_owned(),
                decision,
            })
            .inc();
    }

    /// Tokens an LLM provider counted for an agent; the model, named by the provider's
    /// response, is bounded.
    pub fn tokens(
        &self,
        namespace: &str,
        name: &str,
        provider: &str,
        model: Option<&str>,
        input: u64,
        output: u64,
    ) {
        let model = model.map_or_else(|| crate::OTHER.to_owned(), |m| self.models.label(m));
        let mut labels = TokenLabels {
            namespace: namespace.to_owned(),
            agent: name.to_owned(),
            provider: self.providers.label(provider),
            model,
            kind: "input",
        };
        self.tokens.get_or_create(&labels).inc_by(input);
        labels.kind = "output";
        self.tokens.get_or_create(&labels).inc_by(output);
    }

    /// A daemon was restarted (after an exit, a failure or its worker's loss).
    pub fn daemon_restart(&self, namespace: &str, name: &str) {
        self.daemon_restarts
            .get_or_create(&agent(namespace, name))
            .inc();
    }

    /// Adds the families of `role` to `registry`.
    /// Memory the responses waiting for their agents' exit hold now.
    pub fn held_output(&self, bytes: usize) {
        self.held_output
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    /// A held response went on in a temporary file: the memory budget was in use.
    pub fn held_output_spilled(&self) {
        self.held_output_spills.inc();
    }

    pub(crate) fn register(&self, role: Role, registry: &mut Registry) {
        match role {
            Role::Placement => {
                registry.register_with_unit(
                    "clrk_held_output",
                    "Memory held by responses waiting for their agent to exit",
                    Unit::Bytes,
                    self.held_output.clone(),
                );
                registry.register(
                    "clrk_held_output_spills",
                    "Held responses that went on in a temporary file, the memory budget in use",
                    self.held_output_spills.clone(),
                );
                registry.register(
                    "clrk_pool_queue_depth",
                    "Invocations waiting for a slot of their worker pool",
                    self.queue_depth.clone(),
                );
                registry.register(
                    "clrk_pool_refusals",
                    "Invocations answered 429, by worker pool and reason",
                    self.refusals.clone(),
                );
            }
            Role::Worker => {
                registry.register(
                    "clrk_executions",
                    "TaskAgent executions ended, by agent, trigger and outcome",
                    self.executions.clone(),
                );
                registry.register_with_unit(
                    "clrk_execution_duration",
                    "TaskAgent executions' length, by agent and cold or warm start",
                    Unit::Seconds,
                    self.execution_duration.clone(),
                );
                registry.register_with_unit(
                    "clrk_execution_first_byte",
                    "Time from an execution's start to its first byte of output",
                    Unit::Seconds,
                    self.first_byte.clone(),
                );
                registry.register(
                    "clrk_sandbox_starts",
                    "Sandboxes started (or failed to), by runtime and result",
                    self.sandbox_starts.clone(),
                );
                registry.register_with_unit(
                    "clrk_sandbox_start_duration",
                    "Time to start a sandbox, image preparation included, by runtime",
                    Unit::Seconds,
                    self.sandbox_start_duration.clone(),
                );
                registry.register(
                    "clrk_warm_sandboxes_ready",
                    "Warm sandboxes started and waiting, per agent",
                    self.warm_ready.clone(),
                );
                registry.register(
                    "clrk_warm_sandboxes_wanted",
                    "Warm sandboxes this worker keeps for an agent (its warmPoolSize share)",
                    self.warm_wanted.clone(),
                );
                registry.register(
                    "clrk_egress_transactions",
                    "Transactions through an egress gateway, by gateway and decision",
                    self.egress.clone(),
                );
                registry.register(
                    "clrk_llm_tokens",
                    "LLM tokens counted by the egress gateway, by agent, provider, model and kind",
                    self.tokens.clone(),
                );
                registry.register(
                    "clrk_daemon_restarts",
                    "DaemonAgent restarts",
                    self.daemon_restarts.clone(),
                );
            }
        }
    }
}

fn timing(namespace: &str, name: &str, start: Start) -> TimingLabels {
    TimingLabels {
        namespace: namespace.to_owned(),
        agent: name.to_owned(),
        start: start.label(),
    }
}

/// One invocation in a worker pool's queue, counted until dropped.
pub struct Queued(Gauge);

impl Drop for Queued {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(metrics: &Metrics, role: Role) -> String {
        let mut registry = Registry::default();
        metrics.register(role, &mut registry);
        crate::encode(&registry)
    }

    #[test]
    fn each_role_exposes_its_own_families() {
        let metrics = Metrics::default();
        metrics.refused("default", "queue_full");
        metrics.execution_finished(
            "default",
            "a",
            "http",
            "succeeded",
            Start::Cold,
            Duration::from_millis(300),
        );
        let placement = text(&metrics, Role::Placement);
        assert!(
            placement.contains(r#"clrk_pool_refusals_total{pool="default",reason="queue_full"} 1"#),
            "{placement}"
        );
        assert!(!placement.contains("clrk_executions"), "{placement}");
        let worker = text(&metrics, Role::Worker);
        assert!(
            worker.contains(
                r#"clrk_executions_total{namespace="default",agent="a",trigger="http",outcome="succeeded"} 1"#
            ),
            "{worker}"
        );
        assert!(
            worker.contains(
                r#"clrk_execution_duration_seconds_count{namespace="default",agent="a",start="cold"} 1"#
            ),
            "{worker}"
        );
        assert!(!worker.contains("clrk_pool_refusals"), "{worker}");
    }

    #[test]
    fn a_queue_gauge_counts_its_guards_and_warm_pools_are_replaced_whole() {
        let metrics = Metrics::default();
        let (a, b) = (metrics.queued("p"), metrics.queued("p"));
        drop(a);
        assert!(text(&metrics, Role::Placement).contains(r#"clrk_pool_queue_depth{pool="p"} 1"#));
        drop(b);
        assert!(text(&metrics, Role::Placement).contains(r#"clrk_pool_queue_depth{pool="p"} 0"#));
        metrics.set_warm_pools([("default".into(), "old".into(), 1, 1)]);
        metrics.set_warm_pools([("default".into(), "new".into(), 0, 2)]);
        let worker = text(&metrics, Role::Worker);
        assert!(!worker.contains(r#"agent="old""#), "{worker}");
        assert!(
            worker.contains(r#"clrk_warm_sandboxes_wanted{namespace="default",agent="new"} 2"#),
            "{worker}"
        );
    }

    #[test]
    fn models_beyond_the_bound_and_caller_triggers_share_one_series() {
        let metrics = Metrics::default();
        for n in 0..(MODELS + 10) {
            metrics.tokens("d", "a", "anthropic", Some(&format!("m{n}")), 1, 1);
        }
        for n in 0..10 {
            metrics.execution_finished(
                "d",
                "a",
                &format!("caller-{n}"),
                "failed",
                Start::Warm,
                Duration::ZERO,
            );
        }
        assert_eq!(metrics.tokens.len(), (MODELS + 1) * 2);
        assert_eq!(metrics.executions.len(), 1);
        let worker = text(&metrics, Role::Worker);
        assert!(
            worker.contains(
                r#"clrk_llm_tokens_total{namespace="d",agent="a",provider="anthropic",model="other",kind="input"} 10"#
            ),
            "{worker}"
        );
    }
}
