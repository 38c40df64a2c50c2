//! The JSON shapes the control API returns.

use clrk_store::{
    Agent, DaemonState, EgressObject, EgressRecord, Execution, LogLine, RevisionState,
};
use serde_json::{Value, json};

use crate::state::AppState;

/// An agent with its status and revisions.
pub async fn agent(state: &AppState, agent: &Agent) -> Result<Value, clrk_store::StoreError> {
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
    let mut status = json!({
        "latestRevision": agent.latest_revision.as_ref().map(|r| r.name.clone()),
        "readyRevision": ready,
        "warm": state.dispatcher.warm(&agent.namespace, &agent.name),
        "active": state.dispatcher.active(&agent.namespace, &agent.name),
        "lastRun": last_run,
    });
    if agent.spec.pointer("/spec/schedule").is_some() {
        let times = state
            .store
            .schedule_times(&agent.namespace, &agent.name)
            .await?;
        status["lastScheduleTime"] = json!(times.last_schedule_time.map(|t| t.to_rfc3339()));
        status["nextScheduleTime"] = json!(times.next_schedule_time.map(|t| t.to_rfc3339()));
    }
    if agent.kind == "DaemonAgent" {
        let daemon = state
            .store
            .daemon_state(&agent.namespace, &agent.name)
            .await?;
        for (key, value) in daemon_status(daemon.as_ref()) {
            status[key] = value;
        }
    }
    // Daily budgets count UTC days, so "today" is the UTC date.
    let today = chrono::Utc::now().date_naive();
    let tokens_today = state
        .store
        .tokens_on(&agent.namespace, &agent.name, today)
        .await?;
    Ok(json!({
        "kind": agent.kind,
        "namespace": agent.namespace,
        "name": agent.name,
        "spec": agent.spec.get("spec").cloned().unwrap_or(Value::Null),
        "createdAt": agent.created_at.to_rfc3339(),
        "updatedAt": agent.updated_at.to_rfc3339(),
        "status": status,
        "tokenUsage": { "today": tokens_today, "day": today.to_string() },
        "revisions": revisions.iter().map(|r| json!({
            "name": r.name,
            "image": r.image_ref,
            "imageDigest": r.image_digest,
            "state": format!("{:?}", r.state),
            "reason": r.reason,
            "createdAt": r.created_at.to_rfc3339(),
        })).collect::<Vec<_>>(),
    }))
}

/// A daemon's supervision fields; `Pending` with no restarts before the supervisor got to it.
fn daemon_status(state: Option<&DaemonState>) -> Vec<(&'static str, Value)> {
    let Some(d) = state else {
        return vec![("phase", json!("Pending")), ("restartCount", json!(0))];
    };
    vec![
        ("phase", json!(d.phase.to_string())),
        ("restartCount", json!(d.restart_count)),
        ("upSince", json!(d.up_since.map(|t| t.to_rfc3339()))),
        ("runId", json!(d.run_id)),
        ("lastExitCode", json!(d.last_exit_code)),
        ("reason", json!(d.reason)),
        (
            "restartDelaySeconds",
            json!(d.restart_delay_ms.map(|ms| ms as f64 / 1000.0)),
        ),
        (
            "nextRestartTime",
            json!(d.next_restart_at.map(|t| t.to_rfc3339())),
        ),
    ]
}

/// One execution record.
pub fn execution(e: &Execution) -> Value {
    json!({
        "id": e.id,
        "namespace": e.namespace,
        "agent": e.agent,
        "revision": e.revision,
        "trigger": e.trigger,
        "status": e.status.to_string(),
        "exitCode": e.exit_code,
        "reason": e.reason,
        "startedAt": e.started_at.to_rfc3339(),
        "endedAt": e.ended_at.map(|t| t.to_rfc3339()),
        "durationMs": e.duration_ms,
        "start": e.start.to_string(),
    })
}

/// One egress transaction.
pub fn egress_record(r: &EgressRecord) -> Value {
    json!({
        "namespace": r.namespace,
        "agent": r.agent,
        "revision": r.revision,
        "executionId": r.execution_id,
        "startedAt": r.started_at.to_rfc3339(),
        "durationMs": r.duration_ms,
        "protocol": r.protocol,
        "destinationName": r.destination_name,
        "destinationAddr": r.destination_addr,
        "method": r.method,
        "path": r.path,
        "status": r.status,
        "requestBytes": r.request_bytes,
        "responseBytes": r.response_bytes,
        "allowed": r.allowed,
        "reason": r.reason,
        "injectedHeader": r.injected_header,
        "provider": r.provider,
        "model": r.model,
        "inputTokens": r.input_tokens,
        "outputTokens": r.output_tokens,
    })
}

/// Shown instead of a value the API never returns.
pub const REDACTED: &str = "<redacted>";

/// One egress object, its manifest redacted: `spec.otlp.headers` may hold API keys.
pub fn egress_object(o: &EgressObject) -> Value {
    let mut manifest = o.spec.clone();
    if let Some(Value::Object(headers)) = manifest.pointer_mut("/spec/otlp/headers") {
        for value in headers.values_mut() {
            *value = json!(REDACTED);
        }
    }
    json!({
        "kind": o.kind,
        "namespace": o.namespace,
        "name": o.name,
        "manifest": manifest,
        "createdAt": o.created_at.to_rfc3339(),
        "updatedAt": o.updated_at.to_rfc3339(),
    })
}

/// One log line.
pub fn log_line(l: &LogLine) -> Value {
    json!({
        "seq": l.seq,
        "time": l.time.to_rfc3339(),
        "executionId": l.execution_id,
        "stream": l.stream,
        "line": l.line,
    })
}

/// Worker pools, with the implicit `default` pool first when it was never applied, and how
/// much of their `maxExecutionsPerWorker` is in use on this worker.
pub async fn pools(state: &AppState) -> Result<Vec<Value>, clrk_store::StoreError> {
    let mut out = Vec::new();
    let pools = state.store.list_pools().await?;
    let usage = |name: &str| {
        let (running, queued) = state.dispatcher.pool_usage(name);
        (json!(running), json!(queued))
    };
    if !pools.iter().any(|p| p.name == "default") {
        let (running, queued) = usage("default");
        out.push(json!({ "name": "default", "runtime": "runsc", "maxExecutionsPerWorker": 0, "workers": 1, "capacity": 0, "running": running, "queued": queued }));
    }
    for p in pools {
        let spec = p.spec.get("spec").cloned().unwrap_or(Value::Null);
        let (running, queued) = usage(&p.name);
        out.push(json!({
            "name": p.name,
            "runtime": spec.get("runtime").cloned().unwrap_or(json!("runsc")),
            "maxExecutionsPerWorker": spec.get("maxExecutionsPerWorker").cloned().unwrap_or(json!(0)),
            "workers": 1,
            "capacity": spec.get("maxExecutionsPerWorker").cloned().unwrap_or(json!(0)),
            "running": running,
            "queued": queued,
        }));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let view = egress_object(&object);
        assert_eq!(
            view["manifest"]["spec"]["otlp"]["headers"]["x-key"],
            REDACTED
        );
        assert_eq!(
            view["manifest"]["spec"]["otlp"]["endpoint"],
            "http://collector:4318"
        );
        assert_eq!(view["manifest"]["spec"]["defaultPolicy"], "deny-all");
        assert!(!view.to_string().contains("secret-value"));
        assert_eq!(
            object.spec["spec"]["otlp"]["headers"]["x-key"],
            "secret-value"
        );
    }
}
