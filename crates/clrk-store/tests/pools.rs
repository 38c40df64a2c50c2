//! Worker pool apply, read and delete against a real database of each backend.

mod common;

use clrk_store::ApplyOutcome;
use serde_json::json;

store_tests! {
    async fn pool_apply_reports_created_unchanged_configured_and_delete_removes_it(backend) {
        let store = backend.open().await;
        let spec = json!({"runtime": "runsc", "maxExecutionsPerWorker": 4});

        assert_eq!(
            store.apply_pool("default", "default", &spec).await.unwrap(),
            ApplyOutcome::Created { revision: None }
        );
        assert_eq!(
            store.apply_pool("default", "default", &spec).await.unwrap(),
            ApplyOutcome::Unchanged
        );
        let first = store.get_pool("default").await.unwrap().unwrap();

        let runc = json!({"runtime": "runc", "maxExecutionsPerWorker": 4});
        assert_eq!(
            store.apply_pool("default", "default", &runc).await.unwrap(),
            ApplyOutcome::Configured { revision: None }
        );
        let pool = store.get_pool("default").await.unwrap().unwrap();
        assert_eq!(pool.spec, runc);
        assert_eq!(pool.created_at, first.created_at);
        assert!(pool.updated_at >= first.updated_at);

        store.apply_pool("team", "gpu", &json!({})).await.unwrap();
        let names: Vec<_> = store
            .list_pools().await
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

        assert!(store.delete_pool("gpu").await.unwrap());
        assert!(!store.delete_pool("gpu").await.unwrap());
        assert_eq!(store.get_pool("gpu").await.unwrap(), None);
    }
}
