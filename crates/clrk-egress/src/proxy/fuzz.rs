//! Fuzzing the first-bytes classifier with property tests. The proxy classifies the bytes it
//! has peeked so far, again after each new segment, and acts on the first answer; so the answer
//! must not depend on how TCP split the bytes: once a prefix is classified, every longer prefix
//! is classified the same. Arbitrary bytes never panic; a real ClientHello (any server name, any
//! ALPN list) and a request line, split anywhere, come out as what they are.
//!
//! The number of cases per property is small enough for CI; `PROPTEST_CASES` raises it for a
//! longer run (docs/security.md).

use std::sync::Arc;

use proptest::prelude::*;
use proptest::test_runner::Config;

use super::sniff::{Sniffed, classify};

/// `cases` per property, unless `PROPTEST_CASES` asks for another number.
fn config(cases: u32) -> Config {
    let mut config = Config::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = cases;
    }
    config
}

/// Classifies every prefix of `bytes`, as the proxy may see them, and checks that the first
/// answer is final. Returns it (`None`: still undecided at the end). The proxy never classifies
/// zero bytes (a peek of 0 bytes is the end of the connection), so prefixes start at one.
fn first_answer(bytes: &[u8], port: u16) -> Result<Option<Sniffed>, TestCaseError> {
    let mut first: Option<(usize, Sniffed)> = None;
    for len in 1..=bytes.len() {
        let answer = classify(&bytes[..len], port);
        match (&first, answer) {
            (None, Some(found)) => first = Some((len, found)),
            (Some((at, found)), again) => prop_assert_eq!(
                again.as_ref(),
                Some(found),
                "{} bytes gave {:?}, but {} bytes already gave {:?}",
                len,
                again,
                at,
                found
            ),
            (None, None) => {}
        }
    }
    Ok(first.map(|(_, found)| found))
}

/// The ClientHello a rustls client offering `alpn` sends to `name`.
fn client_hello(name: &str, alpn: &[Vec<u8>]) -> Vec<u8> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    config.alpn_protocols = alpn.to_vec();
    let name = rustls::pki_types::ServerName::try_from(name.to_owned()).unwrap();
    let mut client = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut bytes = Vec::new();
    client.write_tls(&mut bytes).unwrap();
    bytes
}

fn hostname() -> impl Strategy<Value = String> {
    // The last label starts with a letter: a numeric one would make the name an address.
    "([a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?\\.){0,4}[a-z]([a-z0-9-]{0,20}[a-z0-9])?"
}

fn alpn() -> impl Strategy<Value = Vec<Vec<u8>>> {
    let protocol = prop_oneof![
        prop::sample::select(vec!["http/1.1", "h2", "http/1.0", "imap", "grpc-exp"])
            .prop_map(|p| p.as_bytes().to_vec()),
        prop::collection::vec(any::<u8>(), 1..12),
    ];
    prop::collection::vec(protocol, 0..4)
}

proptest! {
    #![proptest_config(config(4000))]

    #[test]
    fn fuzz_classify_arbitrary_bytes_is_split_independent(
        bytes in prop_oneof![
            prop::collection::vec(any::<u8>(), 1..200),
            // A TLS handshake record header, then anything.
            prop::collection::vec(any::<u8>(), 0..200).prop_map(|mut b| {
                b.splice(0..0, [0x16, 0x03, 0x01]);
                b
            }),
        ],
        port in any::<u16>(),
    ) {
        first_answer(&bytes, port)?;
    }

    #[test]
    fn fuzz_classify_request_line_split_anywhere(
        method in "[A-Z]{3,7}",
        target in "[!-~]{1,40}",
        rest in "( HTTP/1\\.[01]\r\nHost: [a-z.]{1,20}\r\n\r\n)?",
        port in any::<u16>(),
    ) {
        let line = format!("{method} {target}{rest}");
        prop_assert_eq!(first_answer(line.as_bytes(), port)?, Some(Sniffed::Http));
    }

    #[test]
    fn fuzz_classify_client_hello_split_anywhere(
        name in hostname(),
        alpn in alpn(),
        port in prop::sample::select(vec![443u16, 8443, 993]),
    ) {
        let hello = client_hello(&name, &alpn);
        let http = if alpn.is_empty() {
            port == 443
        } else {
            alpn.iter().any(|p| p == b"http/1.1")
        };
        let expected = Sniffed::Tls { sni: Some(name), http };
        prop_assert_eq!(first_answer(&hello, port)?, Some(expected.clone()));
        // Nothing before the last byte decides.
        prop_assert_eq!(classify(&hello[..hello.len() - 1], port), None);
    }
}
