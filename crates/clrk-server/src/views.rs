//! The control API's answers built from store records and live dispatcher state.
//!
//! The shapes are `clrk_wire`'s; this module only fills them in, because the records they
//! come from belong to the server.

use clrk_api::ObjectKey;
use clrk_store::{
    Agent, DaemonPhase, DaemonState, EgressObject, EgressRecord, Execution, LogLine, Revision,
    RevisionState,
};
use clrk_wire as wire;
use serde_json::{Value, json};

use crate::state::AppState;

/// The pools and gateways the references of agents and egress objects are checked against,
/// read once for any number of [`agent`] or [`egress_object`] calls.
pub struct References(crate::references::Known);

impl References {
    /// What the store holds now.
    pub async fn now(state: &AppState) -> Result<Self, clrk_store::StoreError> {
        Ok(Self(crate::references::stored(&state.store).await?))
    }
}

/// An agent with its status and revisions; its conditions checked against `references`.
pub async fn agent(
    state: &AppState,
    references: &References,
    agent: &Agent,
) -> Result<wire::Agent, clrk_store::StoreError> {
    let revisions = state.store.revisions(&agent.namespace, &agent.name).await?;
    let ready = revisions
        .iter()
        .rev()
        .find(|r| r.state == RevisionState::Ready)
        .map(|r| r.name.clone());
    let last_run = state
        .store
        .executions(&agent.namespace, &agent.name, 1)
        .await?
        .first()
        .map(execution);
    let schedule = match agent.spec.pointer("/spec/schedule") {
        Some(_) => {
            let times = state
                .store
                .schedule_times(&agent.namespace, &agent.name)
                .await?;
            Some(wire::ScheduleStatus {
                last_schedule_time: times.last_schedule_time.map(|t| t.to_rfc3339()),
                next_schedule_time: times.next_schedule_time.map(|t| t.to_rfc3339()),
            })
        }
        None => None,
    };
    let (daemon, daemon_running) = match agent.kind.as_str() {
        "DaemonAgent" => {
            let daemon = state
                .store
                .daemon_state(&agent.namespace, &agent.name)
                .await?;
            // A running daemon is an active execution, on whichever worker: the stored
            // phase says so, where this server's dispatcher sees only its own executions.
            let running = daemon
                .as_ref()
                .is_some_and(|d| d.phase == DaemonPhase::Running);
            (Some(daemon_status(daemon.as_ref())), u32::from(running))
        }
        _ => (None, 0),
    };
    // Daily budgets count UTC days, so "today" is the UTC date.
    let today = chrono::Utc::now().date_naive();
    let tokens_today = state
        .store
        .tokens_on(&agent.namespace, &agent.name, today)
        .await?;
    Ok(wire::Agent {
        kind: agent.kind.clone(),
        key: ObjectKey::new(&agent.namespace, &agent.name),
        metadata: agent.spec.get("metadata").cloned().unwrap_or(Value::Null),
        spec: agent.spec.get("spec").cloned().unwrap_or(Value::Null),
        created_at: agent.created_at.to_rfc3339(),
        updated_at: agent.updated_at.to_rfc3339(),
        status: wire::AgentStatus {
            latest_revision: agent.latest_revision.as_ref().map(|r| r.name.clone()),
            ready_revision: ready,
            warm: state.dispatcher.warm(&agent.namespace, &agent.name),
            active: state.dispatcher.active(&agent.namespace, &agent.name) + daemon_running,
            last_run,
            schedule,
            daemon,
            conditions: crate::conditions::of_manifest(&references.0, &agent.spec),
        },
        token_usage: Some(wire::TokenUsage {
            today: tokens_today,
            day: today.to_string(),
        }),
        revisions: revisions.iter().map(revision).collect(),
    })
}

fn revision(r: &Revision) -> wire::Revision {
    wire::Revision {
        name: r.name.clone(),
        image: r.image_ref.clone(),
        image_digest: r.image_digest.clone(),
        state: format!("{:?}", r.state),
        reason: r.reason.clone(),
        created_at: r.created_at.to_rfc3339(),
    }
}

/// A daemon's supervision fields; `Pending` with no restarts before the supervisor got to it.
fn daemon_status(state: Option<&DaemonState>) -> wire::DaemonStatus {
    let Some(d) = state else {
        return wire::DaemonStatus {
            phase: "Pending".into(),
            restart_count: 0,
            run: None,
        };
    };
    wire::DaemonStatus {
        phase: d.phase.to_string(),
        restart_count: d.restart_count,
        run: Some(wire::DaemonRun {
            up_since: d.up_since.map(|t| t.to_rfc3339()),
            run_id: d.run_id.clone(),
            last_exit_code: d.last_exit_code,
            reason: d.reason.clone(),
            restart_delay_seconds: d.restart_delay_ms.map(|ms| ms as f64 / 1000.0),
            next_restart_time: d.next_restart_at.map(|t| t.to_rfc3339()),
        }),
    }
}

/// One execution record.
pub fn execution(e: &Execution) -> wire::Execution {
    wire::Execution {
        id: e.id.clone(),
        namespace: e.namespace.clone(),
        agent: e.agent.clone(),
        revision: e.revision.clone(),
        trigger: e.trigger.clone(),
        status: e.status.to_string(),
        exit_code: e.exit_code,
        reason: e.reason.clone(),
        started_at: e.started_at.to_rfc3339(),
        ended_at: e.ended_at.map(|t| t.to_rfc3339()),
        duration_ms: e.duration_ms,
        start: e.start.to_string(),
        agent_uid: e.agent_uid.clone(),
        agent_deleted: e.agent_deleted,
    }
}

/// One egress transaction.
pub fn egress_record(r: &EgressRecord) -> wire::EgressRecord {
    wire::EgressRecord {
        namespace: r.namespace.clone(),
        agent: r.agent.clone(),
        revision: r.revision.clone(),
        execution_id: r.execution_id.clone(),
        started_at: r.started_at.to_rfc3339(),
        duration_ms: r.duration_ms,
        protocol: r.protocol.clone(),
        destination_name: r.destination_name.clone(),
        destination_addr: r.destination_addr.clone(),
        method: r.method.clone(),
        path: r.path.clone(),
        status: r.status,
        request_bytes: r.request_bytes,
        response_bytes: r.response_bytes,
        allowed: r.allowed,
        reason: r.reason.clone(),
        injected_header: r.injected_header.clone(),
        provider: r.provider.clone(),
        model: r.model.clone(),
        input_tokens: r.input_tokens,
        output_tokens: r.output_tokens,
    }
}

/// Shown instead of a value the API never returns.
pub const REDACTED: &str = "<redacted>";

/// One egress object, its manifest redacted: `spec.otlp.headers` may hold API keys.
pub fn egress_object(references: &References, o: &EgressObject) -> wire::EgressObject {
    let mut manifest = o.spec.clone();
    if let Some(Value::Object(headers)) = manifest.pointer_mut("/spec/otlp/headers") {
        for value in headers.values_mut() {
            *value = json!(REDACTED);
        }
    }
    wire::EgressObject {
        kind: o.kind.clone(),
        key: ObjectKey::new(&o.namespace, &o.name),
        manifest,
        created_at: o.created_at.to_rfc3339(),
        updated_at: o.updated_at.to_rfc3339(),
        conditions: crate::conditions::of_manifest(&references.0, &o.spec),
    }
}

/// One stored span of an execution's trace.
pub fn trace_span(s: clrk_store::SpanRecord) -> wire::TraceSpan {
    wire::TraceSpan {
        trace_id: s.trace_id,
        span_id: s.span_id,
        parent_span_id: s.parent_span_id,
        name: s.name,
        start_unix_us: s.start_unix_us,
        duration_us: s.duration_us,
        attributes: s.attributes,
        error: s.error,
    }
}

/// One log line.
pub fn log_line(l: &LogLine) -> wire::LogLine {
    wire::LogLine {
        seq: l.seq,
        time: l.time.to_rfc3339(),
        execution_id: l.execution_id.clone(),
        stream: l.stream.clone(),
        line: l.line.clone(),
    }
}

/// An image the image store holds.
pub fn image(i: &clrk_image::LocalImage) -> wire::Image {
    wire::Image {
        reference: i.reference.clone(),
        digest: i.digest.clone(),
        size: i.size,
        imported: i.imported,
    }
}

/// What a prune of the image store removed.
pub fn prune_report(r: &clrk_image::PruneReport) -> wire::PruneReport {
    wire::PruneReport {
        images: r.images as u64,
        blobs: r.blobs as u64,
        layers: r.layers as u64,
        rootfs: r.rootfs as u64,
    }
}

/// Worker pools, with the implicit `default` pool first when it was never applied, and how
/// much of their `maxExecutionsPerWorker` is in use on this worker.
pub async fn pools(state: &AppState) -> Result<Vec<wire::Pool>, clrk_store::StoreError> {
    let mut out = Vec::new();
    let pools = state.store.list_pools().await?;
    let workers = state.store.list_workers().await?;
    let pool = |name: &str, runtime: &str, max: u64| {
        let (running, queued) = state.dispatcher.pool_usage(name);
        wire::Pool {
            name: name.to_owned(),
            runtime: runtime.to_owned(),
            max_executions_per_worker: max,
            workers: ready_workers(&workers, name),
            capacity: max,
            running: u64::from(running),
            queued: queued as u64,
        }
    };
    if !pools.iter().any(|p| p.name == clrk_api::DEFAULT_POOL) {
        out.push(pool(clrk_api::DEFAULT_POOL, "runsc", 0));
    }
    for p in pools {
        let spec = p.spec.get("spec").cloned().unwrap_or(Value::Null);
        let runtime = spec
            .get("runtime")
            .and_then(Value::as_str)
            .unwrap_or("runsc");
        let max = spec
            .get("maxExecutionsPerWorker")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        out.push(pool(&p.name, runtime, max));
    }
    Ok(out)
}

/// One registered worker.
pub fn worker(w: clrk_store::WorkerRecord) -> wire::WorkerView {
    wire::WorkerView {
        name: w.name,
        pool: w.pool,
        address: w.address,
        capacity: w.capacity,
        state: w.state.to_string(),
        started_at: w.started_at.to_rfc3339(),
        heartbeat_at: w.heartbeat_at.to_rfc3339(),
        running: w.running,
        warm: w.warm,
    }
}

/// Ready workers serving `pool`: its own and those serving every pool (`*`).
fn ready_workers(workers: &[clrk_store::WorkerRecord], pool: &str) -> u64 {
    let serving = |w: &&clrk_store::WorkerRecord| {
        w.state == clrk_store::WorkerState::Ready
            && (w.pool == pool || w.pool == crate::registry::EVERY_POOL)
    };
    workers.iter().filter(serving).count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pool_counts_its_ready_workers_and_those_serving_every_pool() {
        let now = chrono::Utc::now();
        let worker = |name: &str, pool: &str, state| clrk_store::WorkerRecord {
            name: name.into(),
            pool: pool.into(),
            address: "in-process".into(),
            capacity: 4,
            state,
            incarnation: "i".into(),
            started_at: now,
            heartbeat_at: now,
            running: 0,
            warm: 0,
        };
        use clrk_store::WorkerState::{Draining, Lost, Ready};
        let workers = [
            worker("a", "gpu", Ready),
            worker("b", "gpu", Draining),
            worker("c", "gpu", Lost),
            worker("d", "*", Ready),
            worker("e", "default", Ready),
        ];
        assert_eq!(ready_workers(&workers, "gpu"), 2);
        assert_eq!(ready_workers(&workers, "default"), 2);
        assert_eq!(ready_workers(&workers, "other"), 1);
        assert_eq!(ready_workers(&[], "default"), 0);
    }

    #[test]
    fn otlp_header_values_are_redacted_and_the_rest_kept() {
        let now = chrono::Utc::now();
        let object = EgressObject {
            namespace: "default".into(),
            kind: "EgressGateway".into(),
            name: "main".into(),
            spec: json!({"kind": "EgressGateway", "spec": {
                "defaultPolicy": "deny-all",
                "otlp": {"endpoint": "http://collector:4318", "headers": {"x-key": "secret-value"}},
            }}),
            created_at: now,
            updated_at: now,
        };
        let view =
            serde_json::to_value(egress_object(&References(Default::default()), &object)).unwrap();
        assert_eq!(
            view["manifest"]["spec"]["otlp"]["headers"]["x-key"],
            REDACTED
        );
        assert_eq!(
            view["manifest"]["spec"]["otlp"]["endpoint"],
            "http://collector:4318"
        );
        assert_eq!(view["manifest"]["spec"]["defaultPolicy"], "deny-all");
        assert_eq!(
            (view["namespace"].as_str(), view["name"].as_str()),
            (Some("default"), Some("main"))
        );
        assert!(!view.to_string().contains("secret-value"));
        assert_eq!(
            object.spec["spec"]["otlp"]["headers"]["x-key"],
            "secret-value"
        );
    }

    #[test]
    fn a_daemon_the_supervisor_has_not_seen_is_pending_with_nothing_else() {
        let status = serde_json::to_value(daemon_status(None)).unwrap();
        assert_eq!(status, json!({"phase": "Pending", "restartCount": 0}));
    }
}
