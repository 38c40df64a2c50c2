//! Talking to registries (OCI distribution API) through `oci-client`: manifests and blobs,
//! anonymous, bearer-token (the `WWW-Authenticate` challenge) and basic auth.
//!
//! `oci-client` is async; this crate's API is synchronous, so requests run on one small
//! process-wide runtime that is never dropped (dropping a runtime inside another runtime's
//! context panics, and the store may well be dropped there).

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use futures::StreamExt as _;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::manifest::OciDescriptor;
use oci_client::{Client, RegistryOperation};

use crate::credentials::{self, Credentials};
use crate::digest::BlobDigest;
use crate::error::ImageError;
use crate::local::BlobWriter;
use crate::reference::RegistryRef;

/// Manifest media types clrk asks for: OCI and Docker, single images and indexes.
const MANIFEST_TYPES: &[&str] = &[
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
const READ_TIMEOUT: Duration = Duration::from_secs(120);

/// A client for all registries, with the store's insecure-registry list and credentials file.
pub(crate) struct RegistryClient {
    client: Client,
    /// For registries on loopback, which are plain HTTP like docker's (see `plain_http`).
    loopback: Client,
    docker_config: Option<PathBuf>,
}

impl RegistryClient {
    pub(crate) fn new(insecure: &[String], docker_config: Option<PathBuf>) -> Self {
        let config = |protocol| ClientConfig {
            protocol,
            connect_timeout: Some(CONNECT_TIMEOUT),
            read_timeout: Some(READ_TIMEOUT),
            // Indexes are resolved by this crate (see `platform`), with errors naming what is
            // on offer.
            platform_resolver: None,
            ..ClientConfig::default()
        };
        RegistryClient {
            client: Client::new(config(ClientProtocol::HttpsExcept(insecure.to_vec()))),
            loopback: Client::new(config(ClientProtocol::Http)),
            docker_config,
        }
    }

    /// The client that speaks to `r`'s registry.
    fn client(&self, r: &RegistryRef) -> &Client {
        if crate::is_loopback_registry(r.registry()) {
            &self.loopback
        } else {
            &self.client
        }
    }

    fn credentials(&self, r: &RegistryRef) -> Result<Credentials, ImageError> {
        let path = credentials::config_path(self.docker_config.as_deref());
        credentials::lookup(path.as_deref(), r.registry())
    }

    /// Fetches the manifest (or index) `r` names; returns its bytes, unverified (the caller
    /// hashes them: a tag has no digest to check against).
    pub(crate) fn manifest(&self, r: &RegistryRef) -> Result<Vec<u8>, ImageError> {
        let credentials = self.credentials(r)?;
        let reference = r.to_client();
        tracing::debug!(image = %r, "fetching manifest");
        let fetched = runtime().block_on(async {
            self.client(r)
                .auth(&reference, &credentials.auth, RegistryOperation::Pull)
                .await?;
            self.client(r)
                .pull_manifest_raw(&reference, &credentials.auth, MANIFEST_TYPES)
                .await
        });
        match fetched {
            Ok((bytes, _)) => Ok(bytes.to_vec()),
            Err(e) => Err(self.explain_missing(classify(e, r, &credentials), r, &credentials)),
        }
    }

    /// Registries answer "manifest unknown" both for a missing tag and a missing repository;
    /// the tag list tells them apart and lets the error name the tags that do exist.
    fn explain_missing(
        &self,
        e: ImageError,
        r: &RegistryRef,
        credentials: &Credentials,
    ) -> ImageError {
        let (ImageError::ImageNotFound { reference, .. }, Some(tag), None) =
            (&e, r.tag(), r.digest())
        else {
            return e;
        };
        let listed = runtime().block_on(self.client(r).list_tags(
            &r.to_client(),
            &credentials.auth,
            None,
            None,
        ));
        let reason = match listed {
            Ok(list) if list.tags.is_empty() => {
                format!("repository {} has no tags at all", r.repository())
            }
            Ok(list) => format!(
                "repository {} has no tag {tag}; its tags: {}",
                r.repository(),
                list.tags.join(", ")
            ),
            Err(_) => format!(
                "registry {} has no repository {}",
                r.registry(),
                r.repository()
            ),
        };
        ImageError::ImageNotFound {
            reference: reference.clone(),
            reason,
        }
    }

    /// Streams the blob `digest` of `r`'s repository into `writer`, calling `progress` with the
    /// bytes received so far; `writer` verifies and lands it.
    pub(crate) fn blob(
        &self,
        r: &RegistryRef,
        digest: &BlobDigest,
        size: u64,
        mut writer: BlobWriter,
        progress: &mut dyn FnMut(u64),
    ) -> Result<(), ImageError> {
        let credentials = self.credentials(r)?;
        let reference = r.to_client();
        let descriptor = OciDescriptor {
            digest: digest.to_string(),
            size: i64::try_from(size).unwrap_or(i64::MAX),
            ..OciDescriptor::default()
        };
        runtime().block_on(async {
            self.client(r)
                .auth(&reference, &credentials.auth, RegistryOperation::Pull)
                .await
                .map_err(|e| classify(e, r, &credentials))?;
            let mut stream = self
                .client(r)
                .pull_blob_stream(&reference, &descriptor)
                .await
                .map_err(|e| classify(e, r, &credentials))?
                .stream;
            let mut done = 0;
            while let Some(chunk) = stream.next().await {
                // oci-client verifies the digest too and fails the stream's end on a mismatch;
                // the writer's own check names the blob and what it hashed to.
                let chunk = match chunk {
                    Ok(chunk) => chunk,
                    Err(e) if is_digest_mismatch(&e) => break,
                    Err(e) => {
                        return Err(ImageError::RegistryUnreachable {
                            registry: r.registry().to_owned(),
                            reference: r.to_string(),
                            reason: format!("download of blob {digest} broke off: {}", chain(&e)),
                        });
                    }
                };
                writer.write(&chunk)?;
                done += chunk.len() as u64;
                progress(done);
            }
            writer.finish(Some(size))
        })
    }
}

/// The runtime registry requests run on: two workers, created on first use, never dropped.
pub(crate) fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("clrk-image-pull")
            .enable_all()
            .build()
            .expect("the registry runtime starts")
    })
}

fn is_digest_mismatch(e: &std::io::Error) -> bool {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<oci_client::errors::DigestError>())
        .is_some_and(|d| matches!(d, oci_client::errors::DigestError::VerificationError { .. }))
}

/// Turns a client error into the error a user can act on.
fn classify(e: OciDistributionError, r: &RegistryRef, credentials: &Credentials) -> ImageError {
    let reference = r.to_string();
    let denied = || ImageError::RegistryAccessDenied {
        registry: r.registry().to_owned(),
        reference: reference.clone(),
        credentials: credentials.described.clone(),
    };
    match &e {
        OciDistributionError::RequestError(request) => {
            let reason = chain(request);
            ImageError::RegistryUnreachable {
                registry: r.registry().to_owned(),
                reference: reference.clone(),
                reason: format!("{reason}{}", crate::plain_http_hint(r.registry(), &reason)),
            }
        }
        OciDistributionError::UnauthorizedError { .. }
        | OciDistributionError::AuthenticationFailure(_) => denied(),
        OciDistributionError::RegistryError { envelope, .. } => {
            let codes: Vec<&OciErrorCode> = envelope.errors.iter().map(|e| &e.code).collect();
            if codes
                .iter()
                .any(|c| matches!(c, OciErrorCode::Unauthorized | OciErrorCode::Denied))
            {
                return denied();
            }
            let reason = if codes.contains(&&OciErrorCode::NameUnknown) {
                format!(
                    "registry {} has no repository {}",
                    r.registry(),
                    r.repository()
                )
            } else if codes.contains(&&OciErrorCode::ManifestUnknown) {
                match (r.tag(), r.digest()) {
                    (_, Some(digest)) => {
                        format!("repository {} has no manifest {digest}", r.repository())
                    }
                    (tag, None) => format!(
                        "repository {} has no tag {}",
                        r.repository(),
                        tag.unwrap_or_default()
                    ),
                }
            } else if codes.contains(&&OciErrorCode::BlobUnknown) {
                format!(
                    "repository {} is missing a blob it references",
                    r.repository()
                )
            } else {
                return ImageError::RegistryFailed {
                    reference,
                    reason: envelope.to_string(),
                };
            };
            ImageError::ImageNotFound { reference, reason }
        }
        OciDistributionError::ServerError { code: 404, .. }
        | OciDistributionError::ImageManifestNotFoundError(_) => ImageError::ImageNotFound {
            reason: format!("registry {} answered 404 Not Found", r.registry()),
            reference,
        },
        _ => ImageError::RegistryFailed {
            reference,
            reason: chain(&e),
        },
    }
}

/// An error with its causes, `a: b: c`.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
