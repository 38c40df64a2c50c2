//! Assembling an image's root filesystem by stacking its unpacked layers.
//!
//! Files are hard links into the layer cache (fast, no copies): sandboxes never write to the
//! result, the runtime puts a writable memory overlay on top. Directories are real, created
//! here, so every path walked below is checked with `lstat` and never crosses a symlink.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::Path;

use rustix::fs::{AtFlags, CWD, Timespec, Timestamps};

use crate::error::ImageError;
use crate::extract::remove_any;
use crate::whiteout::{self, Marker};

/// Stacks `layers` (lowest first) into the empty directory `dest`.
pub(crate) fn assemble(layers: &[impl AsRef<Path>], dest: &Path) -> Result<(), ImageError> {
    let as_root = rustix::process::geteuid().is_root();
    for layer in layers {
        apply_dir(layer.as_ref(), dest, as_root)?;
    }
    Ok(())
}

/// Applies one layer's directory `src` onto `dst` (a real directory): first its whiteouts,
/// which hide lower layers only, then its content.
fn apply_dir(src: &Path, dst: &Path, as_root: bool) -> Result<(), ImageError> {
    let mut content = Vec::new();
    let entries = fs::read_dir(src).map_err(ImageError::io("list", src))?;
    for entry in entries {
        let name = entry.map_err(ImageError::io("list", src))?.file_name();
        match whiteout::classify(&name) {
            Marker::Opaque => clear_dir(dst)?,
            Marker::Remove(hidden) => remove_any(&dst.join(hidden))?,
            Marker::Invalid => {}
            Marker::None => content.push(name),
        }
    }
    for name in content {
        let from = src.join(&name);
        let to = dst.join(&name);
        let meta = fs::symlink_metadata(&from).map_err(ImageError::io("inspect", &from))?;
        if meta.is_dir() {
            match fs::symlink_metadata(&to) {
                Ok(existing) if existing.is_dir() => {}
                Ok(_) => {
                    remove_any(&to)?;
                    create_dir(&to)?;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => create_dir(&to)?,
                Err(e) => {
                    return Err(ImageError::Io {
                        action: "inspect",
                        path: to,
                        source: e,
                    });
                }
            }
            apply_dir(&from, &to, as_root)?;
        } else {
            remove_any(&to)?;
            // Links the entry itself, symlinks included (link(2) does not follow them).
            fs::hard_link(&from, &to).map_err(ImageError::io("hard-link into rootfs", &to))?;
        }
    }
    copy_dir_attributes(src, dst, as_root)
}

fn clear_dir(dir: &Path) -> Result<(), ImageError> {
    let entries = fs::read_dir(dir).map_err(ImageError::io("list", dir))?;
    for entry in entries {
        remove_any(&entry.map_err(ImageError::io("list", dir))?.path())?;
    }
    Ok(())
}

fn create_dir(path: &Path) -> Result<(), ImageError> {
    fs::DirBuilder::new()
        .mode(0o755)
        .create(path)
        .map_err(ImageError::io("create directory", path))
}

/// The upper layer's directory decides owner, mode and mtime (applied after its content, so
/// the mtime sticks).
fn copy_dir_attributes(src: &Path, dst: &Path, as_root: bool) -> Result<(), ImageError> {
    let meta = fs::metadata(src).map_err(ImageError::io("inspect", src))?;
    if as_root {
        std::os::unix::fs::chown(dst, Some(meta.uid()), Some(meta.gid()))
            .map_err(ImageError::io("set owner of", dst))?;
    }
    fs::set_permissions(dst, fs::Permissions::from_mode(meta.mode() & 0o7777))
        .map_err(ImageError::io("set permissions of", dst))?;
    let time = Timespec {
        tv_sec: meta.mtime(),
        tv_nsec: meta.mtime_nsec(),
    };
    let times = Timestamps {
        last_access: time,
        last_modification: time,
    };
    rustix::fs::utimensat(CWD, dst, &times, AtFlags::SYMLINK_NOFOLLOW).map_err(|e| ImageError::Io {
        action: "set times of",
        path: dst.to_owned(),
        source: e.into(),
    })
}
