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

/// What a runsc command logs last: the wait status it exits with; the sandbox process
/// (`boot`) logs its program's.
const EXITING: &str = "Exiting with status: ";

/// The raw wait status of the program of the sandbox whose logs are in `logs`, as its sandbox
/// process (`runsc.log.<time>.boot.txt`) logged it on exiting; `None` when it has not (still
/// running, or killed before it could say, as the host's OOM killer kills it).
pub(crate) fn program_status(logs: &Path) -> Option<i32> {
    let boot = std::fs::read_dir(logs)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .find(|f| f.to_string_lossy().contains(".boot."))?;
    tail(&boot, TAIL)
        .lines()
        .rev()
        .find_map(|line| line.split_once(EXITING))
        .and_then(|(_, status)| status.trim().parse::<i32>().ok())
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
    fn the_program_status_is_the_one_its_sandbox_logged() {
        let case = |boot: &str| {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(
                dir.path().join("runsc.log.1.create.txt"),
                "I1 main.go:266] Exiting with status: 0\n",
            )
            .unwrap();
            std::fs::write(dir.path().join("runsc.log.2.boot.txt"), boot).unwrap();
            program_status(dir.path())
        };
        // `exit 3`.
        assert_eq!(
            case(
                "I1 boot.go:389] application exiting with exit status 3\n\
                  I1 loader.go:924] Gofer socket disconnected, killing container \"z1\"\n\
                  I1 main.go:266] Exiting with status: 768\n"
            ),
            Some(3 << 8)
        );
        // `kill -9 $$` inside, or `runsc kill --all ID 9`.
        assert_eq!(case("I1 main.go:266] Exiting with status: 9\n"), Some(9));
        // Still running, or killed by the host (over its memory limit).
        assert_eq!(case("I1 boot.go:300] Starting sandbox\n"), None);
        let none = tempfile::tempdir().unwrap();
        assert_eq!(program_status(none.path()), None);
    }
}
