//! A WorkerPool's `runtimeOptions` checked at apply against the runsc this server has, so a
//! platform or flag it lacks is refused with the reason instead of failing every sandbox
//! start. A server without runsc (a cluster's, whose workers run the sandboxes) warns instead;
//! each worker's runsc checks again at sandbox start.

use std::path::Path;

use clrk_api::{Document, Resource};
use clrk_sandbox::RuntimeSupport;

/// The runsc the server's own workers run (`clrk dev`), looked up in `PATH`.
const RUNSC: &str = "runsc";

/// What applying `doc` must say about its runtime options: `Err` (field, reason) to refuse
/// it, `Ok(Some(warning))` when they could not be checked here.
pub(crate) async fn check(doc: &Document) -> Result<Option<String>, (String, String)> {
    let Resource::WorkerPool(pool) = &doc.resource else {
        return Ok(None);
    };
    let flags = pool.spec.runtime_flags();
    if flags.is_empty() {
        return Ok(None);
    }
    match RuntimeSupport::probe(Path::new(RUNSC)).await {
        Ok(support) => match support.refused(&flags) {
            None => Ok(None),
            Some((flag, reason)) if flag == "platform" => {
                Err(("spec.runtimeOptions.platform".into(), reason))
            }
            Some((flag, reason)) => Err((format!("spec.runtimeOptions.flags.{flag}"), reason)),
        },
        Err(e) => Ok(Some(format!(
            "spec.runtimeOptions: not checked, this server cannot run runsc ({e}); each worker \
             checks its own runsc when it starts the pool's sandboxes"
        ))),
    }
}
