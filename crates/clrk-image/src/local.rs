//! The store's own OCI image layout (`<root>/local`): the content-addressed blobs of pulled,
//! archived and imported images, and an `index.json` recording which images are present.
//!
//! Index entries carry one of two annotations: `org.opencontainers.image.ref.name` (the
//! normalised name of an imported image, which bare references resolve to before the registry
//! is asked) or `dev.clrk.image.reference` (the reference an image was prepared from).

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use oci_spec::image::ANNOTATION_REF_NAME;
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use crate::atomic::LockGuard;
use crate::digest::BlobDigest;
use crate::error::ImageError;
use crate::layout::OciLayout;

/// The annotation recording the reference a prepared image came from.
pub(crate) const ANNOTATION_REFERENCE: &str = "dev.clrk.image.reference";
const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";

/// One image listed in the local `index.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct IndexEntry {
    pub(crate) media_type: String,
    pub(crate) digest: String,
    pub(crate) size: u64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) annotations: BTreeMap<String, String>,
}

impl IndexEntry {
    /// The name of an imported image.
    pub(crate) fn name(&self) -> Option<&str> {
        self.annotations
            .get(ANNOTATION_REF_NAME)
            .map(String::as_str)
    }

    /// The reference shown for this image: its imported name or the reference it came from.
    pub(crate) fn reference(&self) -> &str {
        self.name()
            .or(self
                .annotations
                .get(ANNOTATION_REFERENCE)
                .map(String::as_str))
            .unwrap_or(&self.digest)
    }
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct IndexFile {
    schema_version: u32,
    media_type: String,
    manifests: Vec<IndexEntry>,
}

/// The local layout, its index lock and its blob directory.
pub(crate) struct LocalStore {
    dir: PathBuf,
    index_lock: PathBuf,
}

impl LocalStore {
    /// Creates the layout under `dir` if needed; `locks` holds the index lock.
    pub(crate) fn open(dir: &Path, locks: &Path) -> Result<Self, ImageError> {
        let blobs = dir.join("blobs");
        fs::create_dir_all(&blobs).map_err(ImageError::io("create directory", &blobs))?;
        let marker = dir.join("oci-layout");
        if !marker.exists() {
            write_atomically(&marker, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        }
        let store = LocalStore {
            dir: dir.to_owned(),
            index_lock: locks.join("local-index.lock"),
        };
        if !dir.join("index.json").exists() {
            store.update_index(|_| ())?;
        }
        Ok(store)
    }

    /// The store as an OCI layout, for reading blobs with verification.
    pub(crate) fn layout(&self) -> Result<OciLayout, ImageError> {
        OciLayout::open(&self.dir)
    }

    /// Where the blob `digest` lives (whether or not it is present).
    pub(crate) fn blob_path(&self, digest: &BlobDigest) -> PathBuf {
        digest.path_under(&self.dir.join("blobs"))
    }

    pub(crate) fn has_blob(&self, digest: &BlobDigest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// A writer that lands a blob under its digest only if the content matches it.
    pub(crate) fn blob_writer(&self, digest: &BlobDigest) -> Result<BlobWriter, ImageError> {
        if digest.algorithm() != "sha256" {
            return Err(ImageError::UnsupportedDigest {
                digest: digest.to_string(),
            });
        }
        let target = self.blob_path(digest);
        let parent = target.parent().expect("digest paths have a parent");
        fs::create_dir_all(parent).map_err(ImageError::io("create directory", parent))?;
        let temp = parent.join(format!(".tmp-{}", uuid::Uuid::new_v4().simple()));
        let file = File::create(&temp).map_err(ImageError::io("create", &temp))?;
        Ok(BlobWriter {
            file,
            temp,
            target,
            digest: digest.clone(),
            hasher: sha2::Sha256::new(),
            bytes: 0,
        })
    }

    /// Stores `bytes` as the blob `digest` (verified).
    pub(crate) fn put_bytes(&self, digest: &BlobDigest, bytes: &[u8]) -> Result<(), ImageError> {
        if self.has_blob(digest) {
            return Ok(());
        }
        let mut writer = self.blob_writer(digest)?;
        writer.write(bytes)?;
        writer.finish(Some(bytes.len() as u64))
    }

    /// Stores the blob `digest` by copying the file at `source` (verified).
    pub(crate) fn put_file(
        &self,
        digest: &BlobDigest,
        source: &Path,
        size: u64,
    ) -> Result<(), ImageError> {
        if self.has_blob(digest) {
            return Ok(());
        }
        let mut input = File::open(source).map_err(ImageError::io("open", source))?;
        let mut writer = self.blob_writer(digest)?;
        let mut buffer = vec![0; 1 << 16];
        loop {
            let n =
                io::Read::read(&mut input, &mut buffer).map_err(ImageError::io("read", source))?;
            if n == 0 {
                break;
            }
            writer.write(&buffer[..n])?;
        }
        writer.finish(Some(size))
    }

    /// The images listed in `index.json`.
    pub(crate) fn entries(&self) -> Result<Vec<IndexEntry>, ImageError> {
        let path = self.dir.join("index.json");
        let bytes = fs::read(&path).map_err(ImageError::io("read", &path))?;
        let index: IndexFile =
            serde_json::from_slice(&bytes).map_err(|source| ImageError::InvalidJson {
                what: "index",
                name: path.display().to_string(),
                source,
            })?;
        Ok(index.manifests)
    }

    /// Changes the index under its lock and writes it back atomically.
    pub(crate) fn update_index<T>(
        &self,
        change: impl FnOnce(&mut Vec<IndexEntry>) -> T,
    ) -> Result<T, ImageError> {
        let _guard = LockGuard::acquire(&self.index_lock)?;
        let mut entries = if self.dir.join("index.json").exists() {
            self.entries()?
        } else {
            Vec::new()
        };
        let result = change(&mut entries);
        let index = IndexFile {
            schema_version: 2,
            media_type: INDEX_MEDIA_TYPE.to_owned(),
            manifests: entries,
        };
        let bytes = serde_json::to_vec_pretty(&index).expect("the index serialises");
        write_atomically(&self.dir.join("index.json"), &bytes)?;
        Ok(result)
    }

    /// Every blob file present, with its digest and size.
    pub(crate) fn blobs(&self) -> Result<Vec<(BlobDigest, PathBuf)>, ImageError> {
        let mut found = Vec::new();
        let blobs = self.dir.join("blobs");
        for algorithm in fs::read_dir(&blobs).map_err(ImageError::io("list", &blobs))? {
            let algorithm = algorithm.map_err(ImageError::io("list", &blobs))?.path();
            for blob in fs::read_dir(&algorithm).map_err(ImageError::io("list", &algorithm))? {
                let path = blob.map_err(ImageError::io("list", &algorithm))?.path();
                let name = format!(
                    "{}:{}",
                    algorithm.file_name().unwrap_or_default().to_string_lossy(),
                    path.file_name().unwrap_or_default().to_string_lossy()
                );
                if let Ok(digest) = BlobDigest::parse(&name) {
                    found.push((digest, path));
                }
            }
        }
        Ok(found)
    }
}

/// A blob being written: hashed as it goes, renamed into place only when it verifies, removed
/// otherwise (also when dropped unfinished), so no half-written blob is ever visible.
pub(crate) struct BlobWriter {
    file: File,
    temp: PathBuf,
    target: PathBuf,
    digest: BlobDigest,
    hasher: sha2::Sha256,
    bytes: u64,
}

impl BlobWriter {
    pub(crate) fn write(&mut self, chunk: &[u8]) -> Result<(), ImageError> {
        self.hasher.update(chunk);
        self.bytes += chunk.len() as u64;
        self.file
            .write_all(chunk)
            .map_err(ImageError::io("write", &self.temp))
    }

    /// Verifies digest (and size, if known) and moves the blob into place.
    pub(crate) fn finish(self, size: Option<u64>) -> Result<(), ImageError> {
        let actual = format!("sha256:{}", hex::encode(self.hasher.clone().finalize()));
        self.digest.verify(&actual)?;
        if let Some(expected) = size
            && expected != self.bytes
        {
            return Err(ImageError::SizeMismatch {
                digest: self.digest.to_string(),
                expected,
                actual: self.bytes,
            });
        }
        self.file
            .sync_all()
            .map_err(ImageError::io("sync", &self.temp))?;
        fs::rename(&self.temp, &self.target)
            .map_err(ImageError::io("move into place", &self.target))
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        // After a successful rename the temporary name is gone and this is a no-op.
        let _ = fs::remove_file(&self.temp);
    }
}

/// Writes `bytes` to `path` through a temporary sibling and a rename.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), ImageError> {
    let temp = path.with_extension(format!("tmp-{}", uuid::Uuid::new_v4().simple()));
    fs::write(&temp, bytes).map_err(ImageError::io("write", &temp))?;
    fs::rename(&temp, path).map_err(ImageError::io("move into place", path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_land_only_when_they_verify() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(&dir.path().join("local"), dir.path()).unwrap();
        let good = BlobDigest::parse(&format!(
            "sha256:{}",
            hex::encode(sha2::Sha256::digest(b"hello"))
        ))
        .unwrap();
        assert!(matches!(
            store.put_bytes(&good, b"hellO"),
            Err(ImageError::DigestMismatch { .. })
        ));
        assert!(!store.has_blob(&good));
        store.put_bytes(&good, b"hello").unwrap();
        assert_eq!(fs::read(store.blob_path(&good)).unwrap(), b"hello");
        let leftovers: Vec<_> = fs::read_dir(store.blob_path(&good).parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers.len(), 1, "{leftovers:?}");
        assert_eq!(store.blobs().unwrap().len(), 1);
    }
}
