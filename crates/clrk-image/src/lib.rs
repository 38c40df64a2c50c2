//! clrk-image: image references, resolution, the layer cache and root filesystems (SPECIFICATION §6).
//!
//! It turns an `image:` string into a pinned [`ResolvedImage`] and a [`Rootfs`] directory a
//! sandbox can use. It must not run anything, touch sandboxes, or write outside its store
//! directory; the only network it uses is registries' distribution API. Its API is synchronous
//! and must not be called on an async runtime's worker thread (use `spawn_blocking`).
//!
//! Transports: `host:`, `oci:DIR[:TAG]`, `oci-archive:FILE[:TAG]`,
//! `docker-archive:FILE[:NAME:TAG]` and bare registry references (imported images first, then
//! the registry). All but `host:` feed the same content-addressed blobs and layer cache.

mod archive;
mod atomic;
mod config;
mod credentials;
mod digest;
mod error;
mod extract;
mod import;
mod inventory;
mod layer_cache;
mod layout;
mod local;
mod login;
mod plain_http;
mod platform;
mod progress;
mod pull;
mod reference;
mod registry;
mod rootfs;
mod store;
mod user;
mod whiteout;

#[cfg(feature = "testing")]
pub mod testing;

pub use config::ImageConfig;
pub use error::ImageError;
pub use inventory::{LocalImage, PruneReport};
pub use login::Login;
pub use plain_http::{is_loopback_registry, plain_http_hint};
pub use progress::Progress;
pub use reference::{ImageRef, RegistryRef};
pub use store::{ImageStore, ResolvedImage, Rootfs, StoreOptions};

/// The registry credentials file clrk reads: `explicit`, else `$DOCKER_CONFIG/config.json`,
/// else `~/.docker/config.json`; `None` without `HOME`.
pub fn docker_config_path(explicit: Option<&std::path::Path>) -> Option<std::path::PathBuf> {
    credentials::config_path(explicit)
}
