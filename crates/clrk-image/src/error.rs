//! The one error type of this crate.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong while parsing, resolving or preparing an image.
///
/// Messages name the reference, directory or blob at fault and say what to do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImageError {
    /// The reference string could not be parsed at all.
    #[error("invalid image reference {reference:?}: {reason}")]
    InvalidReference {
        /// The reference as given.
        reference: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The registry could not be reached at all (down, wrong address, TLS failure).
    #[error(
        "could not reach registry {registry} for image {reference}: {reason}; check that the \
         registry runs at that address"
    )]
    RegistryUnreachable {
        /// The registry host.
        registry: String,
        /// The image reference.
        reference: String,
        /// The underlying error, with its causes.
        reason: String,
    },

    /// The registry refused access with the credentials clrk had (or without any).
    #[error(
        "registry {registry} refused access to {reference}: {credentials}; log in with `docker \
         login {registry}` (or `clrk registry login {registry}`) and retry"
    )]
    RegistryAccessDenied {
        /// The registry host.
        registry: String,
        /// The image reference.
        reference: String,
        /// Which credentials were tried and where they came from.
        credentials: String,
    },

    /// The registry does not have the repository, tag or digest.
    #[error("image {reference} was not found: {reason}; check the name and tag, or push the image")]
    ImageNotFound {
        /// The image reference.
        reference: String,
        /// What the registry said was missing.
        reason: String,
    },

    /// The registry answered with an error that is none of the above.
    #[error("registry request for image {reference} failed: {reason}")]
    RegistryFailed {
        /// The image reference.
        reference: String,
        /// The error, with its causes.
        reason: String,
    },

    /// The image config's `User` cannot be turned into ids.
    #[error("the image's User {user:?} cannot be used: {reason}")]
    BadUser {
        /// The `User` value.
        user: String,
        /// Why.
        reason: String,
    },

    /// `clrk registry login` could not confirm the credentials.
    #[error("login to registry {registry} failed: {reason}")]
    LoginFailed {
        /// The registry host.
        registry: String,
        /// Why, in the registry's or the network's words.
        reason: String,
    },

    /// The docker credentials file exists but cannot be used.
    #[error(
        "docker credentials file {} is not usable: {reason}; fix or remove it",
        path.display()
    )]
    CredentialsUnreadable {
        /// The `config.json` path.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// A file given as an image archive is not one.
    #[error(
        "{} is not an image archive ({reason}): pass the output of `docker save` or a tarred OCI \
         image layout (`skopeo copy SOURCE oci-archive:FILE`)",
        file.display()
    )]
    NotAnArchive {
        /// The archive file.
        file: PathBuf,
        /// What is missing or malformed.
        reason: String,
    },

    /// An archive holds no image of the requested name, or several where one was expected.
    #[error(
        "archive {} has no single image named {wanted:?}; images present: {}; name one of them",
        file.display(),
        list_or_none(available)
    )]
    ArchiveImageNotFound {
        /// The archive file.
        file: PathBuf,
        /// The name asked for (`""` when none was given but several images are present).
        wanted: String,
        /// The names the archive holds.
        available: Vec<String>,
    },

    /// `import` of an archive whose image carries no name, without a name given.
    #[error(
        "archive {} holds an image without a name: import it with a name (--name REF)",
        file.display()
    )]
    ImportNameRequired {
        /// The archive file.
        file: PathBuf,
    },

    /// A `transport:` prefix that clrk does not know.
    #[error(
        "image reference {reference:?} uses unknown transport {transport:?}: the supported \
         transports are host:, oci:DIR[:TAG], oci-archive:FILE[:TAG], \
         docker-archive:FILE[:NAME:TAG] and docker://REF (or a bare registry reference)"
    )]
    UnknownTransport {
        /// The reference as given.
        reference: String,
        /// The unknown transport name, without the colon.
        transport: String,
    },

    /// The directory of an `oci:` reference is not a usable OCI image layout.
    #[error(
        "{} is not an OCI image layout ({reason}): create one with `skopeo copy SOURCE oci:{}:TAG`",
        dir.display(),
        dir.display()
    )]
    NotALayout {
        /// The layout directory.
        dir: PathBuf,
        /// What is missing or malformed.
        reason: String,
    },

    /// `oci:DIR:TAG` named a tag that the layout does not hold.
    #[error(
        "OCI layout {} has no image tagged {tag:?}; tags present: {}",
        dir.display(),
        list_or_none(available)
    )]
    TagNotFound {
        /// The layout directory.
        dir: PathBuf,
        /// The tag that was asked for.
        tag: String,
        /// The tags the layout holds.
        available: Vec<String>,
    },

    /// `oci:DIR` without a tag, but the layout holds more than one image.
    #[error(
        "OCI layout {} holds {count} images, so the reference must name one: use oci:{}:TAG with \
         TAG one of: {}",
        dir.display(),
        dir.display(),
        list_or_none(available)
    )]
    TagRequired {
        /// The layout directory.
        dir: PathBuf,
        /// How many images the layout's index lists.
        count: usize,
        /// The tags the layout holds.
        available: Vec<String>,
    },

    /// No manifest of the image is built for the platform clrk runs on.
    #[error(
        "image {reference} has no build for this machine's platform {wanted}; it has: {}; build \
         or copy the image for {wanted}",
        list_or_none(available)
    )]
    PlatformNotFound {
        /// The image reference.
        reference: String,
        /// The platform clrk runs on, as `os/arch`.
        wanted: String,
        /// The platforms the image offers.
        available: Vec<String>,
    },

    /// A blob named by the layout is not in its `blobs/` directory.
    #[error(
        "blob {digest} is missing from OCI layout {}: the layout is incomplete, copy the image again",
        dir.display()
    )]
    BlobMissing {
        /// The layout directory.
        dir: PathBuf,
        /// The digest of the missing blob.
        digest: String,
    },

    /// A blob's content does not hash to its digest.
    #[error(
        "blob {digest} is corrupt: its content hashes to {actual}; nothing was cached, copy the \
         image again"
    )]
    DigestMismatch {
        /// The digest the blob should have.
        digest: String,
        /// The digest of the content that was found.
        actual: String,
    },

    /// A blob's size differs from the size its descriptor states.
    #[error(
        "blob {digest} is {actual} bytes but its descriptor says {expected}: the image is corrupt, \
         copy it again"
    )]
    SizeMismatch {
        /// The blob's digest.
        digest: String,
        /// The size the descriptor states.
        expected: u64,
        /// The size found on disk.
        actual: u64,
    },

    /// A digest uses an algorithm this crate cannot verify.
    #[error("digest {digest:?} is not supported: images must use sha256, sha384 or sha512 digests")]
    UnsupportedDigest {
        /// The digest as found.
        digest: String,
    },

    /// A manifest, index or layer has a media type this crate does not understand.
    #[error("{what} {digest} has unsupported media type {media_type:?}")]
    UnsupportedMediaType {
        /// What the blob was expected to be ("layer", "manifest").
        what: &'static str,
        /// The blob's digest.
        digest: String,
        /// The media type found.
        media_type: String,
    },

    /// A JSON document of the layout does not parse.
    #[error("{what} {name} is not valid: {source}; the image is corrupt, copy it again")]
    InvalidJson {
        /// What the document is ("index", "manifest", "config").
        what: &'static str,
        /// Its digest or file name.
        name: String,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },

    /// Image indexes point to further indexes deeper than this crate follows.
    #[error("image {reference} nests image indexes more than {max} levels deep")]
    IndexTooDeep {
        /// The image reference.
        reference: String,
        /// The deepest nesting followed.
        max: usize,
    },

    /// A layer holds an entry that could write outside its directory or is otherwise unsafe.
    #[error("layer {digest} contains unsafe entry {path:?} ({reason}); the image was refused")]
    UnsafeLayerEntry {
        /// The layer's digest.
        digest: String,
        /// The entry's path inside the layer.
        path: String,
        /// Why it was refused.
        reason: &'static str,
    },

    /// A layer's archive could not be read or written out (bad compression, tar framing, disk
    /// full).
    #[error("layer {digest} could not be unpacked: {source}")]
    LayerUnreadable {
        /// The layer's digest.
        digest: String,
        /// The underlying read error.
        #[source]
        source: io::Error,
    },

    /// `prepare` was given a resolved image and a reference that do not belong together.
    #[error(
        "image {digest} was not resolved from {reference}: resolve the reference again and pass \
         the result to prepare"
    )]
    ReferenceMismatch {
        /// The reference passed to prepare.
        reference: String,
        /// The digest of the resolved image passed to prepare.
        digest: String,
    },

    /// A filesystem operation failed.
    #[error("could not {action} {}: {source}", path.display())]
    Io {
        /// What was being done ("read", "create directory").
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl ImageError {
    /// Wraps an I/O error with what was being done and where.
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| ImageError::Io {
            action,
            path,
            source,
        }
    }
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(", ")
    }
}
