//! `spec.runtimeOptions` of a WorkerPool: gVisor's platform and a short allowlist of runsc
//! flags that trade nothing of the sandbox's isolation, turned into runsc's command line.
//! Whether the runsc a worker has knows them is checked against that runsc
//! (`clrk_sandbox::RuntimeSupport`), not here.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::field_error::FieldError;

/// `spec.runtimeOptions`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RuntimeOptions {
    /// gVisor's platform: how the sandbox's kernel intercepts the agent's system calls.
    /// Unset: the installed runsc's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// runsc flags by name without the dashes, from [`FLAGS`].
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub flags: BTreeMap<String, FlagValue>,
}

/// `spec.runtimeOptions.platform`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    /// `ptrace`: works everywhere, the slowest system calls.
    Ptrace,
    /// `systrap`: gVisor's default since 2023, faster than ptrace, needs no hardware support.
    Systrap,
    /// `kvm`: the fastest on bare metal; needs `/dev/kvm`.
    Kvm,
}

impl Platform {
    /// The name runsc takes in `--platform`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Platform::Ptrace => "ptrace",
            Platform::Systrap => "systrap",
            Platform::Kvm => "kvm",
        }
    }
}

/// One flag's value as written in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum FlagValue {
    /// `true` or `false`.
    Bool(bool),
    /// A whole number.
    Number(u64),
    /// A word.
    Text(String),
}

impl fmt::Display for FlagValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FlagValue::Bool(b) => write!(f, "{b}"),
            FlagValue::Number(n) => write!(f, "{n}"),
            FlagValue::Text(t) => f.write_str(t),
        }
    }
}

/// What a flag takes.
#[derive(Debug, Clone, Copy)]
enum Takes {
    Bool,
    /// A whole number in this range.
    Number(u64, u64),
    /// One of these words.
    Word(&'static [&'static str]),
}

/// The runsc flags a pool may set: each tunes speed or memory and none opens the sandbox
/// further (host sockets, raw packets, rootless mode, debugging and the like are not here).
/// `file-access` is not either: clrk's root overlay needs it `exclusive`.
pub const FLAGS: &[&str] = &[
    "buffer-pooling",
    "cpu-num-from-quota",
    "dcache",
    "directfs",
    "file-access-mounts",
    "gso",
    "num-network-channels",
    "rx-checksum-offload",
];

fn takes(flag: &str) -> Option<Takes> {
    Some(match flag {
        "buffer-pooling" | "cpu-num-from-quota" | "directfs" | "gso" | "rx-checksum-offload" => {
            Takes::Bool
        }
        "dcache" => Takes::Number(0, 1 << 20),
        "num-network-channels" => Takes::Number(1, 64),
        "file-access-mounts" => Takes::Word(&["exclusive", "shared"]),
        _ => return None,
    })
}

impl RuntimeOptions {
    /// runsc's command-line flags for these options, `--name=value`, platform first.
    ///
    /// ```
    /// let options: clrk_api::RuntimeOptions =
    ///     serde_json::from_value(serde_json::json!({
    ///         "platform": "systrap", "flags": {"num-network-channels": 2, "gso": false}})).unwrap();
    /// assert_eq!(options.command_flags(),
    ///            ["--platform=systrap", "--gso=false", "--num-network-channels=2"]);
    /// ```
    pub fn command_flags(&self) -> Vec<String> {
        let platform = self.platform.map(|p| format!("--platform={}", p.as_str()));
        platform
            .into_iter()
            .chain(
                self.flags
                    .iter()
                    .map(|(name, value)| format!("--{name}={value}")),
            )
            .collect()
    }

    /// Refuses flags outside [`FLAGS`] and values a flag does not take, naming the field.
    pub(crate) fn validate(&self, at: &str) -> Result<(), FieldError> {
        for (name, value) in &self.flags {
            let field = format!("{at}.flags.{name}");
            let Some(takes) = takes(name) else {
                return Err(FieldError::new(
                    field,
                    format!(
                        "not a flag a pool may set: use one of {} (the others change what a \
                         sandbox may reach or are for debugging)",
                        FLAGS.join(", ")
                    ),
                ));
            };
            let fits = match (takes, value) {
                (Takes::Bool, FlagValue::Bool(_)) => true,
                (Takes::Number(low, high), FlagValue::Number(n)) => (low..=high).contains(n),
                (Takes::Word(words), FlagValue::Text(t)) => words.contains(&t.as_str()),
                _ => false,
            };
            if !fits {
                let wanted = match takes {
                    Takes::Bool => "true or false".to_string(),
                    Takes::Number(low, high) => format!("a whole number from {low} to {high}"),
                    Takes::Word(words) => format!("one of {}", words.join(", ")),
                };
                return Err(FieldError::new(
                    field,
                    format!("{value:?} is not {wanted}", value = value.to_string()),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn options(value: serde_json::Value) -> RuntimeOptions {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn flags_outside_the_allowlist_or_of_the_wrong_type_name_the_field() {
        let err = options(json!({"flags": {"host-uds": "all"}}))
            .validate("spec.runtimeOptions")
            .unwrap_err();
        assert_eq!(err.path, "spec.runtimeOptions.flags.host-uds");
        assert!(
            err.message.contains("not a flag a pool may set"),
            "{}",
            err.message
        );
        let err = options(json!({"flags": {"num-network-channels": 0}}))
            .validate("spec.runtimeOptions")
            .unwrap_err();
        assert_eq!(err.path, "spec.runtimeOptions.flags.num-network-channels");
        assert_eq!(err.message, "\"0\" is not a whole number from 1 to 64");
        let err = options(json!({"flags": {"file-access-mounts": "mine"}}))
            .validate("spec.runtimeOptions")
            .unwrap_err();
        assert_eq!(err.message, "\"mine\" is not one of exclusive, shared");
        let err = options(json!({"flags": {"gso": "yes"}}))
            .validate("spec.runtimeOptions")
            .unwrap_err();
        assert_eq!(err.message, "\"yes\" is not true or false");
        options(json!({"platform": "kvm", "flags": {"dcache": 100, "directfs": true}}))
            .validate("spec.runtimeOptions")
            .unwrap();
    }

    #[test]
    fn no_options_add_no_flags() {
        assert!(RuntimeOptions::default().command_flags().is_empty());
    }
}
