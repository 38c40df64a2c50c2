//! Whether a ClientHello carries a server name extension at all. rustls gives the name only
//! when it is a valid DNS name; a hello whose name it cannot read (an IP literal, a label
//! starting with '-' or longer than 63 characters, characters other than letters, digits and
//! '-') looks to it like one without a name, yet the upstream still receives that name. The
//! proxy must tell the two apart, so it reads the extension list itself.

/// TLS record type of a handshake message.
const HANDSHAKE_RECORD: u8 = 0x16;
/// Handshake type of a ClientHello.
const CLIENT_HELLO: u8 = 1;
/// Extension type of `server_name` (RFC 6066 §3).
const SERVER_NAME: u16 = 0;

/// Whether the ClientHello at the start of `bytes` (TLS records, as the client sent them)
/// has a `server_name` extension. `false` for anything that is not a whole ClientHello.
pub(super) fn has_server_name(bytes: &[u8]) -> bool {
    server_name_present(&handshake_bytes(bytes)).unwrap_or(false)
}

/// The handshake bytes of the leading handshake records, joined: a ClientHello may be split
/// over several records.
fn handshake_bytes(mut bytes: &[u8]) -> Vec<u8> {
    let mut joined = Vec::new();
    while let [HANDSHAKE_RECORD, _, _, high, low, rest @ ..] = bytes {
        let len = usize::from(u16::from_be_bytes([*high, *low]));
        let Some(fragment) = rest.get(..len) else {
            joined.extend_from_slice(rest);
            break;
        };
        joined.extend_from_slice(fragment);
        bytes = &rest[len..];
    }
    joined
}

/// `None` when the bytes are not a well-formed ClientHello.
fn server_name_present(handshake: &[u8]) -> Option<bool> {
    let mut r = Reader(handshake);
    if r.u8()? != CLIENT_HELLO {
        return None;
    }
    let len = r.u24()?;
    let mut hello = Reader(r.take(len)?);
    hello.take(2 + 32)?; // legacy_version, random
    let session_id = usize::from(hello.u8()?);
    hello.take(session_id)?;
    let suites = usize::from(hello.u16()?);
    hello.take(suites)?;
    let compression = usize::from(hello.u8()?);
    hello.take(compression)?;
    if hello.0.is_empty() {
        return Some(false);
    }
    let extensions = usize::from(hello.u16()?);
    let mut extensions = Reader(hello.take(extensions)?);
    while !extensions.0.is_empty() {
        let kind = extensions.u16()?;
        let len = usize::from(extensions.u16()?);
        extensions.take(len)?;
        if kind == SERVER_NAME {
            return Some(true);
        }
    }
    Some(false)
}

/// Big-endian reads off the front of a slice.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }

    fn u16(&mut self) -> Option<u16> {
        let b = self.take(2)?;
        Some(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u24(&mut self) -> Option<usize> {
        let b = self.take(3)?;
        Some(usize::from(b[0]) << 16 | usize::from(b[1]) << 8 | usize::from(b[2]))
    }
}
