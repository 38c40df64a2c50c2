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
