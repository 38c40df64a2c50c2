//! Listeners of the metadata service on `169.254.169.254` and `fd00:ec2::254`.
//!
//! Those addresses exist only on the host ends of sandbox veths, which come and go with
//! sandboxes, so the sockets bind with `IP_FREEBIND`: they listen before any sandbox exists
//! and receive only what reaches those addresses. Each clrk process takes its own port; the
//! host firewall redirects a sandbox's connections to port 80 to the port of the clrk that
//! owns it, so several servers on one host never answer each other's sandboxes.

use std::net::{IpAddr, SocketAddr};

use clrk_sandbox::{METADATA_V4, METADATA_V6};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;

/// Attempts at finding a port free on both addresses.
const ATTEMPTS: usize = 16;

/// Binds the metadata listeners on one port free on both addresses; returns them and the
/// port. An error means Metadata-mode agents cannot be served.
pub fn bind() -> std::io::Result<(Vec<TcpListener>, u16)> {
    let mut last_error = None;
    for _ in 0..ATTEMPTS {
        let v4 = bind_one(SocketAddr::new(IpAddr::V4(METADATA_V4), 0))?;
        let port = v4.local_addr()?.port();
        match bind_one(SocketAddr::new(IpAddr::V6(METADATA_V6), port)) {
            Ok(v6) => return Ok((vec![v4, v6], port)),
            Err(error) => last_error = Some(error),
        }
    }
    Err(last_error.unwrap_or_else(|| std::io::Error::other("no port free on both addresses")))
}

fn bind_one(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    match addr {
        SocketAddr::V4(_) => socket.set_freebind_v4(true)?,
        SocketAddr::V6(_) => {
            socket.set_only_v6(true)?;
            socket.set_freebind_v6(true)?;
        }
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}
