//! Reading manifest files (`-f FILE|DIR|-`) and parsing them with `clrk-api`.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use clrk_wire::ApplyDocument;

/// The name stdin goes by in messages.
pub const STDIN_NAME: &str = "<stdin>";

/// One manifest file's text and the name messages use for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestSource {
    /// The path as the user wrote it (or [`STDIN_NAME`]).
    pub name: String,
    /// The file's contents.
    pub text: String,
}

/// A parsed document and the file it came from.
#[derive(Debug, Clone)]
pub struct SourcedDocument {
    /// Name of the file the document came from.
    pub source: String,
    /// The document as `clrk-api` parsed it.
    pub document: clrk_api::Document,
}

impl SourcedDocument {
    /// `taskagent/NAME`, as `apply` and `delete` print it.
    pub fn display_name(&self) -> String {
        let resource = &self.document.resource;
        format!("{}/{}", resource.kind().lower(), resource.metadata().name)
    }

    /// The document as `POST /v1/apply` wants it.
    pub fn to_apply(&self) -> ApplyDocument {
        ApplyDocument {
            source: self.source.clone(),
            index: self.document.index,
            manifest: self.document.resource.to_stored(),
        }
    }
}

/// Reads every manifest named by `paths`: files as given, directories' `*.yaml`, `*.yml` and
/// `*.json` files in name order (subdirectories too when `recursive`), and `-` from `stdin`.
///
/// ```no_run
/// let sources = clrk::manifests::read_sources(&["agents/".into()], true, std::io::stdin()).unwrap();
/// ```
pub fn read_sources(
    paths: &[PathBuf],
    recursive: bool,
    mut stdin: impl Read,
) -> anyhow::Result<Vec<ManifestSource>> {
    let mut sources = Vec::new();
    let mut stdin_used = false;
    for path in paths {
        if path.as_os_str() == "-" {
            if stdin_used {
                bail!("'-' is given twice: stdin can be read only once");
            }
            stdin_used = true;
            let mut text = String::new();
            stdin
                .read_to_string(&mut text)
                .context("cannot read manifests from stdin")?;
            sources.push(ManifestSource {
                name: STDIN_NAME.to_string(),
                text,
            });
        } else if path.is_dir() {
            let before = sources.len();
            read_dir(path, recursive, &mut sources)?;
            if sources.len() == before {
                bail!(
                    "directory {} holds no *.yaml, *.yml or *.json files{}",
                    path.display(),
                    if recursive {
                        ""
                    } else {
                        " (use -R to read its subdirectories)"
                    }
                );
            }
        } else {
            sources.push(read_file(path)?);
        }
    }
    Ok(sources)
}

fn read_dir(dir: &Path, recursive: bool, sources: &mut Vec<ManifestSource>) -> anyhow::Result<()> {
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list directory {}", dir.display()))?;
    let mut paths = entries
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("cannot list directory {}", dir.display()))?;
    paths.sort();
    for path in paths {
        if path.is_dir() {
            if recursive {
                read_dir(&path, recursive, sources)?;
            }
        } else if is_manifest_file(&path) {
            sources.push(read_file(&path)?);
        }
    }
    Ok(())
}

fn is_manifest_file(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml" | "json")
    )
}

fn read_file(path: &Path) -> anyhow::Result<ManifestSource> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read manifest file {}", path.display()))?;
    Ok(ManifestSource {
        name: path.display().to_string(),
        text,
    })
}

/// Parses every source; the first invalid document fails the lot, so nothing half-applies.
///
/// The error is `clrk-api`'s message, which names the file, the document and the field.
pub fn parse_sources(sources: &[ManifestSource]) -> anyhow::Result<Vec<SourcedDocument>> {
    let mut documents = Vec::new();
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    for source in sources {
        let parsed = clrk_api::parse_manifests(&source.name, &source.text)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        documents.extend(parsed.into_iter().map(|mut document| {
            absolutize_image(&mut document.resource, &cwd);
            SourcedDocument {
                source: source.name.clone(),
                document,
            }
        }));
    }
    if documents.is_empty() {
        let names: Vec<&str> = sources.iter().map(|s| s.name.as_str()).collect();
        bail!("no manifests found in {}", names.join(", "));
    }
    Ok(documents)
}

/// A local image (`oci:DIR`, `oci-archive:FILE`, `docker-archive:FILE`) is relative to where
/// the user runs clrk, as with skopeo; the server runs elsewhere, so a relative path is made
/// absolute before the manifest leaves.
fn absolutize_image(resource: &mut clrk_api::Resource, cwd: &Path) {
    use clrk_image::ImageRef;
    let image = match resource {
        clrk_api::Resource::TaskAgent(t) => &mut t.spec.template.spec.image,
        clrk_api::Resource::DaemonAgent(d) => &mut d.spec.template.spec.image,
        _ => return,
    };
    // An unreadable reference is left for the server to refuse, naming the field.
    let Ok(mut reference) = image.parse::<ImageRef>() else {
        return;
    };
    let path = match &mut reference {
        ImageRef::OciLayout { dir, .. } => dir,
        ImageRef::OciArchive { file, .. } | ImageRef::DockerArchive { file, .. } => file,
        _ => return,
    };
    if path.is_relative() && !path.as_os_str().is_empty() {
        *path = cwd.join(&*path);
        *image = reference.to_string();
    }
}

/// Reads and parses `-f` arguments, printing each document's warnings to stderr.
pub fn load(paths: &[PathBuf], recursive: bool) -> anyhow::Result<Vec<SourcedDocument>> {
    let sources = read_sources(paths, recursive, std::io::stdin().lock())?;
    let documents = parse_sources(&sources)?;
    for document in &documents {
        for warning in &document.document.warnings {
            eprintln!(
                "warning: {}: document {}: {warning}",
                document.source, document.document.index
            );
        }
    }
    Ok(documents)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(sources: &[ManifestSource]) -> Vec<String> {
        sources
            .iter()
            .map(|s| {
                Path::new(&s.name)
                    .file_name()
                    .map_or(s.name.clone(), |n| n.to_string_lossy().into_owned())
            })
            .collect()
    }

    #[test]
    fn directories_yield_manifest_files_in_name_order() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b.yml"), "b").unwrap();
        std::fs::write(dir.path().join("a.yaml"), "a").unwrap();
        std::fs::write(dir.path().join("c.json"), "c").unwrap();
        std::fs::write(dir.path().join("README.md"), "no").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/d.yaml"), "d").unwrap();

        let flat = read_sources(&[dir.path().into()], false, std::io::empty()).unwrap();
        assert_eq!(names(&flat), ["a.yaml", "b.yml", "c.json"]);
        assert_eq!(flat[0].text, "a");

        let deep = read_sources(&[dir.path().into()], true, std::io::empty()).unwrap();
        assert_eq!(names(&deep), ["a.yaml", "b.yml", "c.json", "d.yaml"]);
    }

    #[test]
    fn dash_reads_stdin_once() {
        let sources = read_sources(&["-".into()], false, "kind: X".as_bytes()).unwrap();
        assert_eq!(
            sources,
            [ManifestSource {
                name: STDIN_NAME.into(),
                text: "kind: X".into()
            }]
        );
        let err = read_sources(&["-".into(), "-".into()], false, "".as_bytes()).unwrap_err();
        assert!(err.to_string().contains("stdin"), "{err}");
    }

    #[test]
    fn missing_files_and_empty_directories_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.yaml");
        let err =
            read_sources(std::slice::from_ref(&missing), false, std::io::empty()).unwrap_err();
        assert!(
            err.to_string().contains(&missing.display().to_string()),
            "{err}"
        );

        let err = read_sources(&[dir.path().into()], false, std::io::empty()).unwrap_err();
        assert!(err.to_string().contains("holds no *.yaml"), "{err}");
        assert!(err.to_string().contains("-R"), "{err}");
    }

    #[test]
    fn files_without_documents_are_an_error() {
        let sources = [ManifestSource {
            name: "empty.yaml".into(),
            text: String::new(),
        }];
        let err = parse_sources(&sources).unwrap_err();
        assert!(err.to_string().contains("empty.yaml"), "{err}");
    }
}
