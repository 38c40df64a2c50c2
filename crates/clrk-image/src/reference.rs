//! Image references: the `image:` string of a manifest, parsed into a transport.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::error::ImageError;

/// Transports that exist in skopeo's syntax but are not implemented yet.
const PLANNED_TRANSPORTS: &[&str] = &["oci-archive", "docker-archive"];

/// Where an image comes from (SPEC §6).
///
/// ```
/// use clrk_image::ImageRef;
/// let r: ImageRef = "oci:/srv/images/word-count:0.1".parse().unwrap();
/// assert_eq!(
///     r,
///     ImageRef::OciLayout { dir: "/srv/images/word-count".into(), tag: Some("0.1".into()) }
/// );
/// assert!("host:".parse::<ImageRef>().unwrap().is_host());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ImageRef {
    /// `host:`: the host's root filesystem (local development only).
    Host,
    /// `oci:DIR[:TAG]`: an OCI image layout directory, optionally naming the image by the
    /// `org.opencontainers.image.ref.name` annotation in its `index.json`.
    OciLayout {
        /// The layout directory, as written (relative paths are relative to the process's
        /// working directory).
        dir: PathBuf,
        /// The tag, if given.
        tag: Option<String>,
    },
}

impl ImageRef {
    /// Whether this is the `host:` reference.
    ///
    /// ```
    /// use clrk_image::ImageRef;
    /// assert!(!"oci:img".parse::<ImageRef>().unwrap().is_host());
    /// ```
    pub fn is_host(&self) -> bool {
        matches!(self, ImageRef::Host)
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageRef::Host => f.write_str("host:"),
            ImageRef::OciLayout { dir, tag: None } => write!(f, "oci:{}", dir.display()),
            ImageRef::OciLayout {
                dir,
                tag: Some(tag),
            } => {
                write!(f, "oci:{}:{tag}", dir.display())
            }
        }
    }
}

impl FromStr for ImageRef {
    type Err = ImageError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = |reason: &str| ImageError::InvalidReference {
            reference: s.to_owned(),
            reason: reason.to_owned(),
        };
        if s.is_empty() {
            return Err(invalid(
                "it is empty; use host:, oci:DIR[:TAG] or a registry reference",
            ));
        }
        if s == "host:" || s == "host:/" {
            return Ok(ImageRef::Host);
        }
        if s.starts_with("host:") {
            return Err(invalid("host: takes no path; write it as host:"));
        }
        if let Some(rest) = s.strip_prefix("oci:") {
            return parse_oci(s, rest);
        }
        if let Some((prefix, rest)) = s.split_once(':')
            && !prefix.contains('/')
        {
            if PLANNED_TRANSPORTS.contains(&prefix) {
                return Err(ImageError::TransportNotSupported {
                    reference: s.to_owned(),
                    transport: prefix.to_owned(),
                });
            }
            if prefix == "docker"
                && let Some(remote) = rest.strip_prefix("//")
            {
                return Err(ImageError::RegistryNotSupported {
                    reference: remote.to_owned(),
                });
            }
            if !is_registry_reference(s) {
                return Err(ImageError::UnknownTransport {
                    reference: s.to_owned(),
                    transport: prefix.to_owned(),
                });
            }
        }
        if is_registry_reference(s) {
            return Err(ImageError::RegistryNotSupported {
                reference: s.to_owned(),
            });
        }
        Err(invalid(
            "it is neither a registry reference (name[:tag][@digest]) nor transport:location; \
             use host: or oci:DIR[:TAG]",
        ))
    }
}

/// Parses the part after `oci:`. Like skopeo, the tag is what follows the last colon, unless
/// that part contains a slash (then the colon belongs to the directory).
fn parse_oci(reference: &str, rest: &str) -> Result<ImageRef, ImageError> {
    let (dir, tag) = match rest.rsplit_once(':') {
        Some((dir, tag)) if !tag.contains('/') => (dir, Some(tag)),
        _ => (rest, None),
    };
    if dir.is_empty() {
        return Err(ImageError::InvalidReference {
            reference: reference.to_owned(),
            reason: "the directory is missing; write oci:DIR or oci:DIR:TAG".to_owned(),
        });
    }
    if tag == Some("") {
        return Err(ImageError::InvalidReference {
            reference: reference.to_owned(),
            reason: "the tag after the last colon is empty; drop the colon or name a tag"
                .to_owned(),
        });
    }
    Ok(ImageRef::OciLayout {
        dir: PathBuf::from(dir),
        tag: tag.map(str::to_owned),
    })
}

/// Whether `s` has the shape of a registry reference: `[domain/]path[:tag][@digest]`,
/// following the distribution reference grammar closely enough to tell it from a transport.
fn is_registry_reference(s: &str) -> bool {
    let (rest, digest) = match s.split_once('@') {
        Some((rest, digest)) => (rest, Some(digest)),
        None => (s, None),
    };
    if let Some(digest) = digest
        && !is_digest(digest)
    {
        return false;
    }
    let (name, tag) = match rest.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => (name, Some(tag)),
        _ => (rest, None),
    };
    if let Some(tag) = tag
        && !is_tag(tag)
    {
        return false;
    }
    let components: Vec<&str> = name.split('/').collect();
    let path = match components.as_slice() {
        [first, rest @ ..] if !rest.is_empty() && looks_like_domain(first) => {
            if !is_domain(first) {
                return false;
            }
            rest
        }
        all => all,
    };
    path.iter().all(|c| is_path_component(c))
}

fn looks_like_domain(component: &str) -> bool {
    component.contains(['.', ':'])
        || component == "localhost"
        || component.chars().any(|c| c.is_ascii_uppercase())
}

fn is_domain(domain: &str) -> bool {
    let (host, port) = match domain.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (domain, None),
    };
    if let Some(port) = port
        && (port.is_empty() || !port.chars().all(|c| c.is_ascii_digit()))
    {
        return false;
    }
    !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

fn is_path_component(component: &str) -> bool {
    let lower_alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    component.starts_with(lower_alnum)
        && component.ends_with(lower_alnum)
        && component
            .chars()
            .all(|c| lower_alnum(c) || matches!(c, '.' | '_' | '-'))
        && !component.contains("..")
}

fn is_tag(tag: &str) -> bool {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    tag.len() <= 128
        && tag.starts_with(word)
        && tag.chars().all(|c| word(c) || matches!(c, '.' | '-'))
}

fn is_digest(digest: &str) -> bool {
    match digest.split_once(':') {
        Some((algorithm, encoded)) => {
            !algorithm.is_empty()
                && algorithm
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+._-".contains(c))
                && encoded.len() >= 32
                && encoded
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "=_-".contains(c))
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<ImageRef, ImageError> {
        s.parse()
    }

    #[test]
    fn host_forms() {
        assert_eq!(parse("host:").unwrap(), ImageRef::Host);
        assert_eq!(parse("host:/").unwrap(), ImageRef::Host);
        assert!(matches!(
            parse("host:/usr"),
            Err(ImageError::InvalidReference { .. })
        ));
    }

    #[test]
    fn oci_with_and_without_tag() {
        assert_eq!(
            parse("oci:/a/b:v1").unwrap(),
            ImageRef::OciLayout {
                dir: "/a/b".into(),
                tag: Some("v1".into())
            }
        );
        assert_eq!(
            parse("oci:rel/dir").unwrap(),
            ImageRef::OciLayout {
                dir: "rel/dir".into(),
                tag: None
            }
        );
        // A colon inside the directory part is kept when a slash follows it.
        assert_eq!(
            parse("oci:/a:b/c").unwrap(),
            ImageRef::OciLayout {
                dir: "/a:b/c".into(),
                tag: None
            }
        );
        assert!(matches!(
            parse("oci:"),
            Err(ImageError::InvalidReference { .. })
        ));
        assert!(matches!(
            parse("oci:/a:"),
            Err(ImageError::InvalidReference { .. })
        ));
    }

    #[test]
    fn display_round_trips() {
        for s in ["host:", "oci:/a/b", "oci:/a/b:v1", "oci:rel:latest"] {
            assert_eq!(parse(s).unwrap().to_string(), s);
        }
    }

    #[test]
    fn registry_references_are_not_supported_yet() {
        for s in [
            "python:3.12",
            "busybox",
            "registry.example.com/team/app:1.0",
            "localhost:5000/app",
            "ghcr.io/a/b@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ] {
            let err = parse(s).unwrap_err();
            assert!(
                matches!(err, ImageError::RegistryNotSupported { .. }),
                "{s}: {err}"
            );
            assert!(err.to_string().contains("oci:DIR"), "{err}");
        }
        let err = parse("docker://python:3.12").unwrap_err();
        assert!(
            matches!(&err, ImageError::RegistryNotSupported { reference } if reference == "python:3.12")
        );
    }

    #[test]
    fn planned_and_unknown_transports() {
        let err = parse("docker-archive:/tmp/img.tar").unwrap_err();
        assert!(
            matches!(&err, ImageError::TransportNotSupported { transport, .. } if transport == "docker-archive")
        );
        let err = parse("foo:/some/path").unwrap_err();
        assert!(
            matches!(&err, ImageError::UnknownTransport { transport, .. } if transport == "foo")
        );
        let message = err.to_string();
        assert!(
            message.contains("host:") && message.contains("oci:DIR"),
            "{message}"
        );
        assert!(matches!(
            parse("Foo:bar"),
            Err(ImageError::UnknownTransport { .. })
        ));
    }

    #[test]
    fn garbage_is_invalid() {
        assert!(matches!(
            parse(""),
            Err(ImageError::InvalidReference { .. })
        ));
        assert!(matches!(
            parse("/abs/path"),
            Err(ImageError::InvalidReference { .. })
        ));
    }
}
