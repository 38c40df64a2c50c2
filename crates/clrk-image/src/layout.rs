//! Reading an OCI image layout directory (`oci-layout`, `index.json`, `blobs/`).

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use oci_spec::image::{
    ANNOTATION_REF_NAME, Descriptor, ImageConfiguration, ImageIndex, ImageManifest, MediaType,
};
use serde::de::DeserializeOwned;

use crate::digest::{BlobDigest, HashingReader};
use crate::error::ImageError;
use crate::platform;

/// How many image indexes deep a reference may lead before we give up.
const MAX_INDEX_DEPTH: usize = 4;
/// Docker's media types, which skopeo keeps when copying Docker images into a layout.
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// An OCI image layout on disk.
pub(crate) struct OciLayout {
    dir: PathBuf,
}

/// The image manifest a reference resolved to, with its verified digest.
pub(crate) struct SelectedManifest {
    pub(crate) digest: BlobDigest,
    pub(crate) manifest: ImageManifest,
}

enum Kind {
    Index,
    Manifest,
}

impl OciLayout {
    /// Checks that `dir` is a layout (has `oci-layout` and `index.json`).
    pub(crate) fn open(dir: &Path) -> Result<Self, ImageError> {
        let layout = OciLayout {
            dir: dir.to_owned(),
        };
        let marker: serde_json::Value = layout.read_json_file("oci-layout", "layout marker")?;
        if marker.get("imageLayoutVersion").is_none() {
            return Err(layout.not_a_layout("oci-layout has no imageLayoutVersion"));
        }
        Ok(layout)
    }

    /// Where the blob with `digest` lives.
    pub(crate) fn blob_path(&self, digest: &BlobDigest) -> PathBuf {
        digest.path_under(&self.dir.join("blobs"))
    }

    /// Opens a blob for streaming; the caller verifies it with a [`HashingReader`].
    pub(crate) fn open_blob(&self, digest: &BlobDigest) -> Result<File, ImageError> {
        let path = self.blob_path(digest);
        File::open(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => ImageError::BlobMissing {
                dir: self.dir.clone(),
                digest: digest.to_string(),
            },
            _ => ImageError::Io {
                action: "open blob",
                path,
                source: e,
            },
        })
    }

    /// Finds the image manifest for `tag` (or the only image) built for this platform,
    /// following nested indexes.
    pub(crate) fn select(
        &self,
        tag: Option<&str>,
        reference: &str,
    ) -> Result<SelectedManifest, ImageError> {
        let index: ImageIndex = self.read_json_file("index.json", "index")?;
        let manifests = index.manifests();
        let mut tags: Vec<String> = Vec::new();
        for t in manifests.iter().filter_map(tag_of) {
            if !tags.iter().any(|known| known == t) {
                tags.push(t.to_owned());
            }
        }
        let candidates: Vec<&Descriptor> = match tag {
            Some(wanted) => manifests
                .iter()
                .filter(|d| tag_of(d) == Some(wanted))
                .collect(),
            None => manifests.iter().collect(),
        };
        if let Some(wanted) = tag
            && candidates.is_empty()
        {
            return Err(ImageError::TagNotFound {
                dir: self.dir.clone(),
                tag: wanted.to_owned(),
                available: tags,
            });
        }
        if candidates.is_empty() {
            return Err(self.not_a_layout("index.json lists no images"));
        }
        // Several untagged-by-request entries are only acceptable as one image's platforms.
        if tag.is_none()
            && candidates.len() > 1
            && candidates.iter().any(|d| d.platform().is_none())
        {
            return Err(ImageError::TagRequired {
                dir: self.dir.clone(),
                count: candidates.len(),
                available: tags,
            });
        }
        let mut chosen = platform::choose(&candidates, reference)?.clone();
        for _ in 0..=MAX_INDEX_DEPTH {
            let digest = BlobDigest::new(chosen.digest())?;
            match kind_of(chosen.media_type()) {
                Some(Kind::Manifest) => {
                    let manifest = self.read_json_blob(&digest, Some(chosen.size()), "manifest")?;
                    return Ok(SelectedManifest { digest, manifest });
                }
                Some(Kind::Index) => {
                    let nested: ImageIndex =
                        self.read_json_blob(&digest, Some(chosen.size()), "image index")?;
                    let candidates: Vec<&Descriptor> = nested.manifests().iter().collect();
                    chosen = platform::choose(&candidates, reference)?.clone();
                }
                None => {
                    return Err(ImageError::UnsupportedMediaType {
                        what: "manifest",
                        digest: digest.to_string(),
                        media_type: chosen.media_type().to_string(),
                    });
                }
            }
        }
        Err(ImageError::IndexTooDeep {
            reference: reference.to_owned(),
            max: MAX_INDEX_DEPTH,
        })
    }

    /// Reads and verifies the manifest with `digest` (as recorded by an earlier `select`).
    pub(crate) fn manifest(&self, digest: &BlobDigest) -> Result<ImageManifest, ImageError> {
        self.read_json_blob(digest, None, "manifest")
    }

    /// Reads and verifies a manifest's config blob.
    pub(crate) fn config(
        &self,
        manifest: &ImageManifest,
    ) -> Result<ImageConfiguration, ImageError> {
        let descriptor = manifest.config();
        let digest = BlobDigest::new(descriptor.digest())?;
        self.read_json_blob(&digest, Some(descriptor.size()), "config")
    }

    fn read_json_blob<T: DeserializeOwned>(
        &self,
        digest: &BlobDigest,
        size: Option<u64>,
        what: &'static str,
    ) -> Result<T, ImageError> {
        let mut reader = HashingReader::new(self.open_blob(digest)?, digest);
        let mut bytes = Vec::new();
        let path = self.blob_path(digest);
        reader
            .read_to_end(&mut bytes)
            .map_err(ImageError::io("read blob", &path))?;
        let (found, actual) = reader
            .finish()
            .map_err(ImageError::io("read blob", &path))?;
        digest.verify(&found)?;
        if let Some(expected) = size
            && expected != actual
        {
            return Err(ImageError::SizeMismatch {
                digest: digest.to_string(),
                expected,
                actual,
            });
        }
        serde_json::from_slice(&bytes).map_err(|source| ImageError::InvalidJson {
            what,
            name: digest.to_string(),
            source,
        })
    }

    fn read_json_file<T: DeserializeOwned>(
        &self,
        name: &str,
        what: &'static str,
    ) -> Result<T, ImageError> {
        let path = self.dir.join(name);
        let bytes = std::fs::read(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => self.not_a_layout(&format!("it has no {name} file")),
            _ => ImageError::Io {
                action: "read",
                path: path.clone(),
                source: e,
            },
        })?;
        serde_json::from_slice(&bytes).map_err(|source| ImageError::InvalidJson {
            what,
            name: path.display().to_string(),
            source,
        })
    }

    fn not_a_layout(&self, reason: &str) -> ImageError {
        ImageError::NotALayout {
            dir: self.dir.clone(),
            reason: reason.to_owned(),
        }
    }
}

fn tag_of(descriptor: &Descriptor) -> Option<&str> {
    descriptor
        .annotations()
        .as_ref()?
        .get(ANNOTATION_REF_NAME)
        .map(String::as_str)
}

fn kind_of(media_type: &MediaType) -> Option<Kind> {
    match media_type {
        MediaType::ImageIndex => Some(Kind::Index),
        MediaType::ImageManifest => Some(Kind::Manifest),
        MediaType::Other(other) if other == DOCKER_MANIFEST_LIST => Some(Kind::Index),
        MediaType::Other(other) if other == DOCKER_MANIFEST => Some(Kind::Manifest),
        _ => None,
    }
}
