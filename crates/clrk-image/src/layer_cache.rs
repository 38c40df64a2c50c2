//! The content-addressed layer cache: each layer blob unpacked once, shared by all images.

use std::fs;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::time::Instant;

use flate2::read::MultiGzDecoder;
use oci_spec::image::{Descriptor, MediaType};

use crate::atomic;
use crate::digest::{BlobDigest, HashingReader};
use crate::error::ImageError;
use crate::extract;
use crate::layout::OciLayout;

/// How a layer blob is compressed, from its media type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    fn of(media_type: &MediaType) -> Option<Self> {
        match media_type {
            MediaType::ImageLayer | MediaType::ImageLayerNonDistributable => {
                Some(Compression::None)
            }
            MediaType::ImageLayerGzip | MediaType::ImageLayerNonDistributableGzip => {
                Some(Compression::Gzip)
            }
            MediaType::ImageLayerZstd | MediaType::ImageLayerNonDistributableZstd => {
                Some(Compression::Zstd)
            }
            // Docker's layer types, kept by skopeo when it copies Docker images.
            MediaType::Other(other) => match other.as_str() {
                "application/vnd.docker.image.rootfs.diff.tar" => Some(Compression::None),
                "application/vnd.docker.image.rootfs.diff.tar.gzip"
                | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => {
                    Some(Compression::Gzip)
                }
                "application/vnd.docker.image.rootfs.diff.tar.zstd" => Some(Compression::Zstd),
                _ => None,
            },
            _ => None,
        }
    }
}

/// Unpacked layers under `<root>/<algorithm>/<hex>/`, whiteout markers kept as files.
pub(crate) struct LayerCache {
    root: PathBuf,
    locks: PathBuf,
}

impl LayerCache {
    pub(crate) fn new(root: PathBuf, locks: PathBuf) -> Self {
        LayerCache { root, locks }
    }

    /// Whether the layer `digest` is unpacked already.
    pub(crate) fn contains(&self, digest: &BlobDigest) -> bool {
        digest.path_under(&self.root).is_dir()
    }

    /// Returns the unpacked directory of the layer `descriptor` of `layout`, unpacking and
    /// verifying the blob first if it is not cached yet.
    pub(crate) fn ensure(
        &self,
        layout: &OciLayout,
        descriptor: &Descriptor,
    ) -> Result<PathBuf, ImageError> {
        let digest = BlobDigest::new(descriptor.digest())?;
        let compression = Compression::of(descriptor.media_type()).ok_or_else(|| {
            ImageError::UnsupportedMediaType {
                what: "layer",
                digest: digest.to_string(),
                media_type: descriptor.media_type().to_string(),
            }
        })?;
        let target = digest.path_under(&self.root);
        let parent = target.parent().expect("digest paths have a parent");
        fs::create_dir_all(parent).map_err(ImageError::io("create directory", parent))?;
        let lock = self.locks.join(format!(
            "layer-{}-{}.lock",
            digest.algorithm(),
            digest.hex()
        ));
        let started = Instant::now();
        let built = atomic::build_once(&target, &lock, |temp| {
            unpack_verified(layout, &digest, descriptor.size(), compression, temp)
        })?;
        if built {
            tracing::info!(
                layer = %digest,
                size = descriptor.size(),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "unpacked layer"
            );
        }
        Ok(target)
    }
}

/// Unpacks the blob into `dest` while hashing it; a digest or size mismatch overrides any
/// unpacking error, since a corrupt blob explains it.
fn unpack_verified(
    layout: &OciLayout,
    digest: &BlobDigest,
    size: u64,
    compression: Compression,
    dest: &Path,
) -> Result<(), ImageError> {
    let blob = layout.open_blob(digest)?;
    let mut hashing = HashingReader::new(BufReader::new(blob), digest);
    let label = digest.to_string();
    let unpacked = match compression {
        Compression::None => extract::unpack(&mut hashing, dest, &label),
        Compression::Gzip => extract::unpack(MultiGzDecoder::new(&mut hashing), dest, &label),
        Compression::Zstd => match zstd::stream::read::Decoder::new(&mut hashing) {
            Ok(decoder) => extract::unpack(decoder, dest, &label),
            Err(source) => Err(ImageError::LayerUnreadable {
                digest: label.clone(),
                source,
            }),
        },
    };
    let blob_path = layout.blob_path(digest);
    let (found, actual) = hashing
        .finish()
        .map_err(ImageError::io("read blob", &blob_path))?;
    digest.verify(&found)?;
    if actual != size {
        return Err(ImageError::SizeMismatch {
            digest: label,
            expected: size,
            actual,
        });
    }
    unpacked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compression_follows_the_media_type() {
        assert_eq!(
            Compression::of(&MediaType::ImageLayerGzip),
            Some(Compression::Gzip)
        );
        assert_eq!(
            Compression::of(&MediaType::ImageLayerZstd),
            Some(Compression::Zstd)
        );
        assert_eq!(
            Compression::of(&MediaType::ImageLayer),
            Some(Compression::None)
        );
        assert_eq!(
            Compression::of(&MediaType::from(
                "application/vnd.docker.image.rootfs.diff.tar.gzip"
            )),
            Some(Compression::Gzip)
        );
        assert_eq!(Compression::of(&MediaType::ImageConfig), None);
    }
}
