//! The worker `clrk dev` registers for itself: named after the host, serving every pool,
//! reached in-process; and the defaults a `clrk worker` shares with it (name, capacity).

use clrk_store::{EVERY_POOL, WorkerRegistration};

use super::registration::new_incarnation;

/// The address of a worker inside the server's own process.
pub const EMBEDDED_ADDRESS: &str = "in-process";
/// Executions per CPU a worker announces: sandboxes mostly wait on I/O and
/// model calls, so a few per CPU keep the machine busy without overcommitting it badly.
const EXECUTIONS_PER_CPU: u32 = 4;

/// `clrk dev`'s worker: the host name (or `local`), pool `*`, address `in-process`,
/// capacity 4 × the CPUs this process may use, and a fresh incarnation.
///
/// ```
/// let worker = clrk_server::registry::embedded_worker();
/// assert_eq!((worker.pool.as_str(), worker.address.as_str()), ("*", "in-process"));
/// assert!(worker.capacity >= 4);
/// ```
pub fn embedded_worker() -> WorkerRegistration {
    WorkerRegistration {
        name: host_name(),
        pool: EVERY_POOL.to_owned(),
        address: EMBEDDED_ADDRESS.to_owned(),
        capacity: default_capacity(),
        incarnation: new_incarnation(),
    }
}

/// What a worker announces it can run at once: 4 × the CPUs this process may use (a
/// pool's `maxExecutionsPerWorker` may hold it lower).
pub fn default_capacity() -> u32 {
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    u32::try_from(cpus)
        .unwrap_or(u32::MAX)
        .saturating_mul(EXECUTIONS_PER_CPU)
}

/// The kernel's node name, or `local` when it is empty or not text.
pub fn host_name() -> String {
    let uname = rustix::system::uname();
    match uname.nodename().to_str() {
        Ok(name) if !name.is_empty() => name.to_owned(),
        _ => "local".to_owned(),
    }
}
