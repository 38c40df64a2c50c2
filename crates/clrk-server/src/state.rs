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
    /// Fires scheduled TaskAgents (`clrk dev`; a cluster's leader runs its own).
    pub cron: Option<Cron>,
    /// Runs DaemonAgents (`clrk dev`'s embedded worker).
    pub daemons: Option<Supervisor>,
    /// `host:` images are refused unless this is set (`clrk dev` sets it).
    pub allow_host_rootfs: bool,
}

impl AppState {
    /// Tells cron, the daemon supervisor and the warm pools that stored agents changed.
    pub fn agents_changed(&self) {
        if let Some(cron) = &self.cron {
            cron.reconcile_soon();
        }
        if let Some(daemons) = &self.daemons {
            daemons.reconcile_soon();
        }
        self.dispatcher.agents_changed();
    }
}
