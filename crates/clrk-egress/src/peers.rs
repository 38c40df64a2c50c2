//! Which sandbox a connection comes from, by its source address.
//!
//! clrk gives each sandbox its own addresses and the host firewall drops anything a sandbox
//! sends from another, so the peer address of a redirected connection or DNS question names
//! the sandbox; nothing the agent sends can make it another agent or execution.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, RwLock};

use tokio_util::sync::CancellationToken;

use crate::limits::SandboxLimits;
use crate::telemetry::trace_context::TraceContext;

/// Who is behind a sandbox address.
#[derive(Debug)]
pub struct SandboxIdentity {
    /// `TaskAgent` or `DaemonAgent`.
    pub kind: String,
    pub namespace: String,
    pub agent: String,
    pub revision: String,
    /// The agent's `egressRefs`, in order: the first one that exists sets TLS handling,
    /// upstream trust, timeout and telemetry; the routes and policies of all of them apply.
    pub gateways: Vec<String>,
    /// The execution (or daemon run) it serves now; a warm sandbox gets one when taken.
    execution: Mutex<Option<String>>,
    /// The run span of that execution: the gateway's spans of its calls are its children.
    run_span: Mutex<Option<TraceContext>>,
    /// What the names it resolved are remembered by (its IPv4 address, set at registration).
    names_key: std::sync::OnceLock<IpAddr>,
    /// Cancelled when the sandbox goes: its connections through the gateway are closed then,
    /// whatever became of the sandbox's end.
    gone: CancellationToken,
    /// What it holds of the gateway (connections, DNS questions), against the caps.
    pub(crate) limits: SandboxLimits,
}

impl SandboxIdentity {
    /// An identity serving `execution` (None for a warm sandbox not yet taken).
    pub fn new(
        kind: &str,
        namespace: &str,
        agent: &str,
        revision: &str,
        gateways: Vec<String>,
        execution: Option<String>,
    ) -> SandboxIdentity {
        SandboxIdentity {
            kind: kind.to_owned(),
            namespace: namespace.to_owned(),
            agent: agent.to_owned(),
            revision: revision.to_owned(),
            gateways,
            execution: Mutex::new(execution),
            run_span: Mutex::new(None),
            gone: CancellationToken::new(),
            names_key: std::sync::OnceLock::new(),
            limits: SandboxLimits::default(),
        }
    }

    /// What the names this sandbox resolved are remembered by.
    pub(crate) fn names_key(&self) -> IpAddr {
        *self
            .names_key
            .get()
            .unwrap_or(&IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
    }

    pub(crate) fn set_names_key(&self, key: IpAddr) {
        let _ = self.names_key.set(key);
    }

    /// Resolves once the sandbox is gone.
    pub async fn gone(&self) {
        self.gone.cancelled().await;
    }

    /// The execution it serves now.
    pub fn execution(&self) -> Option<String> {
        self.execution.lock().expect("identity lock").clone()
    }

    /// Hands the sandbox to `execution`.
    pub fn set_execution(&self, execution: &str) {
        *self.execution.lock().expect("identity lock") = Some(execution.to_owned());
    }

    /// The span of the execution's run, which the spans of its calls are children of.
    pub fn run_span(&self) -> Option<TraceContext> {
        *self.run_span.lock().expect("identity lock")
    }

    /// Makes the spans of the sandbox's calls children of `span` (its execution's run).
    pub fn set_run_span(&self, span: TraceContext) {
        *self.run_span.lock().expect("identity lock") = Some(span);
    }
}

/// Sandboxes with egress, by address. Cloning shares it.
#[derive(Clone, Default)]
pub struct SandboxRegistry {
    by_address: Arc<RwLock<HashMap<IpAddr, Arc<SandboxIdentity>>>>,
}

/// Keeps a sandbox known until dropped.
#[must_use = "the sandbox is forgotten when the registration is dropped"]
pub struct Registration {
    registry: SandboxRegistry,
    addresses: Vec<IpAddr>,
    identity: Arc<SandboxIdentity>,
}

impl Registration {
    /// The registered identity.
    pub fn identity(&self) -> &Arc<SandboxIdentity> {
        &self.identity
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.identity.gone.cancel();
        let mut map = self.registry.by_address.write().expect("registry lock");
        for address in &self.addresses {
            if map
                .get(address)
                .is_some_and(|i| Arc::ptr_eq(i, &self.identity))
            {
                map.remove(address);
            }
        }
    }
}

impl SandboxRegistry {
    /// Makes the sandbox at `addresses` known as `identity`.
    ///
    /// ```
    /// use clrk_egress::{SandboxIdentity, SandboxRegistry};
    /// let registry = SandboxRegistry::default();
    /// let ip: std::net::IpAddr = "169.254.64.1".parse().unwrap();
    /// let identity = SandboxIdentity::new("TaskAgent", "default", "a", "a-00001", vec![], None);
    /// let registration = registry.register(&[ip], identity);
    /// assert_eq!(registry.lookup("::ffff:169.254.64.1".parse().unwrap()).unwrap().agent, "a");
    /// drop(registration);
    /// assert!(registry.lookup(ip).is_none());
    /// ```
    pub fn register(&self, addresses: &[IpAddr], identity: SandboxIdentity) -> Registration {
        let identity = Arc::new(identity);
        let mut map = self.by_address.write().expect("registry lock");
        for address in addresses {
            map.insert(address.to_canonical(), Arc::clone(&identity));
        }
        Registration {
            registry: self.clone(),
            addresses: addresses.iter().map(IpAddr::to_canonical).collect(),
            identity,
        }
    }

    /// The sandbox at `peer` (an IPv4 peer may arrive mapped into IPv6).
    pub fn lookup(&self, peer: IpAddr) -> Option<Arc<SandboxIdentity>> {
        self.by_address
            .read()
            .expect("registry lock")
            .get(&peer.to_canonical())
            .cloned()
    }
}
