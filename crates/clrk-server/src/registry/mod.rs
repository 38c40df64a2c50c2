//! The registry of workers as processes use it: a worker's registration and heartbeats
//! ([`Registration`]), the leader's sweep that marks silent workers lost
//! ([`LostWorkerSweep`]), and what `clrk dev` registers for its embedded worker.

mod embedded;
mod registration;
mod sweep;

pub use clrk_store::EVERY_POOL;
pub use embedded::{EMBEDDED_ADDRESS, default_capacity, embedded_worker, host_name};
pub use registration::{HEARTBEAT, Registration, new_incarnation};
pub use sweep::{LOST_AFTER_HEARTBEATS, LostWorkerSweep, SWEEP_LEADERSHIP, lost_cutoff};
