//! The image store: resolving references and preparing root filesystems under a data dir.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use oci_spec::image::ImageManifest;

use crate::atomic::{self, LockGuard};
use crate::config::ImageConfig;
use crate::digest::BlobDigest;
use crate::error::ImageError;
use crate::layer_cache::LayerCache;
use crate::layout::OciLayout;
use crate::local::{ANNOTATION_REFERENCE, IndexEntry, LocalStore};
use crate::platform;
use crate::progress::Progress;
use crate::reference::ImageRef;
use crate::registry::RegistryClient;
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

impl ResolvedImage {
    /// Whether this is `host:`, the host's own root filesystem.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = clrk_image::ImageStore::open(dir.path()).unwrap();
    /// assert!(store.resolve(&"host:".parse().unwrap()).unwrap().is_host());
    /// ```
    pub fn is_host(&self) -> bool {
        self.digest == HOST_DIGEST
    }
}

/// A root filesystem ready to be used as a sandbox's read-only lower layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rootfs {
    /// The directory to use as `/`.
    pub path: PathBuf,
    /// Whether this is the host's own root (`host:`), which needs masking (SPECIFICATION §6).
    pub host: bool,
}

/// How an [`ImageStore`] reaches registries.
#[derive(Debug, Clone, Default)]
pub struct StoreOptions {
    /// Registries (`host` or `host:port`, as written in references) spoken to over plain HTTP;
    /// every other registry is HTTPS only.
    pub insecure_registries: Vec<String>,
    /// The docker `config.json` to read credentials from; `None` means docker's lookup
    /// (`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`).
    pub docker_config: Option<PathBuf>,
}

/// Image caches under one directory (`<data-dir>/images`):
/// `local/` (an OCI image layout: blobs of pulled, archived and imported images, and an
/// `index.json` of the images present), `layers/<alg>/<hex>/` (unpacked layers, shared between
/// images), `rootfs/<alg>/<manifest-hex>/` (assembled root filesystems), `tmp/` and `locks/`.
pub struct ImageStore {
    pub(crate) root: PathBuf,
    pub(crate) local: LocalStore,
    pub(crate) registry: RegistryClient,
}

impl std::fmt::Debug for ImageStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageStore")
            .field("root", &self.root)
            .finish()
    }
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
        Self::open_with(root, StoreOptions::default())
    }

    /// Opens (creating if needed) the store at `root`, reaching registries as `options` say.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let options = clrk_image::StoreOptions {
    ///     insecure_registries: vec!["127.0.0.1:5000".into()],
    ///     docker_config: None,
    /// };
    /// let store = clrk_image::ImageStore::open_with(dir.path(), options).unwrap();
    /// # let _ = store;
    /// ```
    pub fn open_with(root: &Path, options: StoreOptions) -> Result<ImageStore, ImageError> {
        for sub in ["layers", "rootfs", "locks", "tmp"] {
            let dir = root.join(sub);
            fs::create_dir_all(&dir).map_err(ImageError::io("create directory", &dir))?;
        }
        let local = LocalStore::open(&root.join("local"), &root.join("locks"))?;
        Ok(ImageStore {
            root: root.to_owned(),
            local,
            registry: RegistryClient::new(&options.insecure_registries, options.docker_config),
        })
    }

    /// Held while reading or writing the caches; `prune` takes it exclusively.
    pub(crate) fn use_lock(&self) -> Result<LockGuard, ImageError> {
        LockGuard::acquire_shared(&self.gc_lock_path())
    }

    pub(crate) fn gc_lock_path(&self) -> PathBuf {
        self.root.join("locks").join("gc.lock")
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
        let resolved = match r {
            ImageRef::Host => {
                return Ok(ResolvedImage {
                    reference,
                    digest: HOST_DIGEST.to_owned(),
                    config: ImageConfig::default(),
                });
            }
            ImageRef::OciLayout { dir, tag } => {
                resolve_in_layout(&OciLayout::open(dir)?, tag.as_deref(), &reference)?
            }
            ImageRef::OciArchive { .. } | ImageRef::DockerArchive { .. } => {
                let _in_use = self.use_lock()?;
                self.resolve_archive(r)?
            }
            ImageRef::Registry(registry_ref) => {
                let _in_use = self.use_lock()?;
                self.resolve_registry(registry_ref)?
            }
        };
        tracing::debug!(image = %reference, digest = %resolved.digest, "resolved image");
        Ok(resolved)
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
        self.prepare_with_progress(image, r, &|_| {})
    }

    /// [`prepare`](Self::prepare), reporting each layer's download (or that it was cached) to
    /// `progress`, e.g. to draw one progress bar per layer.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = clrk_image::ImageStore::open(dir.path()).unwrap();
    /// let r: clrk_image::ImageRef = "host:".parse().unwrap();
    /// let image = store.resolve(&r).unwrap();
    /// let rootfs = store
    ///     .prepare_with_progress(&image, &r, &|p| eprintln!("{} {}/{}", p.layer, p.done, p.total))
    ///     .unwrap();
    /// assert!(rootfs.host);
    /// ```
    pub fn prepare_with_progress(
        &self,
        image: &ResolvedImage,
        r: &ImageRef,
        progress: &dyn Fn(Progress),
    ) -> Result<Rootfs, ImageError> {
        let mismatch = || ImageError::ReferenceMismatch {
            reference: r.to_string(),
            digest: image.digest.clone(),
        };
        match r {
            ImageRef::Host if image.digest == HOST_DIGEST => {
                return Ok(Rootfs {
                    path: PathBuf::from("/"),
                    host: true,
                });
            }
            ImageRef::Host => return Err(mismatch()),
            _ if image.digest == HOST_DIGEST => return Err(mismatch()),
            _ => {}
        }
        let digest = BlobDigest::parse(&image.digest)?;
        let target = digest.path_under(&self.root.join("rootfs"));
        let _in_use = self.use_lock()?;
        if target.is_dir() {
            return Ok(Rootfs {
                path: target,
                host: false,
            });
        }
        let (layout, manifest) = match r {
            ImageRef::OciLayout { dir, .. } => {
                let layout = OciLayout::open(dir)?;
                let manifest = layout.manifest(&digest)?;
                self.keep_manifest(&layout, &digest, &manifest)?;
                (layout, manifest)
            }
            _ => {
                if !self.local.has_blob(&digest) {
                    self.fetch_manifest(r, &digest)?;
                }
                let layout = self.local.layout()?;
                let manifest = layout.manifest(&digest)?;
                (layout, manifest)
            }
        };
        let cache = LayerCache::new(self.root.join("layers"), self.root.join("locks"));
        let mut layers = Vec::new();
        for descriptor in manifest.layers() {
            let layer = BlobDigest::new(descriptor.digest())?;
            let total = descriptor.size();
            if cache.contains(&layer) {
                progress(Progress {
                    layer: layer.to_string(),
                    done: total,
                    total,
                    cached: true,
                });
            } else if !matches!(r, ImageRef::OciLayout { .. }) && !self.local.has_blob(&layer) {
                self.fetch_layer(r, &layer, total, progress)?;
            } else {
                progress(Progress {
                    layer: layer.to_string(),
                    done: total,
                    total,
                    cached: false,
                });
            }
            layers.push(cache.ensure(&layout, descriptor)?);
        }
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
        self.record(&image.reference, &digest)?;
        Ok(Rootfs {
            path: target,
            host: false,
        })
    }

    /// Copies an `oci:` layout's manifest and config into the local store, so `list` and
    /// `prune` know the image's layers without the layout.
    fn keep_manifest(
        &self,
        layout: &OciLayout,
        digest: &BlobDigest,
        manifest: &ImageManifest,
    ) -> Result<(), ImageError> {
        let config = BlobDigest::new(manifest.config().digest())?;
        for (blob, size) in [
            (digest.clone(), None),
            (config, Some(manifest.config().size())),
        ] {
            let path = layout.blob_path(&blob);
            let size = match size {
                Some(size) => size,
                None => fs::metadata(&path)
                    .map_err(ImageError::io("inspect", &path))?
                    .len(),
            };
            self.local.put_file(&blob, &path, size)?;
        }
        Ok(())
    }

    /// Lists the prepared image in the local index (once per reference and digest).
    fn record(&self, reference: &str, digest: &BlobDigest) -> Result<(), ImageError> {
        let known = |e: &IndexEntry| e.digest == digest.to_string() && e.reference() == reference;
        if self.local.entries()?.iter().any(known) {
            return Ok(());
        }
        let path = self.local.blob_path(digest);
        let size = fs::metadata(&path)
            .map_err(ImageError::io("inspect", &path))?
            .len();
        self.local.update_index(|entries| {
            if !entries.iter().any(known) {
                entries.push(IndexEntry {
                    media_type: MANIFEST_MEDIA_TYPE.to_owned(),
                    digest: digest.to_string(),
                    size,
                    annotations: [(ANNOTATION_REFERENCE.to_owned(), reference.to_owned())].into(),
                });
            }
        })
    }
}

/// The manifest media type recorded for prepared images (Docker manifests are read the same).
pub(crate) const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";

/// Resolves `tag` (or the only image) in `layout` to the manifest built for this platform.
pub(crate) fn resolve_in_layout(
    layout: &OciLayout,
    tag: Option<&str>,
    reference: &str,
) -> Result<ResolvedImage, ImageError> {
    let selected = layout.select(tag, reference)?;
    let configuration = layout.config(&selected.manifest)?;
    platform::check_config(&configuration, reference)?;
    Ok(ResolvedImage {
        reference: reference.to_owned(),
        digest: selected.digest.to_string(),
        config: ImageConfig::from(&configuration),
    })
}
