//! DNS messages: one question out, the answer section back.
//!
//! The wire format is RFC 1035 §4.1 (header, question, resource records),
//! with name compression (§4.1.4) on the way in only, AAAA records from
//! RFC 3596 §2.2, and the two-byte length prefix of DNS over TCP from
//! RFC 1035 §4.2.2 (see also RFC 7766). Pure functions on bytes; the
//! sockets are in the parent module.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub const TYPE_A: u16 = 1;
pub const TYPE_CNAME: u16 = 5;
pub const TYPE_AAAA: u16 = 28;
const CLASS_IN: u16 = 1;

/// RCODEs (RFC 1035 §4.1.1).
pub const RCODE_NOERROR: u8 = 0;
pub const RCODE_NXDOMAIN: u8 = 3;

/// The largest name on the wire (RFC 1035 §2.3.4).
const MAX_NAME: usize = 255;
/// Compression pointers followed in one name before giving up on a loop.
const MAX_POINTERS: usize = 32;

/// Why a datagram is not the answer to our question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireError {
    /// Another message (its ID, question or flags are not our query's):
    /// ignored, as RFC 5452 §9.1 asks of a resolver.
    NotOurs,
    /// Ours by the header, but cut short or inconsistent.
    Malformed(&'static str),
}

/// What a query name cannot be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadName(pub &'static str);

/// A query for `name`'s records of `qtype` with recursion desired.
pub fn encode_query(id: u16, name: &str, qtype: u16) -> Result<Vec<u8>, BadName> {
    let mut out = Vec::with_capacity(18 + name.len());
    out.extend_from_slice(&id.to_be_bytes());
    // QR=0, OPCODE=0 (query), RD=1 (§4.1.1).
    out.extend_from_slice(&0x0100u16.to_be_bytes());
    for count in [1u16, 0, 0, 0] {
        out.extend_from_slice(&count.to_be_bytes());
    }
    encode_name(name, &mut out)?;
    out.extend_from_slice(&qtype.to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    Ok(out)
}

fn encode_name(name: &str, out: &mut Vec<u8>) -> Result<(), BadName> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() {
        return Err(BadName("is empty"));
    }
    let start = out.len();
    for label in name.split('.') {
        if label.is_empty() {
            return Err(BadName("has an empty label"));
        }
        if label.len() > 63 {
            return Err(BadName("has a label longer than 63 bytes"));
        }
        if !label.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(BadName("has a byte that is not printable ASCII"));
        }
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    if out.len() - start > MAX_NAME {
        return Err(BadName("is longer than 255 bytes"));
    }
    Ok(())
}

/// A resource record we use; other types are kept as `Other` and skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Data {
    Addr(IpAddr),
    Cname(String),
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Owner name, lower case, without the final dot.
    pub name: String,
    pub rtype: u16,
    pub data: Data,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub rcode: u8,
    /// TC: the answer did not fit a datagram; ask again over TCP.
    pub truncated: bool,
    pub records: Vec<Record>,
}

/// Decodes `msg` as the answer to query `id` for `qname`/`qtype`. Anything
/// that is not that answer is [`WireError::NotOurs`].
pub fn decode_answer(msg: &[u8], id: u16, qname: &str, qtype: u16) -> Result<Answer, WireError> {
    if msg.len() < 12 {
        return Err(WireError::NotOurs);
    }
    let u16_at = |i: usize| u16::from_be_bytes([msg[i], msg[i + 1]]);
    let flags = u16_at(2);
    let is_response = flags & 0x8000 != 0;
    let opcode = (flags >> 11) & 0xf;
    if u16_at(0) != id || !is_response || opcode != 0 || u16_at(4) != 1 {
        return Err(WireError::NotOurs);
    }
    let truncated = flags & 0x0200 != 0;
    let rcode = (flags & 0xf) as u8;
    let ancount = u16_at(6);
    let mut r = Reader { msg, pos: 12 };
    let name = r.name().map_err(|_| WireError::NotOurs)?;
    let (t, c) = (
        r.u16().ok_or(WireError::NotOurs)?,
        r.u16().ok_or(WireError::NotOurs)?,
    );
    if !same_name(&name, qname) || t != qtype || c != CLASS_IN {
        return Err(WireError::NotOurs);
    }
    let mut records = Vec::new();
    for _ in 0..ancount {
        match r.record() {
            Ok(rec) => records.push(rec),
            // A truncated answer may stop mid-record: keep what came whole.
            Err(_) if truncated => break,
            Err(e) => return Err(WireError::Malformed(e)),
        }
    }
    Ok(Answer {
        rcode,
        truncated,
        records,
    })
}

/// Names compare case-insensitively (RFC 4343), with or without the final dot.
pub fn same_name(a: &str, b: &str) -> bool {
    let a = a.strip_suffix('.').unwrap_or(a);
    let b = b.strip_suffix('.').unwrap_or(b);
    a.eq_ignore_ascii_case(b)
}

/// The addresses of type `qtype` for `qname`, following the answer's CNAME
/// chain from it (RFC 1034 §3.6.2, §4.3.2), and the name the chain ends at.
/// An empty list with a different end name means: ask again for that name.
pub fn addresses(records: &[Record], qname: &str, qtype: u16) -> (Vec<IpAddr>, String) {
    let mut name = qname
        .strip_suffix('.')
        .unwrap_or(qname)
        .to_ascii_lowercase();
    // A chain longer than the answer has records is a loop.
    for _ in 0..=records.len() {
        let found: Vec<IpAddr> = records
            .iter()
            .filter(|r| r.rtype == qtype && r.name == name)
            .filter_map(|r| match r.data {
                Data::Addr(a) => Some(a),
                _ => None,
            })
            .collect();
        if !found.is_empty() {
            return (found, name);
        }
        match records.iter().find_map(|r| match &r.data {
            Data::Cname(target) if r.name == name => Some(target.clone()),
            _ => None,
        }) {
            Some(next) => name = next,
            None => break,
        }
    }
    (Vec::new(), name)
}

/// The length prefix of a message over TCP (RFC 1035 §4.2.2).
pub fn tcp_frame(msg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(msg.len() + 2);
    out.extend_from_slice(&(msg.len() as u16).to_be_bytes());
    out.extend_from_slice(msg);
    out
}

struct Reader<'a> {
    msg: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn u16(&mut self) -> Option<u16> {
        let b = self.msg.get(self.pos..self.pos + 2)?;
        self.pos += 2;
        Some(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Option<u32> {
        let b = self.msg.get(self.pos..self.pos + 4)?;
        self.pos += 4;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A name at the cursor, compression pointers followed (§4.1.4); the
    /// cursor moves past the name as it appears here.
    fn name(&mut self) -> Result<String, &'static str> {
        let (name, end) = read_name(self.msg, self.pos)?;
        self.pos = end;
        Ok(name)
    }

    fn record(&mut self) -> Result<Record, &'static str> {
        let short = "a record is cut short";
        let name = self.name()?;
        let rtype = self.u16().ok_or(short)?;
        let class = self.u16().ok_or(short)?;
        let _ttl = self.u32().ok_or(short)?;
        let len = self.u16().ok_or(short)? as usize;
        let start = self.pos;
        let rdata = self.msg.get(start..start + len).ok_or(short)?;
        self.pos = start + len;
        let data = match (class, rtype, len) {
            (CLASS_IN, TYPE_A, 4) => {
                Data::Addr(Ipv4Addr::new(rdata[0], rdata[1], rdata[2], rdata[3]).into())
            }
            (CLASS_IN, TYPE_AAAA, 16) => {
                let mut b = [0u8; 16];
                b.copy_from_slice(rdata);
                Data::Addr(Ipv6Addr::from(b).into())
            }
            (CLASS_IN, TYPE_A | TYPE_AAAA, _) => {
                return Err("an address record has the wrong length");
            }
            (CLASS_IN, TYPE_CNAME, _) => {
                let (target, end) = read_name(self.msg, start)?;
                if end != start + len {
                    return Err("a CNAME record's length does not match its name");
                }
                Data::Cname(target)
            }
            _ => Data::Other,
        };
        Ok(Record { name, rtype, data })
    }
}

/// The name at `pos` and the offset just past it where it appears.
fn read_name(msg: &[u8], mut pos: usize) -> Result<(String, usize), &'static str> {
    let mut name = String::new();
    let mut end = None;
    let mut pointers = 0;
    let mut wire_len = 1;
    loop {
        let len = *msg.get(pos).ok_or("a name runs past the message")? as usize;
        match len & 0xc0 {
            0x00 if len == 0 => {
                return Ok((name, end.unwrap_or(pos + 1)));
            }
            0x00 => {
                let label = msg
                    .get(pos + 1..pos + 1 + len)
                    .ok_or("a name runs past the message")?;
                wire_len += len + 1;
                if wire_len > MAX_NAME {
                    return Err("a name is longer than 255 bytes");
                }
                if !name.is_empty() {
                    name.push('.');
                }
                for &b in label {
                    // Names we compare are hostnames; anything else is
                    // escaped so it can never equal one by accident.
                    if b.is_ascii_graphic() && b != b'.' && b != b'\\' {
                        name.push(b.to_ascii_lowercase() as char);
                    } else {
                        name.push_str(&format!("\\{b:03}"));
                    }
                }
                pos += 1 + len;
            }
            0xc0 => {
                let low = *msg.get(pos + 1).ok_or("a name runs past the message")? as usize;
                pointers += 1;
                if pointers > MAX_POINTERS {
                    return Err("a name's compression pointers loop");
                }
                end.get_or_insert(pos + 2);
                pos = ((len & 0x3f) << 8) | low;
            }
            _ => return Err("a name has an unknown label type"),
        }
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// An answer to `encode_query(id, name, qtype)` with `records` (each
    /// encoded by `rr`), built by hand as a server would.
    pub fn reply(id: u16, flags: u16, qname: &str, qtype: u16, records: &[Vec<u8>]) -> Vec<u8> {
        let mut m = encode_query(id, qname, qtype).unwrap();
        m[2..4].copy_from_slice(&flags.to_be_bytes());
        m[6..8].copy_from_slice(&(records.len() as u16).to_be_bytes());
        for r in records {
            m.extend_from_slice(r);
        }
        m
    }

    /// A record whose owner is a pointer to the question's name (offset 12).
    fn rr_at_question(rtype: u16, rdata: &[u8]) -> Vec<u8> {
        let mut r = vec![0xc0, 12];
        r.extend_from_slice(&rtype.to_be_bytes());
        r.extend_from_slice(&CLASS_IN.to_be_bytes());
        r.extend_from_slice(&300u32.to_be_bytes());
        r.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        r.extend_from_slice(rdata);
        r
    }

    fn rr_named(owner: &str, rtype: u16, rdata: &[u8]) -> Vec<u8> {
        let mut r = Vec::new();
        encode_name(owner, &mut r).unwrap();
        r.extend_from_slice(&rtype.to_be_bytes());
        r.extend_from_slice(&CLASS_IN.to_be_bytes());
        r.extend_from_slice(&60u32.to_be_bytes());
        r.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        r.extend_from_slice(rdata);
        r
    }

    fn wire_name(n: &str) -> Vec<u8> {
        let mut v = Vec::new();
        encode_name(n, &mut v).unwrap();
        v
    }

    #[test]
    fn encodes_a_query_as_rfc1035_lays_it_out() {
        let q = encode_query(0xbeef, "Registry.Example.", TYPE_AAAA).unwrap();
        let want: Vec<u8> = [
            &[0xbe, 0xef, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0][..],
            b"\x08Registry\x07Example\x00",
            &[0, 28, 0, 1],
        ]
        .concat();
        assert_eq!(q, want);
    }

    #[test]
    fn refuses_names_dns_cannot_carry() {
        assert!(encode_query(1, "", TYPE_A).is_err());
        assert!(encode_query(1, "a..b", TYPE_A).is_err());
        assert!(encode_query(1, &"x".repeat(64), TYPE_A).is_err());
        let long = vec!["abcdefghij"; 24].join(".");
        assert!(encode_query(1, &long, TYPE_A).is_err());
        assert!(encode_query(1, "a b.example", TYPE_A).is_err());
        assert!(encode_query(1, &"x".repeat(63), TYPE_A).is_ok());
    }

    #[test]
    fn decodes_a_and_aaaa_with_compressed_owners() {
        let m = reply(
            7,
            0x8180,
            "r.example",
            TYPE_A,
            &[rr_at_question(TYPE_A, &[10, 0, 0, 9])],
        );
        let a = decode_answer(&m, 7, "R.EXAMPLE.", TYPE_A).unwrap();
        assert_eq!((a.rcode, a.truncated), (RCODE_NOERROR, false));
        assert_eq!(
            addresses(&a.records, "r.example", TYPE_A).0,
            vec![IpAddr::from([10, 0, 0, 9])]
        );
        let v6: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let m = reply(
            8,
            0x8180,
            "r.example",
            TYPE_AAAA,
            &[rr_at_question(TYPE_AAAA, &v6.octets())],
        );
        let a = decode_answer(&m, 8, "r.example", TYPE_AAAA).unwrap();
        assert_eq!(
            addresses(&a.records, "r.example", TYPE_AAAA).0,
            vec![IpAddr::V6(v6)]
        );
    }

    #[test]
    fn mismatched_ids_questions_and_queries_are_not_ours() {
        let m = reply(7, 0x8180, "r.example", TYPE_A, &[]);
        assert_eq!(
            decode_answer(&m, 8, "r.example", TYPE_A),
            Err(WireError::NotOurs)
        );
        assert_eq!(
            decode_answer(&m, 7, "s.example", TYPE_A),
            Err(WireError::NotOurs)
        );
        assert_eq!(
            decode_answer(&m, 7, "r.example", TYPE_AAAA),
            Err(WireError::NotOurs)
        );
        // Our own query echoed back (QR=0) is not an answer.
        let q = encode_query(7, "r.example", TYPE_A).unwrap();
        assert_eq!(
            decode_answer(&q, 7, "r.example", TYPE_A),
            Err(WireError::NotOurs)
        );
        assert_eq!(
            decode_answer(&m[..5], 7, "r.example", TYPE_A),
            Err(WireError::NotOurs)
        );
    }

    #[test]
    fn rcode_and_truncation_are_reported() {
        let m = reply(1, 0x8183, "nope.example", TYPE_A, &[]);
        assert_eq!(
            decode_answer(&m, 1, "nope.example", TYPE_A).unwrap().rcode,
            RCODE_NXDOMAIN
        );
        // TC set, the second record cut in half: the whole first one is kept.
        let mut m = reply(
            2,
            0x8380,
            "big.example",
            TYPE_A,
            &[
                rr_at_question(TYPE_A, &[10, 0, 0, 1]),
                rr_at_question(TYPE_A, &[10, 0, 0, 2]),
            ],
        );
        m.truncate(m.len() - 3);
        let a = decode_answer(&m, 2, "big.example", TYPE_A).unwrap();
        assert!(a.truncated);
        assert_eq!(a.records.len(), 1);
        // The same cut without TC is malformed.
        m[2] = 0x81;
        assert!(matches!(
            decode_answer(&m, 2, "big.example", TYPE_A),
            Err(WireError::Malformed(_))
        ));
    }

    #[test]
    fn follows_cname_chains_and_stops_at_loops() {
        let m = reply(
            3,
            0x8180,
            "reg.example",
            TYPE_A,
            &[
                rr_at_question(TYPE_CNAME, &wire_name("Edge.CDN.example")),
                rr_named(
                    "edge.cdn.example",
                    TYPE_CNAME,
                    &wire_name("pop1.cdn.example"),
                ),
                rr_named("pop1.cdn.example", TYPE_A, &[192, 0, 2, 7]),
                rr_named("unrelated.example", TYPE_A, &[192, 0, 2, 99]),
            ],
        );
        let a = decode_answer(&m, 3, "reg.example", TYPE_A).unwrap();
        let (addrs, end) = addresses(&a.records, "reg.example", TYPE_A);
        assert_eq!(addrs, vec![IpAddr::from([192, 0, 2, 7])]);
        assert_eq!(end, "pop1.cdn.example");
        // A chain without the final address: ask again for its end.
        let (addrs, end) = addresses(&a.records[..2], "reg.example", TYPE_A);
        assert!(addrs.is_empty());
        assert_eq!(end, "pop1.cdn.example");
        let looped = vec![
            Record {
                name: "a".into(),
                rtype: TYPE_CNAME,
                data: Data::Cname("b".into()),
            },
            Record {
                name: "b".into(),
                rtype: TYPE_CNAME,
                data: Data::Cname("a".into()),
            },
        ];
        assert!(addresses(&looped, "a", TYPE_A).0.is_empty());
    }

    #[test]
    fn compression_loops_and_bad_lengths_are_errors_not_hangs() {
        let mut m = reply(4, 0x8180, "x.example", TYPE_A, &[]);
        m[6..8].copy_from_slice(&1u16.to_be_bytes());
        let at = m.len();
        m.extend_from_slice(&[0xc0, at as u8]); // points at itself
        m.extend_from_slice(&[0, 1, 0, 1, 0, 0, 0, 1, 0, 4, 1, 2, 3, 4]);
        assert!(matches!(
            decode_answer(&m, 4, "x.example", TYPE_A),
            Err(WireError::Malformed(_))
        ));
        let m = reply(
            5,
            0x8180,
            "x.example",
            TYPE_A,
            &[rr_at_question(TYPE_A, &[1, 2, 3])],
        );
        assert!(matches!(
            decode_answer(&m, 5, "x.example", TYPE_A),
            Err(WireError::Malformed(_))
        ));
    }

    #[test]
    fn odd_bytes_in_names_never_match_a_hostname() {
        let (name, end) = read_name(b"\x03a.b\x00", 0).unwrap();
        assert_eq!((name.as_str(), end), ("a\\046b", 5));
        assert!(!same_name(&name, "a.b"));
    }

    #[test]
    fn frames_for_tcp() {
        assert_eq!(tcp_frame(b"abc"), vec![0, 3, b'a', b'b', b'c']);
    }
}
