//! The certificate authority of the TLS-terminating gateway.
//!
//! Sandboxes trust this CA (its certificate is appended to their trust bundle), so the gateway
//! can present, for any name a sandbox connects to, a leaf certificate it mints on the fly.
//! The CA lives in a directory as `ca.crt` and `ca.key` and survives restarts, because
//! sandboxes created earlier keep trusting the certificate they were given. [`GatewayCas`] keeps
//! one per gateway.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Datelike;
use clrk_api::EgressGateway;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SanType,
};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::crypto::{CryptoProvider, aws_lc_rs};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, DnsName, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::{ClientHello, ResolvesServerCert, WantsServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ConfigBuilder, RootCertStore, ServerConfig};

use crate::error::EgressError;

const CERT_FILE: &str = "ca.crt";
const KEY_FILE: &str = "ca.key";
const DAY: Duration = Duration::from_secs(24 * 60 * 60);
const CA_LIFETIME: Duration = Duration::from_secs(3652 * 24 * 60 * 60);
const LEAF_LIFETIME: Duration = Duration::from_secs(365 * 24 * 60 * 60);
/// Bounds the memory a sandbox can make the gateway spend by connecting to many names.
const LEAF_CACHE_CAPACITY: usize = 1024;
/// X.509 caps a common name at 64 characters; longer names live in the SAN only.
const MAX_COMMON_NAME: usize = 64;

/// The gateway's certificate authority: loads or creates the CA and mints leaf certificates.
pub struct GatewayCa {
    certificate_pem: String,
    issuer: Issuer<'static, KeyPair>,
    provider: Arc<CryptoProvider>,
    /// Prepared once, so handing out a config per connection cannot fail.
    server_builder: ConfigBuilder<ServerConfig, WantsServerCert>,
    leaves: Mutex<LeafCache>,
}

impl GatewayCa {
    /// Loads the CA kept in `dir` (`ca.crt` and `ca.key`, PEM), or generates one and stores it.
    ///
    /// `dir` is created with mode 0700 if missing; the key file has mode 0600 and is refused
    /// if others can read it. A new CA is an ECDSA P-256 key with a 10-year certificate whose
    /// common name is `common_name`. Each file is written to a temporary file in `dir`,
    /// synced and renamed, the key first, so an interrupted creation leaves at most a key
    /// without a certificate, which the next call replaces.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ca = clrk_egress::GatewayCa::load_or_create(dir.path(), "clrk egress gateway default/main").unwrap();
    /// assert!(ca.certificate_pem().starts_with("-----BEGIN CERTIFICATE-----"));
    /// ```
    pub fn load_or_create(dir: &Path, common_name: &str) -> Result<GatewayCa, EgressError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| io_error(dir, source))?;
        let cert_path = dir.join(CERT_FILE);
        let key_path = dir.join(KEY_FILE);
        match (cert_path.exists(), key_path.exists()) {
            (true, true) => Self::load(&cert_path, &key_path, common_name),
            (true, false) => Err(EgressError::Certificate {
                what: format!("gateway CA in {}", dir.display()),
                message: format!(
                    "{CERT_FILE} exists but {KEY_FILE} is missing; restore {KEY_FILE}, or delete \
                     {CERT_FILE} to generate a new CA (sandboxes created before then will no \
                     longer trust the gateway)"
                ),
            }),
            (false, key_exists) => {
                if key_exists {
                    tracing::warn!(
                        path = %key_path.display(),
                        "gateway CA key without certificate, left by an interrupted creation; replacing it"
                    );
                }
                Self::create(dir, common_name)
            }
        }
    }

    /// The CA certificate, PEM, to append to a sandbox's trust bundle.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let ca = clrk_egress::GatewayCa::load_or_create(dir.path(), "clrk egress gateway").unwrap();
    /// let bundle = format!("{}{}", "# system roots\n", ca.certificate_pem());
    /// ```
    pub fn certificate_pem(&self) -> &str {
        &self.certificate_pem
    }

    /// A server config presenting, per SNI name, a leaf certificate minted by this CA.
    ///
    /// A ClientHello without SNI gets no certificate and its handshake fails, since the name
    /// the client expects is unknown; use [`GatewayCa::server_config_for`] when the proxy
    /// knows the original destination. ALPN is `http/1.1`.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let ca = std::sync::Arc::new(clrk_egress::GatewayCa::load_or_create(dir.path(), "gw").unwrap());
    /// let acceptor = tokio_rustls::TlsAcceptor::from(ca.server_config());
    /// ```
    pub fn server_config(self: &Arc<Self>) -> Arc<ServerConfig> {
        self.config_with(LeafResolver {
            ca: Arc::clone(self),
            fallback_name: None,
        })
    }

    /// Like [`GatewayCa::server_config`], but a ClientHello without SNI gets the leaf for
    /// `fallback_name` (typically the original destination IP), so clients that connect to
    /// an address rather than a name still complete the handshake.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let ca = std::sync::Arc::new(clrk_egress::GatewayCa::load_or_create(dir.path(), "gw").unwrap());
    /// let config = ca.server_config_for("10.9.8.7");
    /// ```
    pub fn server_config_for(self: &Arc<Self>, fallback_name: &str) -> Arc<ServerConfig> {
        self.config_with(LeafResolver {
            ca: Arc::clone(self),
            fallback_name: Some(fallback_name.to_owned()),
        })
    }

    /// The leaf certificate and key for `name` (a DNS name or an IP literal), minted on first
    /// use and cached afterwards.
    ///
    /// The certificate has `name` as its only subject alternative name, is valid for about a
    /// year and is back-dated a day to tolerate clock skew in sandboxes.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let ca = clrk_egress::GatewayCa::load_or_create(dir.path(), "gw").unwrap();
    /// let leaf = ca.leaf_for("api.example.test").unwrap();
    /// assert!(std::sync::Arc::ptr_eq(&leaf, &ca.leaf_for("API.example.test").unwrap()));
    /// ```
    pub fn leaf_for(&self, name: &str) -> Result<Arc<CertifiedKey>, EgressError> {
        let name = name.to_ascii_lowercase();
        // Minting under the lock keeps a name from being minted twice by concurrent
        // handshakes; a mint takes well under a millisecond.
        let mut leaves = self
            .leaves
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(leaf) = leaves.get(&name) {
            return Ok(leaf);
        }
        let leaf = Arc::new(self.mint(&name)?);
        leaves.insert(name, Arc::clone(&leaf));
        Ok(leaf)
    }

    fn config_with(&self, resolver: LeafResolver) -> Arc<ServerConfig> {
        let mut config = self
            .server_builder
            .clone()
            .with_cert_resolver(Arc::new(resolver));
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }

    fn create(dir: &Path, common_name: &str) -> Result<GatewayCa, EgressError> {
        let what = || format!("new gateway CA in {}", dir.display());
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
            .map_err(|e| certificate_error(what(), e))?;
        let params = ca_params(common_name);
        let certificate = params
            .self_signed(&key)
            .map_err(|e| certificate_error(what(), e))?;
        write_atomically(&dir.join(KEY_FILE), key.serialize_pem().as_bytes(), 0o600)?;
        write_atomically(&dir.join(CERT_FILE), certificate.pem().as_bytes(), 0o644)?;
        tracing::info!(dir = %dir.display(), common_name, "generated gateway CA");
        Self::from_parts(certificate.pem(), params, key)
    }

    fn load(
        cert_path: &Path,
        key_path: &Path,
        common_name: &str,
    ) -> Result<GatewayCa, EgressError> {
        let mode = fs::metadata(key_path)
            .map_err(|source| io_error(key_path, source))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(EgressError::CaKeyExposed {
                path: key_path.to_owned(),
                mode: mode & 0o7777,
            });
        }
        let key_pem = fs::read_to_string(key_path).map_err(|source| io_error(key_path, source))?;
        let key = KeyPair::from_pem(&key_pem).map_err(|e| EgressError::Certificate {
            what: key_path.display().to_string(),
            message: format!(
                "not a usable private key ({e}); delete it and {CERT_FILE} to generate a new CA"
            ),
        })?;
        let certificate_pem =
            fs::read_to_string(cert_path).map_err(|source| io_error(cert_path, source))?;
        // The issuer name of minted leaves is rebuilt from `common_name`, so it must be the
        // name the stored certificate was made for.
        let ca = Self::from_parts(certificate_pem, ca_params(common_name), key)?;
        ca.check_chain()
            .map_err(|message| EgressError::Certificate {
                what: cert_path.display().to_string(),
                message: format!(
                    "{message}; it must be the certificate of {KEY_FILE} with common name \
                 \"{common_name}\" and not expired. Restore the matching files, or delete both \
                 to generate a new CA (sandboxes created before then will no longer trust the \
                 gateway)"
                ),
            })?;
        tracing::info!(path = %cert_path.display(), common_name, "loaded gateway CA");
        Ok(ca)
    }

    fn from_parts(
        certificate_pem: String,
        params: CertificateParams,
        key: KeyPair,
    ) -> Result<GatewayCa, EgressError> {
        // An explicit provider, so the process need not install a default one.
        let provider = Arc::new(aws_lc_rs::default_provider());
        let server_builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| certificate_error("gateway TLS server configuration".to_owned(), e))?
            .with_no_client_auth();
        Ok(GatewayCa {
            certificate_pem,
            issuer: Issuer::new(params, key),
            provider,
            server_builder,
            leaves: Mutex::new(LeafCache::default()),
        })
    }

    /// Verifies a freshly minted leaf against the CA certificate, which catches a key that
    /// does not belong to the certificate, a changed common name and an expired CA at start
    /// rather than at every handshake.
    fn check_chain(&self) -> Result<(), String> {
        let ca_der = CertificateDer::from_pem_slice(self.certificate_pem.as_bytes())
            .map_err(|e| format!("not a PEM certificate ({e})"))?;
        let mut roots = RootCertStore::empty();
        roots
            .add(ca_der)
            .map_err(|e| format!("not a usable CA certificate ({e})"))?;
        let verifier = WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::clone(&self.provider),
        )
        .build()
        .map_err(|e| format!("cannot build a verifier from it ({e})"))?;
        let probe_name = "ca-self-check.invalid";
        let probe = self.mint(probe_name).map_err(|e| e.to_string())?;
        let server_name = ServerName::try_from(probe_name).map_err(|e| e.to_string())?;
        verifier
            .verify_server_cert(
                probe.end_entity_cert().map_err(|e| e.to_string())?,
                &[],
                &server_name,
                &[],
                UnixTime::now(),
            )
            .map_err(|e| {
                format!("certificates signed with {KEY_FILE} do not verify against it ({e})")
            })?;
        Ok(())
    }

    fn mint(&self, name: &str) -> Result<CertifiedKey, EgressError> {
        let what = || format!("leaf certificate for {name}");
        let san = match name.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => {
                DnsName::try_from(name).map_err(|_| EgressError::Certificate {
                    what: what(),
                    message: "not a DNS name or IP address; the client's SNI or the proxy's \
                              fallback name is malformed"
                        .to_owned(),
                })?;
                SanType::DnsName(name.try_into().map_err(|e| certificate_error(what(), e))?)
            }
        };
        let mut params = CertificateParams::default();
        params.subject_alt_names = vec![san];
        params.distinguished_name = DistinguishedName::new();
        if name.len() <= MAX_COMMON_NAME {
            params.distinguished_name.push(DnType::CommonName, name);
        }
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        set_validity(&mut params, LEAF_LIFETIME);
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
            .map_err(|e| certificate_error(what(), e))?;
        let certificate = params
            .signed_by(&key, &self.issuer)
            .map_err(|e| certificate_error(what(), e))?;
        let key_der = PrivateKeyDer::Pkcs8(key.serialize_der().into());
        let leaf = CertifiedKey::from_der(vec![certificate.der().clone()], key_der, &self.provider)
            .map_err(|e| certificate_error(what(), e))?;
        tracing::debug!(name, "minted gateway leaf certificate");
        Ok(leaf)
    }
}

/// The CAs of every terminating gateway, each loaded or created on first use and kept, under
/// `<dir>/<namespace>/<gateway>/`.
pub(crate) struct GatewayCas {
    dir: PathBuf,
    loaded: Mutex<HashMap<(String, String), Arc<GatewayCa>>>,
}

impl GatewayCas {
    /// The CAs kept under `dir`.
    pub(crate) fn new(dir: PathBuf) -> GatewayCas {
        GatewayCas {
            dir,
            loaded: Mutex::default(),
        }
    }

    /// The CA of `gateway`, loaded or created on first use.
    pub(crate) fn of(&self, gateway: &EgressGateway) -> Result<Arc<GatewayCa>, EgressError> {
        let key = (
            gateway.metadata.namespace.clone(),
            gateway.metadata.name.clone(),
        );
        let mut cas = self.loaded.lock().expect("ca cache");
        if let Some(ca) = cas.get(&key) {
            return Ok(Arc::clone(ca));
        }
        let dir = self.dir.join(&key.0).join(&key.1);
        let ca = Arc::new(GatewayCa::load_or_create(
            &dir,
            &format!("clrk egress gateway {}/{}", key.0, key.1),
        )?);
        cas.insert(key, Arc::clone(&ca));
        Ok(ca)
    }
}

impl fmt::Debug for GatewayCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The issuer's own Debug elides the key. try_lock: Debug may run while a mint holds
        // the lock, and must not wait for it.
        let cached = self.leaves.try_lock().map(|l| l.order.len()).ok();
        f.debug_struct("GatewayCa")
            .field("issuer", &self.issuer)
            .field("cached_leaves", &cached)
            .finish()
    }
}

/// Picks the leaf for a ClientHello: its SNI name, else the fallback, else none.
#[derive(Debug)]
struct LeafResolver {
    ca: Arc<GatewayCa>,
    fallback_name: Option<String>,
}

impl ResolvesServerCert for LeafResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let name = client_hello.server_name().or(self.fallback_name.as_deref());
        let Some(name) = name else {
            tracing::debug!("TLS client sent no SNI and no fallback name is known; refusing");
            return None;
        };
        match self.ca.leaf_for(name) {
            Ok(leaf) => Some(leaf),
            Err(error) => {
                tracing::warn!(name, %error, "cannot mint gateway leaf certificate");
                None
            }
        }
    }
}

/// Minted leaves by name, evicting the oldest once full.
#[derive(Default)]
struct LeafCache {
    by_name: HashMap<String, Arc<CertifiedKey>>,
    order: VecDeque<String>,
}

impl LeafCache {
    fn get(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        self.by_name.get(name).cloned()
    }

    fn insert(&mut self, name: String, leaf: Arc<CertifiedKey>) {
        while self.order.len() >= LEAF_CACHE_CAPACITY {
            if let Some(oldest) = self.order.pop_front() {
                self.by_name.remove(&oldest);
            }
        }
        self.order.push_back(name.clone());
        self.by_name.insert(name, leaf);
    }
}

fn ca_params(common_name: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    set_validity(&mut params, CA_LIFETIME);
    params
}

/// Starts validity at midnight UTC a day ago, so a sandbox whose clock lags still accepts it.
fn set_validity(params: &mut CertificateParams, lifetime: Duration) {
    let today = chrono::Utc::now().date_naive();
    // chrono's month and day are 1..=12 and 1..=31, so they fit a u8.
    let midnight = rcgen::date_time_ymd(today.year(), today.month() as u8, today.day() as u8);
    params.not_before = midnight - DAY;
    params.not_after = midnight + lifetime;
}

/// Writes `contents` to `path` via a temporary file in the same directory, so readers see
/// the old file or the new one, never a partial one. The temporary file is created with
/// `mode` from the start, so a key is never readable by others even briefly.
fn write_atomically(path: &Path, contents: &[u8], mode: u32) -> Result<(), EgressError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let temp = dir.join(format!(".{file_name}.tmp.{}", std::process::id()));
    // A crashed earlier run with the same pid may have left it, possibly with another mode.
    match fs::remove_file(&temp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(source) => return Err(io_error(&temp, source)),
    }
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&temp)
        .map_err(|source| io_error(&temp, source))?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(|source| io_error(&temp, source))?;
    drop(file);
    fs::rename(&temp, path).map_err(|source| io_error(path, source))?;
    // Makes the rename itself durable.
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| io_error(dir, source))
}

fn io_error(path: &Path, source: io::Error) -> EgressError {
    EgressError::Io {
        path: PathBuf::from(path),
        source,
    }
}

fn certificate_error(what: String, error: impl fmt::Display) -> EgressError {
    EgressError::Certificate {
        what,
        message: error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CN: &str = "clrk egress gateway default/main";

    fn new_ca() -> (tempfile::TempDir, Arc<GatewayCa>) {
        let dir = tempfile::tempdir().unwrap();
        let ca = GatewayCa::load_or_create(&dir.path().join("ca"), CN).unwrap();
        (dir, Arc::new(ca))
    }

    #[test]
    fn creates_private_files_then_loads_the_same_ca() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("state").join("ca");
        let first = GatewayCa::load_or_create(&dir, CN).unwrap();

        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join(KEY_FILE)), 0o600);
        assert!(
            first
                .certificate_pem()
                .starts_with("-----BEGIN CERTIFICATE-----")
        );
        assert_eq!(
            fs::read_to_string(dir.join(CERT_FILE)).unwrap(),
            first.certificate_pem()
        );
        let leftovers: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            leftovers.len(),
            2,
            "temporary files left behind: {leftovers:?}"
        );

        let second = GatewayCa::load_or_create(&dir, CN).unwrap();
        assert_eq!(second.certificate_pem(), first.certificate_pem());
    }

    #[test]
    fn refuses_a_key_others_can_read() {
        let (dir, _ca) = new_ca();
        let key = dir.path().join("ca").join(KEY_FILE);
        fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
        let error = GatewayCa::load_or_create(&dir.path().join("ca"), CN).unwrap_err();
        assert!(
            matches!(error, EgressError::CaKeyExposed { mode: 0o644, .. }),
            "{error}"
        );
    }

    #[test]
    fn refuses_a_stored_ca_made_for_another_name() {
        let (dir, _ca) = new_ca();
        let error =
            GatewayCa::load_or_create(&dir.path().join("ca"), "another gateway").unwrap_err();
        assert!(matches!(error, EgressError::Certificate { .. }), "{error}");
    }

    #[test]
    fn replaces_a_key_left_without_certificate() {
        let (dir, _ca) = new_ca();
        let ca_dir = dir.path().join("ca");
        fs::remove_file(ca_dir.join(CERT_FILE)).unwrap();
        GatewayCa::load_or_create(&ca_dir, CN).unwrap();
        assert!(ca_dir.join(CERT_FILE).exists());
    }

    #[test]
    fn mints_a_name_once() {
        let (_dir, ca) = new_ca();
        let first = ca.leaf_for("api.example.test").unwrap();
        let second = ca.leaf_for("API.Example.test").unwrap();
        assert!(Arc::ptr_eq(&first, &second));
        assert_eq!(first.cert[0], second.cert[0]);
        assert!(!Arc::ptr_eq(
            &first,
            &ca.leaf_for("other.example.test").unwrap()
        ));
        assert!(ca.leaf_for("not a name!").is_err());
    }

    #[test]
    fn cache_stays_bounded() {
        let mut cache = LeafCache::default();
        let (_dir, ca) = new_ca();
        let leaf = ca.leaf_for("example.test").unwrap();
        for i in 0..LEAF_CACHE_CAPACITY + 10 {
            cache.insert(format!("host{i}.example.test"), Arc::clone(&leaf));
        }
        assert_eq!(cache.by_name.len(), LEAF_CACHE_CAPACITY);
        assert!(cache.get("host0.example.test").is_none());
        assert!(
            cache
                .get(&format!("host{}.example.test", LEAF_CACHE_CAPACITY + 9))
                .is_some()
        );
    }
}
