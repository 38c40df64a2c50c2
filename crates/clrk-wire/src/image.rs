//! `GET /v1/images`, `POST /v1/images/import` and `POST /v1/images/prune`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// An image the server holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Image {
    /// The imported name, or the reference it was prepared from.
    pub reference: String,
    /// `sha256:<hex>` of its manifest.
    pub digest: String,
    /// Bytes of its config and (compressed) layers.
    pub size: u64,
    /// Loaded with `import` (then `prune` keeps it).
    pub imported: bool,
}

/// An image and the revisions that use it, as `GET /v1/images` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LocalImage {
    #[serde(flatten)]
    pub image: Image,
    /// `namespace/revision` of every revision that runs it.
    #[serde(default)]
    pub used_by: Vec<String>,
}

/// Answer of `POST /v1/images/import`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ImportResponse {
    /// The images the archive held, under the names they were loaded as.
    pub imported: Vec<Image>,
}

/// Answer of `POST /v1/images/prune`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PruneResponse {
    pub pruned: PruneReport,
}

/// What a prune removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PruneReport {
    /// Image records dropped.
    pub images: u64,
    /// Blobs (manifests, configs, compressed layers) deleted.
    pub blobs: u64,
    /// Unpacked layers deleted.
    pub layers: u64,
    /// Assembled root filesystems deleted.
    pub rootfs: u64,
}
