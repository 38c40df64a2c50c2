//! Unpacking one layer's tar stream into an empty directory, safely.
//!
//! Entries are created exactly as the archive describes (symlinks stay symlinks), but nothing
//! is ever written through a symlink or outside the directory: every parent on the way to an
//! entry is checked with `lstat` to be a real directory created by this unpacking.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, CWD, FileType, Mode, Timespec, Timestamps};
use tar::EntryType;

use crate::error::ImageError;
use crate::whiteout;

/// Mode given to directories the archive implies but does not list.
const IMPLIED_DIR_MODE: u32 = 0o755;

/// Ownership, mode and mtime of an entry, applied after its content is written.
#[derive(Clone, Copy)]
struct Attributes {
    uid: u32,
    gid: u32,
    mode: u32,
    mtime: i64,
}

/// Unpacks the tar stream `archive` into `dest` (an existing, empty directory).
///
/// `digest` only labels errors. Ownership is kept when running as root.
pub(crate) fn unpack(archive: impl Read, dest: &Path, digest: &str) -> Result<(), ImageError> {
    let mut unpacker = Unpacker {
        dest,
        digest,
        as_root: rustix::process::geteuid().is_root(),
        directories: BTreeMap::new(),
    };
    let mut archive = tar::Archive::new(archive);
    let entries = archive.entries().map_err(|e| unpacker.unreadable(e))?;
    for entry in entries {
        let entry = entry.map_err(|e| unpacker.unreadable(e))?;
        unpacker.entry(entry)?;
    }
    // Directory attributes last, children before parents (reverse path order), so read-only
    // directories can still be filled and their mtimes are not disturbed by later entries.
    let directories = std::mem::take(&mut unpacker.directories);
    for (path, attributes) in directories.iter().rev() {
        unpacker.apply_attributes(path, *attributes, true)?;
    }
    Ok(())
}

struct Unpacker<'a> {
    dest: &'a Path,
    digest: &'a str,
    as_root: bool,
    /// Later entries for the same directory win.
    directories: BTreeMap<PathBuf, Attributes>,
}

impl Unpacker<'_> {
    fn entry<R: Read>(&mut self, mut entry: tar::Entry<'_, R>) -> Result<(), ImageError> {
        let raw_path = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw_path).into_owned();
        let relative =
            safe_relative_path(&raw_path).map_err(|reason| self.unsafe_entry(&shown, reason))?;
        let header = entry.header();
        let entry_type = header.entry_type();
        let attributes = Attributes {
            uid: header.uid().map_err(|e| self.unreadable(e))? as u32,
            gid: header.gid().map_err(|e| self.unreadable(e))? as u32,
            mode: header.mode().map_err(|e| self.unreadable(e))? & 0o7777,
            mtime: i64::try_from(header.mtime().map_err(|e| self.unreadable(e))?)
                .unwrap_or(i64::MAX),
        };
        if relative.as_os_str().is_empty() {
            // The archive's root ("./"): only its attributes matter.
            if entry_type == EntryType::Directory {
                self.directories.insert(self.dest.to_owned(), attributes);
            }
            return Ok(());
        }
        let target = self.prepare_parents(&relative, &shown)?;
        let io_err = |action| ImageError::io(action, target.clone());
        match entry_type {
            EntryType::Directory => {
                match fs::symlink_metadata(&target) {
                    Ok(meta) if meta.is_dir() => {}
                    Ok(_) => {
                        remove_any(&target)?;
                        create_dir(&target)?;
                    }
                    Err(_) => create_dir(&target)?,
                }
                self.directories.insert(target, attributes);
            }
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                remove_any(&target)?;
                let mut file = OpenOptions::new()
                    .write(true)
                    // O_EXCL: fails rather than following a symlink planted at this name.
                    .create_new(true)
                    .mode(0o600)
                    .open(&target)
                    .map_err(io_err("create file"))?;
                io::copy(&mut entry, &mut file).map_err(|e| self.unreadable(e))?;
                self.apply_attributes(&target, attributes, true)?;
            }
            EntryType::Symlink => {
                let link = entry
                    .link_name_bytes()
                    .ok_or_else(|| self.unsafe_entry(&shown, "symlink without a target"))?;
                remove_any(&target)?;
                std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(&link), &target)
                    .map_err(io_err("create symlink"))?;
                self.apply_attributes(&target, attributes, false)?;
            }
            EntryType::Link => {
                let link = entry
                    .link_name_bytes()
                    .ok_or_else(|| self.unsafe_entry(&shown, "hard link without a target"))?;
                let source = safe_relative_path(&link)
                    .map_err(|reason| self.unsafe_entry(&shown, reason))?;
                let source = self.existing_inside(&source, &shown)?;
                if source != target {
                    remove_any(&target)?;
                    fs::hard_link(&source, &target).map_err(io_err("create hard link"))?;
                }
            }
            EntryType::Fifo => {
                remove_any(&target)?;
                rustix::fs::mknodat(CWD, &target, FileType::Fifo, Mode::from_raw_mode(0o600), 0)
                    .map_err(|e| ImageError::Io {
                        action: "create fifo",
                        path: target.clone(),
                        source: e.into(),
                    })?;
                self.apply_attributes(&target, attributes, true)?;
            }
            EntryType::Char
                if header.device_major().ok().flatten() == Some(0)
                    && header.device_minor().ok().flatten() == Some(0) =>
            {
                // An overlayfs-style whiteout (0/0 char device): store it as the OCI marker file.
                let marker = whiteout::marker_for(&target)
                    .ok_or_else(|| self.unsafe_entry(&shown, "whiteout of an unnamed entry"))?;
                remove_any(&marker)?;
                fs::File::create(&marker).map_err(ImageError::io("create whiteout", &marker))?;
            }
            other => {
                // Device nodes would give a sandbox direct hardware access; metadata entries
                // (pax globals and the like) carry nothing to unpack.
                tracing::debug!(layer = self.digest, path = %shown, entry_type = ?other, "skipped layer entry");
            }
        }
        Ok(())
    }

    /// Creates the missing parents of `relative` and returns the entry's full path, refusing
    /// any parent that is not a real directory (a symlink would redirect the write).
    fn prepare_parents(&self, relative: &Path, shown: &str) -> Result<PathBuf, ImageError> {
        let mut current = self.dest.to_owned();
        let mut components = relative.components().peekable();
        while let Some(component) = components.next() {
            current.push(component);
            if components.peek().is_none() {
                break;
            }
            match fs::symlink_metadata(&current) {
                Ok(meta) if meta.is_dir() => {}
                Ok(meta) if meta.file_type().is_symlink() => {
                    return Err(self.unsafe_entry(shown, "a parent directory is a symlink"));
                }
                Ok(_) => {
                    return Err(self.unsafe_entry(shown, "a parent directory is not a directory"));
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    create_dir(&current)?;
                    fs::set_permissions(&current, fs::Permissions::from_mode(IMPLIED_DIR_MODE))
                        .map_err(ImageError::io("set permissions of", &current))?;
                }
                Err(e) => {
                    return Err(ImageError::Io {
                        action: "inspect",
                        path: current,
                        source: e,
                    });
                }
            }
        }
        Ok(current)
    }

    /// The full path of an already unpacked non-directory entry, reached through real
    /// directories only: the source of a hard link.
    fn existing_inside(&self, relative: &Path, shown: &str) -> Result<PathBuf, ImageError> {
        let mut current = self.dest.to_owned();
        let mut components = relative.components().peekable();
        while let Some(component) = components.next() {
            current.push(component);
            let meta = fs::symlink_metadata(&current).map_err(|_| {
                self.unsafe_entry(shown, "hard link to an entry not yet in the layer")
            })?;
            let last = components.peek().is_none();
            if last && meta.is_dir() {
                return Err(self.unsafe_entry(shown, "hard link to a directory"));
            }
            if !last && !meta.is_dir() {
                return Err(self.unsafe_entry(shown, "hard link through a symlink or file"));
            }
        }
        Ok(current)
    }

    fn apply_attributes(
        &self,
        path: &Path,
        attributes: Attributes,
        set_mode: bool,
    ) -> Result<(), ImageError> {
        // chown clears set-uid bits, so ownership goes first.
        if self.as_root {
            std::os::unix::fs::lchown(path, Some(attributes.uid), Some(attributes.gid))
                .map_err(ImageError::io("set owner of", path))?;
        }
        if set_mode {
            fs::set_permissions(path, fs::Permissions::from_mode(attributes.mode))
                .map_err(ImageError::io("set permissions of", path))?;
        }
        let time = Timespec {
            tv_sec: attributes.mtime,
            tv_nsec: 0,
        };
        let times = Timestamps {
            last_access: time,
            last_modification: time,
        };
        rustix::fs::utimensat(CWD, path, &times, AtFlags::SYMLINK_NOFOLLOW).map_err(|e| {
            ImageError::Io {
                action: "set times of",
                path: path.to_owned(),
                source: e.into(),
            }
        })
    }

    fn unsafe_entry(&self, path: &str, reason: &'static str) -> ImageError {
        ImageError::UnsafeLayerEntry {
            digest: self.digest.to_owned(),
            path: path.to_owned(),
            reason,
        }
    }

    fn unreadable(&self, source: io::Error) -> ImageError {
        ImageError::LayerUnreadable {
            digest: self.digest.to_owned(),
            source,
        }
    }
}

/// The entry path as a relative path of plain names (`./` dropped). Absolute paths and `..`
/// are refused: they could only serve to write outside the layer.
fn safe_relative_path(raw: &[u8]) -> Result<PathBuf, &'static str> {
    let path = Path::new(std::ffi::OsStr::from_bytes(raw));
    let mut relative = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(name) => relative.push(name),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => return Err("absolute path"),
            Component::ParentDir => return Err("path contains .."),
        }
    }
    Ok(relative)
}

fn create_dir(path: &Path) -> Result<(), ImageError> {
    fs::DirBuilder::new()
        .mode(IMPLIED_DIR_MODE)
        .create(path)
        .map_err(ImageError::io("create directory", path))
}

/// Removes whatever is at `path` (a later archive entry replaces an earlier one).
pub(crate) fn remove_any(path: &Path) -> Result<(), ImageError> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => {
            fs::remove_dir_all(path).map_err(ImageError::io("remove", path))
        }
        Ok(_) => fs::remove_file(path).map_err(ImageError::io("remove", path)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(ImageError::Io {
            action: "inspect",
            path: path.to_owned(),
            source: e,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_are_normalised() {
        assert_eq!(
            safe_relative_path(b"./usr/bin/env").unwrap(),
            Path::new("usr/bin/env")
        );
        assert_eq!(safe_relative_path(b"etc/").unwrap(), Path::new("etc"));
        assert_eq!(safe_relative_path(b"./").unwrap(), Path::new(""));
    }

    #[test]
    fn escapes_are_refused() {
        assert_eq!(safe_relative_path(b"/etc/passwd"), Err("absolute path"));
        assert_eq!(safe_relative_path(b"../x"), Err("path contains .."));
        assert_eq!(safe_relative_path(b"a/../../x"), Err("path contains .."));
    }
}
