//! Worker pool apply, read and delete against a real database file.

mod common;

use clrk_store::ApplyOutcome;
use common::temp_store;
use serde_json::json;

#[test]
fn pool_apply_reports_created_unchanged_configured_and_delete_removes_it() {
    let (_dir, store) = temp_store();
    let spec = json!({"runtime": "runsc", "maxExecutionsPerWorker": 4});

    assert_eq!(
        store.apply_pool("default", "default", &spec).unwrap(),
        ApplyOutcome::Created { revision: None }
    );
    assert_eq!(
        store.apply_pool("default", "default", &spec).unwrap(),
        ApplyOutcome::Unchanged
    );
    let first = store.get_pool("default").unwrap().unwrap();

    let runc = json!({"runtime": "runc", "maxExecutionsPerWorker": 4});
    assert_eq!(
        store.apply_pool("default", "default", &runc).unwrap(),
        ApplyOutcome::Configured { revision: None }
    );
    let pool = store.get_pool("default").unwrap().unwrap();
    assert_eq!(pool.spec, runc);
    assert_eq!(pool.created_at, first.created_at);
    assert!(pool.updated_at >= first.updated_at);

    store.apply_pool("team", "gpu", &json!({})).unwrap();
    let names: Vec<_> = store
        .list_pools()
        .unwrap()
        .into_iter()
        .map(|p| (p.namespace, p.name))
        .collect();
    assert_eq!(
        names,
        [
            ("default".to_string(), "default".to_string()),
            ("team".into(), "gpu".into())
        ]
    );

    assert!(store.delete_pool("gpu").unwrap());
    assert!(!store.delete_pool("gpu").unwrap());
    assert_eq!(store.get_pool("gpu").unwrap(), None);
}
