//! The image store: resolving references and preparing root filesystems under a data dir.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::atomic;
use crate::config::ImageConfig;
use crate::digest::BlobDigest;
use crate::error::ImageError;
use crate::layer_cache::LayerCache;
use crate::layout::OciLayout;
use crate::platform;
use crate::reference::ImageRef;
use crate::rootfs;

/// The `digest` of a [`ResolvedImage`] for `host:`.
const HOST_DIGEST: &str = "host";

/// An image reference pinned to one image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolvedImage {
    /// The reference it was resolved from, as written by [`ImageRef`]'s `Display`.
    pub reference: String,
    /// `sha256:<hex>` of the image manifest; `"host"` for `host:`.
    pub digest: String,
    /// The image's runtime defaults.
    pub config: ImageConfig,
}

/// A root filesystem ready to be used as a sandbox's read-only lower layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rootfs {
    /// The directory to use as `/`.
    pub path: PathBuf,
    /// Whether this is the host's own root (`host:`), which needs masking (SPEC §6).
    pub host: bool,
}

/// Image caches under one directory (`<data-dir>/images`):
/// `layers/<alg>/<hex>/` (unpacked layers, shared between images),
/// `rootfs/<alg>/<manifest-hex>/` (assembled root filesystems) and `locks/`.
#[derive(Debug)]
pub struct ImageStore {
    root: PathBuf,
}

impl ImageStore {
    /// Opens (creating if needed) the store at `root`.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let store = clrk_image::ImageStore::open(&dir.path().join("images")).unwrap();
    /// # let _ = store;
    /// ```
    pub fn open(root: &Path) -> Result<ImageStore, ImageError> {
        for sub in ["layers", "rootfs", "locks"] {
            let dir = root.join(sub);
            fs::create_dir_all(&dir).map_err(ImageError::io("create directory", &dir))?;
        }
        Ok(ImageStore {
            root: root.to_owned(),
        })
    }

    /// Reads the image's index, manifest and config, following nested indexes and picking
    /// the running platform from multi-platform ones. The manifest and config blobs are
    /// verified against their digests. Nothing is unpacked.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = clrk_image::ImageStore::open(dir.path()).unwrap();
    /// let image = store.resolve(&"host:".parse().unwrap()).unwrap();
    /// assert_eq!(image.digest, "host");
    /// ```
    pub fn resolve(&self, r: &ImageRef) -> Result<ResolvedImage, ImageError> {
        let reference = r.to_string();
        let (dir, tag) = match r {
            ImageRef::Host => {
                return Ok(ResolvedImage {
                    reference,
                    digest: HOST_DIGEST.to_owned(),
                    config: ImageConfig::default(),
                });
            }
            ImageRef::OciLayout { dir, tag } => (dir, tag.as_deref()),
        };
        let layout = OciLayout::open(dir)?;
        let selected = layout.select(tag, &reference)?;
        let configuration = layout.config(&selected.manifest)?;
        if !platform::is_running(configuration.os(), configuration.architecture()) {
            let built_for = platform::describe(
                configuration.os(),
                configuration.architecture(),
                configuration.variant().as_deref(),
            );
            return Err(ImageError::PlatformNotFound {
                reference,
                wanted: platform::running(),
                available: vec![built_for],
            });
        }
        tracing::debug!(image = %reference, digest = %selected.digest, "resolved image");
        Ok(ResolvedImage {
            reference,
            digest: selected.digest.to_string(),
            config: ImageConfig::from(&configuration),
        })
    }

    /// Makes the image's root filesystem available and returns it. `host:` is `/`. For an OCI
    /// layout each layer is verified and unpacked once into the shared layer cache, then the
    /// layers are stacked (whiteouts applied) into `rootfs/<alg>/<manifest-hex>/`. Idempotent,
    /// atomic and safe to call concurrently for the same image.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = clrk_image::ImageStore::open(dir.path()).unwrap();
    /// let r: clrk_image::ImageRef = "host:".parse().unwrap();
    /// let rootfs = store.prepare(&store.resolve(&r).unwrap(), &r).unwrap();
    /// assert_eq!(rootfs.path, std::path::Path::new("/"));
    /// ```
    pub fn prepare(&self, image: &ResolvedImage, r: &ImageRef) -> Result<Rootfs, ImageError> {
        let mismatch = || ImageError::ReferenceMismatch {
            reference: r.to_string(),
            digest: image.digest.clone(),
        };
        let dir = match r {
            ImageRef::Host if image.digest == HOST_DIGEST => {
                return Ok(Rootfs {
                    path: PathBuf::from("/"),
                    host: true,
                });
            }
            ImageRef::Host => return Err(mismatch()),
            ImageRef::OciLayout { dir, .. } => dir,
        };
        if image.digest == HOST_DIGEST {
            return Err(mismatch());
        }
        let digest = BlobDigest::parse(&image.digest)?;
        let target = digest.path_under(&self.root.join("rootfs"));
        if target.is_dir() {
            return Ok(Rootfs {
                path: target,
                host: false,
            });
        }
        let layout = OciLayout::open(dir)?;
        let manifest = layout.manifest(&digest)?;
        let cache = LayerCache::new(self.root.join("layers"), self.root.join("locks"));
        let layers = manifest
            .layers()
            .iter()
            .map(|layer| cache.ensure(&layout, layer))
            .collect::<Result<Vec<_>, _>>()?;
        let parent = target.parent().expect("digest paths have a parent");
        fs::create_dir_all(parent).map_err(ImageError::io("create directory", parent))?;
        let lock = self.root.join("locks").join(format!(
            "rootfs-{}-{}.lock",
            digest.algorithm(),
            digest.hex()
        ));
        let started = Instant::now();
        let built = atomic::build_once(&target, &lock, |temp| rootfs::assemble(&layers, temp))?;
        if built {
            tracing::info!(
                image = %image.reference,
                digest = %digest,
                layers = layers.len(),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "assembled rootfs"
            );
        }
        Ok(Rootfs {
            path: target,
            host: false,
        })
    }
}
