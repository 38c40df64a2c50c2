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

#[tokio::test(flavor = "multi_thread")]
async fn registry_login_checks_and_stores_what_pulls_then_use() {
    let registry = registry::Registry::start_with_auth();
    let docker = tempfile::tempdir().unwrap();
    let docker_dir = docker.path().to_str().unwrap();
    // The insecure registry comes from the environment here, as a service file would set it.
    let dev = Dev::start_with_env(
        &[],
        &[
            ("DOCKER_CONFIG", docker_dir),
            (
                "CLRK_INSECURE_REGISTRIES",
                &format!("example.invalid,{}", registry.host),
            ),
        ],
    );
    let build = tempfile::tempdir().unwrap();
    image(&build.path().join("v1"), "private", 0);
    registry.push(&build.path().join("v1"), "latest", "private", "1");
    let manifest = format!(
        "apiVersion: clrk.apoxy.dev/v1alpha1\nkind: TaskAgent\nmetadata:\n  name: private\nspec:\n  template:\n    spec:\n      image: {}/private:1\n",
        registry.host
    );

    // Without credentials the pull is refused, and the error says how to log in.
    let out = dev.try_apply(&manifest);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("clrk registry login"), "{err}");

    // Wrong credentials are refused by the registry and nothing is stored.
    let config = docker.path().join("config.json");
    let login = |password: &str| {
        dev.clrk_with_stdin(
            &[
                "registry",
                "login",
                &registry.host,
                "-u",
                registry::USER,
                "--password-stdin",
                "--insecure",
            ],
            Some(format!("{password}\n").as_bytes()),
        )
    };
    let out = login("wrong");
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains(&registry.host) && err.contains("refused"),
        "{err}"
    );
    assert!(!config.exists(), "refused credentials were stored");

    let out = login(registry::PASSWORD);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains(config.to_str().unwrap()));
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&config).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the credentials file is private");

    // The server reads the stored credentials at the next pull.
    assert_eq!(dev.apply(&manifest).trim(), "taskagent/private created");
    let r = dev
        .invoke(&[("X-Clrk-TaskAgent", "default/private")], "")
        .await;
    assert_eq!(r.text(), "private\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn apply_shows_pull_progress_on_a_terminal_and_a_summary_off_it() {
    let registry = registry::Registry::start();
    // A registry on loopback is plain HTTP without a flag, as docker has it.
    assert!(registry.host.starts_with("127."), "{}", registry.host);
    let dev = Dev::start();
    let build = tempfile::tempdir().unwrap();
    image(&build.path().join("v1"), "v1", 0);
    registry.push(&build.path().join("v1"), "latest", "shown", "1");
    image(&build.path().join("v2"), "v2", 0);
    registry.push(&build.path().join("v2"), "latest", "shown", "2");
    let manifest = |tag: &str| {
        format!(
            "apiVersion: clrk.apoxy.dev/v1alpha1\nkind: TaskAgent\nmetadata:\n  name: shown\nspec:\n  template:\n    spec:\n      image: {}/shown:{tag}\n",
            registry.host
        )
    };

    // Off a terminal: stdout stays the outcome line, stderr gets one summary per image.
    let out = dev.try_apply(&manifest("1"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "taskagent/shown created");
    let summary = format!("pulled {}/shown:1: 1 layer, ", registry.host);
    assert!(
        text(&out.stderr).lines().any(|l| l.starts_with(&summary)),
        "{}",
        text(&out.stderr)
    );

    // On a terminal (script(1) gives the CLI a pseudo-terminal): bars, then the summary.
    let file = dev.clrk_dir().join("shown-2.yaml");
    std::fs::write(&file, manifest("2")).unwrap();
    let command = format!("{} apply -f {}", clrk_bin(), file.display());
    let out = std::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env("CLRK_DIR", dev.clrk_dir())
        .output()
        .expect("script (bsdutils)");
    let screen = text(&out.stdout);
    assert!(out.status.success(), "{screen}");
    assert!(
        screen.contains(&format!("{}/shown:2 ", registry.host)) && screen.contains("cached [="),
        "no progress bar on the terminal:\n{screen}"
    );
    assert!(
        screen.contains(&format!("pulled {}/shown:2: 1 layer", registry.host))
            && screen.contains("(1 cached)")
            && screen.contains("taskagent/shown configured (revision shown-00002)"),
        "{screen}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_agent_answers_503_while_its_image_is_pulled() {
    // A "registry" that accepts connections and never answers holds the pull open.
    let stalled = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let host = stalled.local_addr().unwrap().to_string();
    let dev = Dev::start_with(&["--insecure-registry", &host]);
    let file = dev.clrk_dir().join("slow.yaml");
    std::fs::write(
        &file,
        format!(
            "apiVersion: clrk.apoxy.dev/v1alpha1\nkind: TaskAgent\nmetadata:\n  name: slow\nspec:\n  template:\n    spec:\n      image: {host}/slow:1\n"
        ),
    )
    .unwrap();
    let apply = std::process::Command::new(clrk_bin())
        .args(["apply", "-f", file.to_str().unwrap()])
        .env("CLRK_DIR", dev.clrk_dir())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();

    let r = eventually("503 while the image is pulled", || async {
        let r = dev
            .invoke(&[("X-Clrk-TaskAgent", "default/slow")], "")
            .await;
        (r.status == 503).then_some(r)
    })
    .await;
    assert!(
        r.text().contains(&format!("{host}/slow:1 is being pulled")),
        "{}",
        r.text()
    );

    // The registry goes away: the apply fails, and the agent is unknown again.
    drop(stalled);
    let out = apply.wait_with_output().unwrap();
    assert!(!out.status.success(), "{}", text(&out.stdout));
    assert!(
        text(&out.stderr).contains("spec.template.spec.image"),
        "{}",
        text(&out.stderr)
    );
    let r = dev
        .invoke(&[("X-Clrk-TaskAgent", "default/slow")], "")
        .await;
    assert_eq!(r.status, 404, "{}", r.text());
}
