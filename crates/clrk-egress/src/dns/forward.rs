//! Forwarding a permitted question to the host's resolver (UDP, again over TCP when the answer
//! was truncated) and finding that resolver in `/etc/resolv.conf`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use super::message::{HEADER_LEN, TC_BIT, is_answer_to, packet_error};
use crate::EgressError;

/// Sends `query` to `upstream` over UDP from a fresh ephemeral socket and returns the answer,
/// waiting at most `timeout` in all. Packets from other addresses or with another id are
/// ignored. A truncated answer (TC bit) is asked again over TCP, within the same `timeout`.
///
/// The query goes out under a random id of clrk's choosing, not the sandbox's, so the sandbox
/// cannot make forged answers easier to guess; the answer returned carries the sandbox's id
/// again. An answer fetched over TCP may be larger than the sandbox's UDP payload size.
///
/// ```no_run
/// # async fn run(query: Vec<u8>) -> Result<(), clrk_egress::EgressError> {
/// use std::time::Duration;
/// let upstream = "127.0.0.53:53".parse().unwrap();
/// let answer = clrk_egress::dns::forward(upstream, &query, Duration::from_secs(5)).await?;
/// let addresses = clrk_egress::dns::addresses(&answer);
/// # Ok(()) }
/// ```
pub async fn forward(
    upstream: SocketAddr,
    query: &[u8],
    timeout: Duration,
) -> Result<Vec<u8>, EgressError> {
    if query.len() < HEADER_LEN {
        return Err(packet_error("shorter than a DNS header"));
    }
    let sandbox_id = [query[0], query[1]];
    let id: u16 = rand::random();
    let mut outgoing = query.to_vec();
    outgoing[..2].copy_from_slice(&id.to_be_bytes());

    let exchange = async {
        let answer = over_udp(upstream, &outgoing, id).await?;
        if answer[2] & TC_BIT == 0 {
            return Ok(answer);
        }
        tracing::debug!(%upstream, "truncated DNS answer, asking again over TCP");
        over_tcp(upstream, &outgoing, id).await
    };
    let mut answer = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| EgressError::DnsTimeout { upstream, timeout })??;
    answer[..2].copy_from_slice(&sandbox_id);
    Ok(answer)
}

/// Where the host's resolver is: the first usable `nameserver` of `/etc/resolv.conf`-formatted
/// text, on port 53. An IPv6 address may carry a zone (`fe80::1%eth0` or `fe80::1%2`); an entry
/// whose zone names no interface of this host is skipped.
///
/// ```
/// use clrk_egress::dns::nameserver_from_resolv_conf;
/// let text = "# from DHCP\noptions edns0 trust-ad\nnameserver 127.0.0.53\nnameserver 1.1.1.1\n";
/// assert_eq!(nameserver_from_resolv_conf(text), Some("127.0.0.53:53".parse().unwrap()));
/// assert_eq!(nameserver_from_resolv_conf("search example.com\n"), None);
/// ```
pub fn nameserver_from_resolv_conf(text: &str) -> Option<SocketAddr> {
    text.lines().find_map(|line| {
        let line = line.split(['#', ';']).next().unwrap_or_default();
        let mut words = line.split_whitespace();
        if words.next() != Some("nameserver") {
            return None;
        }
        nameserver_address(words.next()?)
    })
}

/// One query-and-answer over UDP with `upstream`.
async fn over_udp(upstream: SocketAddr, query: &[u8], id: u16) -> Result<Vec<u8>, EgressError> {
    let upstream_error = |source| EgressError::DnsUpstream { upstream, source };
    let local: SocketAddr = match upstream {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local).await.map_err(upstream_error)?;
    // Connected, so the kernel drops other senders' packets and reports an unreachable resolver
    // (ICMP port unreachable) at once instead of after the timeout.
    socket.connect(upstream).await.map_err(upstream_error)?;
    socket.send(query).await.map_err(upstream_error)?;
    let mut buf = vec![0u8; usize::from(u16::MAX)];
    loop {
        let (len, from) = socket.recv_from(&mut buf).await.map_err(upstream_error)?;
        let packet = &buf[..len];
        if from.ip() != upstream.ip() || from.port() != upstream.port() {
            tracing::debug!(%upstream, %from, "ignoring a DNS packet from another address");
            continue;
        }
        if !is_answer_to(packet, id) {
            tracing::debug!(%upstream, len, "ignoring a DNS packet that does not answer the query");
            continue;
        }
        return Ok(packet.to_vec());
    }
}

/// One query-and-answer over TCP with `upstream` (RFC 1035 4.2.2: each message preceded by
/// its length).
async fn over_tcp(upstream: SocketAddr, query: &[u8], id: u16) -> Result<Vec<u8>, EgressError> {
    let upstream_error = |source| EgressError::DnsUpstream { upstream, source };
    let len =
        u16::try_from(query.len()).map_err(|_| packet_error("query longer than 65535 bytes"))?;
    let mut stream = TcpStream::connect(upstream).await.map_err(upstream_error)?;
    let mut framed = Vec::with_capacity(2 + query.len());
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(query);
    stream.write_all(&framed).await.map_err(upstream_error)?;
    let len = stream.read_u16().await.map_err(upstream_error)?;
    let mut answer = vec![0u8; usize::from(len)];
    stream
        .read_exact(&mut answer)
        .await
        .map_err(upstream_error)?;
    if !is_answer_to(&answer, id) {
        return Err(upstream_error(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "the answer over TCP does not match the query",
        )));
    }
    Ok(answer)
}

/// A `nameserver` value as a socket address on port 53.
fn nameserver_address(word: &str) -> Option<SocketAddr> {
    if let Ok(ip) = word.parse::<IpAddr>() {
        return Some(SocketAddr::new(ip, 53));
    }
    let (ip, zone) = word.split_once('%')?;
    let ip: Ipv6Addr = ip.parse().ok()?;
    let scope = match zone.parse::<u32>() {
        Ok(index) => index,
        Err(_) => interface_index(zone)?,
    };
    Some(SocketAddr::V6(SocketAddrV6::new(ip, 53, 0, scope)))
}

/// The index of the interface named `name`, if the host has it.
fn interface_index(name: &str) -> Option<u32> {
    let interfaces = if_addrs::get_if_addrs()
        .inspect_err(|error| tracing::warn!(%error, "cannot list network interfaces"))
        .ok()?;
    interfaces.into_iter().find(|i| i.name == name)?.index
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::message::addresses;
    use std::time::Instant;

    use crate::dns::testing::{cname_answer, query, query_message};
    use hickory_proto::op::{Message, OpCode};
    use hickory_proto::rr::RecordType;
    use tokio::net::TcpListener;

    #[tokio::test]
    async fn forward_returns_the_matching_answer_and_ignores_strays() {
        let upstream = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let upstream_addr = upstream.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let mut buf = [0u8; 512];
            let (len, client) = upstream.recv_from(&mut buf).await.unwrap();
            let request = Message::from_vec(&buf[..len]).unwrap();
            let id = request.metadata.id;
            let stray = cname_answer(&request, id.wrapping_add(1), Ipv4Addr::new(6, 6, 6, 6));
            upstream.send_to(&stray, client).await.unwrap();
            let elsewhere = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let forged = cname_answer(&request, id, Ipv4Addr::new(7, 7, 7, 7));
            elsewhere.send_to(&forged, client).await.unwrap();
            let real = cname_answer(&request, id, Ipv4Addr::new(93, 184, 216, 34));
            upstream.send_to(&real, client).await.unwrap();
        });

        let packet = query(4321, "www.example.com.", RecordType::A);
        let answer = forward(upstream_addr, &packet, Duration::from_secs(10))
            .await
            .unwrap();
        server.await.unwrap();

        let message = Message::from_vec(&answer).unwrap();
        assert_eq!(message.metadata.id, 4321, "the sandbox's id is restored");
        assert_eq!(
            message.queries,
            query_message(0, "www.example.com.", RecordType::A).queries
        );
        assert_eq!(
            addresses(&answer),
            vec![(IpAddr::V4(Ipv4Addr::new(93, 184, 216, 34)), 60)]
        );
    }

    #[tokio::test]
    async fn forward_asks_again_over_tcp_when_truncated() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let upstream_addr = listener.local_addr().unwrap();
        let upstream = UdpSocket::bind(upstream_addr).await.unwrap();
        let server = tokio::spawn(async move {
            let mut buf = [0u8; 512];
            let (len, client) = upstream.recv_from(&mut buf).await.unwrap();
            let request = Message::from_vec(&buf[..len]).unwrap();
            let mut truncated = Message::response(request.metadata.id, OpCode::Query);
            truncated.metadata.truncation = true;
            truncated.add_queries(request.queries.clone());
            upstream
                .send_to(&truncated.to_vec().unwrap(), client)
                .await
                .unwrap();

            let (mut stream, _) = listener.accept().await.unwrap();
            let len = stream.read_u16().await.unwrap();
            let mut body = vec![0u8; usize::from(len)];
            stream.read_exact(&mut body).await.unwrap();
            let request = Message::from_vec(&body).unwrap();
            let full = cname_answer(&request, request.metadata.id, Ipv4Addr::new(1, 2, 3, 4));
            let mut framed = u16::try_from(full.len()).unwrap().to_be_bytes().to_vec();
            framed.extend_from_slice(&full);
            stream.write_all(&framed).await.unwrap();
        });

        let packet = query(99, "www.example.com.", RecordType::A);
        let answer = forward(upstream_addr, &packet, Duration::from_secs(10))
            .await
            .unwrap();
        server.await.unwrap();
        assert_eq!(Message::from_vec(&answer).unwrap().metadata.id, 99);
        assert_eq!(
            addresses(&answer),
            vec![(IpAddr::V4(Ipv4Addr::new(1, 2, 3, 4)), 60)]
        );
    }

    #[tokio::test]
    async fn forward_times_out_when_the_upstream_is_silent() {
        let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let packet = query(1, "www.example.com.", RecordType::A);
        let started = Instant::now();
        let result = forward(
            silent.local_addr().unwrap(),
            &packet,
            Duration::from_millis(300),
        )
        .await;
        assert!(
            matches!(result, Err(EgressError::DnsTimeout { .. })),
            "{result:?}"
        );
        assert!(started.elapsed() >= Duration::from_millis(300));
    }

    #[tokio::test]
    async fn forward_rejects_a_packet_shorter_than_a_header() {
        let result = forward(
            "127.0.0.1:53".parse().unwrap(),
            b"\x00\x01",
            Duration::from_secs(1),
        )
        .await;
        assert!(
            matches!(result, Err(EgressError::DnsPacket { .. })),
            "{result:?}"
        );
    }

    #[test]
    fn resolv_conf_first_nameserver_skipping_comments_and_options() {
        let text = "\
# nameserver 10.9.9.9
; nameserver 10.8.8.8
search corp.example
options ndots:2 timeout:1
nameserver 10.0.0.2 # the VPC resolver
nameserver 10.0.0.3
";
        assert_eq!(
            nameserver_from_resolv_conf(text),
            Some("10.0.0.2:53".parse().unwrap())
        );
        assert_eq!(nameserver_from_resolv_conf(""), None);
        assert_eq!(
            nameserver_from_resolv_conf("nameserver\nnameserver bogus\n"),
            None
        );
    }

    #[test]
    fn resolv_conf_ipv6_with_and_without_zone() {
        assert_eq!(
            nameserver_from_resolv_conf("nameserver 2001:4860:4860::8888\n"),
            Some("[2001:4860:4860::8888]:53".parse().unwrap())
        );
        assert_eq!(
            nameserver_from_resolv_conf("nameserver fe80::1%3\n"),
            Some(SocketAddr::V6(SocketAddrV6::new(
                "fe80::1".parse().unwrap(),
                53,
                0,
                3
            )))
        );
        // The loopback interface's name differs between systems; use whatever this host calls it.
        let loopback = if_addrs::get_if_addrs()
            .unwrap()
            .into_iter()
            .find(|i| i.is_loopback() && i.index.is_some());
        if let Some(lo) = loopback {
            let text = format!("nameserver fe80::1%{}\n", lo.name);
            assert_eq!(
                nameserver_from_resolv_conf(&text),
                Some(SocketAddr::V6(SocketAddrV6::new(
                    "fe80::1".parse().unwrap(),
                    53,
                    0,
                    lo.index.unwrap()
                )))
            );
        }
        assert_eq!(
            nameserver_from_resolv_conf(
                "nameserver fe80::1%no-such-interface0\nnameserver 10.0.0.2\n"
            ),
            Some("10.0.0.2:53".parse().unwrap())
        );
    }
}
