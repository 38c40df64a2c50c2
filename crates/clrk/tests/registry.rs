//! The guide's "build, push, write the manifest" flow against a real registry on loopback:
//! pull at apply, digest pinning, a re-pushed tag makes a revision while the old one finishes
//! its request, and the cache outlives the server and the registry.

mod common;
#[allow(dead_code)]
#[path = "../../clrk-image/tests/common/registry.rs"]
mod registry;

use std::path::Path;

use clrk_image::testing::{LayerBuilder, OciLayoutBuilder};
use common::*;

/// A busybox image that sleeps `delay` seconds, then prints `word`.
fn image(dir: &Path, word: &str, delay: u32) {
    let layer = LayerBuilder::new()
        .add_dir("bin", 0o755)
        .add_host_file("bin/busybox", "/bin/busybox")
        .unwrap()
        .add_symlink("bin/sh", "busybox")
        .add_symlink("bin/sleep", "busybox")
        .add_symlink("bin/echo", "busybox");
    let script = format!("sleep {delay}; echo {word}");
    OciLayoutBuilder::new()
        .add_layer(layer)
        .set_entrypoint(["/bin/sh", "-c", script.as_str()])
        .write(dir, Some("latest"))
        .expect("write OCI layout");
}

#[tokio::test(flavor = "multi_thread")]
async fn pulled_image_serves_and_a_repushed_tag_makes_a_new_revision() {
    let registry = registry::Registry::start();
    let dev = Dev::start_with(&["--insecure-registry", &registry.host]);
    let build = tempfile::tempdir().unwrap();
    image(&build.path().join("v1"), "v1", 3);
    registry.push(&build.path().join("v1"), "latest", "agent", "latest");

    let reference = format!("{}/agent:latest", registry.host);
    let manifest = format!(
        "apiVersion: clrk.apoxy.dev/v1alpha1\nkind: TaskAgent\nmetadata:\n  name: pulled\nspec:\n  template:\n    spec:\n      image: {reference}\n"
    );
    assert_eq!(dev.apply(&manifest).trim(), "taskagent/pulled created");

    // A request in flight on revision 1 …
    let ingress = dev.ingress.clone();
    let old = tokio::spawn(async move {
        request(
            "POST",
            &format!("{ingress}/"),
            &[("X-Clrk-TaskAgent", "default/pulled")],
            bytes::Bytes::new(),
        )
        .await
    });
    eventually("the first execution to run", || async {
        (dev.invocations("pulled").await.len() == 1).then_some(())
    })
    .await;

    // … while the tag moves: re-applying the unchanged manifest makes revision 2.
    image(&build.path().join("v2"), "v2", 0);
    registry.push(&build.path().join("v2"), "latest", "agent", "latest");
    assert_eq!(
        dev.apply(&manifest).trim(),
        "taskagent/pulled configured (revision pulled-00002)"
    );
    let r = dev
        .invoke(&[("X-Clrk-TaskAgent", "default/pulled")], "")
        .await;
    assert_eq!(r.text(), "v2\n");
    let r = old.await.unwrap();
    assert_eq!(
        (r.status, r.text()),
        (200, "v1\n".to_string()),
        "the old revision finishes its request"
    );

    let runs = dev.invocations("pulled").await;
    let revisions: Vec<&str> = runs
        .iter()
        .map(|r| r["revision"].as_str().unwrap())
        .collect();
    assert!(
        revisions.contains(&"pulled-00001") && revisions.contains(&"pulled-00002"),
        "{revisions:?}"
    );
    let agent = dev.api_get("/v1/agents/default/pulled").await.json();
    let digests: Vec<&str> = agent["revisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["imageDigest"].as_str().unwrap())
        .collect();
    assert!(
        digests.iter().all(|d| d.starts_with("sha256:")) && digests[0] != digests[1],
        "{digests:?}"
    );

    // The cache outlives both the server and the registry.
    drop(registry);
    let mut dev = dev;
    dev.stop();
    dev.spawn(&[]);
    let r = dev
        .invoke(&[("X-Clrk-TaskAgent", "default/pulled")], "")
        .await;
    assert_eq!(r.text(), "v2\n", "{}", dev.server_log());
}

#[tokio::test(flavor = "multi_thread")]
async fn registry_faults_fail_apply_with_a_clear_error() {
    let registry = registry::Registry::start();
    let dev = Dev::start_with(&["--insecure-registry", &registry.host]);
    let cases = [
        (format!("{}/nothing:here", registry.host), "nothing"),
        ("127.0.0.1:1/agent:latest".to_string(), "127.0.0.1:1"),
    ];
    for (reference, expect) in cases {
        let manifest = format!(
            "apiVersion: clrk.apoxy.dev/v1alpha1\nkind: TaskAgent\nmetadata:\n  name: broken\nspec:\n  template:\n    spec:\n      image: {reference}\n"
        );
        let out = dev.try_apply(&manifest);
        assert!(!out.status.success(), "{reference} accepted");
        let err = text(&out.stderr);
        assert!(
            err.contains("spec.template.spec.image") && err.contains(expect),
            "{reference}: {err}"
        );
    }
}
