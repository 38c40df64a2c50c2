//! Shared fixtures: small busybox images written with `clrk_image::testing`.

// Each test crate uses a different subset of these.
#![allow(dead_code)]

use std::path::Path;

use clrk_image::testing::{LayerBuilder, OciLayoutBuilder};
use clrk_image::{ImageRef, ImageStore};

/// A base layer: static busybox, a shell link, and files the upper layer hides.
pub fn base_layer() -> LayerBuilder {
    LayerBuilder::new()
        .add_dir("bin", 0o755)
        .add_host_file("bin/busybox", "/bin/busybox")
        .expect("busybox-static is installed at /bin/busybox")
        .add_symlink("bin/sh", "busybox")
        .add_file("etc/motd", "hello from the base layer\n", 0o644)
        .add_file("etc/keep", "kept\n", 0o600)
        .add_file("var/cache/old", "lower\n", 0o644)
        .add_file("var/cache/sub/deep", "lower\n", 0o644)
}

/// An upper layer: deletes /etc/motd, makes /var/cache opaque with one new file.
pub fn top_layer() -> LayerBuilder {
    LayerBuilder::new()
        .whiteout("etc/motd")
        .opaque("var/cache")
        .add_file("var/cache/new", "upper\n", 0o644)
        .add_file("app/run.sh", "echo run\n", 0o755)
}

/// The two-layer image with a full config.
pub fn two_layer_image() -> OciLayoutBuilder {
    OciLayoutBuilder::new()
        .add_layer(base_layer())
        .add_layer(top_layer())
        .set_entrypoint(["/bin/sh", "/app/run.sh"])
        .set_cmd(["--ignored"])
        .set_env(["PATH=/bin", "GREETING=hi"])
        .set_working_dir("/app")
        .set_user("1000:1000")
}

pub fn reference(s: String) -> ImageRef {
    s.parse().expect("valid reference")
}

pub fn oci_ref(dir: &Path, tag: Option<&str>) -> ImageRef {
    match tag {
        Some(tag) => reference(format!("oci:{}:{tag}", dir.display())),
        None => reference(format!("oci:{}", dir.display())),
    }
}

/// A fresh store under `dir`.
pub fn store(dir: &Path) -> ImageStore {
    ImageStore::open(&dir.join("images")).expect("store opens")
}

/// Names of the entries of `dir` (empty if it does not exist).
pub fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    names
}
