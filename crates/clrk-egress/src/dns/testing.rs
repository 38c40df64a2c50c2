//! Queries and answers the DNS modules' tests build.

use std::net::Ipv4Addr;

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::rdata::{A, CNAME};
use hickory_proto::rr::{Name, RData, Record, RecordType};

pub(super) fn name(text: &str) -> Name {
    Name::from_ascii(text).unwrap()
}

pub(super) fn query_message(id: u16, qname: &str, record_type: RecordType) -> Message {
    let mut query = Message::new(id, MessageType::Query, OpCode::Query);
    query.metadata.recursion_desired = true;
    query.add_query(Query::query(name(qname), record_type));
    query
}

pub(super) fn query(id: u16, qname: &str, record_type: RecordType) -> Vec<u8> {
    query_message(id, qname, record_type).to_vec().unwrap()
}

/// An upstream's answer to `request`: www.example.com → CNAME edge.example.net → CNAME
/// edge-2.example.net → A `ip`.
pub(super) fn cname_answer(request: &Message, id: u16, ip: Ipv4Addr) -> Vec<u8> {
    let mut answer = Message::response(id, OpCode::Query);
    answer.metadata.recursion_available = true;
    answer.add_queries(request.queries.clone());
    let www = request.queries[0].name().clone();
    answer.add_answer(Record::from_rdata(
        www,
        300,
        RData::CNAME(CNAME(name("edge.example.net."))),
    ));
    answer.add_answer(Record::from_rdata(
        name("edge.example.net."),
        200,
        RData::CNAME(CNAME(name("edge-2.example.net."))),
    ));
    answer.add_answer(Record::from_rdata(
        name("edge-2.example.net."),
        60,
        RData::A(A(ip)),
    ));
    answer.to_vec().unwrap()
}
