//! Resolving references against real OCI layouts on disk.

mod common;

use clrk_image::testing::{LayerBuilder, OciLayoutBuilder};
use clrk_image::{ImageConfig, ImageError};
use common::{oci_ref, reference, store, two_layer_image};

#[test]
fn resolves_by_tag_and_without_tag() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    let written = two_layer_image().write(&layout, Some("v1")).unwrap();
    let store = store(tmp.path());

    let tagged = store.resolve(&oci_ref(&layout, Some("v1"))).unwrap();
    assert_eq!(tagged.digest, written.manifest_digest);
    assert_eq!(tagged.reference, format!("oci:{}:v1", layout.display()));
    assert_eq!(
        tagged.config,
        ImageConfig {
            entrypoint: Some(vec!["/bin/sh".into(), "/app/run.sh".into()]),
            cmd: Some(vec!["--ignored".into()]),
            env: vec!["PATH=/bin".into(), "GREETING=hi".into()],
            working_dir: Some("/app".into()),
            user: Some("1000:1000".into()),
        }
    );

    let untagged = store.resolve(&oci_ref(&layout, None)).unwrap();
    assert_eq!(untagged.digest, written.manifest_digest);

    // Serializable, so the server can store it with a revision.
    let json = serde_json::to_string(&tagged).unwrap();
    assert_eq!(
        serde_json::from_str::<clrk_image::ResolvedImage>(&json).unwrap(),
        tagged
    );
}

#[test]
fn relative_layout_directory_resolves_from_the_working_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("rel");
    let written = two_layer_image().write(&layout, Some("v1")).unwrap();
    // `oci:` of a path relative to the test's working directory.
    let relative = pathdiff(&layout);
    let image = store(tmp.path())
        .resolve(&reference(format!("oci:{relative}:v1")))
        .unwrap();
    assert_eq!(image.digest, written.manifest_digest);
}

/// `layout` relative to the current directory, via enough `..` to reach `/`.
fn pathdiff(layout: &std::path::Path) -> String {
    let cwd = std::env::current_dir().unwrap();
    let ups = cwd.components().count() - 1;
    format!(
        "{}{}",
        "../".repeat(ups),
        layout.strip_prefix("/").unwrap().display()
    )
}

#[test]
fn unknown_tag_lists_the_tags_present() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    two_layer_image().write(&layout, Some("v1")).unwrap();
    OciLayoutBuilder::new()
        .add_layer(common::base_layer())
        .write(&layout, Some("v2"))
        .unwrap();
    let store = store(tmp.path());

    let err = store.resolve(&oci_ref(&layout, Some("v3"))).unwrap_err();
    assert!(
        matches!(&err, ImageError::TagNotFound { available, .. } if available == &["v1", "v2"]),
        "{err}"
    );
    let message = err.to_string();
    assert!(
        message.contains("\"v3\"") && message.contains("v1, v2"),
        "{message}"
    );

    let err = store.resolve(&oci_ref(&layout, None)).unwrap_err();
    assert!(
        matches!(err, ImageError::TagRequired { count: 2, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("v1, v2"), "{err}");

    // Re-tagging replaces the earlier image of that tag.
    let newer = OciLayoutBuilder::new()
        .add_file("x", "1", 0o644)
        .write(&layout, Some("v1"))
        .unwrap();
    assert_eq!(
        store.resolve(&oci_ref(&layout, Some("v1"))).unwrap().digest,
        newer.manifest_digest
    );
}

#[test]
fn multi_platform_index_picks_the_running_platform() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    let here = OciLayoutBuilder::new()
        .add_file("which", "native", 0o644)
        .set_entrypoint(["/native"]);
    let arm = OciLayoutBuilder::new()
        .add_file("which", "arm", 0o644)
        .set_entrypoint(["/arm"])
        .set_platform("linux", "arm64");
    let riscv = OciLayoutBuilder::new()
        .set_entrypoint(["/riscv"])
        .set_platform("linux", "riscv64");
    OciLayoutBuilder::write_multi_platform(&layout, Some("multi"), &[arm, here.clone(), riscv])
        .unwrap();
    let store = store(tmp.path());

    let r = oci_ref(&layout, Some("multi"));
    let image = store.resolve(&r).unwrap();
    assert_eq!(image.config.entrypoint, Some(vec!["/native".to_owned()]));
    let rootfs = store.prepare(&image, &r).unwrap();
    assert_eq!(
        std::fs::read_to_string(rootfs.path.join("which")).unwrap(),
        "native"
    );
    // The same image also resolves without a tag (it is the layout's only entry).
    assert_eq!(
        store.resolve(&oci_ref(&layout, None)).unwrap().digest,
        image.digest
    );
}

#[test]
fn multi_platform_index_without_the_running_platform_names_what_it_has() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    let arm = OciLayoutBuilder::new().set_platform("linux", "arm64");
    let s390x = OciLayoutBuilder::new().set_platform("linux", "s390x");
    OciLayoutBuilder::write_multi_platform(&layout, Some("foreign"), &[arm, s390x]).unwrap();

    let err = store(tmp.path())
        .resolve(&oci_ref(&layout, Some("foreign")))
        .unwrap_err();
    assert!(
        matches!(&err, ImageError::PlatformNotFound { available, .. } if available == &["linux/arm64", "linux/s390x"]),
        "{err}"
    );
    let message = err.to_string();
    assert!(
        message.contains("linux/arm64, linux/s390x") && message.contains("linux/amd64"),
        "{message}"
    );
}

#[test]
fn single_image_for_another_platform_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    OciLayoutBuilder::new()
        .set_platform("linux", "arm64")
        .write(&layout, Some("arm"))
        .unwrap();
    let err = store(tmp.path())
        .resolve(&oci_ref(&layout, Some("arm")))
        .unwrap_err();
    assert!(
        matches!(&err, ImageError::PlatformNotFound { available, .. } if available == &["linux/arm64"]),
        "{err}"
    );
}

#[test]
fn corrupted_manifest_or_config_is_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    let written = two_layer_image().write(&layout, Some("v1")).unwrap();
    let store = store(tmp.path());

    let config = clrk_image::testing::blob_path(&layout, &written.config_digest);
    let mut bytes = std::fs::read(&config).unwrap();
    bytes[0] = b' ';
    std::fs::write(&config, &bytes).unwrap();
    let err = store.resolve(&oci_ref(&layout, Some("v1"))).unwrap_err();
    assert!(
        matches!(&err, ImageError::DigestMismatch { digest, .. } if digest == &written.config_digest),
        "{err}"
    );
    assert!(err.to_string().contains(&written.config_digest));

    std::fs::remove_file(clrk_image::testing::blob_path(
        &layout,
        &written.manifest_digest,
    ))
    .unwrap();
    let err = store.resolve(&oci_ref(&layout, Some("v1"))).unwrap_err();
    assert!(
        matches!(&err, ImageError::BlobMissing { digest, .. } if digest == &written.manifest_digest),
        "{err}"
    );
}

#[test]
fn directory_that_is_not_a_layout_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let err = store(tmp.path())
        .resolve(&oci_ref(tmp.path(), None))
        .unwrap_err();
    assert!(matches!(err, ImageError::NotALayout { .. }), "{err}");
    assert!(
        err.to_string().contains(&tmp.path().display().to_string()),
        "{err}"
    );
}

#[test]
fn host_resolves_without_a_layout() {
    let tmp = tempfile::tempdir().unwrap();
    let store = store(tmp.path());
    let r = reference("host:".into());
    let image = store.resolve(&r).unwrap();
    assert_eq!(
        (image.digest.as_str(), image.reference.as_str()),
        ("host", "host:")
    );
    let rootfs = store.prepare(&image, &r).unwrap();
    assert_eq!(
        rootfs,
        clrk_image::Rootfs {
            path: "/".into(),
            host: true
        }
    );
}

#[test]
fn empty_layers_are_fine() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    OciLayoutBuilder::new()
        .add_layer(LayerBuilder::new())
        .write(&layout, None)
        .unwrap();
    let store = store(tmp.path());
    let r = oci_ref(&layout, None);
    let rootfs = store.prepare(&store.resolve(&r).unwrap(), &r).unwrap();
    assert!(common::names(&rootfs.path).is_empty());
}
