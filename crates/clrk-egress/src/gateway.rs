//! The egress gateway as the rest of clrk sees it: its listeners, the sandboxes it knows, and
//! the files an egress sandbox gets. It puts the parts together and hands the proxy and the
//! resolver each a context of the parts they use.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clrk_api::TlsMode;
use clrk_sandbox::{METADATA_V4, SandboxAddresses, SandboxFile, bind_metadata_pair};
use clrk_store::Store;
use socket2::{Protocol, Type};
use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;

use crate::EgressError;
use crate::ca::GatewayCas;
use crate::config::EgressConfig;
use crate::destination::HostAddresses;
use crate::dns::NameCache;
use crate::dns::server::ResolverContext;
use crate::limits::{PROVIDER_BODY_BUDGET, Slots};
use crate::peers::{Registration, SandboxIdentity, SandboxRegistry};
use crate::proxy::body::BodyBudget;
use crate::proxy::http::HttpContext;
use crate::proxy::tcp::ProxyContext;
use crate::proxy::tls::UpstreamTrust;
use crate::proxy::upstream::UpstreamPool;
use crate::telemetry::otlp::Span;
use crate::telemetry::recorder::Recorder;

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
    inner: Arc<Inner>,
}

/// The gateway's parts; the proxy and the resolver each get a context holding the ones they
/// use.
struct Inner {
    store: Store,
    peers: SandboxRegistry,
    /// Names each sandbox resolved, by the sandbox's IPv4 address.
    names: Arc<NameCache<IpAddr>>,
    cas: Arc<GatewayCas>,
    proxy: Arc<ProxyContext>,
    resolver: Arc<ResolverContext>,
}

impl Egress {
    /// A service over `store`; nothing is bound until [`Egress::bind`].
    pub fn new(store: Store, settings: EgressSettings) -> Egress {
        let peers = SandboxRegistry::default();
        let names = Arc::new(NameCache::new());
        let cas = Arc::new(GatewayCas::new(settings.ca_dir));
        let recorder = Recorder::new(store.clone());
        let host = Arc::new(HostAddresses::new());
        let connections = Slots::default();
        let http = Arc::new(HttpContext {
            store: store.clone(),
            recorder: recorder.clone(),
            host: Arc::clone(&host),
            upstream_pool: UpstreamPool::default(),
            upstream_trust: UpstreamTrust::default(),
            body_budget: BodyBudget::new(PROVIDER_BODY_BUDGET),
            connections: connections.clone(),
        });
        let proxy = Arc::new(ProxyContext {
            peers: peers.clone(),
            store: store.clone(),
            names: Arc::clone(&names),
            host,
            recorder: recorder.clone(),
            cas: Arc::clone(&cas),
            connections,
            http,
        });
        let resolver = Arc::new(ResolverContext {
            peers: peers.clone(),
            store: store.clone(),
            names: Arc::clone(&names),
            upstream: settings.dns_upstream,
            recorder,
        });
        Egress {
            inner: Arc::new(Inner {
                store,
                peers,
                names,
                cas,
                proxy,
                resolver,
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
            crate::proxy::tcp::serve(Arc::clone(&self.inner.proxy), tcp4, shutdown.clone()),
            crate::proxy::tcp::serve(Arc::clone(&self.inner.proxy), tcp6, shutdown.clone()),
            crate::dns::server::serve(Arc::clone(&self.inner.resolver), udp4, shutdown.clone()),
            crate::dns::server::serve(Arc::clone(&self.inner.resolver), udp6, shutdown),
        );
    }

    /// Makes a sandbox known to the proxy and resolver until the registration is dropped.
    pub fn register(&self, addresses: SandboxAddresses, identity: SandboxIdentity) -> Registration {
        // Names are remembered by the sandbox's IPv4 address whichever family asked or dials.
        let key = IpAddr::V4(addresses.v4);
        self.inner.names.forget(&key);
        identity.set_names_key(key);
        self.inner.peers.register(
            &[IpAddr::V4(addresses.v4), IpAddr::V6(addresses.v6)],
            identity,
        )
    }

    /// Exports spans of an execution of `namespace` using `gateways` (its own: admission,
    /// start, run) through the OTLP endpoint of the first of them that exists, when it has
    /// one; the gateway exports the spans of its calls itself.
    pub async fn export_spans(&self, namespace: &str, gateways: &[String], spans: Vec<Span>) {
        let config = match EgressConfig::load(&self.inner.store, namespace, gateways).await {
            Ok(config) => config,
            Err(error) => {
                tracing::warn!(%error, namespace, "an execution's spans were not exported");
                return;
            }
        };
        if let Some(exporter) = self.inner.proxy.recorder.exporter(config.primary()) {
            for span in spans {
                exporter.export(span);
            }
        }
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
            extra.push_str(self.inner.cas.of(gateway)?.certificate_pem());
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
}
