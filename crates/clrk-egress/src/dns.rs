//! DNS for sandboxes: reading a sandbox's query, the answers clrk gives itself (refusal,
//! server failure), forwarding a permitted query to the host's resolver, and remembering which
//! names resolved to which addresses, so hostname rules can judge connections that carry only
//! an IP.
//!
//! Which names a sandbox may resolve, and the socket serving it, live elsewhere; this module
//! only handles messages.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use crate::EgressError;

/// Length of the fixed DNS header; the id is its first two bytes.
const HEADER_LEN: usize = 12;
/// The header's QR bit (in byte 2): set on responses.
const QR_BIT: u8 = 0x80;
/// The header's TC bit (in byte 2): the answer did not fit in the UDP datagram.
const TC_BIT: u8 = 0x02;
/// The EDNS payload size clrk's own answers advertise, the size DNS flag day 2020 settled on.
const EDNS_PAYLOAD: u16 = 1232;
/// Names a [`NameCache`] keeps per sandbox.
const MAX_NAMES: usize = 4096;
/// The shortest a [`NameCache`] entry lives, whatever its TTL: programs keep using an answer
/// a while after its TTL.
const MIN_LIFETIME: Duration = Duration::from_secs(60);
/// The longest a [`NameCache`] entry lives, whatever its TTL.
const MAX_LIFETIME: Duration = Duration::from_secs(3600);

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

/// Names that resolved to addresses, per sandbox (`K` identifies one), so a connection to an
/// address can be judged by the hostname rules that let its name resolve.
///
/// An entry lives for its TTL, at least a minute (programs keep using an answer a while after
/// its TTL) and at most an hour; each sandbox keeps at most 4096 entries, the soonest to expire
/// making way for new ones.
///
/// ```
/// use clrk_egress::dns::NameCache;
/// let cache = NameCache::new();
/// let ip = "93.184.216.34".parse().unwrap();
/// cache.insert(&"sandbox-1", "Example.com.", ip, 30);
/// assert_eq!(cache.names_for(&"sandbox-1", ip), vec!["example.com".to_string()]);
/// assert!(cache.names_for(&"sandbox-2", ip).is_empty());
/// cache.forget(&"sandbox-1");
/// assert!(cache.names_for(&"sandbox-1", ip).is_empty());
/// ```
#[derive(Debug)]
pub struct NameCache<K> {
    sandboxes: Mutex<HashMap<K, SandboxNames>>,
}

/// One sandbox's entries: per address, the names and when each expires.
#[derive(Debug, Default)]
struct SandboxNames {
    by_address: HashMap<IpAddr, Vec<(String, Instant)>>,
    len: usize,
}

impl<K: Hash + Eq + Clone> NameCache<K> {
    /// An empty cache.
    ///
    /// ```
    /// let cache: clrk_egress::dns::NameCache<u32> = clrk_egress::dns::NameCache::new();
    /// assert!(cache.names_for(&1, "10.0.0.1".parse().unwrap()).is_empty());
    /// ```
    pub fn new() -> Self {
        NameCache {
            sandboxes: Mutex::new(HashMap::new()),
        }
    }

    /// Records that `name` resolved to `ip` for sandbox `key`, for `ttl` seconds (see the type's
    /// limits). Case and a trailing dot do not matter, nor whether an IPv4 address is written
    /// IPv4-mapped.
    ///
    /// ```
    /// let cache = clrk_egress::dns::NameCache::new();
    /// cache.insert(&1, "api.example.com", "10.0.0.1".parse().unwrap(), 300);
    /// ```
    pub fn insert(&self, key: &K, name: &str, ip: IpAddr, ttl: u32) {
        self.insert_at(key, name, ip, ttl, Instant::now());
    }

    /// The names that resolved to `ip` for sandbox `key` and have not expired.
    ///
    /// ```
    /// let cache = clrk_egress::dns::NameCache::new();
    /// let ip = "10.0.0.1".parse().unwrap();
    /// cache.insert(&1, "a.example.com", ip, 300);
    /// cache.insert(&1, "b.example.com", ip, 300);
    /// let mut names = cache.names_for(&1, ip);
    /// names.sort();
    /// assert_eq!(names, ["a.example.com", "b.example.com"]);
    /// ```
    pub fn names_for(&self, key: &K, ip: IpAddr) -> Vec<String> {
        self.names_for_at(key, ip, Instant::now())
    }

    /// Drops everything remembered for sandbox `key`, when it goes away.
    ///
    /// ```
    /// let cache = clrk_egress::dns::NameCache::new();
    /// cache.forget(&"gone");
    /// ```
    pub fn forget(&self, key: &K) {
        self.lock().remove(key);
    }

    fn insert_at(&self, key: &K, name: &str, ip: IpAddr, ttl: u32, now: Instant) {
        let name = clrk_api::normal_name(name);
        // A connection to ::ffff:a.b.c.d reaches a.b.c.d, so both spellings share entries.
        let ip = ip.to_canonical();
        let lifetime = Duration::from_secs(ttl.into()).clamp(MIN_LIFETIME, MAX_LIFETIME);
        let expires = now + lifetime;
        let mut sandboxes = self.lock();
        let names = match sandboxes.get_mut(key) {
            Some(names) => names,
            None => sandboxes.entry(key.clone()).or_default(),
        };
        names.insert(name, ip, expires, now);
    }

    fn names_for_at(&self, key: &K, ip: IpAddr, now: Instant) -> Vec<String> {
        let sandboxes = self.lock();
        let ip = ip.to_canonical();
        let Some(entries) = sandboxes.get(key).and_then(|n| n.by_address.get(&ip)) else {
            return Vec::new();
        };
        entries
            .iter()
            .filter(|(_, expires)| *expires > now)
            .map(|(name, _)| name.clone())
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, SandboxNames>> {
        // A panic elsewhere cannot leave a half-made entry worth refusing to read.
        self.sandboxes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl<K: Hash + Eq + Clone> Default for NameCache<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl SandboxNames {
    fn insert(&mut self, name: String, ip: IpAddr, expires: Instant, now: Instant) {
        if let Some(entry) = self
            .by_address
            .get_mut(&ip)
            .and_then(|entries| entries.iter_mut().find(|(n, _)| *n == name))
        {
            // The sandbox may still use the earlier answer, so a shorter TTL never shortens it.
            entry.1 = entry.1.max(expires);
            return;
        }
        if self.len >= MAX_NAMES {
            self.remove_expired(now);
        }
        if self.len >= MAX_NAMES {
            self.remove_soonest_expiring();
        }
        self.by_address.entry(ip).or_default().push((name, expires));
        self.len += 1;
    }

    fn remove_expired(&mut self, now: Instant) {
        self.by_address.retain(|_, entries| {
            entries.retain(|(_, expires)| *expires > now);
            !entries.is_empty()
        });
        self.len = self.by_address.values().map(Vec::len).sum();
    }

    fn remove_soonest_expiring(&mut self) {
        let soonest = self
            .by_address
            .iter()
            .flat_map(|(ip, entries)| entries.iter().enumerate().map(move |(i, e)| (e.1, *ip, i)))
            .min();
        let Some((_, ip, index)) = soonest else {
            return;
        };
        if let Some(entries) = self.by_address.get_mut(&ip) {
            entries.swap_remove(index);
            if entries.is_empty() {
                self.by_address.remove(&ip);
            }
            self.len -= 1;
        }
    }
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

/// Whether `packet` is a response carrying `id`.
fn is_answer_to(packet: &[u8], id: u16) -> bool {
    packet.len() >= HEADER_LEN && packet[..2] == id.to_be_bytes() && packet[2] & QR_BIT != 0
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

fn packet_error(reason: impl Into<String>) -> EgressError {
    EgressError::DnsPacket {
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Query;
    use hickory_proto::rr::Record;
    use hickory_proto::rr::rdata::{A, AAAA, CNAME};
    use tokio::net::TcpListener;

    fn name(text: &str) -> Name {
        Name::from_ascii(text).unwrap()
    }

    fn query_message(id: u16, qname: &str, record_type: RecordType) -> Message {
        let mut query = Message::new(id, MessageType::Query, OpCode::Query);
        query.metadata.recursion_desired = true;
        query.add_query(Query::query(name(qname), record_type));
        query
    }

    fn query(id: u16, qname: &str, record_type: RecordType) -> Vec<u8> {
        query_message(id, qname, record_type).to_vec().unwrap()
    }

    /// An upstream's answer to `request`: www.example.com → CNAME edge.example.net → CNAME
    /// edge-2.example.net → A `ip`.
    fn cname_answer(request: &Message, id: u16, ip: Ipv4Addr) -> Vec<u8> {
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

    #[test]
    fn name_cache_lifetime_is_ttl_within_a_minute_and_an_hour() {
        let cache = NameCache::new();
        let ip: IpAddr = "93.184.216.34".parse().unwrap();
        let now = Instant::now();
        cache.insert_at(&1, "short.example.com", ip, 5, now);
        cache.insert_at(&1, "medium.example.com", ip, 600, now);
        cache.insert_at(&1, "long.example.com", ip, 86_400, now);

        let names_at = |secs| {
            let mut names = cache.names_for_at(&1, ip, now + Duration::from_secs(secs));
            names.sort();
            names
        };
        assert_eq!(
            names_at(59),
            [
                "long.example.com",
                "medium.example.com",
                "short.example.com"
            ]
        );
        assert_eq!(names_at(61), ["long.example.com", "medium.example.com"]);
        assert_eq!(names_at(601), ["long.example.com"]);
        assert!(names_at(3601).is_empty());
    }

    #[test]
    fn name_cache_reinsert_never_shortens_and_normalises_names() {
        let cache = NameCache::new();
        let ip: IpAddr = "10.1.2.3".parse().unwrap();
        let now = Instant::now();
        cache.insert_at(&"a", "API.Example.com.", ip, 600, now);
        cache.insert_at(&"a", "api.example.com", ip, 5, now);
        assert_eq!(
            cache.names_for_at(&"a", ip, now + Duration::from_secs(300)),
            ["api.example.com"]
        );
    }

    #[test]
    fn name_cache_keeps_sandboxes_apart_and_forgets() {
        let cache = NameCache::new();
        let ip: IpAddr = "10.1.2.3".parse().unwrap();
        cache.insert(&"a", "a.example.com", ip, 300);
        cache.insert(&"b", "b.example.com", ip, 300);
        assert_eq!(cache.names_for(&"a", ip), ["a.example.com"]);
        let mapped: IpAddr = "::ffff:10.1.2.3".parse().unwrap();
        assert_eq!(cache.names_for(&"a", mapped), ["a.example.com"]);
        assert!(
            cache
                .names_for(&"a", "10.1.2.4".parse().unwrap())
                .is_empty()
        );
        cache.forget(&"a");
        assert!(cache.names_for(&"a", ip).is_empty());
        assert_eq!(cache.names_for(&"b", ip), ["b.example.com"]);
    }

    #[test]
    fn name_cache_is_bounded_per_sandbox() {
        let cache = NameCache::new();
        let now = Instant::now();
        let ip = |i: usize| IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + u32::try_from(i).unwrap()));
        // The first entry expires soonest, so it is the one to go.
        cache.insert_at(&1, "first.example.com", ip(0), 60, now);
        for i in 1..MAX_NAMES {
            cache.insert_at(&1, &format!("n{i}.example.com"), ip(i), 600, now);
        }
        cache.insert_at(&1, "late.example.com", ip(MAX_NAMES), 600, now);
        assert!(cache.names_for_at(&1, ip(0), now).is_empty());
        assert_eq!(
            cache.names_for_at(&1, ip(MAX_NAMES), now),
            ["late.example.com"]
        );
        assert_eq!(cache.names_for_at(&1, ip(1), now), ["n1.example.com"]);
        assert_eq!(cache.lock()[&1].len, MAX_NAMES);
    }
}
