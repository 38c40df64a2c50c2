//! What a connection is, from its first bytes, looked at without consuming them: a TLS
//! ClientHello (with its server name, and whether the client can speak HTTP/1.1 inside), plain
//! HTTP, or anything else.

use std::time::Duration;

use tokio::net::TcpStream;

use super::hello;

/// How long a client may stay silent before the connection counts as a protocol where the
/// server speaks first (SSH, SMTP…).
const SNIFF_WINDOW: Duration = Duration::from_millis(500);
/// Most bytes looked at to find a ClientHello or a request line.
const SNIFF_BYTES: usize = 16 * 1024;

/// What a connection's first bytes say it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Sniffed {
    Tls {
        sni: Option<String>,
        /// Whether the client can speak HTTP/1.1 inside: it offers `http/1.1` by ALPN, or
        /// offers nothing and goes to port 443. Anything else (h2-only gRPC, IMAPS…) is
        /// relayed untouched even when the gateway terminates TLS.
        http: bool,
    },
    /// A ClientHello whose server name is not a DNS name (an IP literal, a label starting with
    /// '-' or longer than 63 characters, other characters than letters, digits and '-'): the
    /// upstream still gets it, but no hostname rule can vouch for it.
    TlsUnreadableName,
    Http,
    Other,
}

/// Looks at the first bytes without consuming them.
pub(crate) async fn sniff(stream: &TcpStream, port: u16) -> Sniffed {
    let mut buf = vec![0u8; SNIFF_BYTES];
    let deadline = tokio::time::Instant::now() + SNIFF_WINDOW;
    let mut seen = 0;
    loop {
        let n = match tokio::time::timeout_at(deadline, stream.peek(&mut buf)).await {
            Ok(Ok(n)) => n,
            Ok(Err(_)) | Err(_) => return Sniffed::Other,
        };
        if n == 0 {
            return Sniffed::Other;
        }
        if n > seen {
            seen = n;
            match classify(&buf[..n], port) {
                Some(found) => return found,
                None if n == buf.len() => return Sniffed::Other,
                None => {}
            }
        }
        // A ClientHello split over segments: wait for the rest.
        if tokio::time::Instant::now() >= deadline {
            return Sniffed::Other;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// `None` while more bytes are needed to tell.
pub(super) fn classify(bytes: &[u8], port: u16) -> Option<Sniffed> {
    if bytes[0] == 0x16 {
        let mut acceptor = rustls::server::Acceptor::default();
        let mut reader = bytes;
        if acceptor.read_tls(&mut reader).is_err() {
            return Some(Sniffed::Other);
        }
        return match acceptor.accept() {
            Ok(Some(accepted)) => {
                let hello = accepted.client_hello();
                if hello.server_name().is_none() && hello::has_server_name(bytes) {
                    return Some(Sniffed::TlsUnreadableName);
                }
                let http = match hello.alpn() {
                    Some(mut offered) => offered.any(|p| p == b"http/1.1"),
                    None => port == 443,
                };
                Some(Sniffed::Tls {
                    sni: hello.server_name().map(str::to_owned),
                    http,
                })
            }
            Ok(None) => None,
            // rustls refuses some names outright; the upstream would still get them.
            Err(_) if hello::has_server_name(bytes) => Some(Sniffed::TlsUnreadableName),
            Err(_) => Some(Sniffed::Other),
        };
    }
    let method_len = bytes.iter().take_while(|b| b.is_ascii_uppercase()).count();
    match bytes.get(method_len) {
        Some(b' ') if (3..=7).contains(&method_len) => Some(Sniffed::Http),
        None if method_len == bytes.len() && method_len < 8 => None,
        _ => Some(Sniffed::Other),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn first_bytes_tell_http_from_other_protocols() {
        assert_eq!(classify(b"GET / HTTP/1.1\r\n", 80), Some(Sniffed::Http));
        assert_eq!(
            classify(b"POST /v1/messages HTTP/1.1\r\n", 8080),
            Some(Sniffed::Http)
        );
        assert_eq!(classify(b"PO", 80), None);
        assert_eq!(
            classify(b"SSH-2.0-OpenSSH_9.2\r\n", 22),
            Some(Sniffed::Other)
        );
        assert_eq!(classify(b"\x00\x01binary", 5432), Some(Sniffed::Other));
        // A TLS record header without the rest of the ClientHello: wait for more.
        assert_eq!(classify(&[0x16, 0x03, 0x01, 0x00, 0x40, 0x01], 443), None);
    }

    /// The ClientHello a rustls client offering `alpn` sends to `name`.
    fn client_hello(name: &str, alpn: &[&[u8]]) -> Vec<u8> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let name = rustls::pki_types::ServerName::try_from(name.to_owned()).unwrap();
        let mut client = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
        let mut bytes = Vec::new();
        client.write_tls(&mut bytes).unwrap();
        bytes
    }

    #[test]
    fn tls_is_terminated_only_for_clients_that_speak_http_1_1() {
        let tls = |alpn: &[&[u8]], port| classify(&client_hello("llm.test", alpn), port);
        let sni = Some("llm.test".to_owned());
        assert_eq!(
            tls(&[b"h2", b"http/1.1"], 443),
            Some(Sniffed::Tls {
                sni: sni.clone(),
                http: true
            })
        );
        assert_eq!(
            tls(&[b"h2"], 443),
            Some(Sniffed::Tls {
                sni: sni.clone(),
                http: false
            })
        );
        assert_eq!(
            tls(&[], 443),
            Some(Sniffed::Tls {
                sni: sni.clone(),
                http: true
            })
        );
        assert_eq!(tls(&[], 993), Some(Sniffed::Tls { sni, http: false }));
    }

    /// A server name rustls will not read is still a server name: it must not pass for a
    /// hello without one, which the names the sandbox resolved would decide.
    #[test]
    fn a_server_name_that_is_not_a_dns_name_is_told_apart_from_none() {
        let hello = client_hello("llm.test", &[b"http/1.1"]);
        let at = hello.windows(8).position(|w| w == b"llm.test").unwrap();
        for bad in [&b"-lm.test"[..], b"10.0.0.1", b"llm!test", b"llm test"] {
            let mut crafted = hello.clone();
            crafted[at..at + 8].copy_from_slice(bad);
            assert_eq!(
                classify(&crafted, 443),
                Some(Sniffed::TlsUnreadableName),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        // A 64-character label: the extension grows, and so do the lengths around it.
        let long = format!("{}.test", "a".repeat(64));
        // The same hello `at` was found in: rustls orders extensions differently each time.
        let mut crafted = hello.clone();
        let grow = long.len() - "llm.test".len();
        // Record, handshake, extensions block, extension, name list and name lengths.
        let mut extensions = 5 + 4 + 2 + 32;
        extensions += 1 + usize::from(crafted[extensions]);
        extensions += 2 + usize::from(u16::from_be_bytes([
            crafted[extensions],
            crafted[extensions + 1],
        ]));
        extensions += 1 + usize::from(crafted[extensions]);
        crafted.splice(at..at + 8, long.bytes());
        for (offset, width) in [
            (3, 2),
            (6, 3),
            (extensions, 2),
            (at - 7, 2),
            (at - 5, 2),
            (at - 2, 2),
        ] {
            let field = &mut crafted[offset..offset + width];
            let mut value = field.iter().fold(0usize, |v, b| v << 8 | usize::from(*b));
            value += grow;
            for (i, byte) in field.iter_mut().rev().enumerate() {
                *byte = (value >> (8 * i)) as u8;
            }
        }
        assert_eq!(classify(&crafted, 443), Some(Sniffed::TlsUnreadableName));
        // Without the extension at all, a hello is just a hello with no name.
        let no_name = {
            let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth();
            let ip = rustls::pki_types::ServerName::try_from("192.0.2.1").unwrap();
            let mut client = rustls::ClientConnection::new(Arc::new(config), ip).unwrap();
            let mut bytes = Vec::new();
            client.write_tls(&mut bytes).unwrap();
            bytes
        };
        assert_eq!(
            classify(&no_name, 443),
            Some(Sniffed::Tls {
                sni: None,
                http: true
            })
        );
    }
}
