//! Building a cache directory exactly once: under a lock, in a temporary sibling, then renamed
//! into place, so a crash never leaves a partial directory under the final name.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use rustix::fs::FlockOperation;

use crate::error::ImageError;

/// Makes `target` exist, running `build` on an empty temporary directory if it does not.
///
/// `lock` names a lock file: concurrent callers (threads or processes) for the same target
/// wait for each other, so `build` runs at most once. Returns whether this call built it.
pub(crate) fn build_once(
    target: &Path,
    lock: &Path,
    build: impl FnOnce(&Path) -> Result<(), ImageError>,
) -> Result<bool, ImageError> {
    if target.exists() {
        return Ok(false);
    }
    let _guard = LockGuard::acquire(lock)?;
    if target.exists() {
        return Ok(false);
    }
    let parent = target
        .parent()
        .expect("cache targets live inside the store");
    let name = target
        .file_name()
        .expect("cache targets have a name")
        .to_string_lossy();
    let prefix = format!(".tmp-{name}-");
    remove_stale(parent, &prefix)?;
    let temp = parent.join(format!("{prefix}{}", uuid::Uuid::new_v4().simple()));
    fs::create_dir(&temp).map_err(ImageError::io("create directory", &temp))?;
    let built = build(&temp).and_then(|()| {
        fs::rename(&temp, target).map_err(ImageError::io("move into place", target))
    });
    if built.is_err() {
        // Best effort: a leftover is removed by the next build of this target anyway.
        let _ = fs::remove_dir_all(&temp);
    }
    built.map(|()| true)
}

/// Temporary directories of earlier builds of the same target that died mid-way. Safe to
/// delete: we hold the target's lock, so no one else is building into them.
fn remove_stale(parent: &Path, prefix: &str) -> Result<(), ImageError> {
    let entries = fs::read_dir(parent).map_err(ImageError::io("list", parent))?;
    for entry in entries {
        let entry = entry.map_err(ImageError::io("list", parent))?;
        if entry.file_name().to_string_lossy().starts_with(prefix) {
            let path: PathBuf = entry.path();
            tracing::info!(path = %path.display(), "removing leftover of an interrupted build");
            fs::remove_dir_all(&path).map_err(ImageError::io("remove", &path))?;
        }
    }
    Ok(())
}

/// A `flock` on a lock file, released when dropped (the file is closed).
pub(crate) struct LockGuard {
    _file: File,
}

impl LockGuard {
    /// Takes the lock exclusively.
    pub(crate) fn acquire(path: &Path) -> Result<Self, ImageError> {
        Self::lock(path, FlockOperation::LockExclusive)
    }

    /// Takes the lock shared: many holders at once, none while someone holds it exclusively.
    pub(crate) fn acquire_shared(path: &Path) -> Result<Self, ImageError> {
        Self::lock(path, FlockOperation::LockShared)
    }

    fn lock(path: &Path, operation: FlockOperation) -> Result<Self, ImageError> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(ImageError::io("open lock file", path))?;
        rustix::fs::flock(&file, operation).map_err(|e| ImageError::Io {
            action: "lock",
            path: path.to_owned(),
            source: io::Error::from(e),
        })?;
        Ok(LockGuard { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_once_and_cleans_up_failures() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("t");
        let lock = dir.path().join("t.lock");
        let failed = build_once(&target, &lock, |tmp| {
            fs::write(tmp.join("half"), "x").unwrap();
            Err(ImageError::UnsupportedDigest { digest: "x".into() })
        });
        assert!(failed.is_err());
        assert!(!target.exists());

        let built = build_once(&target, &lock, |tmp| {
            fs::write(tmp.join("f"), "1").unwrap();
            Ok(())
        });
        assert!(built.unwrap());
        assert!(!build_once(&target, &lock, |_| panic!("must not rebuild")).unwrap());
        assert_eq!(fs::read_to_string(target.join("f")).unwrap(), "1");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            names.len(),
            2,
            "only the target and its lock remain: {names:?}"
        );
    }
}
