//! TLS for the proxy's own connections to upstream servers.
//!
//! The proxy verifies upstreams the way a careful client would: against the system's roots
//! plus an operator-supplied bundle (a corporate CA, or a test server's CA). [`UpstreamTrust`]
//! keeps one client config per bundle, so connections with the same trust can be pooled.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use clrk_api::EgressGateway;

use rustls::crypto::aws_lc_rs;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::{ClientConfig, RootCertStore};

use crate::error::EgressError;

/// The client configs of upstream TLS, one per additional trust bundle.
#[derive(Default)]
pub(crate) struct UpstreamTrust {
    configs: Mutex<HashMap<Option<String>, Arc<ClientConfig>>>,
}

impl UpstreamTrust {
    /// The client config for upstream TLS of `gateway` (the system roots alone without one).
    pub(crate) fn of(
        &self,
        gateway: Option<&EgressGateway>,
    ) -> Result<Arc<ClientConfig>, EgressError> {
        let bundle = gateway.and_then(|g| g.spec.upstream_tls.additional_trust_bundle.clone());
        let mut configs = self.configs.lock().expect("upstream tls cache");
        if let Some(config) = configs.get(&bundle) {
            return Ok(Arc::clone(config));
        }
        let config = client_config(bundle.as_deref())?;
        configs.insert(bundle, Arc::clone(&config));
        Ok(config)
    }
}

/// Client config for the proxy's upstream connections.
///
/// It trusts the system roots (unparsable ones are logged and skipped) plus the certificates
/// in `additional_trust_bundle` (PEM text, possibly several certificates). A bundle that
/// holds no certificate or an invalid one is an error naming the certificate at fault. No
/// roots at all is an error too, since every upstream handshake would fail. ALPN is
/// `http/1.1`; the aws-lc-rs provider is used explicitly, so no process default is needed.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// let ca = clrk_egress::GatewayCa::load_or_create(dir.path(), "test upstream CA").unwrap();
/// let config = clrk_egress::client_config(Some(ca.certificate_pem())).unwrap();
/// let connector = tokio_rustls::TlsConnector::from(config);
/// ```
pub fn client_config(
    additional_trust_bundle: Option<&str>,
) -> Result<Arc<ClientConfig>, EgressError> {
    let mut roots = system_roots();
    if let Some(bundle) = additional_trust_bundle {
        add_bundle(&mut roots, bundle)?;
    }
    if roots.is_empty() {
        return Err(EgressError::TrustBundle {
            message: "there are no trusted roots: the system store has none and no additional \
                      trust bundle was given; install the system's CA certificates package or \
                      configure a trust bundle"
                .to_owned(),
        });
    }
    let mut config = ClientConfig::builder_with_provider(Arc::new(aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| EgressError::TrustBundle {
            message: format!("cannot configure TLS protocol versions: {e}"),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The system's roots; missing or broken ones are logged, since the additional bundle may
/// still make the store usable.
fn system_roots() -> RootCertStore {
    let loaded = rustls_native_certs::load_native_certs();
    for error in &loaded.errors {
        tracing::warn!(%error, "cannot load some system root certificates");
    }
    let mut roots = RootCertStore::empty();
    let (added, skipped) = roots.add_parsable_certificates(loaded.certs);
    if skipped > 0 {
        tracing::warn!(skipped, "skipped unparsable system root certificates");
    }
    tracing::debug!(added, "loaded system root certificates");
    roots
}

fn add_bundle(roots: &mut RootCertStore, bundle: &str) -> Result<(), EgressError> {
    let mut count = 0;
    for (index, cert) in CertificateDer::pem_slice_iter(bundle.as_bytes()).enumerate() {
        let position = index + 1;
        let cert = cert.map_err(|e| EgressError::TrustBundle {
            message: format!(
                "certificate #{position} of the additional trust bundle is not valid PEM ({e}); \
                 check that it was copied whole"
            ),
        })?;
        roots.add(cert).map_err(|e| EgressError::TrustBundle {
            message: format!(
                "certificate #{position} of the additional trust bundle is not a usable CA \
                 certificate ({e}); remove it or replace it with the issuing CA's certificate"
            ),
        })?;
        count += 1;
    }
    if count == 0 {
        return Err(EgressError::TrustBundle {
            message: "the additional trust bundle contains no \"-----BEGIN CERTIFICATE-----\" \
                      block; give the CA certificates in PEM form"
                .to_owned(),
        });
    }
    tracing::debug!(count, "added certificates of the additional trust bundle");
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use rustls::ServerConfig;
    use rustls::pki_types::ServerName;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::{TlsAcceptor, TlsConnector};

    use super::*;
    use crate::ca::GatewayCa;

    fn new_ca() -> (tempfile::TempDir, Arc<GatewayCa>) {
        let dir = tempfile::tempdir().unwrap();
        let ca =
            GatewayCa::load_or_create(&dir.path().join("ca"), "clrk egress gateway default/main")
                .unwrap();
        (dir, Arc::new(ca))
    }

    /// Runs one TLS connection over an in-memory pipe; returns what the client read.
    async fn handshake(
        server: Arc<ServerConfig>,
        client: Arc<rustls::ClientConfig>,
        name: ServerName<'static>,
    ) -> Result<Vec<u8>, std::io::Error> {
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        let server_side = async move {
            let mut tls = TlsAcceptor::from(server).accept(server_io).await?;
            assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
            tls.write_all(b"hello from the gateway").await?;
            tls.shutdown().await
        };
        let client_side = async move {
            let mut tls = TlsConnector::from(client).connect(name, client_io).await?;
            let mut received = Vec::new();
            tls.read_to_end(&mut received).await?;
            Ok::<_, std::io::Error>(received)
        };
        let (server_result, client_result) = tokio::join!(server_side, client_side);
        let received = client_result?;
        server_result?;
        Ok(received)
    }

    #[test]
    fn garbage_bundle_is_an_error() {
        let error = client_config(Some("not a certificate")).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("no \"-----BEGIN CERTIFICATE-----\""),
            "{error}"
        );

        let broken =
            "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n";
        let error = client_config(Some(broken)).unwrap_err();
        assert!(error.to_string().contains("certificate #1"), "{error}");
    }

    #[test]
    fn bundle_of_several_certificates_is_accepted() {
        let dir = tempfile::tempdir().unwrap();
        let first = GatewayCa::load_or_create(&dir.path().join("a"), "first").unwrap();
        let second = GatewayCa::load_or_create(&dir.path().join("b"), "second").unwrap();
        let bundle = format!("{}{}", first.certificate_pem(), second.certificate_pem());
        let config = client_config(Some(&bundle)).unwrap();
        assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
        client_config(Some(first.certificate_pem())).unwrap();
    }

    #[test]
    fn bundle_adds_each_certificate_to_the_roots() {
        let dir = tempfile::tempdir().unwrap();
        let ca = GatewayCa::load_or_create(dir.path(), "only").unwrap();
        let mut roots = RootCertStore::empty();
        add_bundle(&mut roots, ca.certificate_pem()).unwrap();
        assert_eq!(roots.len(), 1);
    }

    #[tokio::test]
    async fn client_trusting_the_ca_completes_a_handshake_by_sni() {
        let (_dir, ca) = new_ca();
        let client = client_config(Some(ca.certificate_pem())).unwrap();
        let name = ServerName::try_from("api.example.test").unwrap();
        let received = handshake(ca.server_config(), client, name).await.unwrap();
        assert_eq!(received, b"hello from the gateway");
    }

    #[tokio::test]
    async fn client_trusting_another_ca_fails_the_handshake() {
        let (_dir, ca) = new_ca();
        let (_other_dir, other) = new_ca();
        let client = client_config(Some(other.certificate_pem())).unwrap();
        let name = ServerName::try_from("api.example.test").unwrap();
        assert!(handshake(ca.server_config(), client, name).await.is_err());
    }

    #[tokio::test]
    async fn client_without_sni_uses_the_fallback_ip() {
        let (_dir, ca) = new_ca();
        let client = client_config(Some(ca.certificate_pem())).unwrap();
        // rustls sends no SNI when connecting to an IP address.
        let name = ServerName::IpAddress("10.9.8.7".parse::<IpAddr>().unwrap().into());
        let received = handshake(
            ca.server_config_for("10.9.8.7"),
            Arc::clone(&client),
            name.clone(),
        )
        .await
        .unwrap();
        assert_eq!(received, b"hello from the gateway");
        assert!(handshake(ca.server_config(), client, name).await.is_err());
    }
}
