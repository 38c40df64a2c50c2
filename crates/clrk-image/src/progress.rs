//! Per-layer progress of `ImageStore::prepare_with_progress`.

/// How far one layer of an image has come. Reported repeatedly while a layer downloads (`done`
/// growing to `total`), once for a layer already present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// The layer's digest (`sha256:…`).
    pub layer: String,
    /// Bytes of the layer blob present so far.
    pub done: u64,
    /// The layer blob's size, from the manifest.
    pub total: u64,
    /// Whether the layer was already unpacked in the cache (nothing to download or unpack).
    pub cached: bool,
}
