//! The parts of an image's configuration that shape how clrk runs it.

use oci_spec::image::ImageConfiguration;
use serde::{Deserialize, Serialize};

/// The image's runtime defaults (its OCI config's `config` object).
///
/// The launcher uses `entrypoint` only when the manifest sets no `command`; `cmd` and `env` are
/// kept for display but are not passed to agents (SPECIFICATION §6).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    /// `Entrypoint`.
    pub entrypoint: Option<Vec<String>>,
    /// `Cmd`.
    pub cmd: Option<Vec<String>>,
    /// `Env`, as `NAME=value` strings.
    pub env: Vec<String>,
    /// `WorkingDir`; `None` when unset or empty.
    pub working_dir: Option<String>,
    /// `User`; `None` when unset or empty.
    pub user: Option<String>,
}

impl From<&ImageConfiguration> for ImageConfig {
    fn from(image: &ImageConfiguration) -> Self {
        let Some(config) = image.config() else {
            return ImageConfig::default();
        };
        let non_empty = |s: &Option<String>| s.clone().filter(|s| !s.is_empty());
        ImageConfig {
            entrypoint: config.entrypoint().clone(),
            cmd: config.cmd().clone(),
            env: config.env().clone().unwrap_or_default(),
            working_dir: non_empty(config.working_dir()),
            user: non_empty(config.user()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_strings_mean_unset() {
        let image: ImageConfiguration = serde_json::from_str(
            r#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},
                "config":{"Entrypoint":["/bin/sh"],"Env":["A=1"],"WorkingDir":"","User":""}}"#,
        )
        .unwrap();
        let config = ImageConfig::from(&image);
        assert_eq!(config.entrypoint, Some(vec!["/bin/sh".to_owned()]));
        assert_eq!(config.env, vec!["A=1".to_owned()]);
        assert_eq!(
            (config.working_dir, config.user, config.cmd),
            (None, None, None)
        );
    }
}
