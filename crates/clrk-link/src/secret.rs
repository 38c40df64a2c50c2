//! The cluster secret: the bytes every server and worker of one cluster share, read from the
//! file given with `--cluster-secret-file`.
//!
//! The file is the secret's only home: it is never logged, sent or stored in the database.
//! A server creates it (64 hex characters of fresh randomness, mode 0600) when it is missing;
//! a worker never does, since a secret of its own would only lock it out. A file readable by
//! group or others is refused, as ssh refuses such a key.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
use std::path::Path;

use crate::LinkError;

/// The fewest bytes a secret may have (the file's content, surrounding whitespace trimmed).
pub const MIN_SECRET_LEN: usize = 32;

/// The cluster secret. Its `Debug` does not show it.
#[derive(Clone)]
pub struct ClusterSecret(Vec<u8>);

impl fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClusterSecret(…)")
    }
}

impl ClusterSecret {
    /// Reads the secret from `path`, which must exist, be private to its owner and hold at
    /// least [`MIN_SECRET_LEN`] bytes.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let path = dir.path().join("cluster-secret");
    /// let created = clrk_link::ClusterSecret::load_or_create(&path).unwrap();
    /// let read = clrk_link::ClusterSecret::load(&path).unwrap();
    /// assert_eq!(created.fingerprint(), read.fingerprint());
    /// ```
    pub fn load(path: &Path) -> Result<ClusterSecret, LinkError> {
        let meta = match fs::metadata(path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(LinkError::MissingSecret {
                    path: path.to_owned(),
                });
            }
            Err(source) => {
                return Err(LinkError::ReadSecret {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        let mode = meta.mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(LinkError::SecretPermissions {
                path: path.to_owned(),
                mode,
            });
        }
        let content = fs::read(path).map_err(|source| LinkError::ReadSecret {
            path: path.to_owned(),
            source,
        })?;
        let secret = content.trim_ascii().to_vec();
        if secret.len() < MIN_SECRET_LEN {
            return Err(LinkError::SecretTooShort {
                path: path.to_owned(),
                len: secret.len(),
                min: MIN_SECRET_LEN,
            });
        }
        Ok(ClusterSecret(secret))
    }

    /// Reads the secret from `path`, first creating the file (mode 0600, 32 random bytes as
    /// 64 hex characters) when it does not exist. Two processes creating it at once agree on
    /// one: the file is created exclusively and the loser reads the winner's.
    pub fn load_or_create(path: &Path) -> Result<ClusterSecret, LinkError> {
        let create_err = |source| LinkError::CreateSecret {
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(create_err)?;
        }
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes)
            .map_err(|e| create_err(std::io::Error::other(e.to_string())))?;
        // Written whole under a temporary name, then linked into place: a crash never leaves
        // a half-written secret, and `link` fails if another process won the race.
        let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
        let written = (|| {
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            file.write_all(format!("{}\n", hex::encode(bytes)).as_bytes())?;
            file.sync_all()?;
            match fs::hard_link(&tmp, path) {
                Ok(()) => Ok(true),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
                Err(e) => Err(e),
            }
        })();
        let _ = fs::remove_file(&tmp);
        if written.map_err(create_err)? {
            tracing::info!(path = %path.display(), "created the cluster secret file");
        }
        ClusterSecret::load(path)
    }

    /// A secret from bytes already in memory (tests, or a secret handed over by an
    /// orchestrator through a file descriptor).
    pub fn from_bytes(bytes: &[u8]) -> Result<ClusterSecret, LinkError> {
        if bytes.len() < MIN_SECRET_LEN {
            return Err(LinkError::SecretTooShort {
                path: "(in memory)".into(),
                len: bytes.len(),
                min: MIN_SECRET_LEN,
            });
        }
        Ok(ClusterSecret(bytes.to_vec()))
    }

    /// A short, non-reversible name of this secret for logs and `clrk workers list`, so an
    /// operator can see that two machines hold the same one without seeing it.
    pub fn fingerprint(&self) -> String {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &self.0);
        hex::encode(&digest.as_ref()[..6])
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn a_created_secret_is_private_random_and_stable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/secret");
        let first = ClusterSecret::load_or_create(&path).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text.trim().len(), 64);
        assert!(text.trim().bytes().all(|b| b.is_ascii_hexdigit()));
        let again = ClusterSecret::load_or_create(&path).unwrap();
        assert_eq!(first.bytes(), again.bytes());
        let other = ClusterSecret::load_or_create(&dir.path().join("other")).unwrap();
        assert_ne!(first.bytes(), other.bytes());
        assert_eq!(format!("{first:?}"), "ClusterSecret(…)");
        // No temporary file is left behind.
        assert_eq!(fs::read_dir(dir.path().join("sub")).unwrap().count(), 1);
    }

    #[test]
    fn a_missing_shared_or_short_secret_is_refused_with_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        let missing = ClusterSecret::load(&path).unwrap_err().to_string();
        assert!(
            missing.contains("does not exist") && missing.contains("copy"),
            "{missing}"
        );

        fs::write(&path, "x".repeat(64)).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let shared = ClusterSecret::load(&path).unwrap_err().to_string();
        assert!(shared.contains("chmod 600"), "{shared}");

        fs::write(&path, "too short\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        let short = ClusterSecret::load(&path).unwrap_err().to_string();
        assert!(
            short.contains("9 bytes") && short.contains("at least 32"),
            "{short}"
        );

        fs::write(&path, format!("  {}  \n", "s".repeat(40))).unwrap();
        assert_eq!(
            ClusterSecret::load(&path).unwrap().bytes(),
            "s".repeat(40).as_bytes()
        );
    }
}
