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
        .set_entrypoint(["/bin/sh", "-c", "cat /proc/version; ulimit -n; cat"])
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
    // Under either runtime the agent starts with the usual 1024 open files, not the limit
    // clrk raised for itself.
    for agent in ["native", "gvisor"] {
        let r = dev
            .invoke(&[("X-Clrk-TaskAgent", &format!("default/{agent}"))], "")
            .await;
        assert_eq!(
            r.text().lines().nth(1),
            Some("1024"),
            "{agent}: {}",
            r.text()
        );
    }

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

/// A busybox image that also holds the host's `perl` and the libraries it links, so an agent
/// can make raw system calls (`syscall` is built into perl; no module is needed).
fn syscall_image(dir: &Path) {
    let mut layer = LayerBuilder::new()
        .add_dir("bin", 0o755)
        .add_host_file("bin/busybox", "/bin/busybox")
        .unwrap()
        .add_dir("proc", 0o755)
        .add_dir("tmp", 0o1777)
        .add_dir("usr", 0o755)
        .add_dir("usr/bin", 0o755)
        .add_host_file("usr/bin/perl", "/usr/bin/perl")
        .unwrap();
    for applet in ["sh", "cat", "grep", "id", "sleep", "kill"] {
        layer = layer.add_symlink(&format!("bin/{applet}"), "busybox");
    }
    let mut dirs = std::collections::BTreeSet::new();
    for lib in linked_libraries("/usr/bin/perl") {
        let rel = lib.strip_prefix("/").unwrap();
        for parent in rel
            .ancestors()
            .skip(1)
            .filter(|p| !p.as_os_str().is_empty())
        {
            dirs.insert(parent.to_path_buf());
        }
        layer = layer
            .add_host_file(rel.to_str().unwrap(), &lib)
            .unwrap_or_else(|e| panic!("{}: {e}", lib.display()));
    }
    for dir in dirs.iter().filter(|d| !d.starts_with("usr")) {
        layer = layer.add_dir(dir.to_str().unwrap(), 0o755);
    }
    OciLayoutBuilder::new()
        .add_layer(layer)
        .write(dir, Some("v1"))
        .expect("write OCI layout");
}

/// The shared libraries (and loader) `binary` needs, as `ldd` prints them.
fn linked_libraries(binary: &str) -> Vec<std::path::PathBuf> {
    let out = std::process::Command::new("ldd")
        .arg(binary)
        .output()
        .expect("ldd");
    text(&out.stdout)
        .lines()
        .filter_map(|line| {
            let path = match line.split_once("=>") {
                Some((_, right)) => right.trim(),
                None => line.trim(),
            };
            let path = path.split_whitespace().next()?;
            path.starts_with('/').then(|| path.into())
        })
        .collect()
}

/// A TaskAgent running `script` with the image's busybox shell on pool `pool`.
fn script_agent(name: &str, image: &str, pool: &str, script: &str) -> String {
    let script = serde_json::to_string(script).unwrap();
    format!(
        "apiVersion: clrk.apoxy.dev/v1alpha1\nkind: TaskAgent\nmetadata:\n  name: {name}\nspec:\n  workerPoolRef: {pool}\n  timeout: 90s\n  template:\n    spec:\n      image: \"{image}\"\n      command: [\"/bin/sh\", \"-c\", {script}]\n"
    )
}

/// Prints `<name> <errno>` (or `<name> ok`) for system calls runc sandboxes must not reach.
const SYSCALLS: &str = r#"perl -e '
    sub try { my ($n, $nr, @a) = @_; my $r = syscall($nr, @a); print "$n ", ($r < 0 ? 0 + $! : "ok"), "\n" }
    my $params = "\0" x 120;
    try("io_uring_setup", 425, 1, $params);
    try("keyctl", 250, 0, -3, 0);
    my $attr = pack("LLQ", 1, 128, 0) . ("\0" x 112);
    try("perf_event_open", 298, $attr, 0, -1, -1, 0);
    try("unshare", 272, 0x10000000);
'"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_runc_agent_runs_unprivileged_under_a_seccomp_profile() {
    let dev = Dev::start();
    let layouts = tempfile::tempdir().unwrap();
    syscall_image(layouts.path());
    let image = format!("oci:{}:v1", layouts.path().display());
    dev.apply("apiVersion: clrk.apoxy.dev/v1alpha1\nkind: WorkerPool\nmetadata:\n  name: fast\nspec:\n  runtime: runc\n");
    let script = format!("echo uid $(id -u); grep CapEff /proc/self/status; {SYSCALLS}");
    dev.apply(&script_agent("probe", &image, "fast", &script));
    let r = dev
        .invoke(&[("X-Clrk-TaskAgent", "default/probe")], "")
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let out = r.text();
    let field = |name: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in {out}"))
            .trim()
            .to_string()
    };
    assert_ne!(field("uid"), "0", "runc agents are not host root: {out}");
    assert_eq!(
        field("CapEff:"),
        "0000000000000000",
        "no capabilities: {out}"
    );
    // EPERM from the profile, or ENOSYS where it says so.
    for call in ["io_uring_setup", "keyctl", "perf_event_open", "unshare"] {
        let errno = field(&format!("{call} "));
        assert!(
            errno == "1" || errno == "38",
            "{call} returned {errno}, not EPERM or ENOSYS: {out}"
        );
    }
}

/// Starts up to `n` sleeping processes, then prints how many the sandbox's pid namespace
/// holds. The forks run in a subshell, since a shell that cannot fork gives up; the count uses
/// only builtins, since nothing more can be started at the limit.
fn fork_script(n: u32) -> String {
    format!(
        "( i=0; while [ $i -lt {n} ]; do sleep 60 & i=$((i+1)); done ) 2>/dev/null; \
         set -- /proc/[0-9]*; echo processes $#; kill -9 -1 2>/dev/null; wait"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pids_limit_bounds_the_processes_of_runc_and_runsc_agents() {
    let dev = Dev::start();
    let layouts = tempfile::tempdir().unwrap();
    syscall_image(layouts.path());
    let image = format!("oci:{}:v1", layouts.path().display());
    dev.apply("apiVersion: clrk.apoxy.dev/v1alpha1\nkind: WorkerPool\nmetadata:\n  name: fast\nspec:\n  runtime: runc\n");
    dev.apply("apiVersion: clrk.apoxy.dev/v1alpha1\nkind: WorkerPool\nmetadata:\n  name: small\nspec:\n  pidsLimit: 32\n");
    dev.apply(&script_agent("bomb", &image, "fast", &fork_script(2000)));
    // gVisor's ptrace platform uses several host tasks per guest process: a smaller bomb keeps
    // the unlimited case (before the limit existed) from crowding the host.
    dev.apply(&script_agent(
        "small-bomb",
        &image,
        "small",
        &fork_script(200),
    ));

    let processes = |r: &HttpResponse| -> u32 {
        let out = r.text();
        out.lines()
            .find_map(|l| l.strip_prefix("processes "))
            .unwrap_or_else(|| panic!("no count in {out:?}"))
            .trim()
            .parse()
            .unwrap()
    };
    let r = dev
        .invoke(&[("X-Clrk-TaskAgent", "default/bomb")], "")
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let n = processes(&r);
    assert!(
        (400..=512).contains(&n),
        "runc: {n} processes, expected the default limit of 512 to stop the bomb"
    );
    let r = dev
        .invoke(&[("X-Clrk-TaskAgent", "default/small-bomb")], "")
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let n = processes(&r);
    assert!(
        (16..=32).contains(&n),
        "runsc: {n} processes, expected the pool's limit of 32 to stop the bomb"
    );
}

/// `spec.runtimeOptions` reach runsc's command line for the pool's sandboxes, warm and cold;
/// what the installed runsc lacks, what is not on the allowlist and options on a runc pool
/// are refused at apply, naming the field.
#[tokio::test(flavor = "multi_thread")]
async fn runtime_options_reach_runsc_and_what_it_cannot_take_is_refused_at_apply() {
    let dev = Dev::start();
    dev.apply(
        "apiVersion: clrk.apoxy.dev/v1alpha1\nkind: WorkerPool\nmetadata:\n  name: tuned\nspec:\n  runtimeOptions:\n    platform: ptrace\n    flags:\n      num-network-channels: 2\n      dcache: 1000\n",
    );
    dev.apply(
        "apiVersion: clrk.apoxy.dev/v1alpha1\nkind: TaskAgent\nmetadata:\n  name: tuned-cat\nspec:\n  workerPoolRef: tuned\n  warmPoolSize: 1\n  template:\n    spec:\n      image: \"host:\"\n      command: [\"/bin/cat\"]\n",
    );
    let runsc = dev.wait_for("the warm sandbox started with the pool's flags", || {
        dev.sandbox_processes()
            .into_iter()
            .find(|p| p.contains("--num-network-channels=2"))
    });
    assert!(runsc.contains("--platform=ptrace"), "{runsc}");
    assert!(runsc.contains("--dcache=1000"), "{runsc}");
    let r = dev
        .invoke(&[("X-Clrk-TaskAgent", "default/tuned-cat")], "tuned")
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("tuned"), "{}", r.text());

    let refused = |manifest: &str| {
        let out = dev.try_apply(manifest);
        assert!(!out.status.success(), "{manifest} was applied");
        text(&out.stderr)
    };
    let pool = |spec: &str| {
        format!(
            "apiVersion: clrk.apoxy.dev/v1alpha1\nkind: WorkerPool\nmetadata:\n  name: other\nspec:\n{spec}"
        )
    };
    let err = refused(&pool(
        "  runtimeOptions:\n    flags:\n      host-uds: all\n",
    ));
    assert!(
        err.contains("spec.runtimeOptions.flags.host-uds: not a flag a pool may set"),
        "{err}"
    );
    let err = refused(&pool(
        "  runtime: runc\n  runtimeOptions:\n    platform: ptrace\n",
    ));
    assert!(
        err.contains("spec.runtimeOptions: options are for runsc (gVisor); this pool runs runc"),
        "{err}"
    );
    let help = std::process::Command::new("runsc")
        .arg("flags")
        .output()
        .unwrap();
    let help =
        String::from_utf8_lossy(&help.stderr).to_string() + &String::from_utf8_lossy(&help.stdout);
    let platforms = help
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("-platform "))
        .nth(1)
        .unwrap_or_default()
        .to_string();
    if !platforms.contains("systrap") {
        let err = refused(&pool("  runtimeOptions:\n    platform: systrap\n"));
        assert!(
            err.contains(
                "spec.runtimeOptions.platform: platform systrap is not supported by runsc version"
            ),
            "{err}"
        );
    }
    if !help.contains("\n  -directfs") {
        let err = refused(&pool(
            "  runtimeOptions:\n    flags:\n      directfs: true\n",
        ));
        assert!(
            err.contains("spec.runtimeOptions.flags.directfs: runsc version"),
            "{err}"
        );
        assert!(err.contains("has no flag directfs"), "{err}");
    }
    let out = dev.clrk(&["pools", "list"]);
    assert!(
        !text(&out.stdout).contains("other"),
        "nothing refused was kept"
    );
}
