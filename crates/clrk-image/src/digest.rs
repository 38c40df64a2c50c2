//! Content digests: which algorithms are accepted, and hashing while reading.

use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use oci_spec::image::{Digest, DigestAlgorithm};
use sha2::Digest as _;

use crate::error::ImageError;

/// A digest whose algorithm this crate can verify. Its hex part is validated lowercase hex of
/// the right length, so it is safe to use as a file name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BlobDigest(Digest);

impl BlobDigest {
    /// Accepts a digest from a descriptor if its algorithm is one of the SHA-2 family.
    pub(crate) fn new(digest: &Digest) -> Result<Self, ImageError> {
        match digest.algorithm() {
            DigestAlgorithm::Sha256 | DigestAlgorithm::Sha384 | DigestAlgorithm::Sha512 => {
                Ok(BlobDigest(digest.clone()))
            }
            _ => Err(ImageError::UnsupportedDigest {
                digest: digest.to_string(),
            }),
        }
    }

    /// Parses `algorithm:hex`.
    pub(crate) fn parse(digest: &str) -> Result<Self, ImageError> {
        let parsed = Digest::from_str(digest).map_err(|_| ImageError::UnsupportedDigest {
            digest: digest.to_owned(),
        })?;
        Self::new(&parsed)
    }

    pub(crate) fn algorithm(&self) -> &str {
        self.0.algorithm().as_ref()
    }

    pub(crate) fn hex(&self) -> &str {
        self.0.digest()
    }

    /// `<base>/<algorithm>/<hex>`: the layout used by OCI `blobs/` and by the caches.
    pub(crate) fn path_under(&self, base: &Path) -> PathBuf {
        base.join(self.algorithm()).join(self.hex())
    }

    /// Fails unless `found` (from a [`HashingReader`]) is this digest.
    pub(crate) fn verify(&self, found: &str) -> Result<(), ImageError> {
        if found == self.0.as_ref() {
            Ok(())
        } else {
            Err(ImageError::DigestMismatch {
                digest: self.to_string(),
                actual: found.to_owned(),
            })
        }
    }

    fn hasher(&self) -> Hasher {
        match self.0.algorithm() {
            DigestAlgorithm::Sha384 => Hasher::Sha384(sha2::Sha384::new()),
            DigestAlgorithm::Sha512 => Hasher::Sha512(sha2::Sha512::new()),
            // `new` admits only the SHA-2 family.
            _ => Hasher::Sha256(sha2::Sha256::new()),
        }
    }
}

impl std::fmt::Display for BlobDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0.as_ref())
    }
}

enum Hasher {
    Sha256(sha2::Sha256),
    Sha384(sha2::Sha384),
    Sha512(sha2::Sha512),
}

/// Hashes and counts everything read through it, so a blob is verified in the same pass that
/// consumes it.
pub(crate) struct HashingReader<R> {
    inner: R,
    hasher: Hasher,
    algorithm: String,
    bytes: u64,
}

impl<R: Read> HashingReader<R> {
    /// Hashes with the algorithm of `expected`.
    pub(crate) fn new(inner: R, expected: &BlobDigest) -> Self {
        HashingReader {
            inner,
            hasher: expected.hasher(),
            algorithm: expected.algorithm().to_owned(),
            bytes: 0,
        }
    }

    /// Reads whatever is left, then returns `algorithm:hex` of all bytes and their count.
    pub(crate) fn finish(mut self) -> io::Result<(String, u64)> {
        io::copy(&mut self, &mut io::sink())?;
        let hex = match self.hasher {
            Hasher::Sha256(h) => hex::encode(h.finalize()),
            Hasher::Sha384(h) => hex::encode(h.finalize()),
            Hasher::Sha512(h) => hex::encode(h.finalize()),
        };
        Ok((format!("{}:{hex}", self.algorithm), self.bytes))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        match &mut self.hasher {
            Hasher::Sha256(h) => h.update(&buf[..n]),
            Hasher::Sha384(h) => h.update(&buf[..n]),
            Hasher::Sha512(h) => h.update(&buf[..n]),
        }
        self.bytes += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY_SHA256: &str =
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn hashes_what_it_reads() {
        let digest = BlobDigest::parse(EMPTY_SHA256).unwrap();
        let (found, bytes) = HashingReader::new(&b""[..], &digest).finish().unwrap();
        assert_eq!((found.as_str(), bytes), (EMPTY_SHA256, 0));
        digest.verify(&found).unwrap();

        let (found, bytes) = HashingReader::new(&b"x"[..], &digest).finish().unwrap();
        assert_eq!(bytes, 1);
        assert!(matches!(
            digest.verify(&found),
            Err(ImageError::DigestMismatch { .. })
        ));
    }

    #[test]
    fn rejects_unverifiable_or_unsafe_digests() {
        assert!(BlobDigest::parse("md5:d41d8cd98f00b204e9800998ecf8427e").is_err());
        assert!(BlobDigest::parse("sha256:../../etc/passwd").is_err());
        assert!(BlobDigest::parse("sha256:ABC").is_err());
    }

    #[test]
    fn paths_follow_the_oci_blob_layout() {
        let digest = BlobDigest::parse(EMPTY_SHA256).unwrap();
        assert_eq!(
            digest.path_under(Path::new("/l/blobs")),
            Path::new(
                "/l/blobs/sha256/e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
            )
        );
    }
}
