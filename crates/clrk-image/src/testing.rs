//! Building OCI image layouts on disk, for tests of this and other crates (feature `testing`).
//!
//! ```
//! use clrk_image::testing::{LayerBuilder, OciLayoutBuilder};
//! let dir = tempfile::tempdir().unwrap();
//! let written = OciLayoutBuilder::new()
//!     .add_layer(
//!         LayerBuilder::new()
//!             .add_host_file("bin/busybox", "/bin/busybox").unwrap()
//!             .add_symlink("bin/sh", "busybox"),
//!     )
//!     .add_file("app/main.sh", "echo hi\n", 0o755)
//!     .set_entrypoint(["/bin/sh", "/app/main.sh"])
//!     .write(dir.path(), Some("v1"))
//!     .unwrap();
//! let r: clrk_image::ImageRef = format!("oci:{}:v1", dir.path().display()).parse().unwrap();
//! # let store_dir = tempfile::tempdir().unwrap();
//! # let store = clrk_image::ImageStore::open(store_dir.path()).unwrap();
//! assert_eq!(store.resolve(&r).unwrap().digest, written.manifest_digest);
//! ```

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use oci_spec::image::{ANNOTATION_REF_NAME, Arch, Os};
use serde_json::{Map, Value, json};
use sha2::Digest as _;

const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";
const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
/// Fixed entry mtime, so equal layers produce equal blobs (and share a cache entry).
const MTIME: u64 = 1_700_000_000;

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LayerCompression {
    /// Plain tar (`application/vnd.oci.image.layer.v1.tar`).
    None,
    /// gzip (`...tar+gzip`), the usual kind.
    #[default]
    Gzip,
    /// zstd (`...tar+zstd`).
    Zstd,
}

#[derive(Debug, Clone)]
enum Entry {
    File {
        path: String,
        data: Vec<u8>,
        mode: u32,
    },
    Dir {
        path: String,
        mode: u32,
    },
    Symlink {
        path: String,
        target: String,
    },
    Hardlink {
        path: String,
        target: String,
    },
    Unchecked {
        name: Vec<u8>,
        data: Vec<u8>,
    },
}

/// One layer: a list of tar entries, written in the order they were added. Paths are relative
/// to the image root (`bin/sh`, not `/bin/sh`); parent directories are implied.
#[derive(Debug, Clone, Default)]
pub struct LayerBuilder {
    entries: Vec<Entry>,
    compression: LayerCompression,
}

impl LayerBuilder {
    /// An empty gzip layer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the layer's compression.
    pub fn compression(mut self, compression: LayerCompression) -> Self {
        self.compression = compression;
        self
    }

    /// Adds a regular file owned by root.
    pub fn add_file(mut self, path: &str, data: impl Into<Vec<u8>>, mode: u32) -> Self {
        self.entries.push(Entry::File {
            path: path.to_owned(),
            data: data.into(),
            mode,
        });
        self
    }

    /// Adds a copy of the host file `host_path` (content and mode) at `path`.
    pub fn add_host_file(self, path: &str, host_path: impl AsRef<Path>) -> io::Result<Self> {
        let host_path = host_path.as_ref();
        let data = fs::read(host_path)?;
        let mode = fs::metadata(host_path)?.permissions().mode() & 0o7777;
        Ok(self.add_file(path, data, mode))
    }

    /// Adds a directory.
    pub fn add_dir(mut self, path: &str, mode: u32) -> Self {
        self.entries.push(Entry::Dir {
            path: path.to_owned(),
            mode,
        });
        self
    }

    /// Adds a symlink at `path` pointing to `target` (stored verbatim).
    pub fn add_symlink(mut self, path: &str, target: &str) -> Self {
        self.entries.push(Entry::Symlink {
            path: path.to_owned(),
            target: target.to_owned(),
        });
        self
    }

    /// Adds a hard link at `path` to the earlier entry `target` of this layer.
    pub fn add_hardlink(mut self, path: &str, target: &str) -> Self {
        self.entries.push(Entry::Hardlink {
            path: path.to_owned(),
            target: target.to_owned(),
        });
        self
    }

    /// Adds the host directory tree `host_dir` (files, directories, symlinks) under `path`
    /// (`""` for the image root).
    pub fn add_dir_from_host(mut self, path: &str, host_dir: impl AsRef<Path>) -> io::Result<Self> {
        let mut names: Vec<_> = fs::read_dir(host_dir.as_ref())?.collect::<Result<_, _>>()?;
        names.sort_by_key(std::fs::DirEntry::file_name);
        for entry in names {
            let inner = match path {
                "" => entry.file_name().to_string_lossy().into_owned(),
                _ => format!("{path}/{}", entry.file_name().to_string_lossy()),
            };
            let meta = fs::symlink_metadata(entry.path())?;
            if meta.file_type().is_symlink() {
                let target = fs::read_link(entry.path())?;
                self = self.add_symlink(&inner, &target.to_string_lossy());
            } else if meta.is_dir() {
                self = self.add_dir(&inner, meta.permissions().mode() & 0o7777);
                self = self.add_dir_from_host(&inner, entry.path())?;
            } else if meta.is_file() {
                self = self.add_host_file(&inner, entry.path())?;
            }
        }
        Ok(self)
    }

    /// Hides `path` of lower layers (a `.wh.NAME` marker).
    pub fn whiteout(self, path: &str) -> Self {
        let marker = match path.rsplit_once('/') {
            Some((dir, name)) => format!("{dir}/.wh.{name}"),
            None => format!(".wh.{path}"),
        };
        self.add_file(&marker, Vec::new(), 0o644)
    }

    /// Makes directory `dir` opaque: lower layers' contents of it are hidden.
    pub fn opaque(self, dir: &str) -> Self {
        self.add_dir(dir, 0o755)
            .add_file(&format!("{dir}/.wh..wh..opq"), Vec::new(), 0o644)
    }

    /// Adds a regular file whose tar header name is written verbatim and unchecked (at most
    /// 100 bytes), such as `../escape` or `/etc/x`: for testing that unsafe layers are refused.
    pub fn add_unchecked_file(mut self, raw_name: &[u8], data: impl Into<Vec<u8>>) -> Self {
        self.entries.push(Entry::Unchecked {
            name: raw_name.to_vec(),
            data: data.into(),
        });
        self
    }

    /// The uncompressed tar stream.
    fn tar(&self) -> io::Result<Vec<u8>> {
        let mut builder = tar::Builder::new(Vec::new());
        for entry in &self.entries {
            let mut header = tar::Header::new_gnu();
            header.set_uid(0);
            header.set_gid(0);
            header.set_mtime(MTIME);
            header.set_size(0);
            match entry {
                Entry::File { path, data, mode } => {
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_mode(*mode);
                    header.set_size(data.len() as u64);
                    builder.append_data(&mut header, path, data.as_slice())?;
                }
                Entry::Dir { path, mode } => {
                    header.set_entry_type(tar::EntryType::Directory);
                    header.set_mode(*mode);
                    builder.append_data(&mut header, path, io::empty())?;
                }
                Entry::Symlink { path, target } => {
                    header.set_entry_type(tar::EntryType::Symlink);
                    header.set_mode(0o777);
                    builder.append_link(&mut header, path, target)?;
                }
                Entry::Hardlink { path, target } => {
                    header.set_entry_type(tar::EntryType::Link);
                    header.set_mode(0o644);
                    builder.append_link(&mut header, path, target)?;
                }
                Entry::Unchecked { name, data } => {
                    let mut header = tar::Header::new_old();
                    header.as_old_mut().name[..name.len()].copy_from_slice(name);
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_mode(0o644);
                    header.set_uid(0);
                    header.set_gid(0);
                    header.set_mtime(MTIME);
                    header.set_size(data.len() as u64);
                    header.set_cksum();
                    builder.append(&header, data.as_slice())?;
                }
            }
        }
        builder.into_inner()
    }

    /// The blob bytes, the uncompressed tar's digest (the diff id) and the media type.
    fn blob(&self) -> io::Result<(Vec<u8>, String, &'static str)> {
        let tar = self.tar()?;
        let diff_id = sha256(&tar);
        Ok(match self.compression {
            LayerCompression::None => (tar, diff_id, "application/vnd.oci.image.layer.v1.tar"),
            LayerCompression::Gzip => {
                let mut encoder =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                encoder.write_all(&tar)?;
                (
                    encoder.finish()?,
                    diff_id,
                    "application/vnd.oci.image.layer.v1.tar+gzip",
                )
            }
            LayerCompression::Zstd => (
                zstd::encode_all(tar.as_slice(), 3)?,
                diff_id,
                "application/vnd.oci.image.layer.v1.tar+zstd",
            ),
        })
    }
}

/// What [`OciLayoutBuilder::write`] put into the layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenImage {
    /// `sha256:<hex>` of the manifest: what `ImageStore::resolve` reports as `digest`.
    pub manifest_digest: String,
    /// `sha256:<hex>` of the config blob.
    pub config_digest: String,
    /// `sha256:<hex>` of each layer blob, lowest first.
    pub layer_digests: Vec<String>,
}

/// An image to write into an OCI image layout directory: layers plus config. Several images
/// (and tags) can be written into the same directory; blobs are shared by digest.
#[derive(Debug, Clone)]
pub struct OciLayoutBuilder {
    layers: Vec<LayerBuilder>,
    config: Map<String, Value>,
    os: String,
    architecture: String,
}

impl Default for OciLayoutBuilder {
    fn default() -> Self {
        OciLayoutBuilder {
            layers: Vec::new(),
            config: Map::new(),
            os: Os::default().to_string(),
            architecture: Arch::default().to_string(),
        }
    }
}

impl OciLayoutBuilder {
    /// An image with no layers, built for the running platform.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a layer on top.
    pub fn add_layer(mut self, layer: LayerBuilder) -> Self {
        self.layers.push(layer);
        self
    }

    /// Appends a gzip layer holding the host directory tree `dir` at the image root.
    pub fn add_layer_from_dir(self, dir: impl AsRef<Path>) -> io::Result<Self> {
        Ok(self.add_layer(LayerBuilder::new().add_dir_from_host("", dir)?))
    }

    /// Adds a file to the top layer (starting one if there is none).
    pub fn add_file(self, path: &str, data: impl Into<Vec<u8>>, mode: u32) -> Self {
        self.with_top_layer(|layer| layer.add_file(path, data, mode))
    }

    /// Adds a copy of a host file to the top layer (starting one if there is none).
    pub fn add_host_file(mut self, path: &str, host_path: impl AsRef<Path>) -> io::Result<Self> {
        let top = self.layers.pop().unwrap_or_default();
        self.layers.push(top.add_host_file(path, host_path)?);
        Ok(self)
    }

    /// Adds a whiteout for `path` to the top layer (starting one if there is none).
    pub fn whiteout(self, path: &str) -> Self {
        self.with_top_layer(|layer| layer.whiteout(path))
    }

    /// Sets the config's `Entrypoint`.
    pub fn set_entrypoint<S: Into<String>>(self, entrypoint: impl IntoIterator<Item = S>) -> Self {
        self.with_config("Entrypoint", strings(entrypoint))
    }

    /// Sets the config's `Cmd`.
    pub fn set_cmd<S: Into<String>>(self, cmd: impl IntoIterator<Item = S>) -> Self {
        self.with_config("Cmd", strings(cmd))
    }

    /// Sets the config's `Env` (`NAME=value` strings).
    pub fn set_env<S: Into<String>>(self, env: impl IntoIterator<Item = S>) -> Self {
        self.with_config("Env", strings(env))
    }

    /// Sets the config's `WorkingDir`.
    pub fn set_working_dir(self, dir: &str) -> Self {
        self.with_config("WorkingDir", Value::from(dir))
    }

    /// Sets the config's `User`.
    pub fn set_user(self, user: &str) -> Self {
        self.with_config("User", Value::from(user))
    }

    /// Sets the platform the image claims to be built for (`linux`, `arm64`).
    pub fn set_platform(mut self, os: &str, architecture: &str) -> Self {
        self.os = os.to_owned();
        self.architecture = architecture.to_owned();
        self
    }

    /// Writes the image into the layout at `dir` (created if needed) and lists it in
    /// `index.json`, tagged `tag` (replacing an earlier image of that tag) if given.
    pub fn write(&self, dir: &Path, tag: Option<&str>) -> io::Result<WrittenImage> {
        let (descriptor, written) = self.write_blobs(dir)?;
        add_to_index(dir, descriptor, tag)?;
        Ok(written)
    }

    /// Writes `images` as one multi-platform image: a nested image index (each manifest with
    /// its platform) listed in `index.json`. Returns the nested index's digest.
    pub fn write_multi_platform(
        dir: &Path,
        tag: Option<&str>,
        images: &[OciLayoutBuilder],
    ) -> io::Result<String> {
        let mut manifests = Vec::new();
        for image in images {
            let (mut descriptor, _) = image.write_blobs(dir)?;
            descriptor["platform"] = json!({ "os": image.os, "architecture": image.architecture });
            manifests.push(descriptor);
        }
        let index =
            json!({ "schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE, "manifests": manifests });
        let (digest, size) = write_blob(dir, &serde_json::to_vec(&index)?)?;
        add_to_index(
            dir,
            json!({ "mediaType": INDEX_MEDIA_TYPE, "digest": digest, "size": size }),
            tag,
        )?;
        Ok(digest)
    }

    fn with_top_layer(mut self, change: impl FnOnce(LayerBuilder) -> LayerBuilder) -> Self {
        let top = self.layers.pop().unwrap_or_default();
        self.layers.push(change(top));
        self
    }

    fn with_config(mut self, key: &str, value: Value) -> Self {
        self.config.insert(key.to_owned(), value);
        self
    }

    /// Writes layers, config and manifest; returns the manifest's descriptor.
    fn write_blobs(&self, dir: &Path) -> io::Result<(Value, WrittenImage)> {
        fs::create_dir_all(dir.join("blobs").join("sha256"))?;
        fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#)?;
        let mut layers = Vec::new();
        let mut diff_ids = Vec::new();
        let mut layer_digests = Vec::new();
        for layer in &self.layers {
            let (blob, diff_id, media_type) = layer.blob()?;
            let (digest, size) = write_blob(dir, &blob)?;
            layers.push(json!({ "mediaType": media_type, "digest": digest, "size": size }));
            diff_ids.push(diff_id);
            layer_digests.push(digest);
        }
        let config = json!({
            "architecture": self.architecture,
            "os": self.os,
            "config": self.config,
            "rootfs": { "type": "layers", "diff_ids": diff_ids },
        });
        let (config_digest, config_size) = write_blob(dir, &serde_json::to_vec(&config)?)?;
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST_MEDIA_TYPE,
            "config": { "mediaType": CONFIG_MEDIA_TYPE, "digest": config_digest, "size": config_size },
            "layers": layers,
        });
        let (manifest_digest, manifest_size) = write_blob(dir, &serde_json::to_vec(&manifest)?)?;
        let descriptor = json!({ "mediaType": MANIFEST_MEDIA_TYPE, "digest": manifest_digest, "size": manifest_size });
        Ok((
            descriptor,
            WrittenImage {
                manifest_digest,
                config_digest,
                layer_digests,
            },
        ))
    }
}

/// The path of the blob `digest` (`sha256:<hex>`) in the layout at `dir`, e.g. to corrupt it.
pub fn blob_path(dir: &Path, digest: &str) -> PathBuf {
    let (algorithm, hex) = digest.split_once(':').expect("digest is algorithm:hex");
    dir.join("blobs").join(algorithm).join(hex)
}

fn strings<S: Into<String>>(items: impl IntoIterator<Item = S>) -> Value {
    Value::from(items.into_iter().map(Into::into).collect::<Vec<String>>())
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

fn write_blob(dir: &Path, bytes: &[u8]) -> io::Result<(String, u64)> {
    let digest = sha256(bytes);
    fs::create_dir_all(dir.join("blobs").join("sha256"))?;
    fs::write(blob_path(dir, &digest), bytes)?;
    Ok((digest, bytes.len() as u64))
}

fn add_to_index(dir: &Path, mut descriptor: Value, tag: Option<&str>) -> io::Result<()> {
    let path = dir.join("index.json");
    let mut index: Value = match fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            json!({ "schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE, "manifests": [] })
        }
        Err(e) => return Err(e),
    };
    let manifests = index["manifests"]
        .as_array_mut()
        .expect("index.json has a manifests array");
    if let Some(tag) = tag {
        manifests.retain(|m| m["annotations"][ANNOTATION_REF_NAME] != tag);
        descriptor["annotations"] = json!({ ANNOTATION_REF_NAME: tag });
    }
    manifests.push(descriptor);
    fs::write(&path, serde_json::to_vec_pretty(&index)?)
}
