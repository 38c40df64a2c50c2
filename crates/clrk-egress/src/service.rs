//! The egress service: its listeners, the sandboxes it knows, and the per-gateway state it
//! keeps (CAs, upstream trust, OTLP exporters).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use clrk_api::{EgressGateway, TlsMode};
use clrk_sandbox::{METADATA_V4, SandboxAddresses, SandboxFile, bind_metadata_pair};
use clrk_store::Store;
use rustls::ClientConfig;
use socket2::{Protocol, Type};
use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;

use crate::EgressError;
use crate::body::BodyBudget;
use crate::ca::GatewayCa;
use crate::config::EgressConfig;
use crate::destination::HostAddresses;
use crate::dns::NameCache;
use crate::ledger::TokenLedger;
use crate::limits::{PROVIDER_BODY_BUDGET, Slots};
use crate::otlp::OtlpExporter;
use crate::registry::{Registration, SandboxIdentity, SandboxRegistry};
use crate::transaction::Transaction;
use crate::upstream::UpstreamPool;

/// Where a sandbox's TLS clients look for trusted CAs: every one gets the gateway's CA.
pub const TRUST_BUNDLE_PATHS: [&str; 3] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// How the egress service is set up.
#[derive(Debug, Clone)]
pub struct EgressSettings {
    /// Where gateway CAs are kept (`<dir>/<namespace>/<gateway>/ca.{crt,key}`); inside
    /// clrk's data dir, which every sandbox has masked.
    pub ca_dir: PathBuf,
    /// The resolver sandboxes' allowed DNS questions are forwarded to; without one they get
    /// SERVFAIL (agents can still reach allowed addresses by `destinationCIDRs`).
    pub dns_upstream: Option<SocketAddr>,
}

/// The proxy and resolver listeners, bound before any sandbox exists.
pub struct EgressListeners {
    /// The proxy on both metadata addresses, one port.
    pub(crate) tcp: [TcpListener; 2],
    /// The resolver on both metadata addresses, one port.
    pub(crate) udp: [UdpSocket; 2],
}

impl EgressListeners {
    /// The host ports the firewall redirects egress sandboxes' traffic to.
    pub fn ports(&self) -> std::io::Result<clrk_sandbox::EgressPorts> {
        Ok(clrk_sandbox::EgressPorts {
            proxy: self.tcp[0].local_addr()?.port(),
            dns: self.udp[0].local_addr()?.port(),
        })
    }
}

/// The egress gateway of one clrk process. Cloning shares it.
#[derive(Clone)]
pub struct Egress {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) store: Store,
    pub(crate) settings: EgressSettings,
    pub(crate) registry: SandboxRegistry,
    /// Names each sandbox resolved, by the sandbox's IPv4 address.
    pub(crate) names: NameCache<IpAddr>,
    pub(crate) host: HostAddresses,
    pub(crate) ledger: Arc<TokenLedger>,
    pub(crate) upstream_pool: UpstreamPool,
    /// Connections through the proxy, all sandboxes together.
    pub(crate) connections: Slots,
    /// Bytes of provider request bodies held at once, all sandboxes together.
    pub(crate) body_budget: BodyBudget,
    cas: Mutex<HashMap<(String, String), Arc<GatewayCa>>>,
    upstream: Mutex<HashMap<Option<String>, Arc<ClientConfig>>>,
    exporters: Mutex<HashMap<String, OtlpExporter>>,
}

impl Egress {
    /// A service over `store`; nothing is bound until [`Egress::bind`].
    pub fn new(store: Store, settings: EgressSettings) -> Egress {
        Egress {
            inner: Arc::new(Inner {
                store,
                settings,
                registry: SandboxRegistry::default(),
                names: NameCache::new(),
                host: HostAddresses::new(),
                ledger: Arc::default(),
                upstream_pool: UpstreamPool::default(),
                connections: Slots::default(),
                body_budget: BodyBudget::new(PROVIDER_BODY_BUDGET),
                cas: Mutex::default(),
                upstream: Mutex::default(),
                exporters: Mutex::default(),
            }),
        }
    }

    /// Binds the proxy (TCP) and resolver (UDP) on the metadata addresses (IPv4 and IPv6, one
    /// port for both) with `IP_FREEBIND`: those addresses only exist on sandbox veths, so
    /// nothing else can reach them.
    pub fn bind(&self) -> std::io::Result<EgressListeners> {
        let [tcp4, tcp6] = bind_metadata_pair(Type::STREAM, Protocol::TCP)?;
        let [udp4, udp6] = bind_metadata_pair(Type::DGRAM, Protocol::UDP)?;
        Ok(EgressListeners {
            tcp: [
                TcpListener::from_std(tcp4.into())?,
                TcpListener::from_std(tcp6.into())?,
            ],
            udp: [
                UdpSocket::from_std(udp4.into())?,
                UdpSocket::from_std(udp6.into())?,
            ],
        })
    }

    /// Serves the listeners until `shutdown`.
    pub async fn serve(self, listeners: EgressListeners, shutdown: CancellationToken) {
        let EgressListeners {
            tcp: [tcp4, tcp6],
            udp: [udp4, udp6],
        } = listeners;
        tokio::join!(
            crate::proxy::serve(self.clone(), tcp4, shutdown.clone()),
            crate::proxy::serve(self.clone(), tcp6, shutdown.clone()),
            crate::dns_server::serve(self.clone(), udp4, shutdown.clone()),
            crate::dns_server::serve(self.clone(), udp6, shutdown),
        );
    }

    /// Makes a sandbox known to the proxy and resolver until the registration is dropped.
    pub fn register(&self, addresses: SandboxAddresses, identity: SandboxIdentity) -> Registration {
        // Names are remembered by the sandbox's IPv4 address whichever family asked or dials.
        let key = IpAddr::V4(addresses.v4);
        self.inner.names.forget(&key);
        identity.set_names_key(key);
        self.inner.registry.register(
            &[IpAddr::V4(addresses.v4), IpAddr::V6(addresses.v6)],
            identity,
        )
    }

    /// The files an egress sandbox of `namespace` using `gateways` gets: a `resolv.conf`
    /// pointing at clrk's resolver and, when a gateway terminates TLS, trust bundles holding
    /// the root filesystem's own roots plus the gateway's CA at every standard path.
    pub async fn sandbox_files(
        &self,
        namespace: &str,
        gateways: &[String],
        rootfs: &Path,
    ) -> Result<Vec<SandboxFile>, EgressError> {
        let mut files = vec![SandboxFile {
            path: "/etc/resolv.conf".into(),
            contents: format!("nameserver {METADATA_V4}\noptions timeout:2 attempts:2\n")
                .into_bytes(),
        }];
        let config = EgressConfig::load(&self.inner.store, namespace, gateways).await?;
        let mut extra = String::new();
        for gateway in config
            .gateways
            .iter()
            .filter(|g| g.spec.tls.mode == TlsMode::Terminate)
        {
            extra.push_str(self.ca(gateway)?.certificate_pem());
        }
        if extra.is_empty() {
            return Ok(files);
        }
        // The image's own roots stay trusted: only the gateway's CA is added.
        let own = TRUST_BUNDLE_PATHS
            .iter()
            .find_map(|p| std::fs::read_to_string(rootfs.join(&p[1..])).ok())
            .unwrap_or_default();
        let mut bundle = own;
        if !bundle.is_empty() && !bundle.ends_with('\n') {
            bundle.push('\n');
        }
        bundle.push_str(&extra);
        files.extend(TRUST_BUNDLE_PATHS.iter().map(|p| SandboxFile {
            path: p.into(),
            contents: bundle.clone().into_bytes(),
        }));
        Ok(files)
    }

    /// The CA of `gateway`, loaded or created on first use.
    pub(crate) fn ca(&self, gateway: &EgressGateway) -> Result<Arc<GatewayCa>, EgressError> {
        let key = (
            gateway.metadata.namespace.clone(),
            gateway.metadata.name.clone(),
        );
        let mut cas = self.inner.cas.lock().expect("ca cache");
        if let Some(ca) = cas.get(&key) {
            return Ok(Arc::clone(ca));
        }
        let dir = self.inner.settings.ca_dir.join(&key.0).join(&key.1);
        let ca = Arc::new(GatewayCa::load_or_create(
            &dir,
            &format!("clrk egress gateway {}/{}", key.0, key.1),
        )?);
        cas.insert(key, Arc::clone(&ca));
        Ok(ca)
    }

    /// The client config for upstream TLS of `gateway`.
    pub(crate) fn upstream_tls(
        &self,
        gateway: Option<&EgressGateway>,
    ) -> Result<Arc<ClientConfig>, EgressError> {
        let bundle = gateway.and_then(|g| g.spec.upstream_tls.additional_trust_bundle.clone());
        let mut configs = self.inner.upstream.lock().expect("upstream tls cache");
        if let Some(config) = configs.get(&bundle) {
            return Ok(Arc::clone(config));
        }
        let config = crate::upstream_tls::client_config(bundle.as_deref())?;
        configs.insert(bundle, Arc::clone(&config));
        Ok(config)
    }

    /// Starts the record of an exchange of `identity`'s with `destination`, exported as a
    /// span when `gateway` has an OTLP endpoint.
    pub(crate) fn begin(
        &self,
        identity: &Arc<SandboxIdentity>,
        protocol: &str,
        destination: String,
        gateway: Option<&EgressGateway>,
    ) -> Transaction {
        Transaction::begin(
            &self.inner.store,
            &self.inner.ledger,
            identity,
            protocol,
            destination,
            self.exporter(gateway),
        )
    }

    /// The exporter of `gateway`'s OTLP endpoint, if it has one.
    pub(crate) fn exporter(&self, gateway: Option<&EgressGateway>) -> Option<OtlpExporter> {
        let otlp = gateway?.spec.otlp.as_ref()?;
        let key = serde_json::to_string(otlp).ok()?;
        let mut exporters = self.inner.exporters.lock().expect("exporters");
        if let Some(e) = exporters.get(&key) {
            return Some(e.clone());
        }
        let headers = otlp
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        match OtlpExporter::spawn(&otlp.endpoint, headers, "clrk-egress") {
            Ok(e) => {
                exporters.insert(key, e.clone());
                Some(e)
            }
            Err(error) => {
                tracing::warn!(endpoint = %otlp.endpoint, %error, "OTLP exporter not started");
                None
            }
        }
    }

    /// The configuration governing `identity` now.
    pub(crate) async fn config_for(&self, identity: &SandboxIdentity) -> EgressConfig {
        let loaded =
            EgressConfig::load(&self.inner.store, &identity.namespace, &identity.gateways).await;
        loaded.unwrap_or_else(|error| {
            tracing::error!(%error, "egress configuration unreadable: denying");
            EgressConfig::default()
        })
    }

    /// The names `sandbox` resolved to `ip` through clrk's resolver.
    pub(crate) fn names_for(&self, sandbox: &SandboxIdentity, ip: IpAddr) -> Vec<String> {
        self.inner
            .names
            .names_for(&sandbox.names_key(), ip.to_canonical())
    }
}
