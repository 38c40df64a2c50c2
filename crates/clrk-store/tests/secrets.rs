//! Secrets against a real database of each backend: set, replace, list without values, delete, reopen.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;

fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
        .collect()
}

store_tests! {
    async fn secrets_are_replaced_whole_listed_without_values_and_survive_reopen(backend) {
        let store = backend.open().await;
        assert!(
            store
                .set_secret("default", "llm", &data(&[("token", "t1"), ("old", "x")])).await
                .unwrap()
        );
        assert!(
            !store
                .set_secret("default", "llm", &data(&[("token", "t2"), ("org", "o")])).await
                .unwrap()
        );
        store
            .set_secret("team", "other", &data(&[("k", "v")])).await
            .unwrap();

        let listed = store.list_secrets(Some("default")).await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(
            listed[0].keys,
            ["org", "token"],
            "replaced whole: `old` is gone"
        );
        assert_eq!(store.list_secrets(None).await.unwrap().len(), 2);
        assert_eq!(store.secret_value("default", "llm", "old").await.unwrap(), None);
        drop(store);

        let store = backend.open().await;
        assert_eq!(
            store.secret_value("default", "llm", "token").await.unwrap(),
            Some(b"t2".to_vec())
        );
        if let Some(db) = backend.sqlite_path() {
            for path in [db.clone(), db.with_extension("db-wal")] {
                if path.exists() {
                    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
                    assert_eq!(mode & 0o077, 0, "{} is readable by others: {mode:o}", path.display());
                }
            }
        }
        assert!(store.delete_secret("default", "llm").await.unwrap());
        assert!(!store.delete_secret("default", "llm").await.unwrap());
        assert_eq!(store.secret_value("default", "llm", "token").await.unwrap(), None);
    }
}
