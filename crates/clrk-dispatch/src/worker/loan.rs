//! A reused sandbox lent by its warm pool to one execution (`spec.sandboxReuse`): the pool
//! counts it as present, so that no refill replaces it, until the loan ends — the sandbox
//! given back, or the loan dropped however the execution ended (a refusal, a timeout, a
//! caller gone, a panic), which tells the pool to refill.

use clrk_sandbox::Sandbox;

use crate::worker::Worker;
use crate::worker::warm_pool::{AgentKey, Generation};

pub(crate) struct Loan {
    worker: Worker,
    key: AgentKey,
    generation: Generation,
    /// The sandbox's id.
    id: String,
    open: bool,
}

impl Loan {
    /// The loan of `sandbox`, just taken from `key`'s pool of `generation`.
    pub(crate) fn new(
        worker: Worker,
        key: AgentKey,
        generation: Generation,
        sandbox: &Sandbox,
    ) -> Loan {
        Loan {
            worker,
            key,
            generation,
            id: sandbox.id.clone(),
            open: true,
        }
    }

    /// Gives `sandbox` back to its pool; returns it when the pool does not want it, to be
    /// removed.
    pub(crate) fn give_back(mut self, sandbox: Sandbox) -> Option<Sandbox> {
        self.open = false;
        let shutting_down = self.worker.inner.shutdown.is_cancelled();
        self.worker
            .inner
            .warm
            .give_back(&self.key, &self.generation, sandbox, shutting_down)
    }
}

impl Drop for Loan {
    fn drop(&mut self) {
        if self.open {
            self.worker
                .inner
                .warm
                .loan_ended(&self.key, &self.generation, &self.id);
        }
    }
}
