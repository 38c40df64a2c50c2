//! Choosing the manifest built for the platform clrk runs on.

use oci_spec::image::{Arch, Descriptor, ImageConfiguration, Os, Platform};

use crate::error::ImageError;

/// The running platform as `os/arch`, e.g. `linux/amd64`.
pub(crate) fn running() -> String {
    format!("{}/{}", Os::default(), Arch::default())
}

/// Whether an `os`/`architecture` pair is the running platform.
pub(crate) fn is_running(os: &Os, architecture: &Arch) -> bool {
    *os == Os::default() && *architecture == Arch::default()
}

/// Fails unless the image config says it is built for the running platform.
pub(crate) fn check_config(
    configuration: &ImageConfiguration,
    reference: &str,
) -> Result<(), ImageError> {
    if is_running(configuration.os(), configuration.architecture()) {
        return Ok(());
    }
    Err(ImageError::PlatformNotFound {
        reference: reference.to_owned(),
        wanted: running(),
        available: vec![describe(
            configuration.os(),
            configuration.architecture(),
            configuration.variant().as_deref(),
        )],
    })
}

/// `os/arch[/variant]`.
pub(crate) fn describe(os: &Os, architecture: &Arch, variant: Option<&str>) -> String {
    match variant {
        Some(variant) => format!("{os}/{architecture}/{variant}"),
        None => format!("{os}/{architecture}"),
    }
}

/// Picks the descriptor for the running platform. A lone descriptor without a platform is
/// taken as is (single-platform layouts often omit it); one with a platform must match.
pub(crate) fn choose<'a>(
    candidates: &[&'a Descriptor],
    reference: &str,
) -> Result<&'a Descriptor, ImageError> {
    if let [only] = candidates
        && only.platform().is_none()
    {
        return Ok(only);
    }
    let matching = candidates.iter().find(|d| {
        d.platform()
            .as_ref()
            .is_some_and(|p| is_running(p.os(), p.architecture()))
    });
    if let Some(found) = matching {
        return Ok(found);
    }
    let mut available: Vec<String> = Vec::new();
    for platform in candidates.iter().filter_map(|d| d.platform().as_ref()) {
        // Build attestations are listed as unknown/unknown; they are not platforms.
        if *platform.os() == Os::Other("unknown".to_owned()) {
            continue;
        }
        let name = name_of(platform);
        if !available.contains(&name) {
            available.push(name);
        }
    }
    Err(ImageError::PlatformNotFound {
        reference: reference.to_owned(),
        wanted: running(),
        available,
    })
}

fn name_of(platform: &Platform) -> String {
    describe(
        platform.os(),
        platform.architecture(),
        platform.variant().as_deref(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::image::{MediaType, PlatformBuilder, Sha256Digest};
    use std::str::FromStr;

    fn descriptor(platform: Option<(&str, &str)>) -> Descriptor {
        let digest = Sha256Digest::from_str(&"a".repeat(64)).unwrap();
        let mut d = Descriptor::new(MediaType::ImageManifest, 2, digest);
        if let Some((os, arch)) = platform {
            d.set_platform(Some(
                PlatformBuilder::default()
                    .os(Os::from(os))
                    .architecture(Arch::from(arch))
                    .build()
                    .unwrap(),
            ));
        }
        d
    }

    #[test]
    fn picks_the_running_platform() {
        let arm = descriptor(Some(("linux", "arm64")));
        let here = descriptor(Some(("linux", &Arch::default().to_string())));
        assert_eq!(choose(&[&arm, &here], "img").unwrap(), &here);
    }

    #[test]
    fn lone_descriptor_without_platform_is_taken() {
        let plain = descriptor(None);
        assert_eq!(choose(&[&plain], "img").unwrap(), &plain);
    }

    #[test]
    fn names_the_platforms_on_offer() {
        let a = descriptor(Some(("linux", "riscv64")));
        let b = descriptor(Some(("linux", "s390x")));
        let attestation = descriptor(Some(("unknown", "unknown")));
        let err = choose(&[&a, &b, &attestation], "img").unwrap_err();
        let ImageError::PlatformNotFound {
            available, wanted, ..
        } = err
        else {
            panic!("{err}")
        };
        assert_eq!(available, ["linux/riscv64", "linux/s390x"]);
        assert_eq!(wanted, running());
    }
}
