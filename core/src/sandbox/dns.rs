//! How long a name of `sandbox.egress` may keep its addresses: the TTL of its address records,
//! asked of the host's DNS servers (`/etc/resolv.conf`) with one plain query per record type.
//!
//! Only the TTL comes from here. The addresses themselves still come from the host's resolver
//! ([`super::resolve::system_lookup`], getaddrinfo), so that `/etc/hosts` and NSS decide them as
//! they did when the service started. A name the DNS does not answer for (a name of
//! `/etc/hosts`, a server that is down) has no TTL, and the keeper falls back to its default.
//!
//! The answer is parsed as hostile input: it must carry the query's id and question, every
//! length and name pointer is checked against the packet, pointers may only point backwards,
//! and a CNAME chain is followed for at most [`CHAIN_MAX`] links.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::Duration;

/// Record types asked for.
pub const TYPE_A: u16 = 1;
pub const TYPE_AAAA: u16 = 28;
const TYPE_CNAME: u16 = 5;
const CLASS_IN: u16 = 1;
/// The most CNAME links followed from the name asked for.
pub const CHAIN_MAX: usize = 8;
/// The most servers of resolv.conf asked (glibc's MAXNS).
const SERVERS_MAX: usize = 3;
/// How long one server has to answer.
const TIMEOUT: Duration = Duration::from_secs(2);

/// The name servers of a resolv.conf text, on port 53 (IPv6 link-local ones with a zone are
/// left out: a zone cannot be given to a plain socket address here).
pub fn nameservers(resolv_conf: &str) -> Vec<SocketAddr> {
    resolv_conf
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            (words.next() == Some("nameserver")).then(|| words.next()).flatten()
        })
        .filter_map(|a| a.parse::<IpAddr>().ok())
        .map(|a| SocketAddr::new(a, 53))
        .take(SERVERS_MAX)
        .collect()
}

/// A query for `name`'s records of type `qtype`, recursion desired.
pub fn query(id: u16, name: &str, qtype: u16) -> Result<Vec<u8>, String> {
    let mut q = Vec::with_capacity(18 + name.len());
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    let name = name.trim_end_matches('.');
    if name.is_empty() || name.len() > 253 {
        return Err(format!("{name:?} is not a DNS name"));
    }
    for label in name.split('.') {
        if label.is_empty()
            || label.len() > 63
            || !label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(format!("{name:?} is not a DNS name"));
        }
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&CLASS_IN.to_be_bytes());
    Ok(q)
}

/// The packet, read with bounds checks.
struct Reader<'a> {
    buf: &'a [u8],
}

impl Reader<'_> {
    fn u16_at(&self, at: usize) -> Result<u16, String> {
        let b = self.buf.get(at..at + 2).ok_or("the answer ends inside a field")?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32_at(&self, at: usize) -> Result<u32, String> {
        let b = self.buf.get(at..at + 4).ok_or("the answer ends inside a field")?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// The name at `at`, lower-cased and dotted, and where the data after it starts.
    fn name_at(&self, at: usize) -> Result<(String, usize), String> {
        let mut name = String::new();
        let mut pos = at;
        let mut end = None;
        // Each pointer must point before the label that holds it: no loops, and at most as
        // many jumps as the packet has bytes.
        let mut limit = at;
        loop {
            let len = *self.buf.get(pos).ok_or("the answer ends inside a name")?;
            match len {
                0 => {
                    return Ok((name, end.unwrap_or(pos + 1)));
                }
                1..=63 => {
                    let label =
                        self.buf.get(pos + 1..pos + 1 + usize::from(len)).ok_or("the answer ends inside a label")?;
                    if !name.is_empty() {
                        name.push('.');
                    }
                    for &b in label {
                        if !(b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
                            return Err("a name in the answer holds a byte no host name has".into());
                        }
                        name.push(char::from(b.to_ascii_lowercase()));
                    }
                    if name.len() > 253 {
                        return Err("a name in the answer is longer than 253 bytes".into());
                    }
                    pos += 1 + usize::from(len);
                }
                0xc0..=0xff => {
                    let target = usize::from(self.u16_at(pos)? & 0x3fff);
                    if target >= limit {
                        return Err("a name pointer in the answer does not point backwards".into());
                    }
                    end.get_or_insert(pos + 2);
                    limit = target;
                    pos = target;
                }
                _ => return Err("a label in the answer has a reserved length type".into()),
            }
        }
    }
}

/// One resource record of the answer section.
struct Record {
    owner: String,
    rtype: u16,
    ttl: u32,
    /// The target of a CNAME.
    target: Option<String>,
}

/// The TTL, in seconds, of `name`'s records of type `qtype` in the answer `resp` to the query
/// with `id`: the least TTL along the CNAME chain and the address records at its end.
/// `Ok(None)` when the server says the name has no such records (NXDOMAIN, or no data).
pub fn answer_ttl(resp: &[u8], id: u16, name: &str, qtype: u16) -> Result<Option<u32>, String> {
    let r = Reader { buf: resp };
    if r.u16_at(0)? != id {
        return Err("the answer's id is not the query's".into());
    }
    let flags = r.u16_at(2)?;
    if flags & 0x8000 == 0 || (flags >> 11) & 0xf != 0 {
        return Err("not an answer to a standard query".into());
    }
    if flags & 0x0200 != 0 {
        return Err("the answer is truncated".into());
    }
    match flags & 0xf {
        0 => {}
        3 => return Ok(None),
        code => return Err(format!("the server answered with rcode {code}")),
    }
    if r.u16_at(4)? != 1 {
        return Err("the answer does not echo exactly one question".into());
    }
    let answers = r.u16_at(6)?;
    let (qname, mut pos) = r.name_at(12)?;
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    if qname != name || r.u16_at(pos)? != qtype || r.u16_at(pos + 2)? != CLASS_IN {
        return Err("the answer's question is not the query's".into());
    }
    pos += 4;
    let mut records = Vec::with_capacity(usize::from(answers).min(64));
    for _ in 0..answers {
        let (owner, at) = r.name_at(pos)?;
        let (rtype, class) = (r.u16_at(at)?, r.u16_at(at + 2)?);
        // RFC 2181 section 8: a TTL with the top bit set is read as zero.
        let ttl = match r.u32_at(at + 4)? {
            t if t & 0x8000_0000 != 0 => 0,
            t => t,
        };
        let len = usize::from(r.u16_at(at + 8)?);
        let data = at + 10;
        if data + len > resp.len() {
            return Err("a record's data runs past the end of the answer".into());
        }
        let target = if rtype == TYPE_CNAME { Some(r.name_at(data)?.0) } else { None };
        if class == CLASS_IN {
            records.push(Record { owner, rtype, ttl, target });
        }
        pos = data + len;
    }
    let mut current = name;
    let mut least = u32::MAX;
    for _ in 0..=CHAIN_MAX {
        let found: Vec<&Record> = records.iter().filter(|rec| rec.owner == current && rec.rtype == qtype).collect();
        if !found.is_empty() {
            return Ok(Some(found.iter().map(|rec| rec.ttl).fold(least, u32::min)));
        }
        match records.iter().find(|rec| rec.owner == current && rec.rtype == TYPE_CNAME) {
            Some(alias) => {
                least = least.min(alias.ttl);
                current = alias.target.clone().unwrap_or_default();
            }
            None => return Ok(None),
        }
    }
    Err(format!("the CNAME chain is longer than {CHAIN_MAX} links"))
}

/// A query id nobody can guess from outside this process.
fn random_id() -> u16 {
    let mut h = RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    h.finish() as u16
}

/// Asks `server` for `name`'s records of type `qtype`, over UDP.
pub fn ask(server: SocketAddr, name: &str, qtype: u16) -> Result<Option<u32>, String> {
    let id = random_id();
    let packet = query(id, name, qtype)?;
    let local: SocketAddr = if server.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }.parse().expect("address");
    let io = |e: std::io::Error| format!("{server}: {e}");
    let sock = UdpSocket::bind(local).map_err(io)?;
    // A connected socket takes datagrams from the server's address only.
    sock.connect(server).map_err(io)?;
    sock.set_read_timeout(Some(TIMEOUT)).map_err(io)?;
    sock.send(&packet).map_err(io)?;
    let mut buf = [0u8; 4096];
    // Datagrams that are not the answer (a late one of an earlier query) are skipped until the
    // timeout.
    loop {
        let n = sock.recv(&mut buf).map_err(io)?;
        match answer_ttl(&buf[..n], id, name, qtype) {
            Err(why) if why.contains("id is not") => continue,
            other => return other.map_err(|why| format!("{server}: {why}")),
        }
    }
}

/// The TTL of `name`'s addresses: the least of its A and AAAA answers, from the first server of
/// `servers` that answers. `None` when no server gives one.
pub fn ttl(name: &str, servers: &[SocketAddr]) -> Option<u32> {
    for server in servers {
        let a = ask(*server, name, TYPE_A);
        let aaaa = ask(*server, name, TYPE_AAAA);
        if a.is_err() && aaaa.is_err() {
            continue;
        }
        return match (a.ok().flatten(), aaaa.ok().flatten()) {
            (Some(x), Some(y)) => Some(x.min(y)),
            (x, y) => x.or(y),
        };
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An answer to `query(id, name, qtype)` with the given answer records (owner offset 12 is
    /// the question's name, so `0xc00c` points at it).
    fn answer(id: u16, name: &str, qtype: u16, rcode: u8, records: &[Vec<u8>]) -> Vec<u8> {
        let mut p = query(id, name, qtype).unwrap();
        p[2] = 0x81;
        p[3] = 0x80 | rcode;
        p[6..8].copy_from_slice(&(records.len() as u16).to_be_bytes());
        for rec in records {
            p.extend_from_slice(rec);
        }
        p
    }

    fn rr(owner: &[u8], rtype: u16, ttl: u32, data: &[u8]) -> Vec<u8> {
        let mut r = owner.to_vec();
        r.extend_from_slice(&rtype.to_be_bytes());
        r.extend_from_slice(&CLASS_IN.to_be_bytes());
        r.extend_from_slice(&ttl.to_be_bytes());
        r.extend_from_slice(&(data.len() as u16).to_be_bytes());
        r.extend_from_slice(data);
        r
    }

    const AT_QNAME: &[u8] = &[0xc0, 0x0c];

    fn labels(name: &str) -> Vec<u8> {
        let mut out = Vec::new();
        for l in name.split('.') {
            out.push(l.len() as u8);
            out.extend_from_slice(l.as_bytes());
        }
        out.push(0);
        out
    }

    #[test]
    fn ttl_of_plain_and_aliased_answers() {
        let p = answer(
            7,
            "llm.internal",
            TYPE_A,
            0,
            &[rr(AT_QNAME, TYPE_A, 30, &[10, 0, 0, 1]), rr(AT_QNAME, TYPE_A, 20, &[10, 0, 0, 2])],
        );
        assert_eq!(answer_ttl(&p, 7, "LLM.internal.", TYPE_A), Ok(Some(20)));
        // llm.internal CNAME lb.internal (TTL 5), lb.internal A (TTL 300): the chain's least.
        let p = answer(
            7,
            "llm.internal",
            TYPE_A,
            0,
            &[
                rr(AT_QNAME, TYPE_CNAME, 5, &labels("lb.internal")),
                rr(&labels("lb.internal"), TYPE_A, 300, &[10, 0, 0, 3]),
            ],
        );
        assert_eq!(answer_ttl(&p, 7, "llm.internal", TYPE_A), Ok(Some(5)));
        // No data, NXDOMAIN, and records of another name only: no TTL.
        assert_eq!(answer_ttl(&answer(7, "x.test", TYPE_AAAA, 0, &[]), 7, "x.test", TYPE_AAAA), Ok(None));
        assert_eq!(answer_ttl(&answer(7, "x.test", TYPE_A, 3, &[]), 7, "x.test", TYPE_A), Ok(None));
        let other = answer(7, "x.test", TYPE_A, 0, &[rr(&labels("y.test"), TYPE_A, 9, &[1, 2, 3, 4])]);
        assert_eq!(answer_ttl(&other, 7, "x.test", TYPE_A), Ok(None));
        // A TTL with its top bit set counts as zero.
        let p = answer(7, "x.test", TYPE_A, 0, &[rr(AT_QNAME, TYPE_A, 0x8000_0005, &[1, 2, 3, 4])]);
        assert_eq!(answer_ttl(&p, 7, "x.test", TYPE_A), Ok(Some(0)));
    }

    #[test]
    fn hostile_answers_are_refused() {
        let good = answer(7, "x.test", TYPE_A, 0, &[rr(AT_QNAME, TYPE_A, 60, &[1, 2, 3, 4])]);
        assert!(answer_ttl(&good, 8, "x.test", TYPE_A).unwrap_err().contains("id"));
        assert!(answer_ttl(&good, 7, "y.test", TYPE_A).unwrap_err().contains("question"));
        assert!(answer_ttl(&good, 7, "x.test", TYPE_AAAA).unwrap_err().contains("question"));
        // Every truncation of a good answer is an error, never a panic or a TTL.
        for n in 0..good.len() {
            assert!(answer_ttl(&good[..n], 7, "x.test", TYPE_A).is_err(), "{n}");
        }
        let mut query_only = query(7, "x.test", TYPE_A).unwrap();
        assert!(answer_ttl(&query_only, 7, "x.test", TYPE_A).unwrap_err().contains("not an answer"));
        query_only[2] = 0x83; // QR and TC
        assert!(answer_ttl(&query_only, 7, "x.test", TYPE_A).unwrap_err().contains("truncated"));
        assert!(answer_ttl(&answer(7, "x.test", TYPE_A, 2, &[]), 7, "x.test", TYPE_A).unwrap_err().contains("rcode 2"));
        // A pointer to itself, a pointer forward, a reserved label type, a record longer than
        // the packet, a name with a byte no host name has.
        let self_ptr = answer(7, "x.test", TYPE_A, 0, &[]);
        let at = self_ptr.len() as u16;
        let mut looped = self_ptr.clone();
        looped[6..8].copy_from_slice(&1u16.to_be_bytes());
        looped.extend_from_slice(&(0xc000 | at).to_be_bytes());
        looped.extend_from_slice(&rr(&[], TYPE_A, 1, &[1, 2, 3, 4]));
        assert!(answer_ttl(&looped, 7, "x.test", TYPE_A).unwrap_err().contains("backwards"));
        let forward = answer(7, "x.test", TYPE_A, 0, &[rr(&[0xc0, 0xff], TYPE_A, 1, &[1, 2, 3, 4])]);
        assert!(answer_ttl(&forward, 7, "x.test", TYPE_A).is_err());
        let reserved = answer(7, "x.test", TYPE_A, 0, &[rr(&[0x40, 0], TYPE_A, 1, &[1, 2, 3, 4])]);
        assert!(answer_ttl(&reserved, 7, "x.test", TYPE_A).unwrap_err().contains("reserved"));
        let mut long = answer(7, "x.test", TYPE_A, 0, &[rr(AT_QNAME, TYPE_A, 1, &[1, 2, 3, 4])]);
        long.truncate(long.len() - 1);
        assert!(answer_ttl(&long, 7, "x.test", TYPE_A).is_err());
        let odd = answer(7, "x.test", TYPE_A, 0, &[rr(&[3, b'a', b'\n', b'b', 0], TYPE_A, 1, &[1, 2, 3, 4])]);
        assert!(answer_ttl(&odd, 7, "x.test", TYPE_A).unwrap_err().contains("byte"));
        // A CNAME loop ends at the chain limit.
        let looping = answer(7, "x.test", TYPE_A, 0, &[rr(AT_QNAME, TYPE_CNAME, 1, &labels("x.test"))]);
        assert!(answer_ttl(&looping, 7, "x.test", TYPE_A).unwrap_err().contains("CNAME chain"));
        // 65535 claimed answers in a short packet.
        let mut many = good.clone();
        many[6..8].copy_from_slice(&u16::MAX.to_be_bytes());
        assert!(answer_ttl(&many, 7, "x.test", TYPE_A).is_err());
    }

    #[test]
    fn queries_and_resolv_conf() {
        assert!(query(1, "a..b", TYPE_A).is_err());
        assert!(query(1, &"a".repeat(64), TYPE_A).is_err());
        assert!(query(1, "a b", TYPE_A).is_err());
        assert_eq!(query(0x1234, "x.test", TYPE_A).unwrap(), {
            let mut q = vec![0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
            q.extend_from_slice(&labels("x.test"));
            q.extend_from_slice(&[0, 1, 0, 1]);
            q
        });
        let conf = "# comment\nsearch example\nnameserver 10.0.0.53\nnameserver fe80::1%eth0\nnameserver ::1\nnameserver bogus\nnameserver 1.1.1.1\nnameserver 8.8.8.8\n";
        let servers: Vec<String> = nameservers(conf).iter().map(|s| s.to_string()).collect();
        assert_eq!(servers, ["10.0.0.53:53", "[::1]:53", "1.1.1.1:53"]);
    }

    /// A DNS server on loopback that answers with the TTL it was given, after a stray datagram
    /// with the wrong id: the client waits for the right one.
    #[test]
    fn asks_a_server_over_udp() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = server.local_addr().unwrap();
        let t = std::thread::spawn(move || {
            for _ in 0..2 {
                let mut buf = [0u8; 512];
                let (n, from) = server.recv_from(&mut buf).unwrap();
                let id = u16::from_be_bytes([buf[0], buf[1]]);
                let qtype = u16::from_be_bytes([buf[n - 4], buf[n - 3]]);
                let data: &[u8] = if qtype == TYPE_A { &[10, 0, 0, 1] } else { &[0; 16] };
                let ttl = if qtype == TYPE_A { 42 } else { 17 };
                server.send_to(&answer(id.wrapping_add(1), "x.test", qtype, 0, &[]), from).unwrap();
                server.send_to(&answer(id, "x.test", qtype, 0, &[rr(AT_QNAME, qtype, ttl, data)]), from).unwrap();
            }
        });
        assert_eq!(ttl("x.test", &[addr]), Some(17));
        t.join().unwrap();
        // Nobody listening: no TTL (refused or timed out), not an error that stops anything.
        let closed = UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        assert_eq!(ttl("x.test", &[closed]), None);
    }
}
