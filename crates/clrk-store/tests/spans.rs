//! An execution's spans against a real database of each backend: kept in order, capped, and
//! kept with the execution when its agent is deleted.

mod common;

use clrk_store::{SPANS_PER_EXECUTION, SpanRecord};
use common::{echo_agent, execution};

fn span(name: &str, start: i64) -> SpanRecord {
    let mut attributes = serde_json::Map::new();
    attributes.insert("agent.name".into(), "echo".into());
    attributes.insert("clrk.req.bytes".into(), 12.into());
    SpanRecord {
        trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
        span_id: format!("{start:016x}"),
        parent_span_id: Some("00f067aa0ba902b7".into()),
        name: name.into(),
        start_unix_us: start,
        duration_us: 5,
        attributes,
        error: None,
    }
}

store_tests! {
    async fn spans_are_kept_by_start_capped_and_outlive_the_agent_with_the_execution(backend) {
        let store = backend.open().await;
        store.apply_agent(&echo_agent("echo")).await.unwrap();
        store.start_execution(&execution("ev-1", "echo")).await.unwrap();

        let written = [span("run", 30), span("admission", 10)];
        assert_eq!(store.insert_spans("ev-1", &written).await.unwrap(), 2);
        let read = store.execution_spans("ev-1").await.unwrap();
        assert_eq!(read, vec![written[1].clone(), written[0].clone()]);

        let many: Vec<SpanRecord> = (0..i64::try_from(SPANS_PER_EXECUTION).unwrap())
            .map(|i| span("GET api.example.test", 100 + i))
            .collect();
        assert_eq!(
            store.insert_spans("ev-1", &many).await.unwrap(),
            SPANS_PER_EXECUTION - 2
        );
        assert_eq!(store.insert_spans("ev-1", &written).await.unwrap(), 0);
        assert_eq!(store.execution_spans("ev-1").await.unwrap().len(), SPANS_PER_EXECUTION);

        assert_eq!(store.insert_spans("ev-unknown", &written).await.unwrap(), 0);
        // The agent's delete keeps its executions, and their traces with them.
        assert!(store.delete_agent("default", "echo").await.unwrap());
        assert_eq!(store.execution_spans("ev-1").await.unwrap().len(), SPANS_PER_EXECUTION);
    }
}
