//! Why a sandbox could not be started for a revision. Each message is for the user who applied
//! the agent: it ends up as an execution's failure reason or a daemon's state.

use clrk_egress::EgressError;
use clrk_image::ImageError;
use clrk_sandbox::SandboxError;

/// A launch that failed, by the step that failed.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// The revision's image reference does not parse (a store written by another version).
    #[error("image {reference}: {source}")]
    Reference {
        reference: String,
        source: ImageError,
    },
    /// Its manifest or layers are not on this worker and the registry cannot give them now
    /// (unreachable, refusing, or no longer holding them): the caller may retry later.
    #[error(
        "image {reference} is not on this worker and cannot be pulled now: {source}; retry shortly"
    )]
    ImageUnavailable {
        reference: String,
        source: ImageError,
    },
    /// Its layers could not be unpacked or stored.
    #[error("preparing the image: {0}")]
    Image(ImageError),
    /// The preparing thread died (a panic while unpacking).
    #[error("preparing the image: {0}")]
    Preparing(String),
    /// The resolver and CA files of an agent with `egressRefs` could not be made.
    #[error("preparing the sandbox's egress: {0}")]
    Egress(EgressError),
    #[error(
        "this worker does not run host: images: start it with --allow-host-rootfs, or use an OCI image"
    )]
    HostRootfsRefused,
    #[error("nothing to run: the image has no ENTRYPOINT, set spec.template.spec.command")]
    NothingToRun,
    /// The image's `User` names nobody in its `/etc/passwd`.
    #[error(transparent)]
    User(ImageError),
    #[error("the sandbox did not start: {0}")]
    Spawn(SandboxError),
}
