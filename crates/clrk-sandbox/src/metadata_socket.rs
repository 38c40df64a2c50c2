//! Sockets for clrk's listeners on the metadata addresses.
//!
//! Those addresses exist only on the host ends of sandbox veths, which come and go with
//! sandboxes, so the sockets bind with `IP_FREEBIND`: they listen before any sandbox exists
//! and receive only what reaches those addresses. The firewall redirects to one port per clrk
//! process for both families, so each pair shares a port.

use std::net::{IpAddr, SocketAddr};

use socket2::{Domain, Protocol, Socket, Type};

use crate::addresses::{METADATA_V4, METADATA_V6};

/// Attempts at finding a port free on both addresses.
const ATTEMPTS: usize = 16;

/// Two non-blocking sockets of `ty` (listening if streams) on one port, on
/// `169.254.169.254` and `fd00:ec2::254` in that order.
///
/// ```no_run
/// use socket2::{Protocol, Type};
/// let [v4, v6] = clrk_sandbox::bind_metadata_pair(Type::STREAM, Protocol::TCP).unwrap();
/// let port = v4.local_addr().unwrap().as_socket().unwrap().port();
/// assert_eq!(v6.local_addr().unwrap().as_socket().unwrap().port(), port);
/// ```
pub fn bind_metadata_pair(ty: Type, protocol: Protocol) -> std::io::Result<[Socket; 2]> {
    let mut last_error = None;
    for _ in 0..ATTEMPTS {
        let v4 = bind_one(SocketAddr::new(IpAddr::V4(METADATA_V4), 0), ty, protocol)?;
        let port = v4
            .local_addr()?
            .as_socket()
            .map(|a| a.port())
            .unwrap_or_default();
        match bind_one(SocketAddr::new(IpAddr::V6(METADATA_V6), port), ty, protocol) {
            Ok(v6) => return Ok([v4, v6]),
            Err(error) => last_error = Some(error),
        }
    }
    Err(last_error.unwrap_or_else(|| std::io::Error::other("no port free on both addresses")))
}

fn bind_one(addr: SocketAddr, ty: Type, protocol: Protocol) -> std::io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), ty, Some(protocol))?;
    match addr {
        SocketAddr::V4(_) => socket.set_freebind_v4(true)?,
        SocketAddr::V6(_) => {
            socket.set_only_v6(true)?;
            socket.set_freebind_v6(true)?;
        }
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    if ty == Type::STREAM {
        socket.listen(1024)?;
    }
    Ok(socket)
}
