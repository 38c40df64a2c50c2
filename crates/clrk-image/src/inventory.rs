//! What the store holds: listing images and pruning what no kept image uses.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::atomic::LockGuard;
use crate::digest::BlobDigest;
use crate::error::ImageError;
use crate::extract::remove_any;
use crate::store::ImageStore;

/// An image the store holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalImage {
    /// Its reference: the imported name, or the reference it was prepared from.
    pub reference: String,
    /// `sha256:<hex>` of its manifest.
    pub digest: String,
    /// Bytes of its config and (compressed) layers.
    pub size: u64,
    /// Whether it was loaded with `import` (then `prune` keeps it).
    pub imported: bool,
}

/// What [`ImageStore::prune`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PruneReport {
    /// Image records dropped.
    pub images: usize,
    /// Blobs (manifests, configs, compressed layers) deleted.
    pub blobs: usize,
    /// Unpacked layers deleted.
    pub layers: usize,
    /// Assembled root filesystems deleted.
    pub rootfs: usize,
}

impl ImageStore {
    /// The images the store holds: pulled, prepared and imported ones.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = clrk_image::ImageStore::open(dir.path()).unwrap();
    /// assert!(store.list().unwrap().is_empty());
    /// ```
    pub fn list(&self) -> Result<Vec<LocalImage>, ImageError> {
        let layout = self.local.layout()?;
        let mut images = Vec::new();
        for entry in self.local.entries()? {
            let size = match BlobDigest::parse(&entry.digest).and_then(|d| layout.manifest(&d)) {
                Ok(manifest) => {
                    manifest.config().size()
                        + manifest
                            .layers()
                            .iter()
                            .map(oci_spec::image::Descriptor::size)
                            .sum::<u64>()
                }
                Err(e) => {
                    tracing::warn!(image = entry.reference(), error = %e, "image manifest unreadable");
                    0
                }
            };
            images.push(LocalImage {
                reference: entry.reference().to_owned(),
                digest: entry.digest.clone(),
                size,
                imported: entry.name().is_some(),
            });
        }
        Ok(images)
    }

    /// Forgets every image that is neither imported nor in `keep` (manifest digests, e.g. those
    /// of all revisions), then deletes the blobs, unpacked layers and root filesystems that no
    /// remaining image uses. Waits for running resolves and prepares, and they for it.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = clrk_image::ImageStore::open(dir.path()).unwrap();
    /// assert_eq!(store.prune(&[]).unwrap(), clrk_image::PruneReport::default());
    /// ```
    pub fn prune(&self, keep: &[String]) -> Result<PruneReport, ImageError> {
        let _exclusive = LockGuard::acquire(&self.gc_lock_path())?;
        let mut report = PruneReport::default();
        let kept = self.local.update_index(|entries| {
            let before = entries.len();
            entries.retain(|e| e.name().is_some() || keep.contains(&e.digest));
            report.images = before - entries.len();
            entries.clone()
        })?;
        let layout = self.local.layout()?;
        let mut live_blobs = BTreeSet::new();
        let mut live_layers = BTreeSet::new();
        let mut live_rootfs: BTreeSet<String> = keep.iter().cloned().collect();
        for entry in &kept {
            live_rootfs.insert(entry.digest.clone());
            live_blobs.insert(entry.digest.clone());
            let Ok(manifest) = BlobDigest::parse(&entry.digest).and_then(|d| layout.manifest(&d))
            else {
                continue;
            };
            live_blobs.insert(manifest.config().digest().to_string());
            for layer in manifest.layers() {
                live_blobs.insert(layer.digest().to_string());
                live_layers.insert(layer.digest().to_string());
            }
        }
        for (digest, path) in self.local.blobs()? {
            if !live_blobs.contains(&digest.to_string()) {
                remove_any(&path)?;
                report.blobs += 1;
            }
        }
        report.layers = remove_unused(&self.root.join("layers"), &live_layers)?;
        report.rootfs = remove_unused(&self.root.join("rootfs"), &live_rootfs)?;
        tracing::info!(
            images = report.images,
            blobs = report.blobs,
            layers = report.layers,
            rootfs = report.rootfs,
            "pruned image store"
        );
        Ok(report)
    }
}

/// Removes the `<alg>/<hex>` directories under `base` whose digest is not in `live`.
fn remove_unused(base: &Path, live: &BTreeSet<String>) -> Result<usize, ImageError> {
    let mut removed = 0;
    for algorithm in fs::read_dir(base).map_err(ImageError::io("list", base))? {
        let algorithm = algorithm.map_err(ImageError::io("list", base))?;
        let algorithm_name = algorithm.file_name().to_string_lossy().into_owned();
        let dir = algorithm.path();
        for item in fs::read_dir(&dir).map_err(ImageError::io("list", &dir))? {
            let item = item.map_err(ImageError::io("list", &dir))?;
            let name = item.file_name().to_string_lossy().into_owned();
            // Temporary build directories belong to builds in progress or are swept by them.
            if name.starts_with('.') || live.contains(&format!("{algorithm_name}:{name}")) {
                continue;
            }
            make_writable(&item.path());
            remove_any(&item.path())?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Read-only directories of an image would stop a non-root process from deleting their
/// content; root ignores modes anyway.
fn make_writable(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if rustix::process::geteuid().is_root() {
        return;
    }
    let mut stack = vec![dir.to_owned()];
    while let Some(path) = stack.pop() {
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            let _ = fs::set_permissions(&path, fs::Permissions::from_mode(0o755));
            if let Ok(entries) = fs::read_dir(&path) {
                stack.extend(entries.flatten().map(|e| e.path()));
            }
        }
    }
}
