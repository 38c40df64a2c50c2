//! Measures pulling a ~50 MB image from a loopback registry: cold, with cached layers, and
//! with the rootfs already assembled. Needs `docker-registry` and `skopeo` (scripts/setup.sh).
//!
//! ```sh
//! cargo run --release -p clrk-image --example pull_timing
//! ```

use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clrk_image::testing::{LayerBuilder, OciLayoutBuilder};
use clrk_image::{ImageRef, ImageStore, StoreOptions};

const LAYER_BYTES: usize = 50 * 1024 * 1024;

fn main() {
    let tmp = tempfile::tempdir().expect("temporary directory");
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let host = format!("127.0.0.1:{port}");
    let config = tmp.path().join("registry.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {host}\n",
            tmp.path().join("storage").display()
        ),
    )
    .unwrap();
    let mut registry = Command::new("docker-registry")
        .arg("serve")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("docker-registry is installed");
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(&host).is_err() {
        assert!(Instant::now() < deadline, "registry did not start");
        std::thread::sleep(Duration::from_millis(50));
    }

    // Random bytes do not compress, so the gzip layer is as large as its content.
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let random: Vec<u8> = (0..LAYER_BYTES / 8)
        .flat_map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()
        })
        .collect();
    let layout = tmp.path().join("layout");
    OciLayoutBuilder::new()
        .add_layer(LayerBuilder::new().add_file("data/random", random, 0o644))
        .write(&layout, Some("v1"))
        .unwrap();
    let pushed = Command::new("skopeo")
        .args(["copy", "--quiet", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:v1", layout.display()))
        .arg(format!("docker://{host}/big:v1"))
        .status()
        .expect("skopeo is installed");
    assert!(pushed.success());

    let root = tmp.path().join("images");
    let r: ImageRef = format!("{host}/big:v1").parse().unwrap();
    let pull = || {
        let store = ImageStore::open_with(
            &root,
            StoreOptions {
                insecure_registries: vec![host.clone()],
                docker_config: Some(tmp.path().join("none.json")),
            },
        )
        .unwrap();
        let started = Instant::now();
        store.prepare(&store.resolve(&r).unwrap(), &r).unwrap();
        started.elapsed()
    };
    let cold = pull();
    std::fs::remove_dir_all(root.join("rootfs")).unwrap();
    std::fs::create_dir(root.join("rootfs")).unwrap();
    let layers_cached = pull();
    let warm = pull();
    println!(
        "image: one layer of {} MiB (gzip, incompressible)",
        LAYER_BYTES >> 20
    );
    println!("cold pull (download, verify, unpack, assemble): {cold:?}");
    println!("layers cached (resolve tag, assemble rootfs):   {layers_cached:?}");
    println!("warm (resolve tag, rootfs present):             {warm:?}");
    let _ = registry.kill();
    let _ = registry.wait();
}
