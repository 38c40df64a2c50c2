//! Agent logs under hostile volume and content: a flooding agent keeps a bounded log, fetching
//! a large log keeps clrk's memory bounded, and control characters never reach the operator's
//! terminal raw.

mod common;

use common::*;

const MIB: u64 = 1 << 20;

/// One 20 MB line, written without a newline until its end, then stderr as fast as `yes` can
/// write for 4 s.
const FLOOD: &str = r#"
head -c 20000000 /dev/zero | tr '\0' L >&2
echo ' end-of-long-line' >&2
echo after-the-long-line >&2
end=$(( $(date +%s) + 4 ))
while [ "$(date +%s)" -lt "$end" ]; do
  yes 'flooding stderr as fast as it can' | head -n 200000 >&2
done
echo done
"#;

/// Bytes of the store on disk, its write-ahead log included.
fn db_bytes(dev: &Dev) -> u64 {
    std::fs::read_dir(dev.data_dir())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("clrk.db"))
        .map(|e| e.metadata().map_or(0, |m| m.len()))
        .sum()
}

/// Resident memory of a process, in bytes.
fn vm_rss(pid: u32) -> u64 {
    rss_kib(pid) * 1024
}

/// The agent's log records from the HTTP endpoint.
async fn http_logs(dev: &Dev, agent: &str) -> Vec<serde_json::Value> {
    let r = dev
        .api_get(&format!("/v1/agents/default/{agent}/logs"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn line_of(record: &serde_json::Value) -> &str {
    record["line"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flooding_agent_keeps_a_bounded_log_with_a_marker() {
    let dev = Dev::start();
    dev.apply(&sh_agent("flood", FLOOD, ""));
    let db_before = db_bytes(&dev);
    let r = dev
        .invoke(&[("X-Clrk-TaskAgent", "default/flood")], "")
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let id = r.header("x-clrk-execution-id").unwrap().to_string();
    eventually("the execution recorded", || async {
        let items = dev.invocations("flood").await;
        (items.first()?["status"] == "Succeeded").then_some(())
    })
    .await;
    let records = http_logs(&dev, "flood").await;
    let marker_prefix = "[clrk] log limit 1Mi reached: ";
    let kept: Vec<&serde_json::Value> = records
        .iter()
        .filter(|r| r["executionId"] == id.as_str())
        .collect();
    let bytes_kept: u64 = kept.iter().map(|r| line_of(r).len() as u64).sum();
    let db_added = db_bytes(&dev).saturating_sub(db_before);
    eprintln!(
        "flood: {bytes_kept} log bytes kept in {} lines, clrk.db grew by {db_added} bytes",
        kept.len()
    );
    let marker = line_of(kept.last().unwrap());
    assert!(marker.starts_with(marker_prefix), "last line: {marker}");
    let dropped: u64 = marker[marker_prefix.len()..]
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no dropped count in {marker:?}"));
    assert!(
        bytes_kept <= MIB + marker.len() as u64,
        "{bytes_kept} bytes kept"
    );
    assert!(dropped > 10_000_000, "{marker}");
    // The 20 MB line is kept cut, and the line after it is whole.
    let long = line_of(kept[0]);
    assert!(
        long.starts_with("LLLL") && long.len() <= 65 * 1024,
        "first line is {} bytes",
        long.len()
    );
    assert_eq!(line_of(kept[1]), "after-the-long-line");
    assert!(db_added < 8 * MIB, "clrk.db grew by {db_added} bytes");

    // The CLI still prints the log, marker last.
    let out = dev.clrk(&["agents", "logs", "flood", "--tail", "3"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let printed = text(&out.stdout);
    assert!(
        printed.lines().last().unwrap().contains(marker_prefix),
        "{printed}"
    );
}

/// What a stored line costs against a log limit besides its text (`clrk_store::LOG_ROW_COST`).
const ROW_COST: u64 = 64;

#[tokio::test(flavor = "multi_thread")]
async fn empty_lines_count_against_the_log_limit() {
    let dev = Dev::start();
    // Empty lines as fast as `yes` can write them, for 3 s.
    let script = r#"
end=$(( $(date +%s) + 3 ))
while [ "$(date +%s)" -lt "$end" ]; do
  yes '' | head -n 500000 >&2
done
echo done
"#;
    dev.apply(&sh_agent("blank", script, ""));
    let db_before = db_bytes(&dev);
    let r = dev
        .invoke(&[("X-Clrk-TaskAgent", "default/blank")], "")
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    eventually("the execution recorded", || async {
        let items = dev.invocations("blank").await;
        (items.first()?["status"] == "Succeeded").then_some(())
    })
    .await;
    let records = http_logs(&dev, "blank").await;
    let db_added = db_bytes(&dev).saturating_sub(db_before);
    let (marker, lines) = records.split_last().expect("some lines");
    let marker = line_of(marker);
    let cost: u64 = lines
        .iter()
        .map(|r| line_of(r).len() as u64 + ROW_COST)
        .sum();
    eprintln!(
        "empty lines: {} rows kept costing {cost} bytes, clrk.db grew by {db_added} bytes",
        lines.len()
    );
    assert!(
        marker.starts_with("[clrk] log limit 1Mi reached: "),
        "last line: {marker}"
    );
    assert!(cost <= MIB, "{} rows kept, {cost} bytes", lines.len());
    assert!(db_added < 8 * MIB, "clrk.db grew by {db_added} bytes");
}

#[tokio::test(flavor = "multi_thread")]
async fn fetching_a_large_log_keeps_clrk_memory_bounded() {
    let dev = Dev::start();
    // About 50 MiB in 1 KiB lines, all kept under a raised limit.
    let script = "yes \"$(head -c 1023 /dev/zero | tr '\\0' b)\" | head -n 52000 >&2; echo done";
    dev.apply(&sh_agent("bulky", script, "  logLimit: 60Mi"));
    let r = dev
        .invoke(&[("X-Clrk-TaskAgent", "default/bulky")], "")
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    // Every line is in: the last one is readable through `tail`.
    eventually("the whole log stored", || async {
        let r = dev.api_get("/v1/agents/default/bulky/logs?tail=1").await;
        let text = r.text();
        let seq = serde_json::from_str::<serde_json::Value>(text.trim()).ok()?["seq"].as_i64()?;
        (seq >= 52_000).then_some(())
    })
    .await;

    let pid = dev.pid();
    let baseline = vm_rss(pid);
    let peak = Peak::sample(std::time::Duration::from_millis(5), move || vm_rss(pid));
    let records = http_logs(&dev, "bulky").await;
    let peak = peak.stop();
    let bytes: u64 = records.iter().map(|r| line_of(r).len() as u64).sum();
    eprintln!(
        "large log: {} lines, {bytes} bytes fetched; clrk RSS {} MiB before, peak {} MiB during",
        records.len(),
        baseline / MIB,
        peak / MIB
    );
    assert_eq!(records.len(), 52_000);
    assert!(bytes >= 50 * MIB, "{bytes}");
    // Sending the whole log at once took clrk from 30 MiB to 143 MiB; a page at a time it
    // needs a few MiB.
    assert!(
        peak < baseline + 40 * MIB,
        "clrk grew from {} MiB to {} MiB while sending the log",
        baseline / MIB,
        peak / MIB
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn control_characters_reach_a_terminal_escaped() {
    let dev = Dev::start();
    let script = "printf 'title\\033]0;pwned\\007 bell\\r over\\n' >&2";
    dev.apply(&sh_agent("esc", script, ""));
    let r = dev.invoke(&[("X-Clrk-TaskAgent", "default/esc")], "").await;
    assert_eq!(r.status, 200, "{}", r.text());
    dev.wait_for("the line stored", || {
        let out = dev.clrk(&["agents", "logs", "esc", "-o", "json"]);
        text(&out.stdout).contains("pwned").then_some(())
    });

    // On a terminal (script(1) gives the CLI a pseudo-terminal): escaped.
    let command = format!("{} agents logs esc", clrk_bin());
    let out = std::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env("CLRK_DIR", dev.clrk_dir())
        .output()
        .expect("script (bsdutils)");
    let screen = text(&out.stdout);
    assert!(out.status.success(), "{screen}");
    assert!(
        screen.contains(r"title\x1b]0;pwned\x07 bell\r over"),
        "{screen:?}"
    );
    assert!(
        !screen.contains('\u{1b}') && !screen.contains('\u{7}') && !screen.contains("\r over"),
        "raw control characters on the terminal: {screen:?}"
    );

    // As JSON off a terminal the text is intact.
    let out = dev.clrk(&["agents", "logs", "esc", "-o", "json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let record: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(record["line"], "title\u{1b}]0;pwned\u{7} bell\r over");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_daemon_run_keeps_its_newest_log_limit_across_stdout_and_stderr() {
    let dev = Dev::start();
    // 4,000 numbered lines on both streams, far past the limit; then, a while later, one more
    // while the run goes on.
    let script = r#"
i=0
while [ $i -lt 2000 ]; do
  echo "daemon out $i"
  echo "daemon err $i" >&2
  i=$((i+1))
done
sleep 2
echo the-newest-line
sleep 600
"#;
    dev.apply(&sh_manifest(
        "DaemonAgent",
        "chatter",
        script,
        "  logLimit: 16Ki\n  restartPolicy: Never",
    ));
    let marker = "[clrk] log limit 16Ki: older lines of this run are deleted as new ones arrive";
    let records = eventually("the run's newest line", || async {
        let records = http_logs(&dev, "chatter").await;
        records
            .iter()
            .any(|r| line_of(r) == "the-newest-line")
            .then_some(records)
    })
    .await;
    let texts: Vec<&str> = records.iter().map(line_of).collect();
    let cost: u64 = texts.iter().map(|l| l.len() as u64 + ROW_COST).sum();
    eprintln!(
        "daemon run: {} lines kept costing {cost} bytes, first {:?}",
        texts.len(),
        texts.first()
    );
    // The run shows its recent output, within its limit, and says once why the rest is gone.
    assert!(cost <= 16 * 1024, "{cost} bytes kept: {texts:?}");
    assert_eq!(
        texts.iter().filter(|l| **l == marker).count(),
        1,
        "{texts:?}"
    );
    // The streams are read apart, so which of them the newest lines come from depends on
    // how clrk's reads fell: the last lines of the burst are there either way.
    assert!(
        texts.contains(&"daemon out 1999") || texts.contains(&"daemon err 1999"),
        "{texts:?}"
    );
    assert!(
        !texts.contains(&"daemon out 0") && !texts.contains(&"daemon err 0"),
        "{texts:?}"
    );
    assert_eq!(texts.last(), Some(&"the-newest-line"));
    assert!(texts.len() > 100, "{} lines kept", texts.len());
}
