//! Finding the server: flags and environment first, else `$CLRK_DIR/dev.json`.

use std::path::{Path, PathBuf};

use clrk_wire::DevFile;

use crate::cli::GlobalArgs;
use crate::error::CliError;

/// Where the control API and the ingress answer, and the token the API wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    /// Control API base URL.
    pub api: String,
    /// Ingress base URL; `None` when only `--server` was given.
    pub ingress: Option<String>,
    /// Bearer token for the control API.
    pub token: Option<String>,
}

/// `$CLRK_DIR`, else `~/.clrk`.
///
/// ```
/// let dir = clrk::discovery::clrk_dir();
/// assert!(dir.is_absolute() || dir.starts_with(".clrk"));
/// ```
pub fn clrk_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CLRK_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    std::env::home_dir().unwrap_or_default().join(".clrk")
}

/// The path of the discovery file inside `clrk_dir`.
pub fn dev_file(clrk_dir: &Path) -> PathBuf {
    clrk_dir.join("dev.json")
}

/// Resolves the endpoints from flags (which already include `CLRK_SERVER`, `CLRK_TOKEN` and
/// `CLRK_INGRESS`) and, when no server is given, from `clrk_dir/dev.json`.
///
/// The dev file's token is used only with the dev file's API, so a token never travels to a
/// server it was not issued by.
///
/// ```
/// use clrk::cli::GlobalArgs;
/// let flags = GlobalArgs { server: Some("http://10.0.0.1:17070".into()), ..Default::default() };
/// let found = clrk::discovery::discover(&flags, std::path::Path::new("/nonexistent")).unwrap();
/// assert_eq!(found.api, "http://10.0.0.1:17070");
/// ```
pub fn discover(flags: &GlobalArgs, clrk_dir: &Path) -> Result<Endpoints, CliError> {
    // `CLRK_SERVER=` in a shell means "unset", not "the empty URL".
    let given = |value: &Option<String>| value.clone().filter(|v| !v.is_empty());
    let (server, token, ingress) = (
        given(&flags.server),
        given(&flags.token),
        given(&flags.ingress),
    );
    if let Some(api) = server {
        return Ok(Endpoints {
            api: trim_base(&api),
            ingress: ingress.as_deref().map(trim_base),
            token,
        });
    }
    let path = dev_file(clrk_dir);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(CliError::NoServer),
        Err(e) => {
            return Err(CliError::BadDevFile {
                path,
                reason: e.to_string(),
            });
        }
    };
    let dev: DevFile = serde_json::from_str(&text).map_err(|e| CliError::BadDevFile {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    Ok(Endpoints {
        api: trim_base(&dev.api),
        ingress: Some(trim_base(ingress.as_deref().unwrap_or(&dev.ingress))),
        token: Some(token.unwrap_or(dev.token)),
    })
}

fn trim_base(url: &str) -> String {
    url.trim_end_matches('/').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_dev_file(dir: &Path, text: &str) {
        std::fs::write(dev_file(dir), text).unwrap();
    }

    const DEV_JSON: &str = r#"{"ingress": "http://127.0.0.1:18080", "api": "http://127.0.0.1:17070/", "token": "secret"}"#;

    #[test]
    fn nothing_configured_means_no_server() {
        let dir = tempfile::tempdir().unwrap();
        let err = discover(&GlobalArgs::default(), dir.path()).unwrap_err();
        assert!(matches!(err, CliError::NoServer));
        assert_eq!(
            err.to_string(),
            "no clrk server found: start one with 'clrk dev', or set CLRK_SERVER and CLRK_TOKEN"
        );
    }

    #[test]
    fn dev_file_gives_all_endpoints() {
        let dir = tempfile::tempdir().unwrap();
        write_dev_file(dir.path(), DEV_JSON);
        let found = discover(&GlobalArgs::default(), dir.path()).unwrap();
        assert_eq!(
            found,
            Endpoints {
                api: "http://127.0.0.1:17070".into(),
                ingress: Some("http://127.0.0.1:18080".into()),
                token: Some("secret".into()),
            }
        );
    }

    #[test]
    fn flags_override_the_dev_file_ingress_and_token() {
        let dir = tempfile::tempdir().unwrap();
        write_dev_file(dir.path(), DEV_JSON);
        let flags = GlobalArgs {
            token: Some("other".into()),
            ingress: Some("http://127.0.0.1:9999".into()),
            ..Default::default()
        };
        let found = discover(&flags, dir.path()).unwrap();
        assert_eq!(found.api, "http://127.0.0.1:17070");
        assert_eq!(found.ingress.as_deref(), Some("http://127.0.0.1:9999"));
        assert_eq!(found.token.as_deref(), Some("other"));
    }

    #[test]
    fn explicit_server_never_receives_the_dev_token() {
        let dir = tempfile::tempdir().unwrap();
        write_dev_file(dir.path(), DEV_JSON);
        let flags = GlobalArgs {
            server: Some("http://remote:17070".into()),
            ..Default::default()
        };
        let found = discover(&flags, dir.path()).unwrap();
        assert_eq!(found.api, "http://remote:17070");
        assert_eq!(found.token, None);
        assert_eq!(found.ingress, None);
    }

    #[test]
    fn empty_environment_values_count_as_unset() {
        let dir = tempfile::tempdir().unwrap();
        write_dev_file(dir.path(), DEV_JSON);
        let flags = GlobalArgs {
            server: Some(String::new()),
            token: Some(String::new()),
            ..Default::default()
        };
        let found = discover(&flags, dir.path()).unwrap();
        assert_eq!(found.api, "http://127.0.0.1:17070");
        assert_eq!(found.token.as_deref(), Some("secret"));
    }

    #[test]
    fn malformed_dev_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        write_dev_file(dir.path(), "{not json");
        let err = discover(&GlobalArgs::default(), dir.path()).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("dev.json"), "{message}");
        assert!(message.contains("restart 'clrk dev'"), "{message}");
    }
}
