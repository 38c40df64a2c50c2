//! clrk-image: image references, resolution, the layer cache and root filesystems (SPEC §6).
//!
//! It turns an `image:` string into a pinned [`ResolvedImage`] and a [`Rootfs`] directory a
//! sandbox can use. It must not run anything, touch sandboxes or the network, or write outside
//! its store directory; its API is synchronous (async callers use `spawn_blocking`).
//!
//! Transports today: `host:` and `oci:DIR[:TAG]`. Registry pulls and archive transports are
//! meant to slot in as further modules next to `layout` feeding the same layer cache.

mod atomic;
mod config;
mod digest;
mod error;
mod extract;
mod layer_cache;
mod layout;
mod platform;
mod reference;
mod rootfs;
mod store;
mod whiteout;

#[cfg(feature = "testing")]
pub mod testing;

pub use config::ImageConfig;
pub use error::ImageError;
pub use reference::ImageRef;
pub use store::{ImageStore, ResolvedImage, Rootfs};
