//! Preparing root filesystems from real OCI layouts into a real store directory.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use clrk_image::testing::{LayerBuilder, LayerCompression, OciLayoutBuilder, blob_path};
use clrk_image::{ImageError, ImageStore, Rootfs};
use common::{base_layer, names, oci_ref, store, top_layer, two_layer_image};

fn prepare(store: &ImageStore, layout: &Path, tag: Option<&str>) -> Result<Rootfs, ImageError> {
    let r = oci_ref(layout, tag);
    store.prepare(&store.resolve(&r)?, &r)
}

fn inode(path: &Path) -> u64 {
    fs::symlink_metadata(path).unwrap().ino()
}

#[test]
fn rootfs_stacks_layers_and_applies_whiteouts() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    let written = two_layer_image().write(&layout, Some("v1")).unwrap();
    let store = store(tmp.path());
    let rootfs = prepare(&store, &layout, Some("v1")).unwrap();

    let hex = written.manifest_digest.strip_prefix("sha256:").unwrap();
    assert_eq!(
        rootfs.path,
        tmp.path().join("images/rootfs/sha256").join(hex)
    );
    assert!(!rootfs.host);
    let root = &rootfs.path;
    assert_eq!(
        fs::read(root.join("bin/busybox")).unwrap(),
        fs::read("/bin/busybox").unwrap()
    );
    assert_eq!(
        fs::metadata(root.join("bin/busybox"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o755
    );
    assert_eq!(
        fs::read_link(root.join("bin/sh")).unwrap(),
        Path::new("busybox")
    );
    // Whiteout: the file is gone, its sibling stays (mode kept), no marker leaks through.
    assert!(!root.join("etc/motd").exists());
    assert_eq!(names(&root.join("etc")), ["keep"]);
    assert_eq!(
        fs::metadata(root.join("etc/keep"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    // Opaque directory: only the upper layer's content remains.
    assert_eq!(names(&root.join("var/cache")), ["new"]);
    assert_eq!(names(root), ["app", "bin", "etc", "var"]);

    // The result is a usable root filesystem.
    if rustix::process::geteuid().is_root() {
        let output = Command::new("chroot")
            .arg(root)
            .args([
                "/bin/sh",
                "-c",
                "busybox cat /etc/keep; busybox ls /var/cache; test -e /etc/motd || echo motd-gone",
            ])
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        assert_eq!(
            String::from_utf8_lossy(&output.stdout),
            "kept\nnew\nmotd-gone\n"
        );
    }
}

#[test]
fn second_prepare_reuses_the_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    let written = two_layer_image().write(&layout, None).unwrap();
    let store = store(tmp.path());
    let first = prepare(&store, &layout, None).unwrap();
    let base_layer_dir = tmp
        .path()
        .join("images/layers/sha256")
        .join(written.layer_digests[0].strip_prefix("sha256:").unwrap());
    let layer_busybox = base_layer_dir.join("bin/busybox");
    // Files are hard links into the layer cache, not copies.
    assert_eq!(
        inode(&first.path.join("bin/busybox")),
        inode(&layer_busybox)
    );
    let rootfs_inode = inode(&first.path);
    let layer_inode = inode(&base_layer_dir);

    let second = prepare(&store, &layout, None).unwrap();
    assert_eq!(second, first);
    assert_eq!(inode(&second.path), rootfs_inode, "rootfs was rebuilt");

    // Rebuilding a removed rootfs reuses the unpacked layers instead of unpacking again.
    fs::remove_dir_all(&first.path).unwrap();
    let third = prepare(&store, &layout, None).unwrap();
    assert_eq!(third.path, first.path);
    assert_eq!(
        inode(&base_layer_dir),
        layer_inode,
        "layer was unpacked again"
    );
    assert_eq!(
        inode(&third.path.join("bin/busybox")),
        inode(&layer_busybox)
    );
}

#[test]
fn images_sharing_a_layer_unpack_it_once() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    let a = two_layer_image().write(&layout, Some("a")).unwrap();
    let b = OciLayoutBuilder::new()
        .add_layer(base_layer())
        .add_layer(LayerBuilder::new().add_file("b-only", "b\n", 0o644))
        .write(&layout, Some("b"))
        .unwrap();
    assert_eq!(
        a.layer_digests[0], b.layer_digests[0],
        "fixture: the base layer is shared"
    );
    let store = store(tmp.path());

    let rootfs_a = prepare(&store, &layout, Some("a")).unwrap();
    let rootfs_b = prepare(&store, &layout, Some("b")).unwrap();
    assert_ne!(rootfs_a.path, rootfs_b.path);
    assert_eq!(
        names(&tmp.path().join("images/layers/sha256")).len(),
        3,
        "base, a's top, b's top"
    );
    assert_eq!(
        inode(&rootfs_a.path.join("bin/busybox")),
        inode(&rootfs_b.path.join("bin/busybox"))
    );
    assert!(rootfs_b.path.join("b-only").exists() && !rootfs_a.path.join("b-only").exists());
    assert!(
        rootfs_b.path.join("etc/motd").exists(),
        "b has no whiteout for motd"
    );
}

#[test]
fn corrupted_layer_is_rejected_and_nothing_is_cached() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    let written = two_layer_image().write(&layout, None).unwrap();
    let store = store(tmp.path());
    let r = oci_ref(&layout, None);
    let image = store.resolve(&r).unwrap();

    // Same size, different content: only the digest can tell.
    let top = &written.layer_digests[1];
    let blob = blob_path(&layout, top);
    let mut bytes = fs::read(&blob).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    fs::write(&blob, &bytes).unwrap();

    let err = store.prepare(&image, &r).unwrap_err();
    assert!(
        matches!(&err, ImageError::DigestMismatch { digest, .. } if digest == top),
        "{err}"
    );
    assert!(err.to_string().contains(top.as_str()), "{err}");
    // The good base layer may be cached; the corrupt one and the rootfs are not, and no
    // temporary directory is left behind.
    let base_hex = written.layer_digests[0].strip_prefix("sha256:").unwrap();
    assert_eq!(names(&tmp.path().join("images/layers/sha256")), [base_hex]);
    assert!(names(&tmp.path().join("images/rootfs/sha256")).is_empty());
}

#[test]
fn unsafe_layers_are_refused_and_write_nothing_outside() {
    let cases: Vec<(&str, LayerBuilder)> = vec![
        (
            "parent",
            LayerBuilder::new().add_unchecked_file(b"../../../../escaped", "x"),
        ),
        (
            "absolute",
            LayerBuilder::new().add_unchecked_file(b"/escaped", "x"),
        ),
        (
            "through symlink",
            LayerBuilder::new()
                .add_symlink("link", "/")
                .add_file("link/escaped", "x", 0o644),
        ),
        (
            "hard link out",
            LayerBuilder::new()
                .add_unchecked_file(b"ok", "x")
                .add_hardlink("h", "../../etc/passwd"),
        ),
    ];
    for (case, layer) in cases {
        let tmp = tempfile::tempdir().unwrap();
        let layout = tmp.path().join("layout");
        let written = OciLayoutBuilder::new()
            .add_layer(layer)
            .write(&layout, None)
            .unwrap();
        let err = prepare(&store(tmp.path()), &layout, None).unwrap_err();
        assert!(
            matches!(&err, ImageError::UnsafeLayerEntry { digest, .. } if digest == &written.layer_digests[0]),
            "{case}: {err}"
        );
        assert!(!Path::new("/escaped").exists(), "{case}");
        assert!(!tmp.path().join("escaped").exists(), "{case}");
        assert!(
            names(&tmp.path().join("images/layers/sha256")).is_empty(),
            "{case}: cached"
        );
    }
}

#[test]
fn later_entries_replace_earlier_ones_without_following_symlinks() {
    let tmp = tempfile::tempdir().unwrap();
    let outside = tmp.path().join("outside");
    fs::write(&outside, "untouched").unwrap();
    let layout = tmp.path().join("layout");
    // A symlink to a host file, then a regular file of the same name: the file replaces the
    // link instead of writing through it.
    let layer = LayerBuilder::new()
        .add_symlink("etc/conf", outside.to_str().unwrap())
        .add_file("etc/conf", "inside", 0o644)
        .add_file("data/a", "shared", 0o644)
        .add_hardlink("data/b", "data/a");
    OciLayoutBuilder::new()
        .add_layer(layer)
        .write(&layout, None)
        .unwrap();
    let rootfs = prepare(&store(tmp.path()), &layout, None).unwrap();
    assert_eq!(fs::read_to_string(&outside).unwrap(), "untouched");
    assert_eq!(
        fs::read_to_string(rootfs.path.join("etc/conf")).unwrap(),
        "inside"
    );
    assert_eq!(
        inode(&rootfs.path.join("data/a")),
        inode(&rootfs.path.join("data/b"))
    );
}

#[test]
fn concurrent_prepares_of_one_image_agree() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    two_layer_image().write(&layout, None).unwrap();
    let store = store(tmp.path());
    let r = oci_ref(&layout, None);
    let image = store.resolve(&r).unwrap();
    let results: Vec<Rootfs> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| s.spawn(|| store.prepare(&image, &r).unwrap()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(results.iter().all(|rootfs| rootfs == &results[0]));
    assert_eq!(names(&results[0].path.join("var/cache")), ["new"]);
    // Exactly the two layers and one rootfs, no leftovers of losing builders.
    assert_eq!(names(&tmp.path().join("images/layers/sha256")).len(), 2);
    assert_eq!(names(&tmp.path().join("images/rootfs/sha256")).len(), 1);
}

#[test]
fn zstd_and_uncompressed_layers_unpack() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    OciLayoutBuilder::new()
        .add_layer(base_layer().compression(LayerCompression::Zstd))
        .add_layer(top_layer().compression(LayerCompression::None))
        .write(&layout, None)
        .unwrap();
    let rootfs = prepare(&store(tmp.path()), &layout, None).unwrap();
    assert_eq!(
        fs::read(rootfs.path.join("bin/busybox")).unwrap(),
        fs::read("/bin/busybox").unwrap()
    );
    assert_eq!(names(&rootfs.path.join("var/cache")), ["new"]);
}

#[test]
fn layer_from_a_host_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("source");
    fs::create_dir_all(source.join("lib/pkg")).unwrap();
    fs::write(source.join("lib/pkg/mod.py"), "x = 1\n").unwrap();
    std::os::unix::fs::symlink("pkg/mod.py", source.join("lib/alias.py")).unwrap();
    let layout = tmp.path().join("layout");
    OciLayoutBuilder::new()
        .add_layer_from_dir(&source)
        .unwrap()
        .write(&layout, None)
        .unwrap();
    let rootfs = prepare(&store(tmp.path()), &layout, None).unwrap();
    assert_eq!(
        fs::read_to_string(rootfs.path.join("lib/alias.py")).unwrap(),
        "x = 1\n"
    );
}

#[test]
fn prepare_refuses_a_mismatched_reference() {
    let tmp = tempfile::tempdir().unwrap();
    let store = store(tmp.path());
    let host = common::reference("host:".into());
    let host_image = store.resolve(&host).unwrap();
    let err = store
        .prepare(&host_image, &oci_ref(tmp.path(), None))
        .unwrap_err();
    assert!(matches!(err, ImageError::ReferenceMismatch { .. }), "{err}");
}
