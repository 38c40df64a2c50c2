//! Crash recovery: what a previous run left under one runtime's state dir, found in one quick
//! pass at start and removed afterwards, several sandboxes at a time, while new sandboxes
//! already start.
//!
//! Removing a leftover runs the runtime (`kill`, `delete --force`) and the network tools once or
//! more each, hundreds of milliseconds to seconds per sandbox on a loaded host, so a server
//! that removed them one by one before serving stayed deaf for a minute after a crash with a
//! few dozen executions in flight. New sandboxes cannot collide with leftovers still being
//! removed: sandbox ids carry a random part, a leftover's veth holds its slot (name and
//! addresses) until it is deleted, and only what was found here is removed, never a sandbox
//! that started since, though its names share the runtime's prefixes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::SandboxError;
use crate::host_tool::blocking;
use crate::network::{LeftoverNetwork, NetworkScope};
use crate::runtime_cli::{RuntimeCli, SIGKILL};

/// Sandboxes removed at the same time: each removal mostly waits on the runtime or the
/// kernel, so a few more than the cores keep the host busy without starving new sandboxes.
const REMOVALS_AT_ONCE: usize = 8;

/// What a previous run left under one runtime's state dir: containers, bundles and networks,
/// by sandbox id.
#[derive(Debug)]
pub struct Leftovers {
    cli: Arc<RuntimeCli>,
    containers: BTreeSet<String>,
    bundles: BTreeSet<String>,
    networks: BTreeMap<String, LeftoverNetwork>,
}

impl Leftovers {
    /// Lists the containers (one runtime call), bundle dirs and this runtime's sandbox networks.
    pub(crate) async fn find(
        cli: Arc<RuntimeCli>,
        scope: Arc<NetworkScope>,
    ) -> Result<Leftovers, SandboxError> {
        let containers = cli.list().await?.into_iter().collect();
        let bundles = cli.bundle_ids()?.into_iter().collect();
        let networks = blocking(move || scope.find_leftovers()).await?;
        Ok(Leftovers {
            cli,
            containers,
            bundles,
            networks,
        })
    }

    /// The ids of the sandboxes found, sorted.
    pub fn ids(&self) -> BTreeSet<String> {
        let mut ids = self.containers.clone();
        ids.extend(self.bundles.iter().cloned());
        ids.extend(self.networks.keys().cloned());
        ids
    }

    /// Whether nothing was left.
    pub fn is_empty(&self) -> bool {
        self.containers.is_empty() && self.bundles.is_empty() && self.networks.is_empty()
    }

    /// SIGKILL to every process of every leftover container, [`REMOVALS_AT_ONCE`] at a time:
    /// whatever a previous run's agents were doing stops here, before the same agents start
    /// again. A container that is gone already is fine.
    pub async fn kill(&self) {
        let ids: Vec<String> = self.containers.iter().cloned().collect();
        let cli = Arc::clone(&self.cli);
        bounded(ids, move |id| {
            let cli = Arc::clone(&cli);
            async move {
                if let Err(error) = cli.kill_all(&id, SIGKILL).await {
                    tracing::debug!(id, %error, "could not kill leftover sandbox");
                }
                Ok(())
            }
        })
        .await;
    }

    /// Force-deletes every leftover container, then its network and bundle,
    /// [`REMOVALS_AT_ONCE`] sandboxes at a time. Every sandbox is tried; returns the ids
    /// removed, sorted, or the first error after trying them all.
    ///
    /// ```no_run
    /// # async fn f(runtime: clrk_sandbox::Runtime) -> Result<(), clrk_sandbox::SandboxError> {
    /// let leftovers = runtime.leftovers().await?;
    /// // ... start serving: new sandboxes do not collide with these ...
    /// let removed = leftovers.remove().await?;
    /// # Ok(()) }
    /// ```
    pub async fn remove(self) -> Result<Vec<String>, SandboxError> {
        let ids = self.ids();
        let Leftovers {
            cli,
            containers,
            networks,
            ..
        } = self;
        let mut networks = networks;
        let work: Vec<(String, bool, Option<LeftoverNetwork>)> = ids
            .iter()
            .map(|id| (id.clone(), containers.contains(id), networks.remove(id)))
            .collect();
        let errors = bounded(work, move |(id, container, network)| {
            let cli = Arc::clone(&cli);
            async move { remove_one(&cli, &id, container, network).await }
        })
        .await;
        match errors.into_iter().next() {
            Some(error) => Err(error),
            None => Ok(ids.into_iter().collect()),
        }
    }
}

/// Deletes one leftover sandbox: container, then network, then bundle, as a normal removal.
async fn remove_one(
    cli: &RuntimeCli,
    id: &str,
    container: bool,
    network: Option<LeftoverNetwork>,
) -> Result<(), SandboxError> {
    if container {
        // runsc's `delete --force` can hang on a container whose process still runs: kill
        // first (again, for one that was not killed before).
        if let Err(error) = cli.kill_all(id, SIGKILL).await {
            tracing::debug!(id, %error, "could not kill leftover sandbox");
        }
        cli.delete(id).await?;
    }
    if let Some(network) = network {
        blocking(move || network.remove()).await?;
    }
    cli.remove_bundle(id)?;
    tracing::debug!(id, "leftover sandbox removed");
    Ok(())
}

/// Runs `task` for every item, at most [`REMOVALS_AT_ONCE`] at a time; returns the errors,
/// each logged with its item's task.
async fn bounded<T, F, Fut>(items: Vec<T>, task: F) -> Vec<SandboxError>
where
    T: Send + 'static,
    F: Fn(T) -> Fut,
    Fut: Future<Output = Result<(), SandboxError>> + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(REMOVALS_AT_ONCE));
    let mut tasks = JoinSet::new();
    for item in items {
        let permits = Arc::clone(&permits);
        let work = task(item);
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await.expect("never closed");
            work.await
        });
    }
    let mut errors = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::warn!(%error, "could not remove a leftover sandbox");
                errors.push(error);
            }
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
    errors
}
