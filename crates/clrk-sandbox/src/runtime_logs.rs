//! What runsc's own processes logged before dying: each command (`run`, `gofer`, `boot`)
//! writes a file under the bundle's log dir (see `runtime_cli::RUNTIME_LOGS`), and the error a
//! command died of is the line marked `FATAL ERROR:`, or, when the Go runtime itself gave up
//! (no thread, no memory), its `fatal error:` or `panic:` line, which runsc sends to the same
//! file. Their stderr goes nowhere, and `run` only says that the sandbox did not start or
//! stopped, so this is where the reason is.

use std::path::{Path, PathBuf};

/// Most of each log read (its last bytes).
const TAIL: u64 = 16 << 10;
/// How runsc marks the error a command died of.
const FATAL: &str = "FATAL ERROR: ";
/// How the Go runtime starts the line of a crash.
const GO_CRASHES: [&str; 2] = ["fatal error: ", "panic: "];

/// The errors runsc's commands in `logs` died of, each once, the gofer's first (it is the
/// cause when the sandbox dies of a mount); the `run` command's own only with `with_run`
/// (when nothing else says it).
pub(crate) fn fatal_errors(logs: &Path, with_run: bool) -> Vec<String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(logs)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .collect();
    // Named `runsc.log.<time>.<command>.txt`.
    files.sort_by_key(|f| !f.to_string_lossy().contains(".gofer."));
    let mut reasons: Vec<String> = Vec::new();
    for file in files
        .iter()
        .filter(|f| with_run || !f.to_string_lossy().contains(".run."))
    {
        for line in tail(file, TAIL).lines() {
            let reason = match line.split_once(FATAL) {
                Some((_, reason)) => reason,
                None if GO_CRASHES.iter().any(|c| line.starts_with(c)) => line,
                None => continue,
            };
            if !reasons.iter().any(|r| r == reason.trim()) {
                reasons.push(reason.trim().to_owned());
            }
        }
    }
    reasons
}

/// What `run` logs when it cannot ask the sandbox how its container ended, because the
/// sandbox process is gone.
const WAITED_ON_SANDBOX: &str = "Will try waiting on the sandbox process instead";
/// What `run` logs last: the wait status it exits with.
const EXITING: &str = "Exiting with status: ";
/// A raw wait status that says "killed by SIGKILL".
const KILLED_BY_SIGKILL: u32 = 9;

/// Whether runsc's sandbox process (gVisor's kernel, which holds all of the sandbox's memory)
/// was itself killed with SIGKILL, as the host's OOM killer does when the sandbox goes over
/// its cgroup's memory limit: `run` could not ask it how the container ended, waited on the
/// process instead, and exits with its wait status, SIGKILL. A program the sandbox killed with
/// SIGKILL inside leaves a different trace: its status comes from the sandbox, or the sandbox
/// process exits with a code of 137 rather than a signal.
pub(crate) fn sandbox_process_killed(logs: &Path) -> bool {
    let run = std::fs::read_dir(logs)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .find(|f| f.to_string_lossy().contains(".run."));
    let Some(run) = run else {
        return false;
    };
    let text = tail(&run, TAIL);
    let status = text
        .lines()
        .rev()
        .find_map(|line| line.split_once(EXITING))
        .and_then(|(_, status)| status.trim().parse::<u32>().ok());
    text.contains(WAITED_ON_SANDBOX) && status == Some(KILLED_BY_SIGKILL)
}

/// The last `bytes` of the file at `path`; empty when it cannot be read.
fn tail(path: &Path, bytes: u64) -> String {
    use std::io::{Read as _, Seek as _, SeekFrom};
    let Ok(mut file) = std::fs::File::open(path) else {
        return String::new();
    };
    let len = file.metadata().map_or(0, |m| m.len());
    let mut buf = Vec::new();
    if file
        .seek(SeekFrom::Start(len.saturating_sub(bytes)))
        .is_ok()
    {
        let _ = file.take(bytes).read_to_end(&mut buf);
    }
    String::from_utf8_lossy(&buf).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fatal_lines_come_gofer_first_each_once() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
        write(
            "runsc.log.1.run.txt",
            "I1 x] start\nW1 util.go:64] FATAL ERROR: running container: cannot create sandbox\n",
        );
        write(
            "runsc.log.2.boot.txt",
            "W1 util.go:64] FATAL ERROR: Error reading mounts file\nError reading mounts file\n",
        );
        write(
            "runsc.log.3.gofer.txt",
            "W1 util.go:64] FATAL ERROR: mounting /x: is a directory\n",
        );
        assert_eq!(
            fatal_errors(dir.path(), false),
            ["mounting /x: is a directory", "Error reading mounts file"]
        );
        assert_eq!(fatal_errors(dir.path(), true).len(), 3);
        write(
            "runsc.log.4.boot.txt",
            "I1 x] up\nruntime: failed to create new OS thread\nfatal error: newosproc\n\ngoroutine 1\n",
        );
        assert!(fatal_errors(dir.path(), false).contains(&"fatal error: newosproc".to_string()));
        assert!(fatal_errors(&dir.path().join("none"), true).is_empty());
    }

    /// The lines runsc 20221219 wrote in each case (timestamps cut).
    #[test]
    fn a_sandbox_process_killed_by_the_host_is_told_from_a_program_killed_inside() {
        let case = |run: &str| {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("runsc.log.1.run.txt"), run).unwrap();
            sandbox_process_killed(dir.path())
        };
        // Over its memory limit: the host killed gVisor's kernel.
        assert!(case(
            "I1 sandbox.go:917] Sandbox started, PID: 24091\n\
             W1 sandbox.go:957] Wait RPC to container \"oom1\" failed: urpc method \"containerManager.Wait\" failed: EOF. Will try waiting on the sandbox process instead.\n\
             I1 main.go:266] Exiting with status: 9\n"
        ));
        // `kill -9 $$` inside: the sandbox process exited with 137 by itself.
        assert!(!case(
            "W1 sandbox.go:933] Wait on container \"k1\" failed: connecting to control server at PID 24857: connection refused. Will try waiting on the sandbox process instead.\n\
             I1 main.go:266] Exiting with status: 35072\n"
        ));
        // The same, answered by the sandbox: the program's own status.
        assert!(!case("I1 main.go:266] Exiting with status: 9\n"));
        assert!(!case(""));
        let none = tempfile::tempdir().unwrap();
        assert!(!sandbox_process_killed(none.path()));
    }
}
