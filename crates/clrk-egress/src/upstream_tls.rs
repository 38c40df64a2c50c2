//! TLS for the proxy's own connections to upstream servers.
//!
//! The proxy verifies upstreams the way a careful client would: against the system's roots
//! plus an operator-supplied bundle (a corporate CA, or a test server's CA).

use std::sync::Arc;

use rustls::crypto::aws_lc_rs;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::{ClientConfig, RootCertStore};

use crate::error::EgressError;

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
    use super::*;
    use crate::ca::GatewayCa;

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
}
