//! Where credentials go in a request, as pure functions: the header each LLM provider
//! documents for its key, every place a provider may read a key from (which `ProviderAuth`
//! clears of the agent's placeholder), and editing one parameter of a URL's query without
//! touching the rest of it.
//!
//! SDKs differ on where they put a key (one Anthropic SDK sends `x-api-key`, a later one
//! `Authorization: Bearer`), and a provider may read either; so the gateway removes them all
//! and sets the one the provider documents.

use crate::usage::Provider;

/// Request headers some provider reads an API key from, lower case.
pub(crate) const KEY_HEADERS: [&str; 4] =
    ["authorization", "x-api-key", "api-key", "x-goog-api-key"];

/// Query parameters some provider reads an API key from.
pub(crate) const KEY_PARAMS: [&str; 1] = ["key"];

/// Where a provider documents its API key: a header, and what precedes the key in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProviderKey {
    pub(crate) header: &'static str,
    pub(crate) prefix: &'static str,
}

/// The header `provider`'s API reference documents for its key.
///
/// Anthropic: `x-api-key: <key>`; OpenAI: `Authorization: Bearer <key>`; Azure OpenAI:
/// `api-key: <key>`.
pub(crate) fn documented(provider: Provider) -> ProviderKey {
    match provider {
        Provider::Anthropic => ProviderKey {
            header: "x-api-key",
            prefix: "",
        },
        Provider::OpenAi => ProviderKey {
            header: "authorization",
            prefix: "Bearer ",
        },
        Provider::AzureOpenAi => ProviderKey {
            header: "api-key",
            prefix: "",
        },
    }
}

/// `query` (without its `?`) with every parameter whose decoded name is in `names` removed;
/// the names removed, once each, in the order of `names`.
pub(crate) fn remove_params(query: &str, names: &[&str]) -> (String, Vec<String>) {
    let mut removed: Vec<String> = Vec::new();
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .filter(|pair| {
            let name = decode(pair.split_once('=').map_or(*pair, |(n, _)| n));
            let matched = names.iter().any(|n| *n == name);
            if matched && !removed.contains(&name) {
                removed.push(name);
            }
            !matched
        })
        .collect();
    removed.sort_by_key(|r| names.iter().position(|n| n == r));
    (kept.join("&"), removed)
}

/// `query` (without its `?`, possibly empty) with `name=value` appended, `value` escaped.
pub(crate) fn append_param(query: &str, name: &str, value: &[u8]) -> String {
    let pair = format!("{}={}", encode(name.as_bytes()), encode(value));
    if query.is_empty() {
        pair
    } else {
        format!("{query}&{pair}")
    }
}

/// `query` with the value of every parameter named in `names` shown as `redacted`, for
/// records and spans.
pub(crate) fn redact_params(query: &str, names: &[&str]) -> String {
    query
        .split('&')
        .map(|pair| {
            let name = pair.split_once('=').map_or(pair, |(n, _)| n);
            if names.iter().any(|n| *n == decode(name)) {
                format!("{name}=redacted")
            } else {
                pair.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// Percent-decodes `text` (and `+` as a space, as forms do), lossily.
fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Percent-encodes everything but unreserved URL characters.
fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_parameter_goes_however_it_is_spelled() {
        let (kept, removed) = remove_params("a=1&key=x&b=2&k%65y=y&KEY=z", &["key"]);
        assert_eq!(kept, "a=1&b=2&KEY=z");
        assert_eq!(removed, ["key"]);
        let (kept, removed) = remove_params("", &["key"]);
        assert_eq!((kept.as_str(), removed.len()), ("", 0));
        let (kept, removed) = remove_params("key", &["key", "a"]);
        assert_eq!((kept.as_str(), removed), ("", vec!["key".to_owned()]));
    }

    #[test]
    fn a_key_is_appended_escaped_and_redacted_in_records() {
        assert_eq!(append_param("", "key", b"sk 1/&="), "key=sk%201%2F%26%3D");
        assert_eq!(append_param("a=1", "key", b"k"), "a=1&key=k");
        assert_eq!(
            redact_params("a=1&key=secret&k%65y=s2", &["key"]),
            "a=1&key=redacted&k%65y=redacted"
        );
        assert_eq!(redact_params("a=1", &["key"]), "a=1");
    }

    #[test]
    fn percent_escapes_decode_and_broken_ones_stay() {
        assert_eq!(decode("k%65y"), "key");
        assert_eq!(decode("a+b"), "a b");
        assert_eq!(decode("100%"), "100%");
        assert_eq!(decode("%4"), "%4");
        assert_eq!(decode("%zz"), "%zz");
    }

    #[test]
    fn providers_document_their_own_header() {
        assert_eq!(documented(Provider::Anthropic).header, "x-api-key");
        let openai = documented(Provider::OpenAi);
        assert_eq!((openai.header, openai.prefix), ("authorization", "Bearer "));
        assert_eq!(documented(Provider::AzureOpenAi).header, "api-key");
        for p in [Provider::Anthropic, Provider::OpenAi, Provider::AzureOpenAi] {
            assert!(KEY_HEADERS.contains(&documented(p).header));
        }
    }
}
