//! What every part of the server shares.

use std::sync::Arc;

use clrk_dispatch::Dispatcher;
use clrk_image::ImageStore;
use clrk_store::Store;

/// Shared server state; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub images: Arc<ImageStore>,
    pub dispatcher: Dispatcher,
    /// `host:` images are refused unless this is set (`clrk dev` sets it).
    pub allow_host_rootfs: bool,
}
