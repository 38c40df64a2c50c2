//! Pulling from a real registry (Debian's `docker-registry`) on loopback, images pushed with
//! `skopeo`.

mod common;
#[path = "common/registry.rs"]
mod registry_server;

use std::fs;
use std::path::Path;
use std::sync::Mutex;

use clrk_image::testing::{LayerBuilder, OciLayoutBuilder};
use clrk_image::{ImageError, ImageRef, ImageStore, Progress, StoreOptions};
use common::{names, reference, two_layer_image};
use registry_server::{PASSWORD, Registry, USER, docker_config};

fn open(root: &Path, registry: &Registry, config: Option<&Path>) -> ImageStore {
    ImageStore::open_with(
        root,
        StoreOptions {
            insecure_registries: vec![registry.host.clone()],
            docker_config: Some(
                config.map_or_else(|| root.join("no-docker-config.json"), Path::to_owned),
            ),
        },
    )
    .unwrap()
}

/// Writes `image` into a fresh layout under `dir` and pushes it as `name:tag`.
fn push(
    registry: &Registry,
    dir: &Path,
    image: &OciLayoutBuilder,
    name: &str,
    tag: &str,
) -> String {
    let layout = dir.join(format!("layout-{name}-{tag}"));
    let written = image.write(&layout, Some("src")).unwrap();
    registry.push(&layout, "src", name, tag);
    written.manifest_digest
}

fn text_image(text: &str) -> OciLayoutBuilder {
    OciLayoutBuilder::new()
        .add_layer(common::base_layer())
        .add_layer(LayerBuilder::new().add_file("app/version", text, 0o644))
        .set_entrypoint(["/bin/sh"])
}

#[test]
fn pulls_by_tag_and_by_digest_and_follows_a_moved_tag() {
    let registry = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let digest = push(&registry, tmp.path(), &two_layer_image(), "team/app", "v1");
    let store = open(&tmp.path().join("images"), &registry, None);

    let r = reference(format!("{}/team/app:v1", registry.host));
    let image = store.resolve(&r).unwrap();
    assert_eq!(image.digest, digest);
    assert_eq!(image.reference, format!("{}/team/app:v1", registry.host));
    assert_eq!(image.config.working_dir.as_deref(), Some("/app"));
    let seen = Mutex::new(Vec::<Progress>::new());
    let rootfs = store
        .prepare_with_progress(&image, &r, &|p| seen.lock().unwrap().push(p))
        .unwrap();
    assert_eq!(
        fs::read(rootfs.path.join("bin/busybox")).unwrap(),
        fs::read("/bin/busybox").unwrap()
    );
    assert!(!rootfs.path.join("etc/motd").exists(), "whiteout applied");
    assert_eq!(names(&rootfs.path.join("var/cache")), ["new"]);
    // Each layer reported from 0 to its full size, none from the cache.
    let seen = seen.into_inner().unwrap();
    let finished: Vec<&Progress> = seen.iter().filter(|p| p.done == p.total).collect();
    assert_eq!(finished.len(), 2, "{seen:?}");
    assert!(seen.iter().all(|p| !p.cached));

    let pinned = reference(format!("{}/team/app@{digest}", registry.host));
    let by_digest = store.resolve(&pinned).unwrap();
    assert_eq!(by_digest.digest, digest);
    assert_eq!(store.prepare(&by_digest, &pinned).unwrap(), rootfs);

    // Re-pushing the tag moves it: the same reference now resolves to the new image.
    let moved = push(
        &registry,
        tmp.path(),
        &text_image("two\n"),
        "team/app",
        "v1",
    );
    assert_ne!(moved, digest);
    let image = store.resolve(&r).unwrap();
    assert_eq!(image.digest, moved);
    let rootfs = store.prepare(&image, &r).unwrap();
    assert_eq!(
        fs::read_to_string(rootfs.path.join("app/version")).unwrap(),
        "two\n"
    );

    let listed = store.list().unwrap();
    let digests: Vec<&str> = listed.iter().map(|i| i.digest.as_str()).collect();
    assert!(
        digests.contains(&digest.as_str()) && digests.contains(&moved.as_str()),
        "{listed:?}"
    );
    assert!(
        listed.iter().all(|i| i.size > 1_000_000 && !i.imported),
        "{listed:?}"
    );

    // Pruning to the new image drops the old one's rootfs and its own layer, keeps shared ones.
    let report = store.prune(std::slice::from_ref(&moved)).unwrap();
    assert_eq!(report.rootfs, 1, "{report:?}");
    assert_eq!(report.layers, 1, "{report:?}");
    assert!(rootfs.path.is_dir());
    let listed = store.list().unwrap();
    assert!(listed.iter().all(|i| i.digest == moved), "{listed:?}");
    assert_eq!(store.prepare(&image, &r).unwrap(), rootfs);
}

#[test]
fn multi_platform_index_picks_this_platform_or_names_what_it_has() {
    let registry = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("multi");
    let here = text_image("here\n");
    let arm = text_image("arm\n").set_platform("linux", "arm64");
    let s390 = text_image("s390x\n").set_platform("linux", "s390x");
    OciLayoutBuilder::write_multi_platform(&layout, Some("multi"), &[arm.clone(), here]).unwrap();
    OciLayoutBuilder::write_multi_platform(&layout, Some("foreign"), &[arm, s390]).unwrap();
    registry.push(&layout, "multi", "multi", "latest");
    registry.push(&layout, "foreign", "foreign", "latest");
    let store = open(&tmp.path().join("images"), &registry, None);

    let r = reference(format!("{}/multi", registry.host));
    let image = store.resolve(&r).unwrap();
    let rootfs = store.prepare(&image, &r).unwrap();
    assert_eq!(
        fs::read_to_string(rootfs.path.join("app/version")).unwrap(),
        "here\n"
    );

    let err = store
        .resolve(&reference(format!("{}/foreign", registry.host)))
        .unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(err, ImageError::PlatformNotFound { .. }),
        "{message}"
    );
    assert!(
        message.contains("linux/arm64") && message.contains("linux/s390x"),
        "{message}"
    );
}

#[test]
fn basic_auth_uses_docker_config_and_names_refused_credentials() {
    let registry = Registry::start_with_auth();
    let tmp = tempfile::tempdir().unwrap();
    let digest = push(
        &registry,
        tmp.path(),
        &text_image("secret\n"),
        "private",
        "v1",
    );
    let r = reference(format!("{}/private:v1", registry.host));

    let good_dir = tmp.path().join("good");
    fs::create_dir(&good_dir).unwrap();
    let good = docker_config(&good_dir, &registry.host, USER, PASSWORD);
    let store = open(&tmp.path().join("images"), &registry, Some(&good));
    let image = store.resolve(&r).unwrap();
    assert_eq!(image.digest, digest);
    let rootfs = store.prepare(&image, &r).unwrap();
    assert_eq!(
        fs::read_to_string(rootfs.path.join("app/version")).unwrap(),
        "secret\n"
    );

    let bad_dir = tmp.path().join("bad");
    fs::create_dir(&bad_dir).unwrap();
    let bad = docker_config(&bad_dir, &registry.host, USER, "wrong");
    let store = open(&tmp.path().join("images-bad"), &registry, Some(&bad));
    let err = store.resolve(&r).unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(err, ImageError::RegistryAccessDenied { .. }),
        "{message}"
    );
    assert!(
        message.contains(USER) && message.contains(&bad.display().to_string()),
        "{message}"
    );

    let store = open(&tmp.path().join("images-anon"), &registry, None);
    let err = store.resolve(&r).unwrap_err();
    assert!(
        matches!(err, ImageError::RegistryAccessDenied { .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains("no credentials were sent"),
        "{err}"
    );
}

#[test]
fn unknown_image_unknown_tag_and_registry_down_are_clear() {
    let mut registry = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    push(&registry, tmp.path(), &text_image("x\n"), "known", "v1");
    let store = open(&tmp.path().join("images"), &registry, None);

    let err = store
        .resolve(&reference(format!("{}/unknown:v1", registry.host)))
        .unwrap_err();
    assert!(matches!(err, ImageError::ImageNotFound { .. }), "{err}");
    assert!(
        err.to_string().contains("has no repository unknown"),
        "{err}"
    );

    let err = store
        .resolve(&reference(format!("{}/known:v2", registry.host)))
        .unwrap_err();
    assert!(matches!(err, ImageError::ImageNotFound { .. }), "{err}");
    assert!(
        err.to_string().contains("has no tag v2; its tags: v1"),
        "{err}"
    );

    // Without the insecure listing a registry on loopback is still plain HTTP, as in docker.
    let unlisted = ImageStore::open(&tmp.path().join("images-unlisted")).unwrap();
    unlisted
        .resolve(&reference(format!("{}/known:v1", registry.host)))
        .unwrap();

    registry.stop();
    let err = store
        .resolve(&reference(format!("{}/known:v1", registry.host)))
        .unwrap_err();
    assert!(
        matches!(err, ImageError::RegistryUnreachable { .. }),
        "{err}"
    );
    assert!(err.to_string().contains(&registry.host), "{err}");
}

#[test]
fn corrupted_blob_is_rejected_and_nothing_is_cached() {
    let registry = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    let written = OciLayoutBuilder::new()
        .add_layer(LayerBuilder::new().add_file("data", vec![7u8; 4096], 0o644))
        .write(&layout, Some("v1"))
        .unwrap();
    registry.push(&layout, "v1", "corrupt", "v1");
    let layer = &written.layer_digests[0];
    let stored = registry.blob_file(layer);
    let mut bytes = fs::read(&stored).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    fs::write(&stored, bytes).unwrap();

    let root = tmp.path().join("images");
    let store = open(&root, &registry, None);
    let r = reference(format!("{}/corrupt:v1", registry.host));
    let image = store.resolve(&r).unwrap();
    let err = store.prepare(&image, &r).unwrap_err();
    assert!(matches!(err, ImageError::DigestMismatch { .. }), "{err}");
    assert!(err.to_string().contains(layer.as_str()), "{err}");
    let hex = layer.strip_prefix("sha256:").unwrap();
    assert!(!root.join("local/blobs/sha256").join(hex).exists());
    assert!(
        names(&root.join("local/blobs/sha256"))
            .iter()
            .all(|n| !n.starts_with(".tmp"))
    );
    assert!(names(&root.join("layers/sha256")).is_empty());
    assert!(names(&root.join("rootfs/sha256")).is_empty());
}

#[test]
fn cache_survives_a_new_store_without_downloading_again() {
    let mut registry = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let digest = push(&registry, tmp.path(), &two_layer_image(), "cached", "v1");
    let root = tmp.path().join("images");
    let r = reference(format!("{}/cached:v1", registry.host));
    {
        let store = open(&root, &registry, None);
        store.prepare(&store.resolve(&r).unwrap(), &r).unwrap();
    }
    let blob_times: Vec<_> = fs::read_dir(root.join("local/blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().modified().unwrap())
        .collect();

    let store = open(&root, &registry, None);
    let image = store.resolve(&r).unwrap();
    assert_eq!(image.digest, digest);
    let seen = Mutex::new(Vec::<Progress>::new());
    store
        .prepare_with_progress(&image, &r, &|p| seen.lock().unwrap().push(p))
        .unwrap();
    // The rootfs exists, so no layer is even looked at.
    assert!(seen.into_inner().unwrap().is_empty());

    // With the registry gone, a digest reference resolves and prepares from the cache alone,
    // and a lost rootfs is rebuilt from cached layers.
    registry.stop();
    fs::remove_dir_all(root.join("rootfs/sha256")).unwrap();
    let pinned: ImageRef = reference(format!("{}/cached@{digest}", registry.host));
    let store = open(&root, &registry, None);
    let image = store.resolve(&pinned).unwrap();
    let seen = Mutex::new(Vec::<Progress>::new());
    let rootfs = store
        .prepare_with_progress(&image, &pinned, &|p| seen.lock().unwrap().push(p))
        .unwrap();
    assert!(rootfs.path.join("bin/busybox").is_file());
    let seen = seen.into_inner().unwrap();
    assert_eq!(seen.len(), 2);
    assert!(seen.iter().all(|p| p.cached), "{seen:?}");
    let after: Vec<_> = fs::read_dir(root.join("local/blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().modified().unwrap())
        .collect();
    assert_eq!(blob_times, after);
}

#[test]
fn concurrent_pulls_of_one_image_download_each_layer_once() {
    let registry = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    push(&registry, tmp.path(), &two_layer_image(), "shared", "v1");
    let root = tmp.path().join("images");
    let r = reference(format!("{}/shared:v1", registry.host));
    let downloads = Mutex::new(Vec::<String>::new());
    std::thread::scope(|scope| {
        for _ in 0..3 {
            scope.spawn(|| {
                let store = open(&root, &registry, None);
                let image = store.resolve(&r).unwrap();
                store
                    .prepare_with_progress(&image, &r, &|p| {
                        if p.done == 0 && !p.cached {
                            downloads.lock().unwrap().push(p.layer);
                        }
                    })
                    .unwrap();
            });
        }
    });
    let mut downloads = downloads.into_inner().unwrap();
    downloads.sort();
    let before = downloads.len();
    downloads.dedup();
    assert_eq!(before, downloads.len(), "a layer was downloaded twice");
    assert_eq!(downloads.len(), 2);
}
