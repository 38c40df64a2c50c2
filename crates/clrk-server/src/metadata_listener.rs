//! Listeners of the metadata service on `169.254.169.254` and `fd00:ec2::254`.
//!
//! Those addresses exist only on the host ends of sandbox veths, which come and go with
//! sandboxes, so the sockets bind with `IP_FREEBIND`: they listen before any sandbox exists
//! and receive only what reaches those addresses. Each clrk process takes its own port; the
//! host firewall redirects a sandbox's connections to port 80 to the port of the clrk that
//! owns it, so several servers on one host never answer each other's sandboxes.

use socket2::{Protocol, Type};
use tokio::net::TcpListener;

/// Binds the metadata listeners on one port free on both addresses; returns them and the
/// port. An error means Metadata-mode agents cannot be served.
pub fn bind() -> std::io::Result<(Vec<TcpListener>, u16)> {
    let [v4, v6] = clrk_sandbox::bind_metadata_pair(Type::STREAM, Protocol::TCP)?;
    let listeners = vec![
        TcpListener::from_std(v4.into())?,
        TcpListener::from_std(v6.into())?,
    ];
    let port = listeners[0].local_addr()?.port();
    Ok((listeners, port))
}
