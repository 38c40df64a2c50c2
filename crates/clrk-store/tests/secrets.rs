//! Secrets against a real database file: set, replace, list without values, delete, reopen.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;

use clrk_store::Store;
use common::temp_store;

fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
        .collect()
}

#[test]
fn secrets_are_replaced_whole_listed_without_values_and_survive_reopen() {
    let (dir, store) = temp_store();
    assert!(
        store
            .set_secret("default", "llm", &data(&[("token", "t1"), ("old", "x")]))
            .unwrap()
    );
    assert!(
        !store
            .set_secret("default", "llm", &data(&[("token", "t2"), ("org", "o")]))
            .unwrap()
    );
    store
        .set_secret("team", "other", &data(&[("k", "v")]))
        .unwrap();

    let listed = store.list_secrets(Some("default")).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        listed[0].keys,
        ["org", "token"],
        "replaced whole: `old` is gone"
    );
    assert_eq!(store.list_secrets(None).unwrap().len(), 2);
    assert_eq!(store.secret_value("default", "llm", "old").unwrap(), None);
    drop(store);

    let store = Store::open(&dir.path().join("clrk.db")).unwrap();
    assert_eq!(
        store.secret_value("default", "llm", "token").unwrap(),
        Some(b"t2".to_vec())
    );
    for file in ["clrk.db", "clrk.db-wal"] {
        let path = dir.path().join(file);
        if path.exists() {
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "{file} is readable by others: {mode:o}");
        }
    }
    assert!(store.delete_secret("default", "llm").unwrap());
    assert!(!store.delete_secret("default", "llm").unwrap());
    assert_eq!(store.secret_value("default", "llm", "token").unwrap(), None);
}
