//! The JSON shapes the control API returns.

use clrk_store::{Agent, Execution, LogLine, RevisionState};
use serde_json::{Value, json};

use crate::state::AppState;

/// An agent with its status and revisions.
pub fn agent(state: &AppState, agent: &Agent) -> Result<Value, clrk_store::StoreError> {
    let revisions = state.store.revisions(&agent.namespace, &agent.name)?;
    let ready = revisions
        .iter()
        .rev()
        .find(|r| r.state == RevisionState::Ready)
        .map(|r| r.name.clone());
    let last_run = state
        .store
        .executions(&agent.namespace, &agent.name, 1)?
        .first()
        .map(execution);
    Ok(json!({
        "kind": agent.kind,
        "namespace": agent.namespace,
        "name": agent.name,
        "spec": agent.spec.get("spec").cloned().unwrap_or(Value::Null),
        "createdAt": agent.created_at.to_rfc3339(),
        "updatedAt": agent.updated_at.to_rfc3339(),
        "status": {
            "latestRevision": agent.latest_revision.as_ref().map(|r| r.name.clone()),
            "readyRevision": ready,
            "warm": 0,
            "active": state.dispatcher.active(&agent.namespace, &agent.name),
            "lastRun": last_run,
        },
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

/// Worker pools, with the implicit `default` pool first when it was never applied.
pub fn pools(state: &AppState) -> Result<Vec<Value>, clrk_store::StoreError> {
    let mut out = Vec::new();
    let pools = state.store.list_pools()?;
    if !pools.iter().any(|p| p.name == "default") {
        out.push(json!({ "name": "default", "runtime": "runsc", "maxExecutionsPerWorker": 0, "workers": 1, "capacity": 0 }));
    }
    for p in pools {
        let spec = p.spec.get("spec").cloned().unwrap_or(Value::Null);
        out.push(json!({
            "name": p.name,
            "runtime": spec.get("runtime").cloned().unwrap_or(json!("runsc")),
            "maxExecutionsPerWorker": spec.get("maxExecutionsPerWorker").cloned().unwrap_or(json!(0)),
            "workers": 1,
            "capacity": spec.get("maxExecutionsPerWorker").cloned().unwrap_or(json!(0)),
        }));
    }
    Ok(out)
}
