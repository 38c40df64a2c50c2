//! Image references: the `image:` string of a manifest, parsed into a transport.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::error::ImageError;

/// The tag a registry reference means when it names neither a tag nor a digest.
const DEFAULT_TAG: &str = "latest";

/// Where an image comes from (SPECIFICATION §6).
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
    /// `oci-archive:FILE[:TAG]`: a tar of an OCI image layout.
    OciArchive {
        /// The archive file, as written.
        file: PathBuf,
        /// The tag (`org.opencontainers.image.ref.name`), if given.
        tag: Option<String>,
    },
    /// `docker-archive:FILE[:NAME:TAG]`: `docker save` output.
    DockerArchive {
        /// The archive file, as written.
        file: PathBuf,
        /// The image to pick when the archive holds several (one of its `RepoTags`).
        name: Option<String>,
    },
    /// A bare registry reference (`registry/name:tag`, `name@sha256:…`), normalised the way
    /// docker does. Resolved from the local store (images loaded with `ImageStore::import`)
    /// before the registry is asked.
    Registry(RegistryRef),
}

/// A normalised registry reference: `python:3.12` is `docker.io/library/python:3.12`, `busybox`
/// is `docker.io/library/busybox:latest`.
///
/// ```
/// use clrk_image::ImageRef;
/// let r: ImageRef = "python:3.12".parse().unwrap();
/// assert_eq!(r.to_string(), "docker.io/library/python:3.12");
/// let ImageRef::Registry(r) = r else { unreachable!() };
/// assert_eq!((r.registry(), r.repository(), r.tag()), ("docker.io", "library/python", Some("3.12")));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryRef {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<String>,
}

impl RegistryRef {
    /// The registry host (with port), e.g. `docker.io` or `127.0.0.1:5000`.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository path inside the registry, e.g. `library/python`.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag; `latest` when the reference named neither a tag nor a digest.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The pinned digest (`sha256:…`), if the reference has one.
    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }

    /// The same repository pinned to `digest` (no tag).
    pub(crate) fn at_digest(&self, digest: &str) -> RegistryRef {
        RegistryRef {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            tag: None,
            digest: Some(digest.to_owned()),
        }
    }

    /// Parses and normalises a registry reference, or says why it is not one.
    pub(crate) fn parse(s: &str) -> Result<RegistryRef, ImageError> {
        let invalid = |reason: String| ImageError::InvalidReference {
            reference: s.to_owned(),
            reason,
        };
        if !is_registry_reference(s) {
            return Err(invalid(
                "it is not a registry reference of the form [registry/]name[:tag][@digest]"
                    .to_owned(),
            ));
        }
        let parsed: oci_client::Reference = s
            .parse()
            .map_err(|e: oci_client::ParseError| invalid(e.to_string()))?;
        let tag = match (parsed.tag(), parsed.digest()) {
            (None, None) => Some(DEFAULT_TAG.to_owned()),
            (tag, _) => tag.map(str::to_owned),
        };
        Ok(RegistryRef {
            registry: parsed.registry().to_owned(),
            repository: parsed.repository().to_owned(),
            tag,
            digest: parsed.digest().map(str::to_owned),
        })
    }

    /// The reference in the form the registry client takes.
    pub(crate) fn to_client(&self) -> oci_client::Reference {
        match (&self.tag, &self.digest) {
            (Some(tag), Some(digest)) => oci_client::Reference::with_tag_and_digest(
                self.registry.clone(),
                self.repository.clone(),
                tag.clone(),
                digest.clone(),
            ),
            (_, Some(digest)) => oci_client::Reference::with_digest(
                self.registry.clone(),
                self.repository.clone(),
                digest.clone(),
            ),
            (tag, None) => oci_client::Reference::with_tag(
                self.registry.clone(),
                self.repository.clone(),
                tag.clone().unwrap_or_else(|| DEFAULT_TAG.to_owned()),
            ),
        }
    }
}

impl fmt::Display for RegistryRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
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
            ImageRef::OciArchive { file, tag: None } => {
                write!(f, "oci-archive:{}", file.display())
            }
            ImageRef::OciArchive {
                file,
                tag: Some(tag),
            } => write!(f, "oci-archive:{}:{tag}", file.display()),
            ImageRef::DockerArchive { file, name: None } => {
                write!(f, "docker-archive:{}", file.display())
            }
            ImageRef::DockerArchive {
                file,
                name: Some(name),
            } => write!(f, "docker-archive:{}:{name}", file.display()),
            ImageRef::Registry(r) => r.fmt(f),
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
        if let Some(rest) = s.strip_prefix("oci-archive:") {
            let (file, tag) = split_tag(s, rest, "oci-archive:FILE or oci-archive:FILE:TAG")?;
            return Ok(ImageRef::OciArchive { file, tag });
        }
        if let Some(rest) = s.strip_prefix("docker-archive:") {
            return parse_docker_archive(s, rest);
        }
        if let Some(remote) = s.strip_prefix("docker://") {
            return Ok(ImageRef::Registry(RegistryRef::parse(remote)?));
        }
        if let Some((prefix, _)) = s.split_once(':')
            && !prefix.contains('/')
            && !is_registry_reference(s)
        {
            return Err(ImageError::UnknownTransport {
                reference: s.to_owned(),
                transport: prefix.to_owned(),
            });
        }
        if is_registry_reference(s) {
            return Ok(ImageRef::Registry(RegistryRef::parse(s)?));
        }
        Err(invalid(
            "it is neither a registry reference ([registry/]name[:tag][@digest]) nor \
             transport:location; use host:, oci:DIR[:TAG], oci-archive:FILE, docker-archive:FILE",
        ))
    }
}

/// `docker-archive:FILE[:NAME[:TAG]]`: like skopeo, the file ends at the first colon.
fn parse_docker_archive(reference: &str, rest: &str) -> Result<ImageRef, ImageError> {
    let (file, name) = match rest.split_once(':') {
        Some((file, name)) => (file, Some(name)),
        None => (rest, None),
    };
    if file.is_empty() || name == Some("") {
        return Err(ImageError::InvalidReference {
            reference: reference.to_owned(),
            reason: "write docker-archive:FILE or docker-archive:FILE:NAME:TAG".to_owned(),
        });
    }
    Ok(ImageRef::DockerArchive {
        file: PathBuf::from(file),
        name: name.map(str::to_owned),
    })
}

/// Parses the part after `oci:`.
fn parse_oci(reference: &str, rest: &str) -> Result<ImageRef, ImageError> {
    let (dir, tag) = split_tag(reference, rest, "oci:DIR or oci:DIR:TAG")?;
    Ok(ImageRef::OciLayout { dir, tag })
}

/// Splits `PATH[:TAG]`. Like skopeo, the tag is what follows the last colon, unless that part
/// contains a slash (then the colon belongs to the path).
fn split_tag(
    reference: &str,
    rest: &str,
    forms: &str,
) -> Result<(PathBuf, Option<String>), ImageError> {
    let (dir, tag) = match rest.rsplit_once(':') {
        Some((dir, tag)) if !tag.contains('/') => (dir, Some(tag)),
        _ => (rest, None),
    };
    if dir.is_empty() {
        return Err(ImageError::InvalidReference {
            reference: reference.to_owned(),
            reason: format!("the path is missing; write {forms}"),
        });
    }
    if tag == Some("") {
        return Err(ImageError::InvalidReference {
            reference: reference.to_owned(),
            reason: "the tag after the last colon is empty; drop the colon or name a tag"
                .to_owned(),
        });
    }
    Ok((PathBuf::from(dir), tag.map(str::to_owned)))
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
    fn registry_references_are_normalised_like_docker() {
        for (given, normalised) in [
            ("python:3.12", "docker.io/library/python:3.12"),
            ("busybox", "docker.io/library/busybox:latest"),
            ("team/app", "docker.io/team/app:latest"),
            (
                "registry.example.com/team/app:1.0",
                "registry.example.com/team/app:1.0",
            ),
            ("localhost:5000/app", "localhost:5000/app:latest"),
            ("127.0.0.1:5000/a/b:v2", "127.0.0.1:5000/a/b:v2"),
            ("docker://python:3.12", "docker.io/library/python:3.12"),
        ] {
            let r = parse(given).unwrap();
            assert!(matches!(r, ImageRef::Registry(_)), "{given}");
            assert_eq!(r.to_string(), normalised, "{given}");
        }
        let hex = "0123456789abcdef".repeat(4);
        let ImageRef::Registry(r) = parse(&format!("ghcr.io/a/b@sha256:{hex}")).unwrap() else {
            panic!("not a registry reference")
        };
        assert_eq!(r.tag(), None);
        assert_eq!(r.digest(), Some(format!("sha256:{hex}").as_str()));
        assert_eq!(r.to_string(), format!("ghcr.io/a/b@sha256:{hex}"));
    }

    #[test]
    fn archive_transports() {
        assert_eq!(
            parse("oci-archive:/tmp/img.tar:v1").unwrap(),
            ImageRef::OciArchive {
                file: "/tmp/img.tar".into(),
                tag: Some("v1".into())
            }
        );
        assert_eq!(
            parse("docker-archive:/tmp/img.tar:app:1.0").unwrap(),
            ImageRef::DockerArchive {
                file: "/tmp/img.tar".into(),
                name: Some("app:1.0".into())
            }
        );
        for s in [
            "oci-archive:/tmp/img.tar",
            "docker-archive:/tmp/img.tar",
            "docker-archive:rel.tar:app:1.0",
        ] {
            assert_eq!(parse(s).unwrap().to_string(), s);
        }
        assert!(matches!(
            parse("docker-archive:"),
            Err(ImageError::InvalidReference { .. })
        ));
    }

    #[test]
    fn unknown_transports() {
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
