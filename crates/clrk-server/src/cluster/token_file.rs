//! The control API token of `clrk server`, in a file every server of a cluster shares:
//! read when it exists, else created with a new random token, mode 0600.

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

use crate::error::ServerError;

/// The token in `path`, created (0600, 256 random bits in hex) when the file is missing.
/// A file others may read, or one holding no token, is refused with a message saying what
/// to fix.
pub fn load_or_create(path: &Path) -> Result<String, ServerError> {
    let bad = |why: String| ServerError::Internal(format!("token file {}: {why}", path.display()));
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let mode = std::fs::metadata(path)
                .map_err(|e| bad(e.to_string()))?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                return Err(bad(format!(
                    "readable by others (mode {:o}): chmod 600 it",
                    mode & 0o777
                )));
            }
            let token = text.trim();
            if token.len() < 32 {
                return Err(bad(
                    "holds no token of at least 32 characters: delete it to have one made".into(),
                ));
            }
            Ok(token.to_owned())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut bytes = [0u8; 32];
            getrandom::fill(&mut bytes).map_err(|e| bad(format!("no randomness: {e}")))?;
            let token = hex::encode(bytes);
            let mut file = std::fs::OpenOptions::new()
                .create_new(true)
                .write(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| bad(e.to_string()))?;
            writeln!(file, "{token}").map_err(|e| bad(e.to_string()))?;
            file.sync_all().map_err(|e| bad(e.to_string()))?;
            Ok(token)
        }
        Err(e) => Err(bad(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_file_gets_a_private_token_that_is_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        let token = load_or_create(&path).unwrap();
        assert_eq!(token.len(), 64);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(load_or_create(&path).unwrap(), token);
    }

    #[test]
    fn a_readable_or_empty_file_is_refused_with_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "x".repeat(64)).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let error = load_or_create(&path).unwrap_err().to_string();
        assert!(error.contains("chmod 600"), "{error}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&path, "short\n").unwrap();
        let error = load_or_create(&path).unwrap_err().to_string();
        assert!(error.contains("delete it"), "{error}");
    }
}
