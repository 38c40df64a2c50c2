//! What the installed runsc supports, read from `runsc --version` and `runsc flags`, so a
//! pool's `runtimeOptions` are refused at apply (and at a worker's sandbox start) with the
//! reason, rather than failing inside runsc.

use std::collections::BTreeSet;
use std::path::Path;

use crate::error::SandboxError;

/// The version, flags and platforms of one runsc binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeSupport {
    /// `runsc version …` as the binary prints it.
    pub version: String,
    /// Flag names without dashes.
    pub flags: BTreeSet<String>,
    /// Platforms the `-platform` flag's help names.
    pub platforms: Vec<String>,
}

impl RuntimeSupport {
    /// Asks `binary` (a runsc) what it supports.
    pub async fn probe(binary: &Path) -> Result<RuntimeSupport, SandboxError> {
        let version = run(binary, "--version").await?;
        let flags = run(binary, "flags").await?;
        Ok(RuntimeSupport::parse(&version, &flags))
    }

    /// Reads `runsc --version` and `runsc flags` output.
    ///
    /// ```
    /// let flags = "  -gso\n    \tenable host segmentation offload. (default true)\n  \
    ///              -platform string\n    \tspecifies which platform to use: systrap (default), ptrace, kvm. (default \"systrap\")\n";
    /// let support = clrk_sandbox::RuntimeSupport::parse("runsc version release-20240513.0\nspec: 1.1.0\n", flags);
    /// assert_eq!(support.version, "runsc version release-20240513.0");
    /// assert_eq!(support.platforms, ["systrap", "ptrace", "kvm"]);
    /// assert!(support.flags.contains("gso"));
    /// ```
    pub fn parse(version: &str, flags: &str) -> RuntimeSupport {
        let mut names = BTreeSet::new();
        let mut platforms = Vec::new();
        let mut lines = flags.lines().peekable();
        while let Some(line) = lines.next() {
            // A flag line is `  -name [type]`; its help follows on lines starting with a tab.
            let Some(name) = line.trim_start().strip_prefix('-') else {
                continue;
            };
            let name = name.split_whitespace().next().unwrap_or_default();
            if name.is_empty() {
                continue;
            }
            if name == "platform"
                && let Some(help) = lines.peek()
                && let Some((_, list)) = help.split_once("platform to use:")
            {
                platforms = list
                    .split(['.', ','])
                    .map(|word| word.trim().trim_end_matches("(default)").trim())
                    .take_while(|word| !word.is_empty() && !word.contains(' '))
                    .map(str::to_string)
                    .collect();
            }
            names.insert(name.to_string());
        }
        RuntimeSupport {
            version: version
                .lines()
                .next()
                .unwrap_or_default()
                .trim()
                .to_string(),
            flags: names,
            platforms,
        }
    }

    /// Why `flags` (`--name=value`, from a pool's `runtimeOptions`) cannot run under this
    /// runsc, or `None` when they can.
    ///
    /// ```
    /// let support = clrk_sandbox::RuntimeSupport::parse("runsc version 0.0~20221219.0",
    ///     "  -platform string\n    \tspecifies which platform to use: ptrace (default), kvm. (default \"ptrace\")\n  -gso\n");
    /// assert_eq!(support.refuses(&["--gso=false".into()]), None);
    /// assert_eq!(support.refuses(&["--platform=systrap".into()]).unwrap(),
    ///     "platform systrap is not supported by runsc version 0.0~20221219.0 (it has ptrace, kvm)");
    /// assert!(support.refuses(&["--directfs=true".into()]).unwrap().contains("no flag directfs"));
    /// ```
    pub fn refuses(&self, flags: &[String]) -> Option<String> {
        self.refused(flags).map(|(_, reason)| reason)
    }

    /// As [`RuntimeSupport::refuses`], with the name of the flag refused (`platform` for the
    /// platform).
    pub fn refused(&self, flags: &[String]) -> Option<(String, String)> {
        for flag in flags {
            let (name, value) = flag
                .trim_start_matches('-')
                .split_once('=')
                .unwrap_or((flag.as_str(), ""));
            if name == "platform" {
                if !self.platforms.iter().any(|p| p == value) {
                    let reason = format!(
                        "platform {value} is not supported by {} (it has {})",
                        self.version,
                        self.platforms.join(", ")
                    );
                    return Some((name.to_string(), reason));
                }
            } else if !self.flags.contains(name) {
                let reason = format!(
                    "{} has no flag {name}: remove it or install a newer gVisor",
                    self.version
                );
                return Some((name.to_string(), reason));
            }
        }
        None
    }
}

async fn run(binary: &Path, arg: &str) -> Result<String, SandboxError> {
    let out = tokio::process::Command::new(binary)
        .arg(arg)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|source| SandboxError::Exec {
            binary: binary.to_path_buf(),
            source,
        })?;
    // `runsc flags` prints to stderr on some versions, and exits non-zero on others.
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_installed_runsc_names_its_platforms_and_flags() {
        let support = RuntimeSupport::probe(Path::new("runsc")).await.unwrap();
        assert!(support.version.starts_with("runsc version"), "{support:?}");
        assert!(
            support.platforms.iter().any(|p| p == "ptrace"),
            "{support:?}"
        );
        assert!(
            support.flags.contains("num-network-channels"),
            "{support:?}"
        );
        assert_eq!(support.refuses(&["--platform=ptrace".into()]), None);
    }
}
