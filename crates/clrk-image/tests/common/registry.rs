//! A real `docker-registry` (CNCF distribution) on a free loopback port, with temporary storage,
//! and pushing to it with `skopeo`.

use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Credentials of the registry started with [`Registry::start_with_auth`].
pub const USER: &str = "tester";
pub const PASSWORD: &str = "s3cret";

/// A running registry, stopped (and its storage deleted) when dropped.
pub struct Registry {
    child: Option<Child>,
    dir: tempfile::TempDir,
    /// `127.0.0.1:PORT` (or `IP:PORT` with [`Registry::start_on`]).
    pub host: String,
    auth: bool,
}

impl Registry {
    /// An anonymous registry.
    pub fn start() -> Registry {
        Self::spawn(false, Ipv4Addr::LOCALHOST)
    }

    /// A registry requiring basic auth as [`USER`]/[`PASSWORD`] (htpasswd, bcrypt).
    pub fn start_with_auth() -> Registry {
        Self::spawn(true, Ipv4Addr::LOCALHOST)
    }

    /// An anonymous registry on a free port of `ip` (e.g. a bridge's address other network
    /// namespaces reach); [`host`](Self::host) is `ip:PORT`.
    #[allow(dead_code)] // Only the cluster tests bind elsewhere than loopback.
    pub fn start_on(ip: Ipv4Addr) -> Registry {
        Self::spawn(false, ip)
    }

    fn spawn(auth: bool, ip: Ipv4Addr) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind((ip, 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let host = format!("{ip}:{port}");
        let storage = dir.path().join("storage");
        let mut config = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  \
             delete:\n    enabled: true\nhttp:\n  addr: {host}\n",
            storage.display()
        );
        if auth {
            let output = Command::new("htpasswd")
                .args(["-Bbn", USER, PASSWORD])
                .output()
                .expect("htpasswd (apache2-utils) is installed");
            assert!(output.status.success(), "{output:?}");
            let htpasswd = dir.path().join("htpasswd");
            std::fs::write(&htpasswd, &output.stdout).unwrap();
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: clrk-test\n    path: {}\n",
                htpasswd.display()
            ));
        }
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry is installed (scripts/setup.sh)");
        let registry = Registry {
            child: Some(child),
            dir,
            host,
            auth,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(&registry.host).is_err() {
            assert!(
                Instant::now() < deadline,
                "registry did not start listening"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        registry
    }

    /// Stops the registry (connections are refused afterwards).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Pushes the image `tag` of the OCI layout `layout` as `name:push_tag` (all platforms).
    pub fn push(&self, layout: &Path, tag: &str, name: &str, push_tag: &str) {
        let mut command = Command::new("skopeo");
        command.args(["copy", "--all", "--quiet", "--dest-tls-verify=false"]);
        if self.auth {
            command.arg(format!("--dest-creds={USER}:{PASSWORD}"));
        }
        let output = command
            .arg(format!("oci:{}:{tag}", layout.display()))
            .arg(format!("docker://{}/{name}:{push_tag}", self.host))
            .output()
            .expect("skopeo is installed (scripts/setup.sh)");
        assert!(output.status.success(), "skopeo copy failed: {output:?}");
    }

    /// The file the registry stores blob `digest` in.
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap();
        self.dir
            .path()
            .join("storage/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Writes a docker `config.json` holding `user:password` for `host` into `dir`.
pub fn docker_config(dir: &Path, host: &str, user: &str, password: &str) -> PathBuf {
    use base64::Engine as _;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let path = dir.join("config.json");
    std::fs::write(
        &path,
        format!(r#"{{"auths":{{"{host}":{{"auth":"{auth}"}}}}}}"#),
    )
    .unwrap();
    path
}
