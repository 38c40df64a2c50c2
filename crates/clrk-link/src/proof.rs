//! The proofs each end of a link gives that it holds the cluster secret.
//!
//! Once the TLS 1.3 handshake is done, both ends export the same 32 bytes from the session
//! (label [`EXPORTER_LABEL`], no context): a value only the two ends of that one session know.
//! The dialer's proof is `HMAC-SHA256(secret, "clrk-link v1 dialer" ‖ exported)`, the
//! listener's the same with `listener`. The dialer sends its proof with every request and the
//! listener checks it before serving; the listener sends its proof with every response and the
//! dialer checks it before believing a byte. Different labels keep one side's proof from being
//! reflected as the other's; the exported value changes with every session, so a proof seen on
//! one connection is useless on any other.

use aws_lc_rs::hmac;

use crate::ClusterSecret;

/// The TLS exporter label of the link (RFC 8446 §7.5).
pub const EXPORTER_LABEL: &[u8] = b"EXPORTER-clrk-link";

/// Which end of a connection a proof is from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The end that opened the connection and sends requests (a server).
    Dialer,
    /// The end that accepted it and answers (a worker).
    Listener,
}

impl Side {
    fn label(self) -> &'static [u8] {
        match self {
            Side::Dialer => b"clrk-link v1 dialer",
            Side::Listener => b"clrk-link v1 listener",
        }
    }
}

/// The proofs of one TLS session, computed once per connection.
#[derive(Clone)]
pub struct SessionProofs {
    key: hmac::Key,
    exported: [u8; 32],
}

impl SessionProofs {
    /// The proofs for a session whose exported keying material is `exported`.
    pub fn new(secret: &ClusterSecret, exported: [u8; 32]) -> SessionProofs {
        SessionProofs {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret.bytes()),
            exported,
        }
    }

    /// The proof `side` sends, as the hex text of the header.
    ///
    /// ```
    /// use clrk_link::proof::{SessionProofs, Side};
    /// let secret = clrk_link::ClusterSecret::from_bytes(&[7; 32]).unwrap();
    /// let session = SessionProofs::new(&secret, [1; 32]);
    /// let proof = session.proof(Side::Dialer);
    /// assert!(session.verify(Side::Dialer, proof.as_bytes()));
    /// assert!(!session.verify(Side::Listener, proof.as_bytes()));
    /// ```
    pub fn proof(&self, side: Side) -> String {
        hex::encode(hmac::sign(&self.key, &self.message(side)).as_ref())
    }

    /// Whether `header` is `side`'s proof for this session, compared in constant time.
    pub fn verify(&self, side: Side, header: &[u8]) -> bool {
        let Ok(tag) = hex::decode(header) else {
            return false;
        };
        hmac::verify(&self.key, &self.message(side), &tag).is_ok()
    }

    fn message(&self, side: Side) -> Vec<u8> {
        let mut message = side.label().to_vec();
        message.extend_from_slice(&self.exported);
        message
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(byte: u8) -> ClusterSecret {
        ClusterSecret::from_bytes(&[byte; 32]).unwrap()
    }

    #[test]
    fn a_proof_holds_only_for_its_secret_session_and_side() {
        let session = SessionProofs::new(&secret(1), [9; 32]);
        let dialer = session.proof(Side::Dialer);
        assert_eq!(dialer.len(), 64);
        assert!(session.verify(Side::Dialer, dialer.as_bytes()));
        // The other side's proof, another secret, another session: all refused.
        assert!(!session.verify(Side::Listener, dialer.as_bytes()));
        let other_secret = SessionProofs::new(&secret(2), [9; 32]);
        assert!(!other_secret.verify(Side::Dialer, dialer.as_bytes()));
        let other_session = SessionProofs::new(&secret(1), [8; 32]);
        assert!(!other_session.verify(Side::Dialer, dialer.as_bytes()));
    }

    #[test]
    fn malformed_headers_are_refused() {
        let session = SessionProofs::new(&secret(1), [9; 32]);
        let proof = session.proof(Side::Listener);
        for bad in [
            "",
            "zz",
            &proof[..62],
            &format!("{proof}00"),
            &proof.to_uppercase()[..10],
        ] {
            assert!(!session.verify(Side::Listener, bad.as_bytes()), "{bad:?}");
        }
    }
}
