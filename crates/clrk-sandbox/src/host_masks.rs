//! What every `host:` sandbox hides beyond its caller's own paths: the data dirs, `$CLRK_DIR`s
//! and registry credentials of every clrk instance running on this host, and the default
//! `~/.clrk` and `~/.docker` of every user. An agent on the host's root filesystem could read
//! another instance's API token, store and secrets, or the credentials it pulls with, though
//! its own server masks only its own.
//!
//! Each running instance records the paths it holds in a file under [`INSTANCES_DIR`]
//! ([`InstanceRecord`]), removed when it stops; a record whose process is gone (killed) is
//! ignored, and removed when the next instance starts. A process is known by its id and its
//! start time: ids are reused (32768 of them by default, and every thread takes one), and a
//! killed instance's record must not come back to life with another process.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::json;

use crate::SandboxError;

/// Where running instances record their paths. Under `/run`: gone at reboot, like the
/// instances.
pub const INSTANCES_DIR: &str = "/run/clrk/instances";
/// Records read at most: more than any host runs, and a bound on work per sandbox start.
const MAX_RECORDS: usize = 1024;
/// Largest record read; one holds a few paths.
const MAX_RECORD_BYTES: u64 = 64 << 10;
/// Where user accounts and their home dirs are.
const PASSWD: &str = "/etc/passwd";
/// Dirs under a home dir that hold clrk's state and docker's credentials by default.
const HOME_SECRETS: [&str; 2] = [".clrk", ".docker"];

/// This instance's entry in [`INSTANCES_DIR`]; removed when dropped.
#[derive(Debug)]
pub struct InstanceRecord {
    path: PathBuf,
}

impl InstanceRecord {
    /// Records `paths` (data dir, `$CLRK_DIR`, docker config dir) as held by this process.
    pub fn register(paths: &[PathBuf]) -> Result<InstanceRecord, SandboxError> {
        register_in(Path::new(INSTANCES_DIR), paths)
    }
}

impl Drop for InstanceRecord {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn register_in(dir: &Path, paths: &[PathBuf]) -> Result<InstanceRecord, SandboxError> {
    use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
    // Several servers may run in one process (tests); each needs its own file.
    static SEQUENCE: AtomicU64 = AtomicU64::new(0);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
        .map_err(SandboxError::io(dir))?;
    for (record, _) in records_in(dir)
        .into_iter()
        .filter(|(_, paths)| paths.is_none())
    {
        let _ = std::fs::remove_file(record);
    }
    let pid = std::process::id();
    let name = format!("{pid}-{}.json", SEQUENCE.fetch_add(1, Ordering::Relaxed));
    let path = dir.join(&name);
    let tmp = dir.join(format!(".{name}.tmp"));
    let text = json!({ "pid": pid, "start": started(pid), "paths": paths }).to_string();
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o644)
        .open(&tmp)
        .map_err(SandboxError::io(&tmp))?;
    file.write_all(text.as_bytes())
        .map_err(SandboxError::io(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(SandboxError::io(&path))?;
    Ok(InstanceRecord { path })
}

/// The paths recorded by instances whose process still runs.
fn recorded_in(dir: &Path) -> Vec<PathBuf> {
    records_in(dir)
        .into_iter()
        .filter_map(|(_, paths)| paths)
        .flatten()
        .collect()
}

/// Each record's file, and its paths while its process runs (`None` once it is gone).
fn records_in(dir: &Path) -> Vec<(PathBuf, Option<Vec<PathBuf>>)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut records = Vec::new();
    for entry in entries.flatten().take(MAX_RECORDS) {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "json")
            || entry
                .metadata()
                .map_or(true, |m| m.len() > MAX_RECORD_BYTES)
        {
            continue;
        }
        let Ok(text) = std::fs::read(&path) else {
            continue;
        };
        let Ok(record) = serde_json::from_slice::<serde_json::Value>(&text) else {
            continue;
        };
        let alive = record["pid"].as_u64().is_some_and(|pid| {
            match (
                record["start"].as_u64(),
                u32::try_from(pid).ok().and_then(started),
            ) {
                (Some(recorded), Some(now)) => recorded == now,
                // A record of a version that did not note the start: its process exists.
                (None, Some(_)) => true,
                (_, None) => false,
            }
        });
        let recorded = record["paths"].as_array().into_iter().flatten();
        let paths = recorded.filter_map(|p| p.as_str()).map(PathBuf::from);
        records.push((path, alive.then(|| paths.collect())));
    }
    records
}

/// When process `pid` started (clock ticks after boot, `/proc/PID/stat`'s 22nd field); `None`
/// when no such process runs (a zombie has stopped running).
fn started(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name in field 2 may hold spaces and parentheses: count after its last `)`.
    let mut fields = stat.get(stat.rfind(')')? + 1..)?.split_whitespace();
    if fields.next()? == "Z" {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

/// `~/.clrk` and `~/.docker` of every account in `passwd` (the file's text) that has them.
fn home_secrets(passwd: &str) -> Vec<PathBuf> {
    passwd
        .lines()
        .filter_map(|line| line.split(':').nth(5))
        .filter(|home| home.starts_with('/'))
        .flat_map(|home| HOME_SECRETS.map(|name| Path::new(home).join(name)))
        .filter(|p| p.exists())
        .collect()
}

/// Every path a `host:` sandbox must hide on top of `own`: running instances' paths and
/// users' default clrk and docker dirs, as they are now. Symlinks are resolved (the
/// runtime mounts over the target) and a path inside another is dropped (its mask could
/// not be mounted inside the other's read-only one, and is hidden by it anyway).
pub(crate) fn with_host_masks(own: &[PathBuf]) -> Vec<PathBuf> {
    let mut all = own.to_vec();
    all.extend(recorded_in(Path::new(INSTANCES_DIR)));
    all.extend(home_secrets(
        &std::fs::read_to_string(PASSWD).unwrap_or_default(),
    ));
    outermost(all)
}

/// `paths` canonicalized where they exist, sorted, without any path under another.
fn outermost(paths: Vec<PathBuf>) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = paths
        .into_iter()
        .map(|p| p.canonicalize().unwrap_or(p))
        .collect();
    paths.sort();
    paths.dedup();
    let mut kept: Vec<PathBuf> = Vec::new();
    // A record naming `/` (an instance with its data dir there) would hide everything.
    for path in paths.into_iter().filter(|p| p.parent().is_some()) {
        // Sorted, so an ancestor comes right before its descendants.
        if !kept.last().is_some_and(|last| path.starts_with(last)) {
            kept.push(path);
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_read_while_their_process_runs_and_removed_at_drop() {
        let dir = tempfile::tempdir().unwrap();
        let record = register_in(dir.path(), &["/srv/a".into(), "/srv/b".into()]).unwrap();
        assert_eq!(
            recorded_in(dir.path()),
            [PathBuf::from("/srv/a"), PathBuf::from("/srv/b")]
        );
        drop(record);
        assert!(recorded_in(dir.path()).is_empty());
    }

    #[test]
    fn a_record_of_a_dead_process_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        // Above the kernel's largest pid_max: never a running process.
        std::fs::write(
            dir.path().join("99999999-0.json"),
            r#"{"pid": 99999999, "paths": ["/srv/gone"]}"#,
        )
        .unwrap();
        std::fs::write(dir.path().join("junk.json"), "not json").unwrap();
        assert!(recorded_in(dir.path()).is_empty());
        // The next instance to start removes it.
        let _record = register_in(dir.path(), &[]).unwrap();
        assert!(!dir.path().join("99999999-0.json").exists());
    }

    #[test]
    fn a_record_whose_process_id_was_reused_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let me = std::process::id();
        let start = started(me).unwrap();
        // The same process id, started at another time: another process than the recorded.
        std::fs::write(
            dir.path().join("reused.json"),
            json!({ "pid": me, "start": start + 1, "paths": ["/srv/old"] }).to_string(),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("live.json"),
            json!({ "pid": me, "start": start, "paths": ["/srv/live"] }).to_string(),
        )
        .unwrap();
        assert_eq!(recorded_in(dir.path()), [PathBuf::from("/srv/live")]);
    }

    #[test]
    fn home_dirs_come_from_passwd_when_they_hold_clrk_or_docker() {
        let homes = tempfile::tempdir().unwrap();
        let alice = homes.path().join("alice");
        std::fs::create_dir_all(alice.join(".clrk")).unwrap();
        std::fs::create_dir_all(alice.join(".docker")).unwrap();
        let passwd = format!(
            "alice:x:1000:1000::{}:/bin/sh\nbob:x:1001:1001::{}/bob:/bin/sh\nbroken\n",
            alice.display(),
            homes.path().display()
        );
        assert_eq!(
            home_secrets(&passwd),
            [alice.join(".clrk"), alice.join(".docker")]
        );
    }

    #[test]
    fn nested_paths_keep_only_the_outer_one() {
        let kept = outermost(vec![
            "/srv/x/data".into(),
            "/srv/x".into(),
            "/srv/xy".into(),
            "/srv/x".into(),
            "/".into(),
        ]);
        assert_eq!(kept, [PathBuf::from("/srv/x"), PathBuf::from("/srv/xy")]);
    }
}
