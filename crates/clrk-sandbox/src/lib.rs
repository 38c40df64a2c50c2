//! clrk-sandbox: OCI bundles and the driver for the `runsc` (gVisor, default) and `runc`
//! runtimes. It writes a bundle from a [`SandboxSpec`], starts the container with piped stdio,
//! waits for it, stops it (SIGTERM, grace, SIGKILL, delete) and cleans up after a crash.
//!
//! It must not decide what runs or with which environment (the caller builds args and env),
//! must not give a sandbox network access (only loopback for now), and must not leave a
//! container or bundle anywhere but under the runtime's state dir, where `remove_all` finds it.

mod bundle;
mod cli;
mod error;
mod runtime;
mod sandbox;
mod spec;

pub use error::SandboxError;
pub use runtime::{Runtime, RuntimeConfig, RuntimeKind};
pub use sandbox::Sandbox;
pub use spec::SandboxSpec;
