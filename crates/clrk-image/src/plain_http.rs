//! Which registries are spoken to over plain HTTP: those named by `--insecure-registry`, and,
//! as docker does, every registry on this machine's loopback (`localhost`, `127.0.0.0/8`,
//! `::1`), which never crosses a network.

use std::net::IpAddr;

/// Whether `registry` (`host` or `host:port`, as written in references) is on loopback.
///
/// ```
/// # use clrk_image::is_loopback_registry;
/// assert!(is_loopback_registry("localhost:5000"));
/// assert!(is_loopback_registry("127.0.0.1:5000"));
/// assert!(is_loopback_registry("127.10.0.3"));
/// assert!(is_loopback_registry("[::1]:5000"));
/// assert!(!is_loopback_registry("registry.example.com:5000"));
/// assert!(!is_loopback_registry("10.0.0.1:5000"));
/// assert!(!is_loopback_registry("localhost.example.com"));
/// ```
pub fn is_loopback_registry(registry: &str) -> bool {
    let host = match registry.strip_prefix('[') {
        // `[v6]` or `[v6]:port`.
        Some(rest) => rest.split_once(']').map_or(rest, |(host, _)| host),
        None => registry.rsplit_once(':').map_or(registry, |(host, _)| host),
    };
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// What to add to a failed HTTPS request's reason when the registry seems to speak plain HTTP:
/// the flag that makes clrk use it. Empty when the reason says something else.
///
/// ```
/// # use clrk_image::plain_http_hint;
/// let hint = plain_http_hint("10.0.0.5:5000", "received corrupt message of type InvalidContentType");
/// assert_eq!(hint, "; if 10.0.0.5:5000 serves plain HTTP, start clrk with --insecure-registry 10.0.0.5:5000");
/// assert_eq!(plain_http_hint("10.0.0.5:5000", "connection refused"), "");
/// ```
pub fn plain_http_hint(registry: &str, reason: &str) -> String {
    // How rustls reports an HTTP answer to its TLS hello.
    const SIGNS: [&str; 3] = [
        "InvalidContentType",
        "corrupt message",
        "wrong version number",
    ];
    if SIGNS.iter().any(|s| reason.contains(s)) {
        format!("; if {registry} serves plain HTTP, start clrk with --insecure-registry {registry}")
    } else {
        String::new()
    }
}
