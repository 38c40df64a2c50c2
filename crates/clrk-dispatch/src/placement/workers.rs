//! Where placement sends its orders: the worker in this process (`clrk dev`), or the cluster's
//! workers over the link (`clrk server`).

use clrk_api::WorkerPoolSpec;

use crate::body::BodyPermit;
use crate::error::DispatchError;
use crate::placement::cluster::Cluster;
use crate::worker::order::{ExecutionOrder, Started};
use crate::worker::{Places, Worker};

/// The workers placement can use.
#[derive(Clone)]
pub enum Workers {
    /// The embedded worker: orders are handed over in-process, nothing is serialised.
    Local(Worker),
    /// The workers registered in the shared store, reached over the link.
    Cluster(Cluster),
}

impl Workers {
    /// Runs `order` on a worker of the agent's pool (`pool_name`, spec `pool`).
    pub(crate) async fn execute(
        &self,
        pool_name: &str,
        pool: &WorkerPoolSpec,
        order: ExecutionOrder,
        body: Option<BodyPermit>,
        places: Places,
    ) -> Result<Started, DispatchError> {
        match self {
            Workers::Local(worker) => worker.execute(order, body, Some(places)).await,
            Workers::Cluster(cluster) => {
                let per_worker = pool.max_executions_per_worker;
                cluster
                    .execute(pool_name, per_worker, order, body, places)
                    .await
            }
        }
    }

    /// How many workers share a pool's load: its `maxExecutionsPerWorker` holds on each.
    pub(crate) async fn workers_in_pool(&self, pool_name: &str) -> Result<u32, DispatchError> {
        match self {
            Workers::Local(_) => Ok(1),
            Workers::Cluster(cluster) => cluster.ready_in_pool(pool_name).await,
        }
    }

    /// Warm sandboxes of the agent, all workers together.
    pub(crate) fn warm(&self, namespace: &str, name: &str) -> u32 {
        match self {
            Workers::Local(worker) => worker.warm(namespace, name),
            Workers::Cluster(cluster) => cluster.warm(namespace, name),
        }
    }

    /// Stored agents changed: warm pools reconcile (a cluster's workers notice by
    /// themselves).
    pub(crate) fn agents_changed(&self) {
        match self {
            Workers::Local(worker) => worker.agents_changed(),
            Workers::Cluster(_) => {}
        }
    }

    /// Stops the agent's executions on every worker, failed with `reason`; returns how many.
    pub(crate) async fn stop_agent(&self, namespace: &str, name: &str, reason: &str) -> usize {
        match self {
            Workers::Local(worker) => worker.stop_agent(namespace, name, reason),
            Workers::Cluster(cluster) => cluster.stop_agent(namespace, name, reason).await,
        }
    }

    /// Stops what runs in this process at shutdown.
    pub(crate) async fn shutdown(&self, deadline: std::time::Duration) {
        match self {
            Workers::Local(worker) => worker.shutdown(deadline).await,
            Workers::Cluster(_) => {}
        }
    }
}
