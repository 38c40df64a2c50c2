//! DNS messages between a sandbox and clrk: reading a sandbox's query into the question the
//! policy judges, the answers clrk gives itself (refusal, server failure), and the addresses an
//! upstream's answer gives. Pure functions over packets; no sockets.

use std::net::IpAddr;

use hickory_proto::op::{Edns, Message, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, RecordType};

use crate::EgressError;

/// Length of the fixed DNS header; the id is its first two bytes.
pub(super) const HEADER_LEN: usize = 12;
/// The header's QR bit (in byte 2): set on responses.
const QR_BIT: u8 = 0x80;
/// The header's TC bit (in byte 2): the answer did not fit in the UDP datagram.
pub(super) const TC_BIT: u8 = 0x02;
/// The EDNS payload size clrk's own answers advertise, the size DNS flag day 2020 settled on.
const EDNS_PAYLOAD: u16 = 1232;

/// A question from a sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsQuestion {
    /// The query's id, echoed in the answer.
    pub id: u16,
    /// The name asked about: lowercase, without the trailing dot ("" for the root).
    pub name: String,
    /// What is asked about it (A, AAAA, MX…).
    pub record_type: RecordType,
}

/// Parses a sandbox's query packet. Anything but a standard query (QUERY opcode, QR clear) of
/// class IN with exactly one question is an error, as is a name with characters outside
/// letters, digits, `-` and `_`: such names could not match an allowlist entry anyway, and
/// refusing them keeps escaped spellings from reaching the policy.
///
/// ```
/// use clrk_egress::dns::parse_query;
/// use hickory_proto::op::{Message, MessageType, OpCode, Query};
/// use hickory_proto::rr::{Name, RecordType};
///
/// let mut query = Message::new(7, MessageType::Query, OpCode::Query);
/// query.add_query(Query::query(Name::from_ascii("API.Example.com.").unwrap(), RecordType::A));
/// let question = parse_query(&query.to_vec().unwrap()).unwrap();
/// assert_eq!((question.id, question.name.as_str()), (7, "api.example.com"));
/// assert!(parse_query(b"\x00\x07").is_err());
/// ```
pub fn parse_query(packet: &[u8]) -> Result<DnsQuestion, EgressError> {
    let message = decode_query(packet)?;
    let [query] = message.queries.as_slice() else {
        return Err(packet_error(format!(
            "a query must ask exactly one question, this one asks {}",
            message.queries.len()
        )));
    };
    if query.query_class() != DNSClass::IN {
        return Err(packet_error(format!(
            "only class IN is answered, not {}",
            query.query_class()
        )));
    }
    Ok(DnsQuestion {
        id: message.metadata.id,
        name: name_text(query.name())?,
        record_type: query.query_type(),
    })
}

/// The answer refusing `query`: same id and question, RCODE NXDOMAIN (for this sandbox the
/// name does not exist, which programs give up on at once, unlike REFUSED, which makes stub
/// resolvers try the next server), recursion available.
///
/// ```
/// use clrk_egress::dns::refuse;
/// use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
/// use hickory_proto::rr::{Name, RecordType};
///
/// let mut query = Message::new(7, MessageType::Query, OpCode::Query);
/// query.add_query(Query::query(Name::from_ascii("evil.example.").unwrap(), RecordType::A));
/// let answer = Message::from_vec(&refuse(&query.to_vec().unwrap()).unwrap()).unwrap();
/// assert_eq!(answer.metadata.id, 7);
/// assert_eq!(answer.metadata.response_code, ResponseCode::NXDomain);
/// ```
pub fn refuse(query: &[u8]) -> Result<Vec<u8>, EgressError> {
    answer_with(query, ResponseCode::NXDomain)
}

/// The SERVFAIL answer to `query`, for when the host's resolver is unreachable or too slow:
/// the sandbox's resolver may try again, unlike after a refusal.
///
/// ```
/// use clrk_egress::dns::server_failure;
/// use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
/// use hickory_proto::rr::{Name, RecordType};
///
/// let mut query = Message::new(7, MessageType::Query, OpCode::Query);
/// query.add_query(Query::query(Name::from_ascii("api.example.com.").unwrap(), RecordType::A));
/// let answer = Message::from_vec(&server_failure(&query.to_vec().unwrap()).unwrap()).unwrap();
/// assert_eq!(answer.metadata.response_code, ResponseCode::ServFail);
/// ```
pub fn server_failure(query: &[u8]) -> Result<Vec<u8>, EgressError> {
    answer_with(query, ResponseCode::ServFail)
}

/// The A and AAAA addresses `response` gives for its question's name, following CNAME chains
/// inside the answer section, each with its record's TTL. Empty for anything but a successful
/// response, and for records of names outside the chain.
///
/// ```
/// use clrk_egress::dns::addresses;
/// use hickory_proto::op::{Message, OpCode, Query};
/// use hickory_proto::rr::{Name, RData, Record, RecordType, rdata::{A, CNAME}};
///
/// let www = Name::from_ascii("www.example.com.").unwrap();
/// let edge = Name::from_ascii("edge.example.net.").unwrap();
/// let mut answer = Message::response(7, OpCode::Query);
/// answer.add_query(Query::query(www.clone(), RecordType::A));
/// answer.add_answer(Record::from_rdata(www, 300, RData::CNAME(CNAME(edge.clone()))));
/// answer.add_answer(Record::from_rdata(edge, 60, RData::A(A::new(93, 184, 216, 34))));
/// let found = addresses(&answer.to_vec().unwrap());
/// assert_eq!(found, vec![("93.184.216.34".parse().unwrap(), 60)]);
/// ```
pub fn addresses(response: &[u8]) -> Vec<(IpAddr, u32)> {
    let Ok(message) = Message::from_vec(response) else {
        return Vec::new();
    };
    if message.metadata.message_type != MessageType::Response
        || message.metadata.response_code != ResponseCode::NoError
    {
        return Vec::new();
    }
    let Some(query) = message.queries.first() else {
        return Vec::new();
    };
    let mut found = Vec::new();
    let mut chain: Vec<&Name> = vec![query.name()];
    while let Some(name) = chain.last().copied() {
        let mut next = None;
        for record in message
            .answers
            .iter()
            .filter(|r| r.dns_class == DNSClass::IN)
        {
            if record.name != *name {
                continue;
            }
            match &record.data {
                RData::A(a) => found.push((IpAddr::V4(a.0), record.ttl)),
                RData::AAAA(aaaa) => found.push((IpAddr::V6(aaaa.0), record.ttl)),
                RData::CNAME(target) => next = Some(&target.0),
                _ => {}
            }
        }
        match next {
            // A name seen before is a loop; the answer has nothing more to give.
            Some(target) if !chain.contains(&target) => chain.push(target),
            _ => break,
        }
    }
    found
}

/// Decodes `packet`, which must be a standard query: answering a response could make two
/// resolvers answer each other forever.
fn decode_query(packet: &[u8]) -> Result<Message, EgressError> {
    let message =
        Message::from_vec(packet).map_err(|e| packet_error(format!("malformed query: {e}")))?;
    if message.metadata.message_type != MessageType::Query {
        return Err(packet_error("a response, not a query"));
    }
    if message.metadata.op_code != OpCode::Query {
        return Err(packet_error(format!(
            "opcode {}, only standard queries are answered",
            message.metadata.op_code
        )));
    }
    Ok(message)
}

/// The answer to `query` with `code` and no records.
fn answer_with(query: &[u8], code: ResponseCode) -> Result<Vec<u8>, EgressError> {
    let request = decode_query(query)?;
    let mut answer = Message::response(request.metadata.id, request.metadata.op_code);
    answer.metadata = Metadata::response_from_request(&request.metadata);
    answer.metadata.recursion_available = true;
    answer.metadata.response_code = code;
    answer.add_queries(request.queries);
    // RFC 6891: a query with an OPT record gets one back.
    if request.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(EDNS_PAYLOAD);
        answer.set_edns(edns);
    }
    answer
        .to_vec()
        .map_err(|e| packet_error(format!("cannot encode the answer: {e}")))
}

/// `name` as the policy sees it: lowercase labels joined by dots, no trailing dot.
fn name_text(name: &Name) -> Result<String, EgressError> {
    let mut text = String::with_capacity(name.len());
    for label in name.iter() {
        if !label
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
        {
            return Err(packet_error(format!(
                "the name {name} has characters other than letters, digits, '-' and '_'"
            )));
        }
        if !text.is_empty() {
            text.push('.');
        }
        // Checked as ASCII above, so each byte is one char.
        text.extend(label.iter().map(|b| char::from(b.to_ascii_lowercase())));
    }
    Ok(text)
}

/// Whether `packet` is a response carrying `id`.
pub(super) fn is_answer_to(packet: &[u8], id: u16) -> bool {
    packet.len() >= HEADER_LEN && packet[..2] == id.to_be_bytes() && packet[2] & QR_BIT != 0
}

pub(super) fn packet_error(reason: impl Into<String>) -> EgressError {
    EgressError::DnsPacket {
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    use crate::dns::testing::{cname_answer, name, query, query_message};
    use hickory_proto::op::Query;
    use hickory_proto::rr::Record;
    use hickory_proto::rr::rdata::{A, AAAA, CNAME};

    #[test]
    fn parse_query_reads_id_name_and_type() {
        let question = parse_query(&query(4242, "WWW.Example.COM.", RecordType::AAAA)).unwrap();
        assert_eq!(
            question,
            DnsQuestion {
                id: 4242,
                name: "www.example.com".into(),
                record_type: RecordType::AAAA,
            }
        );
    }

    #[test]
    fn parse_query_rejects_responses_missing_questions_and_garbage() {
        let mut response = query_message(1, "example.com.", RecordType::A);
        response.metadata.message_type = MessageType::Response;
        assert!(parse_query(&response.to_vec().unwrap()).is_err());

        let empty = Message::new(1, MessageType::Query, OpCode::Query);
        assert!(parse_query(&empty.to_vec().unwrap()).is_err());

        let mut two = query_message(1, "a.example.com.", RecordType::A);
        two.add_query(Query::query(name("b.example.com."), RecordType::A));
        assert!(parse_query(&two.to_vec().unwrap()).is_err());

        let mut update = query_message(1, "example.com.", RecordType::A);
        update.metadata.op_code = OpCode::Update;
        assert!(parse_query(&update.to_vec().unwrap()).is_err());

        assert!(parse_query(b"").is_err());
        assert!(parse_query(&[0xff; 40]).is_err());
        let whole = query(1, "example.com.", RecordType::A);
        assert!(parse_query(&whole[..whole.len() - 3]).is_err());
    }

    #[test]
    fn parse_query_rejects_names_with_unusual_characters() {
        // One label "api.example.com": an escaped spelling must not pass for the real name.
        let mut message = Message::new(1, MessageType::Query, OpCode::Query);
        let label = Name::from_labels([b"api.example.com".as_slice()]).unwrap();
        message.add_query(Query::query(label, RecordType::A));
        assert!(parse_query(&message.to_vec().unwrap()).is_err());

        let underscore = parse_query(&query(1, "_dns.resolver.arpa.", RecordType::SVCB)).unwrap();
        assert_eq!(underscore.name, "_dns.resolver.arpa");
    }

    #[test]
    fn refuse_keeps_id_and_question_and_says_nxdomain() {
        let request = query_message(977, "Evil.Example.", RecordType::A);
        let answer = Message::from_vec(&refuse(&request.to_vec().unwrap()).unwrap()).unwrap();
        assert_eq!(answer.metadata.id, 977);
        assert_eq!(answer.metadata.message_type, MessageType::Response);
        assert_eq!(answer.metadata.response_code, ResponseCode::NXDomain);
        assert!(answer.metadata.recursion_available);
        assert!(answer.metadata.recursion_desired);
        assert_eq!(answer.queries, request.queries);
        assert!(answer.answers.is_empty());
        assert!(answer.edns.is_none());
    }

    #[test]
    fn server_failure_keeps_id_and_question_and_edns() {
        let mut request = query_message(31, "api.example.com.", RecordType::AAAA);
        request.set_edns(Edns::new());
        let answer =
            Message::from_vec(&server_failure(&request.to_vec().unwrap()).unwrap()).unwrap();
        assert_eq!(answer.metadata.id, 31);
        assert_eq!(answer.metadata.response_code, ResponseCode::ServFail);
        assert_eq!(answer.queries, request.queries);
        assert!(answer.edns.is_some());
    }

    #[test]
    fn refuse_will_not_answer_a_response() {
        let mut response = query_message(1, "example.com.", RecordType::A);
        response.metadata.message_type = MessageType::Response;
        assert!(refuse(&response.to_vec().unwrap()).is_err());
        assert!(server_failure(b"\x01").is_err());
    }

    #[test]
    fn addresses_follow_the_cname_chain() {
        let request = query_message(5, "www.example.com.", RecordType::A);
        let answer = cname_answer(&request, 5, Ipv4Addr::new(93, 184, 216, 34));
        assert_eq!(
            addresses(&answer),
            vec![(IpAddr::V4(Ipv4Addr::new(93, 184, 216, 34)), 60)]
        );
    }

    #[test]
    fn addresses_ignore_names_outside_the_chain_and_loops() {
        let www = name("www.example.com.");
        let mut answer = Message::response(5, OpCode::Query);
        answer.add_query(Query::query(www.clone(), RecordType::AAAA));
        answer.add_answer(Record::from_rdata(
            www.clone(),
            30,
            RData::AAAA(AAAA("2001:db8::1".parse().unwrap())),
        ));
        answer.add_answer(Record::from_rdata(
            www.clone(),
            30,
            RData::CNAME(CNAME(name("loop.example.com."))),
        ));
        answer.add_answer(Record::from_rdata(
            name("loop.example.com."),
            30,
            RData::CNAME(CNAME(www)),
        ));
        answer.add_answer(Record::from_rdata(
            name("bank.example.org."),
            30,
            RData::A(A::new(10, 0, 0, 1)),
        ));
        assert_eq!(
            addresses(&answer.to_vec().unwrap()),
            vec![("2001:db8::1".parse().unwrap(), 30)]
        );
        assert!(addresses(b"junk").is_empty());
    }

    #[test]
    fn addresses_of_an_error_or_a_query_are_none() {
        let request = query_message(5, "www.example.com.", RecordType::A);
        let mut failed =
            Message::from_vec(&cname_answer(&request, 5, Ipv4Addr::LOCALHOST)).unwrap();
        failed.metadata.response_code = ResponseCode::NXDomain;
        assert!(addresses(&failed.to_vec().unwrap()).is_empty());
        assert!(addresses(&request.to_vec().unwrap()).is_empty());
    }
}
