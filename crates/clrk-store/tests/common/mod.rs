//! Shared fixtures: a real database file in a fresh temporary directory.

#![allow(dead_code)] // Each test binary uses a different subset of these helpers.

use chrono::Utc;
use clrk_store::{AgentApply, NewExecution, Store};
use serde_json::{Value, json};

/// A store on disk; keep the `TempDir` alive as long as the store.
pub fn temp_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("create temp dir");
    let store = Store::open(&dir.path().join("clrk.db")).expect("open store");
    (dir, store)
}

/// An apply of TaskAgent `name` in `default` with the given spec, shape and digest.
pub fn task_agent(name: &str, spec: Value, shape: Value, digest: &str) -> AgentApply {
    AgentApply {
        namespace: "default".into(),
        name: name.into(),
        kind: "TaskAgent".into(),
        spec,
        shape,
        image_ref: "registry.local/echo:latest".into(),
        image_digest: digest.into(),
    }
}

/// A simple agent `name` with revision 00001.
pub fn echo_agent(name: &str) -> AgentApply {
    task_agent(
        name,
        json!({"template": {"spec": {"image": "registry.local/echo:latest"}}, "maxConcurrent": 0}),
        json!({"template": {"spec": {"image": "registry.local/echo:latest"}}}),
        "sha256:1111",
    )
}

/// A new `http` execution `id` of `agent`'s first revision, started now.
pub fn execution(id: &str, agent: &str) -> NewExecution {
    NewExecution {
        id: id.into(),
        namespace: "default".into(),
        agent: agent.into(),
        revision: format!("{agent}-00001"),
        trigger: "http".into(),
        started_at: Utc::now(),
        start: clrk_store::Start::Cold,
    }
}
