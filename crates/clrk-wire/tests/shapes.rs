//! The JSON each type writes, field for field: these are the shapes clients of the control
//! API read, so a change here is a change of the API.

use clrk_wire::*;
use serde_json::{Value, json};

fn to_json<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap()
}

fn execution() -> Execution {
    Execution {
        id: "e1".into(),
        namespace: "default".into(),
        agent: "echo".into(),
        revision: "echo-00001".into(),
        trigger: "cli".into(),
        status: "Succeeded".into(),
        exit_code: Some(0),
        reason: None,
        started_at: "2026-01-01T12:00:00+00:00".into(),
        ended_at: Some("2026-01-01T12:00:01+00:00".into()),
        duration_ms: Some(1000),
        start: "cold".into(),
        agent_uid: "0b5e7c1a-8f36-4e53-9a8e-2d7c41f0a9b2".into(),
        agent_deleted: false,
    }
}

fn agent(kind: &str, status: AgentStatus) -> Agent {
    Agent {
        kind: kind.into(),
        key: ObjectKey::new("default", "echo"),
        metadata: json!({"name": "echo", "namespace": "default"}),
        spec: json!({"timeout": "1m"}),
        created_at: "2026-01-01T12:00:00+00:00".into(),
        updated_at: "2026-01-01T12:00:00+00:00".into(),
        status,
        token_usage: Some(TokenUsage {
            today: 5,
            day: "2026-01-01".into(),
        }),
        revisions: vec![Revision {
            name: "echo-00001".into(),
            image: "host:".into(),
            image_digest: "sha256:aa".into(),
            state: "Ready".into(),
            reason: None,
            created_at: "2026-01-01T12:00:00+00:00".into(),
        }],
    }
}

#[test]
fn a_task_agent_has_no_schedule_or_daemon_fields() {
    let status = AgentStatus {
        latest_revision: Some("echo-00001".into()),
        ready_revision: Some("echo-00001".into()),
        warm: 1,
        active: 0,
        last_run: Some(execution()),
        schedule: None,
        daemon: None,
        conditions: Vec::new(),
    };
    assert_eq!(
        to_json(&agent("TaskAgent", status)),
        json!({
            "kind": "TaskAgent", "namespace": "default", "name": "echo",
            "metadata": {"name": "echo", "namespace": "default"},
            "spec": {"timeout": "1m"},
            "createdAt": "2026-01-01T12:00:00+00:00", "updatedAt": "2026-01-01T12:00:00+00:00",
            "status": {
                "latestRevision": "echo-00001", "readyRevision": "echo-00001",
                "warm": 1, "active": 0,
                "lastRun": {
                    "id": "e1", "namespace": "default", "agent": "echo", "revision": "echo-00001",
                    "trigger": "cli", "status": "Succeeded", "exitCode": 0, "reason": null,
                    "startedAt": "2026-01-01T12:00:00+00:00", "endedAt": "2026-01-01T12:00:01+00:00",
                    "durationMs": 1000, "start": "cold",
                    "agentUid": "0b5e7c1a-8f36-4e53-9a8e-2d7c41f0a9b2", "agentDeleted": false,
                },
            },
            "tokenUsage": {"today": 5, "day": "2026-01-01"},
            "revisions": [{
                "name": "echo-00001", "image": "host:", "imageDigest": "sha256:aa",
                "state": "Ready", "reason": null, "createdAt": "2026-01-01T12:00:00+00:00",
            }],
        })
    );
}

#[test]
fn schedule_and_daemon_fields_sit_in_the_status_itself() {
    let status = AgentStatus {
        schedule: Some(ScheduleStatus {
            last_schedule_time: None,
            next_schedule_time: Some("2026-01-01T13:00:00+00:00".into()),
        }),
        ..AgentStatus::default()
    };
    let view = to_json(&agent("TaskAgent", status));
    assert_eq!(view["status"]["lastScheduleTime"], Value::Null);
    assert!(view["status"].get("lastScheduleTime").is_some());
    assert_eq!(
        view["status"]["nextScheduleTime"],
        "2026-01-01T13:00:00+00:00"
    );

    // Before the supervisor got to it a daemon is Pending, with nothing else to say.
    let pending = AgentStatus {
        daemon: Some(DaemonStatus {
            phase: "Pending".into(),
            restart_count: 0,
            run: None,
        }),
        ..AgentStatus::default()
    };
    assert_eq!(
        to_json(&pending),
        json!({"latestRevision": null, "readyRevision": null, "warm": 0, "active": 0,
               "lastRun": null, "phase": "Pending", "restartCount": 0})
    );
    let running = AgentStatus {
        daemon: Some(DaemonStatus {
            phase: "CrashLoopBackOff".into(),
            restart_count: 3,
            run: Some(DaemonRun {
                restart_delay_seconds: Some(8.0),
                ..DaemonRun::default()
            }),
        }),
        ..AgentStatus::default()
    };
    let view = to_json(&running);
    for field in [
        "upSince",
        "runId",
        "lastExitCode",
        "reason",
        "nextRestartTime",
    ] {
        assert_eq!(view.get(field), Some(&Value::Null), "{field} in {view}");
    }
    assert_eq!(view["restartDelaySeconds"], 8.0);
    // And the CLI reads back what the server wrote.
    let back: AgentStatus = serde_json::from_value(view).unwrap();
    assert_eq!(back.daemon, running.daemon);
}

#[test]
fn apply_lines_and_deletions_keep_their_shapes() {
    let result = ApplyResult {
        kind: "TaskAgent".into(),
        key: ObjectKey::new("default", "echo"),
        outcome: "created".into(),
        revision: Some("echo-00001".into()),
        warnings: vec![],
    };
    assert_eq!(
        to_json(&ApplyEvent::Done {
            results: vec![result.clone()]
        }),
        json!({"results": [{"kind": "TaskAgent", "namespace": "default", "name": "echo",
                            "outcome": "created", "revision": "echo-00001", "warnings": []}]})
    );
    assert_eq!(
        to_json(&ApplyEvent::Failed {
            error: "stopped".into(),
            status: 500
        }),
        json!({"error": "stopped", "status": 500})
    );
    let progress: ApplyEvent = serde_json::from_value(json!({"progress": {
        "image": "alpine:3", "layer": "sha256:bb", "done": 1, "total": 2, "cached": false}}))
    .unwrap();
    assert!(matches!(progress, ApplyEvent::Progress { progress } if progress.total == 2));
    assert_eq!(
        to_json(&Deleted {
            deleted: ObjectRef {
                kind: "Secret".into(),
                key: ObjectKey::new("ops", "key"),
            }
        }),
        json!({"deleted": {"kind": "Secret", "namespace": "ops", "name": "key"}})
    );
}

#[test]
fn images_secrets_and_pools_keep_their_shapes() {
    let image = Image {
        reference: "alpine:3".into(),
        digest: "sha256:cc".into(),
        size: 10,
        imported: true,
    };
    assert_eq!(
        to_json(&LocalImage {
            image: image.clone(),
            used_by: vec!["default/echo-00001".into()]
        }),
        json!({"reference": "alpine:3", "digest": "sha256:cc", "size": 10, "imported": true,
               "usedBy": ["default/echo-00001"]})
    );
    assert_eq!(
        to_json(&ImportResponse {
            imported: vec![image]
        }),
        json!({"imported": [{"reference": "alpine:3", "digest": "sha256:cc", "size": 10, "imported": true}]})
    );
    assert_eq!(
        to_json(&SetSecretResponse {
            secret: SecretKeys {
                key: ObjectKey::new("default", "k"),
                keys: vec!["a".into()]
            },
            outcome: "created".into(),
        }),
        json!({"secret": {"namespace": "default", "name": "k", "keys": ["a"]}, "outcome": "created"})
    );
    let pool: Pool = serde_json::from_value(json!({"name": "default", "runtime": "runsc",
        "maxExecutionsPerWorker": 0, "workers": 1, "capacity": 0, "running": 2, "queued": 1}))
    .unwrap();
    assert_eq!((pool.workers, pool.running, pool.queued), (1, 2, 1));
}
