//! An agent's worker pool as the store holds it: placement reads its queue and capacity, the
//! worker its runtime and `pidsLimit`.

use clrk_api::WorkerPoolSpec;
use clrk_store::Store;

use crate::error::DispatchError;

/// The spec of worker pool `pool_name`, which agent `namespace/name` names. The pool
/// `default` exists without being applied; any other missing pool makes the agent not ready.
pub(crate) async fn worker_pool(
    store: &Store,
    namespace: &str,
    name: &str,
    pool_name: &str,
) -> Result<WorkerPoolSpec, DispatchError> {
    match store.get_pool(pool_name).await? {
        Some(pool) => Ok(serde_json::from_value::<WorkerPoolSpec>(
            pool.spec.get("spec").cloned().unwrap_or(pool.spec.clone()),
        )
        .unwrap_or_default()),
        None if pool_name == "default" => Ok(WorkerPoolSpec::default()),
        None => Err(DispatchError::NotReady {
            namespace: namespace.to_string(),
            name: name.to_string(),
            reason: format!(
                "worker pool {pool_name:?} does not exist: apply a WorkerPool named {pool_name}"
            ),
        }),
    }
}
