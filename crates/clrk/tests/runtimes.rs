//! `WorkerPool.spec.runtime: runc` runs the same agents with runc instead of gVisor, cold and
//! from a warm pool.

mod common;

use std::path::Path;

use clrk_image::testing::{LayerBuilder, OciLayoutBuilder};
use common::*;

/// A busybox image whose entrypoint prints the kernel it sees, then its input.
fn kernel_image(dir: &Path) {
    let layer = LayerBuilder::new()
        .add_dir("bin", 0o755)
        .add_host_file("bin/busybox", "/bin/busybox")
        .unwrap()
        .add_symlink("bin/sh", "busybox")
        .add_symlink("bin/cat", "busybox")
        .add_dir("proc", 0o755);
    OciLayoutBuilder::new()
        .add_layer(layer)
        .set_entrypoint(["/bin/sh", "-c", "cat /proc/version; cat"])
        .write(dir, Some("v1"))
        .expect("write OCI layout");
}

fn agent(name: &str, image: &str, extra: &str) -> String {
    format!(
        "apiVersion: clrk.apoxy.dev/v1alpha1\nkind: TaskAgent\nmetadata:\n  name: {name}\nspec:\n{extra}  template:\n    spec:\n      image: \"{image}\"\n"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_runc_pool_runs_agents_on_the_host_kernel_cold_and_warm() {
    let dev = Dev::start();
    let layouts = tempfile::tempdir().unwrap();
    kernel_image(layouts.path());
    let image = format!("oci:{}:v1", layouts.path().display());
    let pool_manifest = "apiVersion: clrk.apoxy.dev/v1alpha1\nkind: WorkerPool\nmetadata:\n  name: fast\nspec:\n  runtime: runc\n";
    dev.apply(pool_manifest);
    dev.apply(&agent("gvisor", &image, ""));
    dev.apply(&agent("native", &image, "  workerPoolRef: fast\n"));
    dev.apply(&agent(
        "native-warm",
        &image,
        "  workerPoolRef: fast\n  warmPoolSize: 1\n",
    ));

    let host_kernel = std::fs::read_to_string("/proc/version").unwrap();
    let first_line = |r: &HttpResponse| r.text().lines().next().unwrap_or_default().to_string();
    let r = dev
        .invoke(&[("X-Clrk-TaskAgent", "default/native")], "")
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        first_line(&r),
        host_kernel.trim(),
        "runc shares the host kernel"
    );
    let r = dev
        .invoke(&[("X-Clrk-TaskAgent", "default/gvisor")], "")
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_ne!(
        first_line(&r),
        host_kernel.trim(),
        "runsc is gVisor's kernel"
    );

    eventually("a warm runc sandbox", || async {
        let a = dev.api_get("/v1/agents/default/native-warm").await.json();
        (a["status"]["warm"] == 1).then_some(())
    })
    .await;
    let r = dev
        .invoke(&[("X-Clrk-TaskAgent", "default/native-warm")], "in")
        .await;
    assert_eq!(first_line(&r), host_kernel.trim());
    let runs = dev.invocations("native-warm").await;
    assert_eq!(runs[0]["start"], "warm", "{runs:?}");

    // Once the pool is deleted, its agents are not ready (and no runtime is remembered).
    let file = dev.clrk_dir().join("pool.yaml");
    std::fs::write(&file, pool_manifest).unwrap();
    let out = dev.clrk(&["delete", "-f", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let r = dev
        .invoke(&[("X-Clrk-TaskAgent", "default/native")], "")
        .await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(
        r.text().contains("worker pool \"fast\" does not exist"),
        "{}",
        r.text()
    );
}
