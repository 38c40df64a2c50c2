//! A DNS server for tests: answers the names it is given with their addresses (A or AAAA as
//! asked; a known name without an address of the asked type gets an empty answer), says every
//! other name does not exist, and remembers every name it was asked about.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{RData, Record, RecordType};

/// Serves `names` (name → addresses) on UDP `bind` until the test's runtime ends; returns the
/// address it listens on and the names asked so far.
pub async fn dns_server_on(
    bind: SocketAddr,
    names: Vec<(&'static str, Vec<IpAddr>)>,
) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let asked: Arc<Mutex<Vec<String>>> = Arc::default();
    let log = Arc::clone(&asked);
    let socket = tokio::net::UdpSocket::bind(bind).await.unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        loop {
            let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
                return;
            };
            let Ok(query) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let mut answer = Message::response(query.metadata.id, query.metadata.op_code);
            answer.metadata.recursion_available = true;
            answer.metadata.recursion_desired = query.metadata.recursion_desired;
            answer.add_queries(query.queries.clone());
            let q = &query.queries[0];
            let name = q.name().to_ascii().trim_end_matches('.').to_string();
            log.lock().unwrap().push(name.clone());
            match names.iter().find(|(known, _)| *known == name) {
                None => answer.metadata.response_code = ResponseCode::NXDomain,
                Some((_, addresses)) => {
                    for address in addresses {
                        let data = match (address, q.query_type()) {
                            (IpAddr::V4(v4), RecordType::A) => RData::A(A(*v4)),
                            (IpAddr::V6(v6), RecordType::AAAA) => RData::AAAA(AAAA(*v6)),
                            _ => continue,
                        };
                        answer.add_answer(Record::from_rdata(q.name().clone(), 60, data));
                    }
                }
            }
            answer.metadata.message_type = MessageType::Response;
            let _ = socket.send_to(&answer.to_vec().unwrap(), peer).await;
        }
    });
    (addr, asked)
}
