//! Resolving and fetching registry images (`ImageStore` operations for [`ImageRef::Registry`]).

use oci_spec::image::{Descriptor, ImageIndex};
use sha2::Digest as _;

use crate::atomic::LockGuard;
use crate::digest::BlobDigest;
use crate::error::ImageError;
use crate::platform;
use crate::progress::Progress;
use crate::reference::{ImageRef, RegistryRef};
use crate::store::{ImageStore, ResolvedImage, resolve_in_layout};

/// How many image indexes deep a registry reference may lead.
const MAX_INDEX_DEPTH: usize = 4;

enum Document {
    Index(Box<ImageIndex>),
    Manifest,
}

impl ImageStore {
    /// An imported image of this name if there is one (local images win over the registry),
    /// else the registry's manifest for this platform, stored with its config.
    pub(crate) fn resolve_registry(&self, r: &RegistryRef) -> Result<ResolvedImage, ImageError> {
        let reference = r.to_string();
        if r.digest().is_none()
            && self
                .local
                .entries()?
                .iter()
                .any(|e| e.name() == Some(&reference))
        {
            tracing::debug!(image = %reference, "resolving from the local store");
            return resolve_in_layout(&self.local.layout()?, Some(&reference), &reference);
        }
        let mut target = r.clone();
        for _ in 0..=MAX_INDEX_DEPTH {
            let (digest, bytes) = self.manifest_bytes(&target)?;
            match classify(&bytes, &digest)? {
                Document::Index(index) => {
                    let candidates: Vec<&Descriptor> = index.manifests().iter().collect();
                    let chosen = platform::choose(&candidates, &reference)?;
                    target = r.at_digest(chosen.digest().as_ref());
                }
                Document::Manifest => {
                    self.local.put_bytes(&digest, &bytes)?;
                    let layout = self.local.layout()?;
                    let manifest = layout.manifest(&digest)?;
                    let config = BlobDigest::new(manifest.config().digest())?;
                    if !self.local.has_blob(&config) {
                        let writer = self.local.blob_writer(&config)?;
                        self.registry.blob(
                            r,
                            &config,
                            manifest.config().size(),
                            writer,
                            &mut |_| {},
                        )?;
                    }
                    let configuration = layout.config(&manifest)?;
                    platform::check_config(&configuration, &reference)?;
                    return Ok(ResolvedImage {
                        reference,
                        digest: digest.to_string(),
                        config: (&configuration).into(),
                    });
                }
            }
        }
        Err(ImageError::IndexTooDeep {
            reference,
            max: MAX_INDEX_DEPTH,
        })
    }

    /// The manifest or index `r` names and its digest: from the local store when `r` pins a
    /// digest that is present, else from the registry (verified against a pinned digest).
    fn manifest_bytes(&self, r: &RegistryRef) -> Result<(BlobDigest, Vec<u8>), ImageError> {
        if let Some(pinned) = r.digest() {
            let pinned = BlobDigest::parse(pinned)?;
            let path = self.local.blob_path(&pinned);
            if let Ok(bytes) = std::fs::read(&path)
                && pinned.verify(&sha256(&bytes)).is_ok()
            {
                return Ok((pinned, bytes));
            }
            let bytes = self.registry.manifest(r)?;
            pinned.verify(&sha256(&bytes))?;
            return Ok((pinned, bytes));
        }
        let bytes = self.registry.manifest(r)?;
        Ok((BlobDigest::parse(&sha256(&bytes))?, bytes))
    }

    /// Makes the manifest `digest` of a resolved image present in the local store again.
    pub(crate) fn fetch_manifest(
        &self,
        r: &ImageRef,
        digest: &BlobDigest,
    ) -> Result<(), ImageError> {
        match r {
            ImageRef::Registry(registry_ref) => {
                let (_, bytes) =
                    self.manifest_bytes(&registry_ref.at_digest(&digest.to_string()))?;
                self.local.put_bytes(digest, &bytes)
            }
            _ => self.restage(r, digest),
        }
    }

    /// Downloads the layer blob `layer` of `r` into the local store, once even when several
    /// threads or processes pull it at the same time.
    pub(crate) fn fetch_layer(
        &self,
        r: &ImageRef,
        layer: &BlobDigest,
        total: u64,
        progress: &dyn Fn(Progress),
    ) -> Result<(), ImageError> {
        let ImageRef::Registry(registry_ref) = r else {
            return self.restage_layer(r, layer);
        };
        let lock = self.root.join("locks").join(format!(
            "blob-{}-{}.lock",
            layer.algorithm(),
            layer.hex()
        ));
        let _guard = LockGuard::acquire(&lock)?;
        if self.local.has_blob(layer) {
            return Ok(());
        }
        let started = std::time::Instant::now();
        let writer = self.local.blob_writer(layer)?;
        let mut report = |done| {
            progress(Progress {
                layer: layer.to_string(),
                done,
                total,
                cached: false,
            });
        };
        report(0);
        self.registry
            .blob(registry_ref, layer, total, writer, &mut report)?;
        tracing::info!(
            image = %registry_ref,
            layer = %layer,
            size = total,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "downloaded layer"
        );
        Ok(())
    }
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

/// Whether a registry document is an index or an image manifest (by `mediaType`, or by shape
/// when the field is absent, as in some OCI documents).
fn classify(bytes: &[u8], digest: &BlobDigest) -> Result<Document, ImageError> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|source| ImageError::InvalidJson {
            what: "manifest",
            name: digest.to_string(),
            source,
        })?;
    let media_type = value.get("mediaType").and_then(|m| m.as_str());
    let is_index = match media_type {
        Some(
            "application/vnd.oci.image.index.v1+json"
            | "application/vnd.docker.distribution.manifest.list.v2+json",
        ) => true,
        Some(
            "application/vnd.oci.image.manifest.v1+json"
            | "application/vnd.docker.distribution.manifest.v2+json",
        ) => false,
        None => value.get("manifests").is_some(),
        Some(other) => {
            return Err(ImageError::UnsupportedMediaType {
                what: "manifest",
                digest: digest.to_string(),
                media_type: other.to_owned(),
            });
        }
    };
    if !is_index {
        return Ok(Document::Manifest);
    }
    serde_json::from_value(value)
        .map(|index| Document::Index(Box::new(index)))
        .map_err(|source| ImageError::InvalidJson {
            what: "image index",
            name: digest.to_string(),
            source,
        })
}
