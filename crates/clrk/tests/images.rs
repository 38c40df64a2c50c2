//! Agents from OCI image layouts (`oci:DIR:TAG`): ENTRYPOINT without CMD, image ENV not
//! passed, WorkingDir honoured, whiteouts applied, and a moved tag makes a new revision.

mod common;

use std::path::Path;

use clrk_image::testing::{LayerBuilder, OciLayoutBuilder};
use common::*;

const APPLETS: [&str; 5] = ["sh", "cat", "env", "grep", "echo"];

/// A busybox image whose entrypoint reports what the agent sees, then echoes its input.
fn busybox_image(dir: &Path, tag: &str, greeting: &str) {
    let mut base = LayerBuilder::new()
        .add_dir("bin", 0o755)
        .add_host_file("bin/busybox", "/bin/busybox")
        .unwrap()
        .add_dir("etc", 0o755)
        .add_file("etc/removed", "old", 0o644)
        .add_dir("work", 0o755);
    for applet in APPLETS {
        base = base.add_symlink(&format!("bin/{applet}"), "busybox");
    }
    let top = LayerBuilder::new().whiteout("etc/removed");
    let script = format!(
        "echo {greeting}; pwd; echo args:\"$0 $*\"; env | grep -c IMAGE_ONLY; \
         [ -e /etc/removed ] && echo removed:present || echo removed:gone; cat"
    );
    OciLayoutBuilder::new()
        .add_layer(base)
        .add_layer(top)
        .set_entrypoint(["/bin/sh", "-c", script.as_str(), "agent"])
        .set_cmd(["--cmd-is-never-used"])
        .set_env(["IMAGE_ONLY=1", "PATH=/bin"])
        .set_working_dir("/work")
        .write(dir, Some(tag))
        .expect("write OCI layout");
}

fn manifest(image: &str) -> String {
    format!(
        "apiVersion: clrk.apoxy.dev/v1alpha1\nkind: TaskAgent\nmetadata:\n  name: boxed\nspec:\n  template:\n    spec:\n      image: \"{image}\"\n"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn oci_layout_image_runs_its_entrypoint_and_a_moved_tag_makes_a_revision() {
    let dev = Dev::start();
    let layouts = tempfile::tempdir().unwrap();
    let layout = layouts.path().join("busybox");
    busybox_image(&layout, "v1", "hello-v1");

    // A relative oci: path is relative to where clrk runs.
    let file = dev.clrk_dir().join("boxed.yaml");
    std::fs::write(&file, manifest("oci:busybox:v1")).unwrap();
    let out = dev.clrk_in(
        Some(layouts.path()),
        &["apply", "-f", file.to_str().unwrap()],
        None,
    );
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out.stderr),
        dev.server_log()
    );
    assert_eq!(text(&out.stdout).trim(), "taskagent/boxed created");

    let r = dev
        .invoke(
            &[
                ("X-Clrk-TaskAgent", "default/boxed"),
                ("X-Clrk-Execution-ID", "box-1"),
            ],
            "",
        )
        .await;
    assert_eq!(r.status, 200, "{}\n{}", r.text(), dev.server_log());
    let out = r.text();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "hello-v1");
    assert_eq!(lines[1], "/work", "WorkingDir honoured");
    assert_eq!(lines[2], "args:agent ", "CMD is never appended");
    assert_eq!(lines[3], "0", "image ENV is not passed");
    assert_eq!(lines[4], "removed:gone", "the whiteout removed the file");
    let envelope: serde_json::Value = serde_json::from_str(lines[5]).unwrap();
    assert_eq!(envelope["id"], "box-1");

    // Re-applying the same manifest: unchanged. Re-pushing the tag: a new revision.
    let out = dev.clrk_in(
        Some(layouts.path()),
        &["apply", "-f", file.to_str().unwrap()],
        None,
    );
    assert_eq!(text(&out.stdout).trim(), "taskagent/boxed unchanged");
    busybox_image(&layout, "v1", "hello-v2");
    let out = dev.clrk_in(
        Some(layouts.path()),
        &["apply", "-f", file.to_str().unwrap()],
        None,
    );
    assert_eq!(
        text(&out.stdout).trim(),
        "taskagent/boxed configured (revision boxed-00002)",
        "{}",
        text(&out.stderr)
    );
    let r = dev
        .invoke(&[("X-Clrk-TaskAgent", "default/boxed")], "")
        .await;
    assert!(r.text().starts_with("hello-v2\n"), "{}", r.text());

    let out = dev.clrk(&["agents", "get", "boxed", "-o", "json"]);
    let agent: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let revisions = agent["status"]["revisions"].as_array().unwrap();
    assert_eq!(revisions.len(), 2);
    assert!(
        revisions[1]["imageDigest"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    assert_ne!(revisions[0]["imageDigest"], revisions[1]["imageDigest"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn command_overrides_the_entrypoint_and_bad_images_fail_at_apply() {
    let dev = Dev::start();
    let layouts = tempfile::tempdir().unwrap();
    let layout = layouts.path().join("busybox");
    busybox_image(&layout, "v1", "unused");
    let image = format!("oci:{}:v1", layout.display());
    let with_command = manifest(&image) + "      command: [\"/bin/echo\", \"from-command\"]\n";
    dev.apply(&with_command);
    let r = dev
        .invoke(&[("X-Clrk-TaskAgent", "default/boxed")], "")
        .await;
    assert_eq!(r.text(), "from-command\n");

    for (image, expect) in [
        (format!("oci:{}:nope", layout.display()), "v1"),
        (
            format!("oci:{}/missing", layouts.path().display()),
            "missing",
        ),
        (
            "registry.example/agent:1".to_string(),
            "registry.example/agent:1",
        ),
    ] {
        let out = dev.try_apply(&manifest(&image).replace("boxed", "broken"));
        assert!(!out.status.success(), "{image} accepted");
        let err = text(&out.stderr);
        assert!(
            err.contains("spec.template.spec.image") && err.contains(expect),
            "{image}: {err}"
        );
    }
    let r = dev
        .invoke(&[("X-Clrk-TaskAgent", "default/broken")], "")
        .await;
    assert_eq!(r.status, 404);
}

/// Tars the OCI layout `layout` into `file`, as `skopeo copy … oci-archive:` would.
fn oci_archive(layout: &Path, file: &Path) {
    let status = std::process::Command::new("tar")
        .arg("-C")
        .arg(layout)
        .arg("-cf")
        .arg(file)
        .arg(".")
        .status()
        .expect("tar");
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread")]
async fn relative_archive_paths_are_relative_to_where_clrk_runs_like_oci_dirs() {
    let dev = Dev::start();
    let build = tempfile::tempdir().unwrap();
    busybox_image(&build.path().join("layout"), "v1", "from-archive");
    oci_archive(
        &build.path().join("layout"),
        &build.path().join("agent-oci.tar"),
    );
    // Applied from the directory holding the archive, as a user does after `skopeo copy`.
    let file = build.path().join("agent.yaml");
    std::fs::write(&file, manifest("oci-archive:agent-oci.tar:v1")).unwrap();
    let out = dev.clrk_in(Some(build.path()), &["apply", "-f", "agent.yaml"], None);
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out.stderr),
        dev.server_log()
    );
    let r = dev
        .invoke(&[("X-Clrk-TaskAgent", "default/boxed")], "")
        .await;
    assert!(r.text().starts_with("from-archive\n"), "{}", r.text());
    // What was stored names the file wherever the server runs.
    let out = dev.clrk(&["agents", "get", "boxed", "-o", "json"]);
    let agent: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let image = agent["spec"]["template"]["spec"]["image"].as_str().unwrap();
    assert_eq!(
        image,
        format!(
            "oci-archive:{}:v1",
            build.path().join("agent-oci.tar").display()
        )
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn imported_archive_runs_by_name_and_images_list_and_prune_show_it() {
    let dev = Dev::start();
    let build = tempfile::tempdir().unwrap();
    busybox_image(&build.path().join("layout"), "v1", "imported");
    let archive = build.path().join("agent.tar");
    oci_archive(&build.path().join("layout"), &archive);

    // An archive that is not an image is refused, naming the file, and nothing is listed.
    let garbage = build.path().join("garbage.tar");
    std::fs::write(&garbage, b"this is not a tar file").unwrap();
    let out = dev.clrk(&["images", "import", garbage.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("garbage.tar"), "{err}");
    let out = dev.clrk(&["images", "list", "-o", "json"]);
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed["items"], serde_json::json!([]), "{listed}");

    // An OCI archive names no image: --name is required, and then the name resolves.
    let out = dev.clrk(&["images", "import", archive.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("--name"),
        "{}",
        text(&out.stderr)
    );
    let out = dev.clrk(&[
        "images",
        "import",
        archive.to_str().unwrap(),
        "--name",
        "team/agent:1.0",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with("imported docker.io/team/agent:1.0 (sha256:"),
        "{}",
        text(&out.stdout)
    );

    assert_eq!(
        dev.apply(&manifest("team/agent:1.0")).trim(),
        "taskagent/boxed created"
    );
    let r = dev
        .invoke(&[("X-Clrk-TaskAgent", "default/boxed")], "")
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().starts_with("imported\n/work\n"), "{}", r.text());

    let out = dev.clrk(&["images", "list"]);
    let table = text(&out.stdout);
    let row = table
        .lines()
        .find(|l| l.starts_with("docker.io/team/agent:1.0"))
        .unwrap_or_else(|| panic!("imported image not listed:\n{table}"));
    assert!(
        row.contains(" yes ") && row.contains("default/boxed-00001"),
        "{table}"
    );

    // Prune keeps what revisions use and what was imported; an image only a deleted agent
    // used goes.
    let layout_agent = build.path().join("other");
    busybox_image(&layout_agent, "v1", "other");
    let other = format!("oci:{}:v1", layout_agent.display());
    dev.apply(&manifest(&other).replace("name: boxed", "name: other"));
    let out = dev.clrk(&["agents", "delete", "other"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = dev.clrk(&["images", "prune"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with("pruned 1 image: "),
        "{}",
        text(&out.stdout)
    );
    let out = dev.clrk(&["images", "list", "-o", "json"]);
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let references: Vec<&str> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["reference"].as_str().unwrap())
        .collect();
    assert_eq!(references, ["docker.io/team/agent:1.0"], "{listed}");
    let r = dev
        .invoke(&[("X-Clrk-TaskAgent", "default/boxed")], "")
        .await;
    assert_eq!(r.status, 200, "the imported image still runs: {}", r.text());
}

/// A busybox image running as `user`, whose entrypoint prints the ids it runs with.
fn user_image(dir: &Path, user: &str) {
    let layer = LayerBuilder::new()
        .add_dir("bin", 0o755)
        .add_host_file("bin/busybox", "/bin/busybox")
        .unwrap()
        .add_symlink("bin/sh", "busybox")
        .add_symlink("bin/id", "busybox")
        .add_dir("etc", 0o755)
        .add_file(
            "etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\nagent:x:1000:1001::/:/bin/sh\n",
            0o644,
        )
        .add_file("etc/group", "root:x:0:\nstaff:x:50:agent\n", 0o644);
    OciLayoutBuilder::new()
        .add_layer(layer)
        .set_entrypoint(["/bin/sh", "-c", "echo $(id -u):$(id -g)"])
        .set_user(user)
        .write(dir, Some("v1"))
        .expect("write OCI layout");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_image_user_is_honoured_and_an_unknown_one_fails_apply() {
    let dev = Dev::start();
    let layouts = tempfile::tempdir().unwrap();
    for (user, expected) in [
        ("agent", "1000:1001"),
        ("agent:staff", "1000:50"),
        ("4242:7", "4242:7"),
    ] {
        let layout = layouts.path().join(user.replace(':', "-"));
        user_image(&layout, user);
        let image = format!("oci:{}:v1", layout.display());
        dev.apply(&manifest(&image));
        let r = dev
            .invoke(&[("X-Clrk-TaskAgent", "default/boxed")], "")
            .await;
        assert_eq!(
            (r.status, r.text()),
            (200, format!("{expected}\n")),
            "User {user}"
        );
    }

    let layout = layouts.path().join("nobody");
    user_image(&layout, "nobody");
    let out = dev.try_apply(&manifest(&format!("oci:{}:v1", layout.display())));
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("spec.template.spec.image")
            && err.contains("\"nobody\"")
            && err.contains("/etc/passwd"),
        "{err}"
    );
}
