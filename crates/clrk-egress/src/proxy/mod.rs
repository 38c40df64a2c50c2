//! The transparent proxy: TCP connections by what their first bytes say ([`tcp`], with
//! `sniff` and `hello` reading them), HTTP requests in the clear or inside terminated TLS
//! ([`http`]), and what both need to reach upstream servers (a connection pool, TLS trust,
//! relayed bytes, bounded request bodies).

pub(crate) mod body;
#[cfg(test)]
mod fuzz;
mod hello;
pub(crate) mod http;
pub(crate) mod relay;
mod sniff;
pub(crate) mod tcp;
pub(crate) mod tls;
pub(crate) mod upstream;
