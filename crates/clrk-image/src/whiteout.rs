//! OCI whiteout markers: `.wh.NAME` hides NAME of lower layers, `.wh..wh..opq` hides all of a
//! directory's lower-layer contents.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

const PREFIX: &[u8] = b".wh.";
const OPAQUE: &[u8] = b".wh..wh..opq";

/// What a directory entry of a layer means when layers are stacked.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Marker {
    /// Hide everything the lower layers put in this directory.
    Opaque,
    /// Hide this name of the lower layers.
    Remove(OsString),
    /// A marker that names nothing removable (`.wh.`, `.wh..`): ignored.
    Invalid,
    /// Ordinary content.
    None,
}

/// Classifies a file name found in an unpacked layer.
pub(crate) fn classify(name: &OsStr) -> Marker {
    let bytes = name.as_bytes();
    if bytes == OPAQUE {
        return Marker::Opaque;
    }
    match bytes.strip_prefix(PREFIX) {
        None => Marker::None,
        Some(b"" | b"." | b"..") => Marker::Invalid,
        Some(hidden) => Marker::Remove(OsString::from_vec(hidden.to_vec())),
    }
}

/// The marker file that hides `path`: `dir/.wh.NAME` for `dir/NAME`.
pub(crate) fn marker_for(path: &Path) -> Option<PathBuf> {
    let name = path.file_name()?;
    let mut marker = PREFIX.to_vec();
    marker.extend_from_slice(name.as_bytes());
    Some(path.with_file_name(OsStr::from_bytes(&marker)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_markers() {
        assert_eq!(classify(OsStr::new(".wh..wh..opq")), Marker::Opaque);
        assert_eq!(
            classify(OsStr::new(".wh.motd")),
            Marker::Remove("motd".into())
        );
        assert_eq!(classify(OsStr::new(".wh...")), Marker::Invalid);
        assert_eq!(classify(OsStr::new(".wh.")), Marker::Invalid);
        assert_eq!(classify(OsStr::new("motd")), Marker::None);
    }

    #[test]
    fn marker_sits_next_to_the_hidden_entry() {
        assert_eq!(
            marker_for(Path::new("/l/etc/motd")).unwrap(),
            Path::new("/l/etc/.wh.motd")
        );
    }
}
