//! The `oci-archive:` and `docker-archive:` transports and `import`, with archives built in the
//! test from real layouts.

mod common;

use std::fs;
use std::path::Path;

use clrk_image::testing::{LayerBuilder, LayerCompression, OciLayoutBuilder, blob_path};
use clrk_image::{ImageError, ImageStore};
use common::{base_layer, names, reference, store};
use serde_json::json;

fn image(text: &str) -> OciLayoutBuilder {
    OciLayoutBuilder::new()
        .add_layer(base_layer().compression(LayerCompression::None))
        .add_layer(
            LayerBuilder::new()
                .compression(LayerCompression::None)
                .whiteout("etc/motd")
                .add_file("app/version", text, 0o644),
        )
        .set_entrypoint(["/bin/sh"])
}

/// Tars the layout directory `layout` into `file` (an OCI archive).
fn tar_layout(layout: &Path, file: &Path) {
    let mut builder = tar::Builder::new(fs::File::create(file).unwrap());
    builder.append_dir_all(".", layout).unwrap();
    builder.finish().unwrap();
}

fn file_header(size: usize) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_size(size as u64);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(1_700_000_000);
    header.set_cksum();
    header
}

/// Writes `docker save`'s classic form of `image` into `file`: `<config-hex>.json`,
/// `<n>/layer.tar` and `manifest.json` naming it `repo_tag`.
fn docker_save(image: &OciLayoutBuilder, repo_tag: &str, file: &Path) -> String {
    let layout = tempfile::tempdir().unwrap();
    let written = image.write(layout.path(), None).unwrap();
    let mut builder = tar::Builder::new(fs::File::create(file).unwrap());
    let mut append = |name: &str, data: &[u8]| {
        builder
            .append_data(&mut file_header(data.len()), name, data)
            .unwrap();
    };
    let config_hex = written.config_digest.strip_prefix("sha256:").unwrap();
    let config = fs::read(blob_path(layout.path(), &written.config_digest)).unwrap();
    append(&format!("{config_hex}.json"), &config);
    let mut layers = Vec::new();
    for (n, digest) in written.layer_digests.iter().enumerate() {
        let name = format!("layer{n}/layer.tar");
        append(&name, &fs::read(blob_path(layout.path(), digest)).unwrap());
        layers.push(name);
    }
    let manifest = json!([{
        "Config": format!("{config_hex}.json"),
        "RepoTags": [repo_tag],
        "Layers": layers,
    }]);
    append("manifest.json", &serde_json::to_vec(&manifest).unwrap());
    builder.into_inner().unwrap();
    written.config_digest
}

#[test]
fn oci_archive_resolves_and_prepares() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    let written = image("oci\n").write(&layout, Some("v1")).unwrap();
    image("other\n").write(&layout, Some("v2")).unwrap();
    let file = tmp.path().join("image.tar");
    tar_layout(&layout, &file);
    let store = store(tmp.path());

    let r = reference(format!("oci-archive:{}:v1", file.display()));
    let resolved = store.resolve(&r).unwrap();
    assert_eq!(resolved.digest, written.manifest_digest);
    assert_eq!(resolved.config.entrypoint, Some(vec!["/bin/sh".to_owned()]));
    let rootfs = store.prepare(&resolved, &r).unwrap();
    assert_eq!(
        fs::read_to_string(rootfs.path.join("app/version")).unwrap(),
        "oci\n"
    );
    assert!(!rootfs.path.join("etc/motd").exists());
    assert!(
        names(&tmp.path().join("images/tmp")).is_empty(),
        "staging is cleaned up"
    );

    let err = store
        .resolve(&reference(format!("oci-archive:{}", file.display())))
        .unwrap_err();
    assert!(
        matches!(err, ImageError::ArchiveImageNotFound { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("v1, v2"), "{err}");
}

#[test]
fn docker_archive_resolves_and_prepares() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("saved.tar");
    docker_save(&image("docker\n"), "app:1.0", &file);
    let store = store(tmp.path());

    for r in [
        format!("docker-archive:{}", file.display()),
        format!("docker-archive:{}:app:1.0", file.display()),
    ] {
        let r = reference(r);
        let resolved = store.resolve(&r).unwrap();
        let rootfs = store.prepare(&resolved, &r).unwrap();
        assert_eq!(
            fs::read_to_string(rootfs.path.join("app/version")).unwrap(),
            "docker\n"
        );
    }
    let err = store
        .resolve(&reference(format!(
            "docker-archive:{}:other:1",
            file.display()
        )))
        .unwrap_err();
    assert!(
        matches!(err, ImageError::ArchiveImageNotFound { .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains("docker.io/library/app:1.0"),
        "{err}"
    );
}

#[test]
fn files_that_are_not_archives_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let store = store(tmp.path());
    let garbage = tmp.path().join("garbage.tar");
    fs::write(&garbage, vec![0x42u8; 10_000]).unwrap();
    let plain = tmp.path().join("plain.tar");
    let mut builder = tar::Builder::new(fs::File::create(&plain).unwrap());
    builder
        .append_data(&mut file_header(2), "hello.txt", &b"hi"[..])
        .unwrap();
    builder.finish().unwrap();
    drop(builder);

    for file in [&garbage, &plain] {
        for r in [
            format!("docker-archive:{}", file.display()),
            format!("oci-archive:{}", file.display()),
        ] {
            let err = store.resolve(&reference(r.clone())).unwrap_err();
            assert!(matches!(err, ImageError::NotAnArchive { .. }), "{r}: {err}");
            assert!(
                err.to_string().contains(&file.display().to_string()),
                "{err}"
            );
        }
        let err = store.import(file, Some("x:1")).unwrap_err();
        assert!(matches!(err, ImageError::NotAnArchive { .. }), "{err}");
    }
    assert!(names(&tmp.path().join("images/tmp")).is_empty());
    assert!(store.list().unwrap().is_empty());
}

#[test]
fn imported_images_resolve_by_name_before_any_registry() {
    let tmp = tempfile::tempdir().unwrap();
    let saved = tmp.path().join("saved.tar");
    docker_save(&image("imported\n"), "app:1.0", &saved);
    let layout = tmp.path().join("layout");
    let written = image("named\n").write(&layout, Some("v1")).unwrap();
    let oci = tmp.path().join("oci.tar");
    tar_layout(&layout, &oci);
    let root = tmp.path().join("images");
    let store = ImageStore::open(&root).unwrap();

    // Names from the archive (docker's RepoTags), normalised.
    let imported = store.import(&saved, None).unwrap();
    assert_eq!(imported.len(), 1);
    assert_eq!(imported[0].reference, "docker.io/library/app:1.0");
    assert!(imported[0].imported && imported[0].size > 1_000_000);
    // A name given; the registry (port 1 on loopback) is never asked.
    let named = store
        .import(&oci, Some("127.0.0.1:1/team/named:v1"))
        .unwrap();
    assert_eq!(named[0].digest, written.manifest_digest);
    // An OCI archive's image whose ref.name is a mere tag has no name of its own.
    let err = store.import(&oci, None).unwrap_err();
    assert!(
        matches!(err, ImageError::ImportNameRequired { .. }),
        "{err}"
    );

    for (r, text) in [
        ("app:1.0", "imported\n"),
        ("127.0.0.1:1/team/named:v1", "named\n"),
    ] {
        let r = reference(r.to_owned());
        let resolved = store.resolve(&r).unwrap();
        let rootfs = store.prepare(&resolved, &r).unwrap();
        assert_eq!(
            fs::read_to_string(rootfs.path.join("app/version")).unwrap(),
            text
        );
    }
    let err = store
        .resolve(&reference("127.0.0.1:1/team/named:v2".to_owned()))
        .unwrap_err();
    assert!(
        matches!(err, ImageError::RegistryUnreachable { .. }),
        "{err}"
    );

    // Imported images survive pruning (and a new store), so do their layers.
    let report = store.prune(&[]).unwrap();
    assert_eq!((report.layers, report.blobs), (0, 0), "{report:?}");
    let store = ImageStore::open(&root).unwrap();
    let listed = store.list().unwrap();
    let references: Vec<&str> = listed.iter().map(|i| i.reference.as_str()).collect();
    assert_eq!(
        references,
        ["docker.io/library/app:1.0", "127.0.0.1:1/team/named:v1"]
    );
    let r = reference("app".to_owned() + ":1.0");
    store.prepare(&store.resolve(&r).unwrap(), &r).unwrap();
}
