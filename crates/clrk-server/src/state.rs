//! What every part of the server shares.

use std::sync::Arc;

use clrk_dispatch::Dispatcher;
use clrk_image::ImageStore;
use clrk_store::Store;

use crate::cron::Cron;
use crate::daemons::Supervisor;

/// Shared server state; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub images: Arc<ImageStore>,
    pub dispatcher: Dispatcher,
    /// Fires scheduled TaskAgents.
    pub cron: Cron,
    /// Runs DaemonAgents.
    pub daemons: Supervisor,
    /// `host:` images are refused unless this is set (`clrk dev` sets it).
    pub allow_host_rootfs: bool,
}

impl AppState {
    /// Tells cron, the daemon supervisor and the warm pools that stored agents changed.
    pub fn agents_changed(&self) {
        self.cron.reconcile_soon();
        self.daemons.reconcile_soon();
        self.dispatcher.agents_changed();
    }
}
