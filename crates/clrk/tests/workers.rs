//! The registry of workers as a user sees it through the CLI, against a real `clrk dev`:
//! its embedded worker is listed Ready and heartbeating, drains on request, counts in
//! `clrk pools list`, and unknown names are refused by name.

mod common;

use chrono::{DateTime, Utc};
use common::*;

/// The name `clrk dev` registers its worker under: the host's name.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .expect("read the host name")
        .trim()
        .to_owned()
}

/// `clrk workers list -o json`, parsed.
fn workers_json(dev: &Dev) -> serde_json::Value {
    let out = dev.clrk(&["workers", "list", "-o", "json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("workers list -o json is JSON")
}

fn heartbeat_of(worker: &serde_json::Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(worker["heartbeatAt"].as_str().expect("heartbeatAt"))
        .expect("heartbeatAt is RFC 3339")
        .to_utc()
}

/// The cells of the `pools list` row of `pool`.
fn pool_row(dev: &Dev, pool: &str) -> Vec<String> {
    let out = dev.clrk(&["pools", "list"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout)
        .lines()
        .find(|l| l.split_whitespace().next() == Some(pool))
        .map(|l| l.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default()
}

#[test]
fn the_dev_worker_is_listed_ready_and_heartbeating() {
    let dev = Dev::start();
    let name = host_name();

    let (table, row) = dev.wait_for("the dev worker in `workers list`", || {
        let out = dev.clrk(&["workers", "list"]);
        let table = text(&out.stdout);
        let row: Vec<String> = table
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name.as_str()))?
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        Some((table, row))
    });
    assert!(
        table.starts_with("NAME") && table.contains("LAST-HEARTBEAT"),
        "{table}"
    );
    assert_eq!(row[1..6], ["*", "in-process", "Ready", "0", "0"], "{table}");
    // LAST-HEARTBEAT reads "Ns ago" with N a few seconds at most.
    assert_eq!(row.get(7).map(String::as_str), Some("ago"), "{table}");
    let seconds: u64 = row[6]
        .strip_suffix('s')
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("heartbeat age in seconds: {table}"));
    assert!(seconds < 30, "{table}");

    // The JSON answer parses and the heartbeat moves on.
    let first = workers_json(&dev);
    let items = first["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{first}");
    assert_eq!(items[0]["name"], name.as_str());
    assert_eq!(items[0]["pool"], "*");
    assert_eq!(items[0]["state"], "Ready");
    assert!(
        items[0]["capacity"].as_u64().is_some_and(|c| c >= 4),
        "{first}"
    );
    let beat = heartbeat_of(&items[0]);
    assert!((Utc::now() - beat).num_seconds() < 30, "{first}");
    dev.wait_for("a later heartbeat", || {
        let later = workers_json(&dev);
        (heartbeat_of(&later["items"][0]) > beat).then_some(())
    });

    // The embedded worker serves every pool.
    assert_eq!(
        pool_row(&dev, "default").last().map(String::as_str),
        Some("1")
    );
}

#[test]
fn draining_the_dev_worker_shows_in_the_lists_and_unknown_names_are_refused() {
    let dev = Dev::start();
    let name = host_name();
    dev.wait_for("the dev worker registered", || {
        (workers_json(&dev)["items"][0]["name"] == name.as_str()).then_some(())
    });

    let out = dev.clrk(&["workers", "drain", &name]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), format!("worker/{name} Draining\n"));
    let listed = workers_json(&dev);
    assert_eq!(listed["items"][0]["state"], "Draining", "{listed}");
    // Heartbeats go on, and do not undo the drain.
    let beat = heartbeat_of(&listed["items"][0]);
    dev.wait_for("a heartbeat after the drain", || {
        let later = workers_json(&dev);
        (heartbeat_of(&later["items"][0]) > beat).then_some(later)
    });
    assert_eq!(workers_json(&dev)["items"][0]["state"], "Draining");
    let table = text(&dev.clrk(&["workers", "list"]).stdout);
    assert!(table.contains(" Draining "), "{table}");
    assert_eq!(
        pool_row(&dev, "default").last().map(String::as_str),
        Some("0"),
        "a draining worker is not counted"
    );

    let out = dev.clrk(&["workers", "drain", "no-such-worker"]);
    assert!(!out.status.success(), "an unknown worker is refused");
    let err = text(&out.stderr);
    assert!(err.contains("worker no-such-worker not found"), "{err}");
}
