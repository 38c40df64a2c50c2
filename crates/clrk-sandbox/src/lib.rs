//! clrk-sandbox: OCI bundles and the driver for the `runsc` (gVisor, default) and `runc`
//! runtimes. It writes a bundle from a [`SandboxSpec`], starts the container with piped stdio,
//! waits for it, stops it (SIGTERM, grace, SIGKILL, delete) and cleans up after a crash.
//!
//! A sandbox asking for [`Network::Metadata`] gets its own network namespace and veth, whose
//! host end carries the metadata addresses, behind host firewall rules; one asking for
//! [`Network::Egress`] also has its TCP and DNS redirected to clrk's egress proxy and resolver.
//!
//! It must not decide what runs or with which environment (the caller builds args and env),
//! must not let a sandbox reach anything but clrk's own listeners on its veth's host end,
//! and must not leave a container, bundle or network anywhere `Runtime::leftovers` cannot find it.

mod addresses;
mod bundle;
mod error;
mod firewall;
mod host_masks;
mod host_tool;
mod leftovers;
mod metadata_socket;
mod mount_ns;
mod network;
pub mod reuse_init;
mod reuse_link;
mod runtime;
mod runtime_cli;
mod runtime_logs;
mod runtime_support;
mod sandbox;
mod seccomp;
mod spec;
mod stdio;

pub use addresses::{METADATA_V4, METADATA_V6, SandboxAddresses};
pub use error::SandboxError;
pub use firewall::EgressPorts;
pub use host_masks::{INSTANCES_DIR, InstanceRecord};
pub use leftovers::Leftovers;
pub use metadata_socket::bind_metadata_pair;
pub use reuse_link::Execution;
pub use runtime::{Runtime, RuntimeConfig};
pub use runtime_cli::RuntimeKind;
pub use runtime_support::RuntimeSupport;
pub use sandbox::Sandbox;
pub use spec::{Network, SandboxFile, SandboxSpec};
