//! Start-up after a crash: nothing is left running and no record claims otherwise.

use clrk_sandbox::Runtime;
use clrk_store::Store;

use crate::error::ServerError;

/// Reason recorded on executions that were in flight when the server died.
pub const SERVER_RESTARTED: &str = "server restarted";

/// Deletes every sandbox a previous run left behind and marks its executions `Failed`.
pub async fn recover(store: &Store, runtimes: &[&Runtime]) -> Result<(), ServerError> {
    for runtime in runtimes {
        let removed = runtime.remove_all().await?;
        if !removed.is_empty() {
            tracing::warn!(count = removed.len(), sandboxes = ?removed, "deleted sandboxes left by a previous run");
        }
    }
    let failed = store.fail_running_executions(SERVER_RESTARTED)?;
    if !failed.is_empty() {
        tracing::warn!(count = failed.len(), executions = ?failed, "executions in flight at the last stop marked Failed");
    }
    Ok(())
}
