//! Image archives: `oci-archive:` (a tarred OCI image layout) and `docker-archive:` (`docker
//! save` output, `manifest.json` with config and layer files). Either is unpacked into a
//! temporary OCI layout (docker's form converted on the way), from which the store copies the
//! image it needs, verified, into its own blobs.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

use oci_spec::image::ANNOTATION_REF_NAME;
use serde::Deserialize;
use serde_json::json;
use sha2::Digest as _;

use crate::error::ImageError;
use crate::extract;
use crate::reference::RegistryRef;

/// containerd's annotation for an image's full name (docker ≥ 25 writes it in `docker save`).
const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";
const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
const LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
const LAYER_TAR_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// Which format to expect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ArchiveKind {
    /// A tarred OCI layout.
    Oci,
    /// `docker save` output.
    Docker,
    /// Whichever it is; an OCI layout wins when both are present (docker ≥ 25 writes both),
    /// since it keeps the original manifest digests.
    Either,
}

/// An archive unpacked into a temporary OCI layout, removed when dropped.
pub(crate) struct StagedArchive {
    pub(crate) dir: PathBuf,
}

impl Drop for StagedArchive {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir_all(&self.dir) {
            tracing::warn!(path = %self.dir.display(), error = %e, "could not remove staged archive");
        }
    }
}

/// An image the staged layout holds and the name it carries, if any.
pub(crate) struct NamedImage {
    pub(crate) name: Option<String>,
    pub(crate) tag: Option<String>,
}

/// Unpacks `file` into a new directory under `scratch` as an OCI layout.
pub(crate) fn stage(
    file: &Path,
    kind: ArchiveKind,
    scratch: &Path,
) -> Result<StagedArchive, ImageError> {
    let input = File::open(file).map_err(ImageError::io("open image archive", file))?;
    stage_from(io::BufReader::new(input), file, kind, scratch)
}

/// Unpacks the archive read from `input` (named `file` in errors) into a new directory under
/// `scratch` as an OCI layout: an upload is staged as it arrives, never written whole first.
pub(crate) fn stage_from(
    input: impl Read,
    file: &Path,
    kind: ArchiveKind,
    scratch: &Path,
) -> Result<StagedArchive, ImageError> {
    let not_archive = |reason: String| ImageError::NotAnArchive {
        file: file.to_owned(),
        reason,
    };
    fs::create_dir_all(scratch).map_err(ImageError::io("create directory", scratch))?;
    let staged = StagedArchive {
        dir: scratch.join(format!("archive-{}", uuid::Uuid::new_v4().simple())),
    };
    fs::create_dir(&staged.dir).map_err(ImageError::io("create directory", &staged.dir))?;
    match extract::unpack(input, &staged.dir, &file.display().to_string()) {
        Ok(()) => {}
        Err(ImageError::LayerUnreadable { source, .. }) => {
            return Err(not_archive(format!(
                "it is not a readable tar file: {source}"
            )));
        }
        Err(ImageError::UnsafeLayerEntry { path, reason, .. }) => {
            return Err(not_archive(format!("entry {path:?} is unsafe: {reason}")));
        }
        Err(e) => return Err(e),
    }
    let has_layout = staged.dir.join("oci-layout").is_file();
    let has_docker = staged.dir.join("manifest.json").is_file();
    match (kind, has_layout, has_docker) {
        (ArchiveKind::Oci | ArchiveKind::Either, true, _) => Ok(staged),
        (ArchiveKind::Docker | ArchiveKind::Either, _, true) => {
            convert_docker(&staged.dir).map_err(not_archive)?;
            Ok(staged)
        }
        (ArchiveKind::Oci, false, _) => Err(not_archive("it has no oci-layout file".to_owned())),
        (ArchiveKind::Docker, _, false) => {
            Err(not_archive("it has no manifest.json file".to_owned()))
        }
        (ArchiveKind::Either, false, false) => Err(not_archive(
            "it has neither an oci-layout nor a manifest.json file".to_owned(),
        )),
    }
}

/// The images listed in a staged layout's `index.json`, with the full name each carries
/// (containerd's name annotation, or a `ref.name` that is a full reference rather than a tag).
pub(crate) fn images(staged: &StagedArchive) -> Result<Vec<NamedImage>, ImageError> {
    #[derive(Deserialize)]
    struct Index {
        manifests: Vec<Entry>,
    }
    #[derive(Deserialize)]
    struct Entry {
        #[serde(default)]
        annotations: BTreeMap<String, String>,
    }
    let path = staged.dir.join("index.json");
    let bytes = fs::read(&path).map_err(ImageError::io("read", &path))?;
    let index: Index =
        serde_json::from_slice(&bytes).map_err(|source| ImageError::InvalidJson {
            what: "index",
            name: path.display().to_string(),
            source,
        })?;
    Ok(index
        .manifests
        .into_iter()
        .map(|entry| {
            let tag = entry.annotations.get(ANNOTATION_REF_NAME).cloned();
            let full = entry
                .annotations
                .get(ANNOTATION_IMAGE_NAME)
                .or(tag.as_ref().filter(|t| t.contains([':', '/'])));
            NamedImage {
                name: full
                    .and_then(|n| RegistryRef::parse(n).ok())
                    .map(|r| r.to_string()),
                tag,
            }
        })
        .collect())
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifest {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// Rewrites an unpacked `docker save` tree in place as an OCI layout: config and layer files
/// become blobs, each image gets an OCI manifest, each of its `RepoTags` an index entry named
/// by the normalised reference.
fn convert_docker(dir: &Path) -> Result<(), String> {
    let bytes = fs::read(dir.join("manifest.json")).map_err(|e| format!("manifest.json: {e}"))?;
    let images: Vec<DockerManifest> = serde_json::from_slice(&bytes)
        .map_err(|e| format!("manifest.json is not docker's format: {e}"))?;
    if images.is_empty() {
        return Err("manifest.json lists no images".to_owned());
    }
    let mut blobs: BTreeMap<String, (String, u64, bool)> = BTreeMap::new();
    let mut entries = Vec::new();
    for image in &images {
        let (config_digest, config_size, _) = to_blob(dir, &image.config, &mut blobs)?;
        let mut layers = Vec::new();
        for layer in &image.layers {
            let (digest, size, gzip) = to_blob(dir, layer, &mut blobs)?;
            let media_type = if gzip { LAYER_TAR_GZIP } else { LAYER_TAR };
            layers.push(json!({ "mediaType": media_type, "digest": digest, "size": size }));
        }
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST_MEDIA_TYPE,
            "config": { "mediaType": CONFIG_MEDIA_TYPE, "digest": config_digest, "size": config_size },
            "layers": layers,
        });
        let manifest = serde_json::to_vec(&manifest).expect("a manifest serialises");
        let digest = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&manifest)));
        let blob_dir = dir.join("blobs/sha256");
        fs::create_dir_all(&blob_dir).map_err(|e| e.to_string())?;
        fs::write(blob_dir.join(&digest["sha256:".len()..]), &manifest)
            .map_err(|e| e.to_string())?;
        let descriptor =
            json!({ "mediaType": MANIFEST_MEDIA_TYPE, "digest": digest, "size": manifest.len() });
        let tags = image.repo_tags.clone().unwrap_or_default();
        if tags.is_empty() {
            entries.push(descriptor.clone());
        }
        for tag in tags {
            let name = RegistryRef::parse(&tag)
                .map(|r| r.to_string())
                .map_err(|e| format!("RepoTags entry {tag:?}: {e}"))?;
            let mut named = descriptor.clone();
            named["annotations"] = json!({ ANNOTATION_REF_NAME: name });
            entries.push(named);
        }
    }
    let index = json!({ "schemaVersion": 2, "manifests": entries });
    fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&index).expect("an index serialises"),
    )
    .map_err(|e| e.to_string())?;
    fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#)
        .map_err(|e| e.to_string())
}

/// Moves the archive file `relative` to `blobs/sha256/<its hash>`; returns digest, size and
/// whether it is gzip-compressed. A file named twice is moved once.
fn to_blob(
    dir: &Path,
    relative: &str,
    done: &mut BTreeMap<String, (String, u64, bool)>,
) -> Result<(String, u64, bool), String> {
    if Path::new(relative)
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(format!("manifest.json names unsafe path {relative:?}"));
    }
    // docker links repeated layers to one file; follow the link, but never out of the archive.
    let path = fs::canonicalize(dir.join(relative)).map_err(|e| format!("{relative}: {e}"))?;
    let root = fs::canonicalize(dir).map_err(|e| e.to_string())?;
    if !path.starts_with(&root) {
        return Err(format!("{relative} links outside the archive"));
    }
    let key = path.display().to_string();
    if let Some(known) = done.get(&key) {
        return Ok(known.clone());
    }
    let mut file = File::open(&path).map_err(|e| format!("{relative}: {e}"))?;
    let mut hasher = sha2::Sha256::new();
    let mut buffer = vec![0; 1 << 16];
    let mut size = 0u64;
    let mut head = Vec::new();
    loop {
        let n = file
            .read(&mut buffer)
            .map_err(|e| format!("{relative}: {e}"))?;
        if n == 0 {
            break;
        }
        if head.len() < 2 {
            head.extend_from_slice(&buffer[..n.min(2)]);
        }
        hasher.update(&buffer[..n]);
        size += n as u64;
    }
    let hex = hex::encode(hasher.finalize());
    let blob_dir = dir.join("blobs/sha256");
    fs::create_dir_all(&blob_dir).map_err(|e| e.to_string())?;
    let target = root.join("blobs/sha256").join(&hex);
    if path != target {
        fs::rename(&path, &target).map_err(|e| format!("{relative}: {e}"))?;
    }
    let found = (
        format!("sha256:{hex}"),
        size,
        head.starts_with(&[0x1f, 0x8b]),
    );
    done.insert(key, found.clone());
    Ok(found)
}
