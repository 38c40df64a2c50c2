//! Registry credentials from docker's `config.json` (`auths`), read the way docker and skopeo
//! read them: the file is `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`; each
//! `auths` key is a registry host, optionally with a scheme and path (`https://index.docker.io/v1/`).

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use oci_client::secrets::RegistryAuth;
use serde::Deserialize;

use crate::error::ImageError;

/// The registry Docker Hub's credentials are stored under.
const DOCKER_HUB_KEY: &str = "index.docker.io";

#[derive(Deserialize, Default)]
struct ConfigFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
}

#[derive(Deserialize, Default)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

/// The credentials found for one registry, and where they came from (for error messages).
pub(crate) struct Credentials {
    pub(crate) auth: RegistryAuth,
    pub(crate) described: String,
}

/// Where credentials are read from: an explicit file, or docker's default lookup.
pub(crate) fn config_path(explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(path) = explicit {
        return Some(path.to_owned());
    }
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".docker/config.json"))
}

/// Looks up `registry` (a host with optional port) in the credentials file at `path`. A
/// missing file means anonymous access; an unreadable one is an error, since silently going
/// anonymous would hide the cause of the registry's refusal.
pub(crate) fn lookup(path: Option<&Path>, registry: &str) -> Result<Credentials, ImageError> {
    let anonymous = |why: String| Credentials {
        auth: RegistryAuth::Anonymous,
        described: why,
    };
    let Some(path) = path else {
        return Ok(anonymous(
            "no credentials were sent (no docker config file: HOME is unset)".to_owned(),
        ));
    };
    let unusable = |reason: String| ImageError::CredentialsUnreadable {
        path: path.to_owned(),
        reason,
    };
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Ok(anonymous(format!(
                "no credentials were sent ({} does not exist)",
                path.display()
            )));
        }
        Err(e) => return Err(unusable(e.to_string())),
    };
    let config: ConfigFile = serde_json::from_slice(&bytes).map_err(|e| unusable(e.to_string()))?;
    let Some((key, entry)) = config
        .auths
        .iter()
        .find(|(key, _)| same_registry(key, registry))
    else {
        return Ok(anonymous(format!(
            "no credentials were sent ({} has none for {registry})",
            path.display()
        )));
    };
    let (username, password) = match (&entry.auth, &entry.username, &entry.password) {
        (Some(auth), _, _) if !auth.is_empty() => decode_auth(auth).ok_or_else(|| {
            unusable(format!(
                "the auth field of {key:?} is not base64 user:password"
            ))
        })?,
        (_, Some(username), Some(password)) => (username.clone(), password.clone()),
        _ => {
            return Ok(anonymous(format!(
                "no credentials were sent ({} lists {key:?} without a username and password)",
                path.display()
            )));
        }
    };
    tracing::debug!(registry, path = %path.display(), "using registry credentials");
    Ok(Credentials {
        described: format!(
            "the credentials of user {username:?} from {} were refused",
            path.display()
        ),
        auth: RegistryAuth::Basic(username, password),
    })
}

/// The `auths` key docker writes for `registry`: Docker Hub's historical URL, else the host.
pub(crate) fn config_key(registry: &str) -> String {
    match canonical_host(registry).as_str() {
        DOCKER_HUB_KEY => "https://index.docker.io/v1/".to_owned(),
        host => host.to_owned(),
    }
}

/// Whether the `auths` key `key` is a spelling of `registry`.
pub(crate) fn same_registry(key: &str, registry: &str) -> bool {
    canonical_host(key) == canonical_host(registry)
}

/// `https://Index.Docker.IO/v1/` → `index.docker.io`; Docker Hub's aliases map to one name.
fn canonical_host(key: &str) -> String {
    let without_scheme = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = without_scheme
        .split('/')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    match host.as_str() {
        "docker.io" | "registry-1.docker.io" => DOCKER_HUB_KEY.to_owned(),
        _ => host,
    }
}

fn decode_auth(auth: &str) -> Option<(String, String)> {
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(auth.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, json: &str) -> PathBuf {
        let path = dir.join("config.json");
        std::fs::write(&path, json).unwrap();
        path
    }

    #[test]
    fn reads_base64_auth_by_host_like_docker() {
        let dir = tempfile::tempdir().unwrap();
        // "alice:s3cr:et" — the password may contain colons.
        let path = write(
            dir.path(),
            r#"{"auths":{"https://index.docker.io/v1/":{"auth":"YWxpY2U6czNjcjpldA=="},
                "127.0.0.1:5000":{"username":"bob","password":"pw"}}}"#,
        );
        let hub = lookup(Some(&path), "docker.io").unwrap();
        assert!(matches!(&hub.auth, RegistryAuth::Basic(u, p) if u == "alice" && p == "s3cr:et"));
        let local = lookup(Some(&path), "127.0.0.1:5000").unwrap();
        assert!(matches!(&local.auth, RegistryAuth::Basic(u, p) if u == "bob" && p == "pw"));
        let other = lookup(Some(&path), "ghcr.io").unwrap();
        assert!(matches!(other.auth, RegistryAuth::Anonymous));
        assert!(other.described.contains("ghcr.io"), "{}", other.described);
    }

    #[test]
    fn missing_file_is_anonymous_and_broken_file_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = lookup(Some(&dir.path().join("none.json")), "ghcr.io").unwrap();
        assert!(matches!(missing.auth, RegistryAuth::Anonymous));
        let broken = write(dir.path(), "{not json");
        assert!(matches!(
            lookup(Some(&broken), "ghcr.io"),
            Err(ImageError::CredentialsUnreadable { .. })
        ));
        let bad_auth = write(dir.path(), r#"{"auths":{"ghcr.io":{"auth":"!!!"}}}"#);
        assert!(matches!(
            lookup(Some(&bad_auth), "ghcr.io"),
            Err(ImageError::CredentialsUnreadable { .. })
        ));
    }
}
