//! `clrk registry login`: check credentials against a registry the way `docker login` does
//! (the `/v2/` challenge, then basic auth or the token service), then store them in docker's
//! `config.json` where every puller reads them.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Map, Value};

use crate::credentials;
use crate::error::ImageError;

const TIMEOUT: Duration = Duration::from_secs(30);

/// Credentials to check and store for one registry.
#[derive(Debug, Clone)]
pub struct Login {
    /// Registry host with optional port (`ghcr.io`, `localhost:5000`).
    pub registry: String,
    pub username: String,
    pub password: String,
    /// Plain HTTP instead of HTTPS.
    pub insecure: bool,
}

impl Login {
    /// Checks the credentials against the registry, then writes them to docker's config file
    /// (`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`, or `config` if given);
    /// returns that file's path. Nothing is written when the registry refuses them.
    ///
    /// ```no_run
    /// let login = clrk_image::Login {
    ///     registry: "localhost:5000".into(),
    ///     username: "dev".into(),
    ///     password: "s3cret".into(),
    ///     insecure: true,
    /// };
    /// let stored_in = login.check_and_store(None).unwrap();
    /// ```
    pub fn check_and_store(&self, config: Option<&Path>) -> Result<PathBuf, ImageError> {
        self.check()?;
        let path = credentials::config_path(config).ok_or_else(|| ImageError::LoginFailed {
            registry: self.registry.clone(),
            reason: "HOME and DOCKER_CONFIG are unset, so there is no docker config file to \
                     store the credentials in"
                .into(),
        })?;
        store(&path, &self.registry, &self.username, &self.password)?;
        Ok(path)
    }

    /// Asks the registry whether it accepts the credentials.
    pub fn check(&self) -> Result<(), ImageError> {
        let failed = |reason: String| ImageError::LoginFailed {
            registry: self.registry.clone(),
            reason,
        };
        let plain = self.insecure || crate::is_loopback_registry(&self.registry);
        let scheme = if plain { "http" } else { "https" };
        let base = format!("{scheme}://{}/v2/", api_host(&self.registry));
        let client = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .build()
            .map_err(|e| failed(e.to_string()))?;
        crate::registry::runtime().block_on(async {
            let unreachable = |e: reqwest::Error| {
                failed(format!(
                    "cannot reach {base}: {}{}",
                    error_chain(&e),
                    if plain {
                        ""
                    } else {
                        " (for a plain-HTTP registry, pass --insecure)"
                    }
                ))
            };
            let first = client.get(&base).send().await.map_err(unreachable)?;
            if first.status().is_success() {
                // An open registry accepts anyone; docker stores the credentials all the same.
                return Ok(());
            }
            if first.status() != reqwest::StatusCode::UNAUTHORIZED {
                return Err(failed(format!("{base} answered {}", first.status())));
            }
            let challenge = first
                .headers()
                .get(reqwest::header::WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            let token_service = bearer_realm(&challenge);
            let check = match &token_service {
                Some((realm, service)) => {
                    let mut url = reqwest::Url::parse(realm).map_err(|e| {
                        failed(format!("its token service {realm:?} is not a URL: {e}"))
                    })?;
                    if let Some(service) = service {
                        url.query_pairs_mut().append_pair("service", service);
                    }
                    url.query_pairs_mut().append_pair("account", &self.username);
                    client.get(url)
                }
                None => client.get(&base),
            };
            let answer = check
                .basic_auth(&self.username, Some(&self.password))
                .send()
                .await
                .map_err(unreachable)?;
            match answer.status() {
                s if s.is_success() => Ok(()),
                reqwest::StatusCode::UNAUTHORIZED | reqwest::StatusCode::FORBIDDEN => {
                    Err(failed(format!(
                        "user {:?} was refused: check the user name and password",
                        self.username
                    )))
                }
                s => Err(failed(format!("the registry answered {s}"))),
            }
        })
    }
}

/// Docker Hub's API lives at `registry-1.docker.io`.
fn api_host(registry: &str) -> &str {
    match registry {
        "docker.io" | "index.docker.io" => "registry-1.docker.io",
        other => other,
    }
}

/// The token service of a `Bearer realm="…",service="…"` challenge; `None` for basic auth.
fn bearer_realm(header: &str) -> Option<(String, Option<String>)> {
    http_auth::parser::ChallengeParser::new(header)
        .filter_map(Result::ok)
        .find(|c| c.scheme.eq_ignore_ascii_case("bearer"))
        .and_then(|c| {
            let param = |name: &str| {
                c.params
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.to_unescaped())
            };
            Some((param("realm")?, param("service")))
        })
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// Sets `auths[registry]` in the config file at `path`, keeping everything else in it; the
/// file is replaced atomically with mode 0600.
fn store(path: &Path, registry: &str, username: &str, password: &str) -> Result<(), ImageError> {
    let unusable = |reason: String| ImageError::CredentialsUnreadable {
        path: path.to_owned(),
        reason,
    };
    let mut config: Map<String, Value> = match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| unusable(e.to_string()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Map::new(),
        Err(e) => return Err(unusable(e.to_string())),
    };
    let auths = config
        .entry("auths")
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()
        .ok_or_else(|| unusable("its \"auths\" is not an object".into()))?;
    let key = credentials::config_key(registry);
    // Drop other spellings of the same registry so the lookup cannot find a stale entry.
    let stale: Vec<String> = auths
        .keys()
        .filter(|k| credentials::same_registry(k, registry))
        .cloned()
        .collect();
    for k in stale {
        auths.remove(&k);
    }
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
    auths.insert(key, serde_json::json!({ "auth": auth }));
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(ImageError::io("create directory", dir))?;
    let tmp = path.with_extension("json.clrk-tmp");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(ImageError::io("write", &tmp))?;
    let text = serde_json::to_vec_pretty(&Value::Object(config)).expect("JSON serialises");
    file.write_all(&text)
        .and_then(|()| file.sync_all())
        .map_err(ImageError::io("write", &tmp))?;
    std::fs::rename(&tmp, path).map_err(ImageError::io("replace", path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenges_name_their_token_service() {
        assert_eq!(
            bearer_realm(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io""#
            ),
            Some((
                "https://auth.docker.io/token".into(),
                Some("registry.docker.io".into())
            ))
        );
        assert_eq!(bearer_realm(r#"Basic realm="clrk-test""#), None);
    }

    #[test]
    fn store_keeps_other_settings_and_replaces_other_spellings() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(
            &path,
            r#"{"auths":{"http://localhost:5000/v1/":{"auth":"b2xkOm9sZA=="},"ghcr.io":{"auth":"eDp5"}},"credsStore":"none"}"#,
        )
        .unwrap();
        store(&path, "localhost:5000", "dev", "pw:1").unwrap();
        let v: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(v["credsStore"], "none");
        assert_eq!(v["auths"]["ghcr.io"]["auth"], "eDp5");
        assert_eq!(v["auths"]["localhost:5000"]["auth"], "ZGV2OnB3OjE=");
        assert_eq!(v["auths"].as_object().unwrap().len(), 2);
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let found = credentials::lookup(Some(&path), "localhost:5000").unwrap();
        assert!(matches!(
            found.auth,
            oci_client::secrets::RegistryAuth::Basic(u, p) if u == "dev" && p == "pw:1"
        ));
    }
}
