//! `clrk secret`: values go in from literals, files and the environment, and never come out:
//! not through the API, not in the server's log, not inside a sandbox.

mod common;

use common::*;

const VALUE: &str = "sk-clrk-test-5f3c9a";

#[tokio::test(flavor = "multi_thread")]
async fn secrets_are_set_listed_and_deleted_without_their_values_leaking() {
    let dev = Dev::start_with_env(&[], &[("LLM_TOKEN", VALUE)]);
    let file = dev.clrk_dir().join("org.txt");
    std::fs::write(&file, "acme\n").unwrap();
    let org = format!("org={}", file.display());
    let set = |extra: &[&str]| {
        let mut args = vec!["secret", "set", "llm", "--from-env", "token=LLM_TOKEN"];
        args.extend_from_slice(extra);
        dev.clrk(&args)
    };
    let out = set(&["--from-file", &org, "--from-literal", "user=ci-bot"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).trim(),
        "secret/llm created (keys: org, token, user)"
    );
    let out = set(&[]);
    assert_eq!(
        text(&out.stdout).trim(),
        "secret/llm configured (keys: token)"
    );

    let out = dev.clrk(&["secret", "list"]);
    let table = text(&out.stdout);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("default ") && l.contains(" llm ") && l.contains(" token ")),
        "{table}"
    );
    let listed = dev.api_get("/v1/secrets").await;
    let encoded = base64_of(VALUE);
    for shown in [table.as_str(), &listed.text(), &dev.server_log()] {
        assert!(
            !shown.contains(VALUE) && !shown.contains(&encoded),
            "{shown}"
        );
    }

    // Not in a sandbox either: not in its environment, and clrk's data dir is masked.
    let data_dir = dev.data_dir();
    let script = format!(
        "env | grep -c {VALUE}; ls -A {d} | wc -l; grep -rl {VALUE} {d} 2>/dev/null | wc -l",
        d = data_dir.display()
    );
    dev.apply(&sh_agent("snoop", &script, ""));
    let r = dev
        .invoke(&[("X-Clrk-TaskAgent", "default/snoop")], "")
        .await;
    let body = r.text();
    let counts: Vec<&str> = body.lines().map(str::trim).collect();
    assert_eq!(counts, ["0", "0", "0"], "{body}");

    // Bad input says what to fix.
    let out = dev.clrk(&["secret", "set", "x", "--from-env", "k=NOT_SET_ANYWHERE"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("NOT_SET_ANYWHERE is not set"),
        "{}",
        text(&out.stderr)
    );
    let out = dev.clrk(&["secret", "set", "x", "--from-literal", "bad key=v"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("\"bad key\""),
        "{}",
        text(&out.stderr)
    );
    let out = dev.clrk(&["secret", "set", "x"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("--from-literal"),
        "{}",
        text(&out.stderr)
    );

    let out = dev.clrk(&["secret", "delete", "llm"]);
    assert_eq!(text(&out.stdout).trim(), "secret/llm deleted");
    let out = dev.clrk(&["secret", "delete", "llm"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("secret default/llm not found"),
        "{}",
        text(&out.stderr)
    );
}

fn base64_of(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// A file in another user's home dir, removed (with the dirs the test made) when dropped.
struct OtherUsersClrkDir(std::path::PathBuf);

impl OtherUsersClrkDir {
    /// `~/.clrk/dev.json` holding `token`, for the first account other than root whose home
    /// dir (under /home or /var, not a system dir) exists and has no `.clrk` yet.
    fn create(token: &str) -> OtherUsersClrkDir {
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
        let home = passwd
            .lines()
            .filter_map(|l| {
                let fields: Vec<&str> = l.split(':').collect();
                (fields.len() > 5 && fields[2] != "0").then(|| std::path::PathBuf::from(fields[5]))
            })
            .find(|home| {
                (home.starts_with("/home") || home.starts_with("/var"))
                    && home.is_dir()
                    && !home.join(".clrk").exists()
            })
            .expect("an account with a home dir");
        let dir = home.join(".clrk");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("dev.json"), format!("{{\"token\":\"{token}\"}}")).unwrap();
        OtherUsersClrkDir(dir)
    }
}

impl Drop for OtherUsersClrkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_host_agent_reads_no_clrk_instance_and_no_registry_credentials() {
    // Not under /tmp: a `host:` sandbox has its own /tmp.
    let docker = tempfile::Builder::new()
        .prefix("clrk-e2e-docker-")
        .tempdir_in("/var/tmp")
        .unwrap();
    std::fs::write(
        docker.path().join("config.json"),
        r#"{"auths":{"registry.example":{"auth":"Y2xyazpkb2NrZXItc2VjcmV0"}}}"#,
    )
    .unwrap();
    let other_user = OtherUsersClrkDir::create(VALUE);
    let a = Dev::start_with_env(&[], &[("DOCKER_CONFIG", docker.path().to_str().unwrap())]);
    let b = Dev::start();
    let out = b.clrk(&[
        "secret",
        "set",
        "llm",
        "--from-literal",
        &format!("token={VALUE}"),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    let files = [
        b.clrk_dir().join("dev.json"),
        b.data_dir().join("clrk.db"),
        docker.path().join("config.json"),
        other_user.0.join("dev.json"),
        a.clrk_dir().join("dev.json"),
        a.data_dir().join("clrk.db"),
    ];
    for file in &files {
        assert!(
            std::fs::metadata(file).is_ok_and(|m| m.len() > 0),
            "{} exists on the host",
            file.display()
        );
    }
    let script: String = files
        .iter()
        .map(|f| {
            format!(
                "if [ -s '{f}' ]; then echo 'readable {f}'; else echo 'hidden {f}'; fi; ",
                f = f.display()
            )
        })
        .collect();
    a.apply(&sh_agent("snoop", &script, ""));
    let r = a.invoke(&[("X-Clrk-TaskAgent", "default/snoop")], "").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.text();
    let readable: Vec<&str> = body.lines().filter(|l| !l.starts_with("hidden ")).collect();
    assert!(readable.is_empty(), "a host: agent could read:\n{body}");
    assert_eq!(body.lines().count(), files.len(), "{body}");
}

/// A `host:` sandbox hides the files every other clrk instance holds (a cluster secret, an API
/// token); an instance that stops may remove its file while a sandbox that hides it is being
/// started. The agent had not run: clrk starts another sandbox instead of failing the run.
#[tokio::test(flavor = "multi_thread")]
async fn a_hidden_file_that_vanishes_while_its_sandbox_starts_does_not_fail_the_run() {
    let dev = Dev::start();
    dev.apply(&sh_agent("vanish", "cat; echo", "  timeout: 60s"));
    // The removal must land between runsc making the sandbox and mounting the file: on a
    // loaded machine the watcher can miss that moment, so the scenario is tried until it
    // landed once (every run must succeed either way).
    let mut caught = 0;
    for attempt in 1..=5 {
        let other = tempfile::Builder::new()
            .prefix("clrk-e2e-other-")
            .tempdir_in("/var/tmp")
            .unwrap();
        let held = other.path().join("cluster-secret");
        std::fs::write(&held, "held by another instance").unwrap();
        // Another instance holding that file: its record names this test's process, alive
        // throughout.
        let record = std::path::Path::new("/run/clrk/instances")
            .join(format!("{}-vanish-test.json", std::process::id()));
        let text_of =
            serde_json::json!({ "pid": std::process::id(), "paths": [&held] }).to_string();
        std::fs::write(&record, text_of).unwrap();
        // Removes the file's directory, as an instance's temporary dir goes, once runsc has
        // made the sandbox that hides it (the pid file is there) and before the sandbox mounts
        // it: then the first sandbox fails to start.
        let (bundles, target) = (dev.data_dir(), held.clone());
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let watching = std::sync::Arc::clone(&done);
        let remover = std::thread::spawn(move || {
            let needle = target.display().to_string();
            while !watching.load(std::sync::atomic::Ordering::Relaxed) {
                let hidden = walkdir_configs(&bundles).into_iter().any(|config| {
                    std::fs::read_to_string(&config).is_ok_and(|t| t.contains(&needle))
                        && std::fs::metadata(config.with_file_name("pid"))
                            .is_ok_and(|m| m.len() > 0)
                });
                if hidden {
                    std::fs::remove_dir_all(target.parent().unwrap()).unwrap();
                    return true;
                }
                std::thread::yield_now();
            }
            false
        });
        let r = dev
            .invoke(&[("X-Clrk-TaskAgent", "default/vanish")], "ran")
            .await;
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        let removed = remover.join().unwrap();
        std::fs::remove_file(&record).unwrap();
        assert_eq!(
            r.status,
            200,
            "attempt {attempt}: {}\n{}",
            r.text(),
            dev.server_log()
        );
        // The agent read its whole envelope: the body without a JSON content type, in base64.
        assert!(r.text().contains(r#""data_base64":"cmFu""#), "{}", r.text());
        let runs = dev.invocations("vanish").await;
        assert_eq!(runs[0]["status"], "Succeeded", "{runs:?}");
        if removed {
            caught += 1;
            break;
        }
    }
    assert_eq!(
        caught, 1,
        "the file never vanished while a sandbox hiding it started"
    );
}

/// Every `config.json` under `dir`, at any depth.
fn walkdir_configs(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.file_name().is_some_and(|n| n == "config.json") {
                found.push(path);
            }
        }
    }
    found
}
