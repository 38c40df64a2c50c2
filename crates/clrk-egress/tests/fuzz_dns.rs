//! Fuzzing the DNS message handling with property tests: whatever packet a sandbox sends, the
//! query parser returns a question whose name the policy can judge (lowercase letters, digits,
//! `-`, `_` and dots) or an error, never panics; clrk's own answers echo the query's id and
//! question and stay as small as the query; reading the addresses out of an upstream's answer
//! ends, even on CNAME loops, and finds only addresses the answer holds.
//!
//! The number of cases per property is small enough for CI; `PROPTEST_CASES` raises it for a
//! longer run (docs/security.md).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use clrk_egress::dns::{
    addresses, nameserver_from_resolv_conf, parse_query, refuse, server_failure,
};
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use proptest::prelude::*;
use proptest::test_runner::Config;

/// `cases` per property, unless `PROPTEST_CASES` asks for another number.
fn config(cases: u32) -> Config {
    let mut config = Config::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = cases;
    }
    config
}

/// A label in the characters hostnames use, in any case, sometimes with others mixed in.
fn label() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => "[a-zA-Z0-9_-]{1,20}",
        1 => "[a-zA-Z0-9]{63}",
        1 => "[ -~]{1,8}",
    ]
}

fn name() -> impl Strategy<Value = Name> {
    prop::collection::vec(label(), 0..6).prop_filter_map("longer than 255 bytes", |labels| {
        let mut name = Name::from_labels(labels.iter().map(std::string::String::as_bytes)).ok()?;
        name.set_fqdn(true);
        Some(name)
    })
}

fn record_type() -> impl Strategy<Value = RecordType> {
    prop_oneof![
        prop::sample::select(vec![
            RecordType::A,
            RecordType::AAAA,
            RecordType::CNAME,
            RecordType::MX,
            RecordType::TXT,
            RecordType::ANY,
            RecordType::SRV,
        ]),
        any::<u16>().prop_map(RecordType::from),
    ]
}

/// A well-formed standard query, with or without EDNS.
fn query() -> impl Strategy<Value = (Message, Vec<u8>)> {
    (
        any::<u16>(),
        name(),
        record_type(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(id, name, record_type, rd, edns)| {
            let mut message = Message::new(id, MessageType::Query, OpCode::Query);
            message.metadata.recursion_desired = rd;
            message.add_query(Query::query(name, record_type));
            if edns {
                message.set_edns(Edns::new());
            }
            let bytes = message.to_vec().unwrap();
            (message, bytes)
        })
}

/// A query with a few bytes overwritten, cut short or extended.
fn damaged_query() -> impl Strategy<Value = Vec<u8>> {
    (
        query(),
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
        any::<prop::sample::Index>(),
        prop::collection::vec(any::<u8>(), 0..8),
    )
        .prop_map(|((_, mut bytes), flips, cut, tail)| {
            for (at, byte) in flips {
                let i = at.index(bytes.len());
                bytes[i] = byte;
            }
            bytes.truncate(cut.index(bytes.len() + 1));
            bytes.extend(tail);
            bytes
        })
}

/// What parse_query may return for `packet`: an error, or the packet's id and a name in the
/// characters the policy judges.
fn check_parse(packet: &[u8]) -> Result<(), TestCaseError> {
    let Ok(question) = parse_query(packet) else {
        return Ok(());
    };
    prop_assert_eq!(question.id.to_be_bytes(), [packet[0], packet[1]]);
    prop_assert!(question.name.len() <= 254, "{}", question.name);
    prop_assert!(!question.name.ends_with('.') && !question.name.starts_with('.'));
    prop_assert!(
        question
            .name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b)),
        "{:?}",
        question.name
    );
    Ok(())
}

/// clrk's own answer to `packet` carries its id and questions, the given code, and is no
/// larger than the query plus an OPT record: no amplification.
fn check_answer(packet: &[u8], answer: &[u8], code: ResponseCode) -> Result<(), TestCaseError> {
    let query = Message::from_vec(packet).unwrap();
    let message = Message::from_vec(answer).unwrap();
    prop_assert_eq!(message.metadata.id, query.metadata.id);
    prop_assert_eq!(message.metadata.message_type, MessageType::Response);
    prop_assert_eq!(message.metadata.response_code, code);
    prop_assert_eq!(&message.queries, &query.queries);
    prop_assert!(message.answers.is_empty());
    prop_assert!(
        answer.len() <= packet.len() + 11,
        "{} > {}",
        answer.len(),
        packet.len()
    );
    Ok(())
}

/// An upstream answer to `qname`: the records listed (CNAMEs may chain and loop), in order.
fn answer_with(qname: &Name, rcode: ResponseCode, records: &[(Name, RData)]) -> Vec<u8> {
    let mut answer = Message::response(1, OpCode::Query);
    answer.metadata.response_code = rcode;
    answer.add_query(Query::query(qname.clone(), RecordType::A));
    for (owner, data) in records {
        answer.add_answer(Record::from_rdata(owner.clone(), 60, data.clone()));
    }
    answer.to_vec().unwrap()
}

/// Records over a handful of names, so that CNAMEs chain, branch and loop among them.
fn records() -> impl Strategy<Value = (Vec<Name>, Vec<(Name, RData)>)> {
    let names: Vec<Name> = (0..5)
        .map(|i| Name::from_ascii(format!("n{i}.example.")).unwrap())
        .collect();
    let data = prop_oneof![
        any::<u32>().prop_map(|ip| RData::A(A(Ipv4Addr::from(ip)))),
        any::<u128>().prop_map(|ip| RData::AAAA(AAAA(Ipv6Addr::from(ip)))),
        (0usize..5).prop_map(|i| {
            RData::CNAME(CNAME(Name::from_ascii(format!("n{i}.example.")).unwrap()))
        }),
        "[a-z]{0,8}".prop_map(|t| RData::TXT(TXT::new(vec![t]))),
    ];
    let owners = names.clone();
    prop::collection::vec((0usize..5, data), 0..24).prop_map(move |records| {
        let records = records
            .into_iter()
            .map(|(i, data)| (owners[i].clone(), data))
            .collect();
        (names.clone(), records)
    })
}

proptest! {
    #![proptest_config(config(20000))]

    #[test]
    fn fuzz_dns_query_from_arbitrary_bytes(packet in prop::collection::vec(any::<u8>(), 0..600)) {
        check_parse(&packet)?;
        if let Ok(answer) = refuse(&packet) {
            check_answer(&packet, &answer, ResponseCode::NXDomain)?;
        }
        if let Ok(answer) = server_failure(&packet) {
            check_answer(&packet, &answer, ResponseCode::ServFail)?;
        }
        // An answer never carries addresses it does not hold.
        prop_assert!(addresses(&packet).len() <= packet.len() / 11);
    }

    #[test]
    fn fuzz_dns_damaged_query(packet in damaged_query()) {
        check_parse(&packet)?;
        if let Ok(answer) = refuse(&packet) {
            check_answer(&packet, &answer, ResponseCode::NXDomain)?;
        }
    }

    /// A well-formed query is read exactly: its id, its name lowercased without the root dot
    /// (or refused for characters a hostname cannot have), its type; and answered in kind.
    #[test]
    fn fuzz_dns_valid_query_is_read_and_answered((message, packet) in query()) {
        let asked = &message.queries[0];
        let plain = asked
            .name()
            .iter()
            .all(|l| l.iter().all(|b| b.is_ascii_alphanumeric() || b"-_".contains(b)));
        match parse_query(&packet) {
            Ok(question) => {
                prop_assert!(plain);
                prop_assert_eq!(question.id, message.metadata.id);
                prop_assert_eq!(question.record_type, asked.query_type());
                let labels: Vec<String> = asked
                    .name()
                    .iter()
                    .map(|l| String::from_utf8_lossy(l).to_ascii_lowercase())
                    .collect();
                prop_assert_eq!(question.name, labels.join("."));
            }
            Err(error) => prop_assert!(!plain, "{error}"),
        }
        check_answer(&packet, &refuse(&packet).unwrap(), ResponseCode::NXDomain)?;
        check_answer(&packet, &server_failure(&packet).unwrap(), ResponseCode::ServFail)?;
    }

    /// Following CNAMEs from the question ends (loops included) and yields only A and AAAA
    /// records of the answer, each at most once per record; none unless NOERROR.
    #[test]
    fn fuzz_dns_addresses_follow_cnames_and_end(
        (names, records) in records(),
        rcode in prop::sample::select(vec![ResponseCode::NoError, ResponseCode::NXDomain]),
    ) {
        let packet = answer_with(&names[0], rcode, &records);
        let found = addresses(&packet);
        if rcode != ResponseCode::NoError {
            prop_assert!(found.is_empty());
        }
        let held: Vec<(IpAddr, u32)> = records
            .iter()
            .filter_map(|(_, data)| match data {
                RData::A(a) => Some((IpAddr::V4(a.0), 60)),
                RData::AAAA(a) => Some((IpAddr::V6(a.0), 60)),
                _ => None,
            })
            .collect();
        prop_assert!(found.len() <= held.len());
        for address in &found {
            prop_assert!(held.contains(address), "{address:?} is not in the answer");
        }
        // Addresses held by the question's own name are always found.
        for (owner, data) in &records {
            if *owner == names[0]
                && rcode == ResponseCode::NoError
                && let RData::A(a) = data
            {
                prop_assert!(found.contains(&(IpAddr::V4(a.0), 60)));
            }
        }
    }

    #[test]
    fn fuzz_resolv_conf_never_panics(text in "((nameserver|search|options|#)[ \t]{0,2}[ -~]{0,40}\n){0,6}") {
        if let Some(address) = nameserver_from_resolv_conf(&text) {
            prop_assert_eq!(address.port(), 53);
            prop_assert!(text.contains("nameserver"));
        }
    }
}
