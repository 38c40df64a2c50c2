//! Archive transports and `import` (`ImageStore` operations for `oci-archive:` and
//! `docker-archive:`).

use std::fs;
use std::io;
use std::path::Path;

use oci_spec::image::ANNOTATION_REF_NAME;

use crate::archive::{self, ArchiveKind, StagedArchive};
use crate::digest::BlobDigest;
use crate::error::ImageError;
use crate::inventory::LocalImage;
use crate::layout::OciLayout;
use crate::local::IndexEntry;
use crate::reference::{ImageRef, RegistryRef};
use crate::store::{ImageStore, MANIFEST_MEDIA_TYPE, ResolvedImage, resolve_in_layout};

impl ImageStore {
    /// Loads the image archive `file` (`docker save` output or a tarred OCI layout) into the
    /// local store under `name`, or under the names the archive carries when `name` is `None`.
    /// A bare reference of that name then resolves from the local store, before any registry.
    ///
    /// ```no_run
    /// # let store = clrk_image::ImageStore::open(std::path::Path::new("/tmp/images")).unwrap();
    /// let imported = store.import(std::path::Path::new("app.tar"), Some("app:1.0")).unwrap();
    /// assert_eq!(imported[0].reference, "docker.io/library/app:1.0");
    /// ```
    pub fn import(&self, file: &Path, name: Option<&str>) -> Result<Vec<LocalImage>, ImageError> {
        let input = fs::File::open(file).map_err(ImageError::io("open image archive", file))?;
        self.import_from(io::BufReader::new(input), file, name)
    }

    /// [`import`](Self::import) of an archive read from `input`, e.g. an upload; `file` names
    /// it in errors.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = clrk_image::ImageStore::open(dir.path()).unwrap();
    /// let err = store
    ///     .import_from(&b"not a tar file"[..], std::path::Path::new("upload.tar"), None)
    ///     .unwrap_err();
    /// assert!(err.to_string().contains("upload.tar"), "{err}");
    /// ```
    pub fn import_from(
        &self,
        input: impl io::Read,
        file: &Path,
        name: Option<&str>,
    ) -> Result<Vec<LocalImage>, ImageError> {
        let _in_use = self.use_lock()?;
        let staged = archive::stage_from(input, file, ArchiveKind::Either, &self.root.join("tmp"))?;
        let layout = OciLayout::open(&staged.dir)?;
        let choices: Vec<(String, Option<String>)> = match name {
            Some(name) => vec![(RegistryRef::parse(name)?.to_string(), None)],
            None => {
                let named: Vec<(String, Option<String>)> = archive::images(&staged)?
                    .into_iter()
                    .filter_map(|image| image.name.map(|name| (name, image.tag)))
                    .collect();
                if named.is_empty() {
                    return Err(ImageError::ImportNameRequired {
                        file: file.to_owned(),
                    });
                }
                named
            }
        };
        let mut imported = Vec::new();
        for (name, tag) in choices {
            let image = resolve_in_layout(&layout, tag.as_deref(), &name)
                .map_err(|e| archive_error(e, file))?;
            let digest = BlobDigest::parse(&image.digest)?;
            let size = self.copy_image(&layout, &digest)?;
            let manifest_path = self.local.blob_path(&digest);
            let manifest_size = fs::metadata(&manifest_path)
                .map_err(ImageError::io("inspect", &manifest_path))?
                .len();
            self.local.update_index(|entries| {
                entries.retain(|e| e.name() != Some(name.as_str()));
                entries.push(IndexEntry {
                    media_type: MANIFEST_MEDIA_TYPE.to_owned(),
                    digest: image.digest.clone(),
                    size: manifest_size,
                    annotations: [(ANNOTATION_REF_NAME.to_owned(), name.clone())].into(),
                });
            })?;
            tracing::info!(archive = %file.display(), image = %name, digest = %image.digest, "imported image");
            imported.push(LocalImage {
                reference: name,
                digest: image.digest,
                size,
                imported: true,
            });
        }
        Ok(imported)
    }

    /// Resolves an `oci-archive:` or `docker-archive:` reference, copying the image into the
    /// local store (so `prepare` needs the archive only if the store was pruned meanwhile).
    pub(crate) fn resolve_archive(&self, r: &ImageRef) -> Result<ResolvedImage, ImageError> {
        let (staged, file, tag) = self.stage(r)?;
        let layout = OciLayout::open(&staged.dir)?;
        let image = resolve_in_layout(&layout, tag.as_deref(), &r.to_string())
            .map_err(|e| archive_error(e, file))?;
        self.copy_image(&layout, &BlobDigest::parse(&image.digest)?)?;
        Ok(image)
    }

    /// Copies the archive's image `digest` into the local store again.
    pub(crate) fn restage(&self, r: &ImageRef, digest: &BlobDigest) -> Result<(), ImageError> {
        let image = self.resolve_archive(r)?;
        if image.digest != digest.to_string() {
            return Err(ImageError::ReferenceMismatch {
                reference: r.to_string(),
                digest: digest.to_string(),
            });
        }
        Ok(())
    }

    /// Makes a layer of an archive image present again (by copying the whole image).
    pub(crate) fn restage_layer(&self, r: &ImageRef, layer: &BlobDigest) -> Result<(), ImageError> {
        self.resolve_archive(r)?;
        if self.local.has_blob(layer) {
            Ok(())
        } else {
            Err(ImageError::BlobMissing {
                dir: self.root.join("local"),
                digest: layer.to_string(),
            })
        }
    }

    fn stage<'r>(
        &self,
        r: &'r ImageRef,
    ) -> Result<(StagedArchive, &'r Path, Option<String>), ImageError> {
        let scratch = self.root.join("tmp");
        match r {
            ImageRef::OciArchive { file, tag } => Ok((
                archive::stage(file, ArchiveKind::Oci, &scratch)?,
                file,
                tag.clone(),
            )),
            ImageRef::DockerArchive { file, name } => {
                let name = name
                    .as_deref()
                    .map(|n| RegistryRef::parse(n).map(|r| r.to_string()))
                    .transpose()?;
                Ok((
                    archive::stage(file, ArchiveKind::Docker, &scratch)?,
                    file,
                    name,
                ))
            }
            _ => unreachable!("stage is only called for archive references"),
        }
    }

    /// Copies manifest, config and layers of `digest` from `layout` into the local store,
    /// verifying each; returns the image's size (config and layers).
    fn copy_image(&self, layout: &OciLayout, digest: &BlobDigest) -> Result<u64, ImageError> {
        let manifest = layout.manifest(digest)?;
        let manifest_path = layout.blob_path(digest);
        let manifest_size = fs::metadata(&manifest_path)
            .map_err(ImageError::io("inspect", &manifest_path))?
            .len();
        let mut blobs = vec![(digest.clone(), manifest_size)];
        blobs.push((
            BlobDigest::new(manifest.config().digest())?,
            manifest.config().size(),
        ));
        for layer in manifest.layers() {
            blobs.push((BlobDigest::new(layer.digest())?, layer.size()));
        }
        let mut size = 0;
        for (blob, blob_size) in &blobs[..] {
            self.local
                .put_file(blob, &layout.blob_path(blob), *blob_size)?;
            size += blob_size;
        }
        Ok(size - manifest_size)
    }
}

/// Errors about the temporary layout an archive was staged into, restated about the archive.
fn archive_error(e: ImageError, file: &Path) -> ImageError {
    match e {
        ImageError::TagNotFound { tag, available, .. } => ImageError::ArchiveImageNotFound {
            file: file.to_owned(),
            wanted: tag,
            available,
        },
        ImageError::TagRequired { available, .. } => ImageError::ArchiveImageNotFound {
            file: file.to_owned(),
            wanted: String::new(),
            available,
        },
        ImageError::NotALayout { reason, .. } => ImageError::NotAnArchive {
            file: file.to_owned(),
            reason,
        },
        ImageError::BlobMissing { digest, .. } => ImageError::NotAnArchive {
            file: file.to_owned(),
            reason: format!("blob {digest} is missing from it"),
        },
        other => other,
    }
}
