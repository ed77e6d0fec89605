//! DNS messages (RFC 1035 §4) as views over borrowed bytes: pure functions, no state, no allocation.
//!
//! [`Message::parse`] reads the header and then walks every question and record once, checking
//! names, lengths and counts; the iterators afterwards yield only what that walk accepted, so they
//! cannot fail. A message that goes wrong part way is still a [`Message`]: the header, the questions
//! and records before the fault, and [`Message::malformed`] naming the fault. Only a message shorter
//! than its header is an error.
//!
//! Names ([`Name`]) are offsets into the message, rendered EVE-style (dot-separated, no trailing dot,
//! the root as `<root>`) only when written. Record data is decoded on request ([`Record::data`]) for
//! A, AAAA, CNAME, NS, PTR, MX, TXT, SOA, SRV, SVCB/HTTPS (RFC 9460) and OPT (RFC 6891); other types
//! come back as their type and length.
//!
//! Limits (RFC 1035 §2.3.4 and §4.1.4): a name is at most 255 bytes in wire form and 127 labels; a
//! compression pointer must point strictly before the start of the run of labels that contains it,
//! so every jump goes backwards and a name is read in at most as many jumps as the message has bytes
//! before it. Forward pointers, which no known encoder writes, are refused for that reason.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use thiserror::Error;

/// Bytes in the fixed header.
pub const HEADER_LEN: usize = 12;
/// Longest name in wire form, with its length octets and the root's zero (RFC 1035 §2.3.4).
pub const MAX_NAME_LEN: usize = 255;
/// Most labels a name of 255 bytes can hold, not counting the root.
pub const MAX_LABELS: usize = 127;

/// Record types the parser decodes, and a few more that records name often.
pub mod rtype {
    /// IPv4 address.
    pub const A: u16 = 1;
    /// Name server.
    pub const NS: u16 = 2;
    /// Canonical name.
    pub const CNAME: u16 = 5;
    /// Start of authority.
    pub const SOA: u16 = 6;
    /// Domain name pointer.
    pub const PTR: u16 = 12;
    /// Mail exchange.
    pub const MX: u16 = 15;
    /// Text strings.
    pub const TXT: u16 = 16;
    /// IPv6 address.
    pub const AAAA: u16 = 28;
    /// Service location.
    pub const SRV: u16 = 33;
    /// EDNS(0) pseudo-record.
    pub const OPT: u16 = 41;
    /// Service binding (RFC 9460).
    pub const SVCB: u16 = 64;
    /// HTTPS service binding (RFC 9460).
    pub const HTTPS: u16 = 65;
    /// Any type (queries only).
    pub const ANY: u16 = 255;
}

/// The EVE name of a record type (Suricata's `rrtype` strings), for the types the parser knows and
/// the common DNSSEC ones; `None` for others, which records write as a number.
pub fn rtype_name(t: u16) -> Option<&'static str> {
    Some(match t {
        1 => "A",
        2 => "NS",
        5 => "CNAME",
        6 => "SOA",
        12 => "PTR",
        13 => "HINFO",
        15 => "MX",
        16 => "TXT",
        28 => "AAAA",
        33 => "SRV",
        35 => "NAPTR",
        39 => "DNAME",
        41 => "OPT",
        43 => "DS",
        44 => "SSHFP",
        46 => "RRSIG",
        47 => "NSEC",
        48 => "DNSKEY",
        50 => "NSEC3",
        52 => "TLSA",
        64 => "SVCB",
        65 => "HTTPS",
        99 => "SPF",
        250 => "TSIG",
        251 => "IXFR",
        252 => "AXFR",
        255 => "ANY",
        256 => "URI",
        257 => "CAA",
        _ => return None,
    })
}

/// The EVE name of a response code (RFC 6895 §2.3), up to the 12 bits EDNS allows; `None` for
/// unassigned codes.
pub fn rcode_name(rcode: u16) -> Option<&'static str> {
    Some(match rcode {
        0 => "NOERROR",
        1 => "FORMERR",
        2 => "SERVFAIL",
        3 => "NXDOMAIN",
        4 => "NOTIMP",
        5 => "REFUSED",
        6 => "YXDOMAIN",
        7 => "YXRRSET",
        8 => "NXRRSET",
        9 => "NOTAUTH",
        10 => "NOTZONE",
        16 => "BADVERS",
        17 => "BADKEY",
        18 => "BADTIME",
        19 => "BADMODE",
        20 => "BADNAME",
        21 => "BADALG",
        22 => "BADTRUNC",
        23 => "BADCOOKIE",
        _ => return None,
    })
}

/// Why bytes are not (or stop being) a DNS message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum DnsError {
    /// Fewer bytes than the 12-byte header.
    #[error("shorter than the 12-byte DNS header")]
    ShortHeader,
    /// A name's labels run past the end of the message.
    #[error("name at offset {at} runs past the end of the message")]
    NameTruncated {
        /// Where the name starts.
        at: usize,
    },
    /// A compression pointer that does not point strictly backwards (a loop, or a forward jump).
    #[error("compression pointer at offset {at} to {target} does not point backwards")]
    BadPointer {
        /// Where the pointer is.
        at: usize,
        /// Where it points.
        target: usize,
    },
    /// A label length octet with the reserved top bits 01 or 10 (RFC 6891 §5 retired them).
    #[error("reserved label type 0x{octet:02x} at offset {at}")]
    ReservedLabelType {
        /// Where the octet is.
        at: usize,
        /// The octet.
        octet: u8,
    },
    /// A name longer than 255 bytes in wire form.
    #[error("name at offset {at} longer than 255 bytes")]
    NameTooLong {
        /// Where the name starts.
        at: usize,
    },
    /// A name with more than 127 labels.
    #[error("name at offset {at} has more than 127 labels")]
    TooManyLabels {
        /// Where the name starts.
        at: usize,
    },
    /// A question's type and class run past the end.
    #[error("question {index} runs past the end of the message")]
    QuestionTruncated {
        /// Its index, from 0.
        index: u16,
    },
    /// A record's fixed fields or data run past the end.
    #[error("{section:?} record {index} runs past the end of the message")]
    RecordTruncated {
        /// Its section.
        section: Section,
        /// Its index within the section, from 0.
        index: u16,
    },
    /// Record data whose length or content does not fit its type.
    #[error("record data of type {rtype} is malformed")]
    BadRdata {
        /// The record type.
        rtype: u16,
    },
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    let s = b.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([s[0], s[1]]))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

/// The fixed header (RFC 1035 §4.1.1, with AD and CD from RFC 4035 §3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Transaction id, which a response repeats.
    pub id: u16,
    /// The flags word as sent (EVE writes it in hex).
    pub flags: u16,
    /// Questions announced.
    pub qdcount: u16,
    /// Answer records announced.
    pub ancount: u16,
    /// Authority records announced.
    pub nscount: u16,
    /// Additional records announced.
    pub arcount: u16,
}

impl Header {
    /// Reads the header; `None` if `b` is shorter than 12 bytes.
    pub fn parse(b: &[u8]) -> Option<Header> {
        Some(Header {
            id: be16(b, 0)?,
            flags: be16(b, 2)?,
            qdcount: be16(b, 4)?,
            ancount: be16(b, 6)?,
            nscount: be16(b, 8)?,
            arcount: be16(b, 10)?,
        })
    }
    /// A response rather than a query.
    pub fn qr(&self) -> bool {
        self.flags & 0x8000 != 0
    }
    /// Kind of query: 0 query, 2 status, 4 notify, 5 update, 6 DSO.
    pub fn opcode(&self) -> u8 {
        ((self.flags >> 11) & 0xf) as u8
    }
    /// Authoritative answer.
    pub fn aa(&self) -> bool {
        self.flags & 0x0400 != 0
    }
    /// Truncated: the client should retry over TCP.
    pub fn tc(&self) -> bool {
        self.flags & 0x0200 != 0
    }
    /// Recursion desired.
    pub fn rd(&self) -> bool {
        self.flags & 0x0100 != 0
    }
    /// Recursion available.
    pub fn ra(&self) -> bool {
        self.flags & 0x0080 != 0
    }
    /// The reserved Z bit, which must be zero.
    pub fn z(&self) -> bool {
        self.flags & 0x0040 != 0
    }
    /// Authentic data (DNSSEC validated).
    pub fn ad(&self) -> bool {
        self.flags & 0x0020 != 0
    }
    /// Checking disabled.
    pub fn cd(&self) -> bool {
        self.flags & 0x0010 != 0
    }
    /// The low 4 bits of the response code; with EDNS the full code is
    /// [`Opt::full_rcode`].
    pub fn rcode(&self) -> u8 {
        (self.flags & 0xf) as u8
    }
}

/// A domain name: where it starts in its message. Reading it follows compression pointers; it was
/// checked against the limits when the message was parsed.
#[derive(Clone, Copy)]
pub struct Name<'a> {
    msg: &'a [u8],
    start: usize,
}

impl<'a> Name<'a> {
    /// Checks the name at `start` and returns it with the offset just after it in place (after its
    /// root label or first pointer).
    fn parse(msg: &'a [u8], start: usize) -> Result<(Name<'a>, usize), DnsError> {
        let mut pos = start;
        // Pointers must land strictly before the run of labels they end.
        let mut run_start = start;
        let mut end = None;
        let mut wire_len = 0usize;
        let mut labels = 0usize;
        loop {
            let Some(&octet) = msg.get(pos) else {
                return Err(DnsError::NameTruncated { at: start });
            };
            match octet & 0xc0 {
                0x00 if octet == 0 => {
                    wire_len += 1;
                    if wire_len > MAX_NAME_LEN {
                        return Err(DnsError::NameTooLong { at: start });
                    }
                    let after = end.unwrap_or(pos + 1);
                    return Ok((Name { msg, start }, after));
                }
                0x00 => {
                    let len = usize::from(octet);
                    if pos + 1 + len > msg.len() {
                        return Err(DnsError::NameTruncated { at: start });
                    }
                    labels += 1;
                    wire_len += 1 + len;
                    if labels > MAX_LABELS {
                        return Err(DnsError::TooManyLabels { at: start });
                    }
                    if wire_len > MAX_NAME_LEN {
                        return Err(DnsError::NameTooLong { at: start });
                    }
                    pos += 1 + len;
                }
                0xc0 => {
                    let Some(word) = be16(msg, pos) else {
                        return Err(DnsError::NameTruncated { at: start });
                    };
                    let target = usize::from(word & 0x3fff);
                    if target >= run_start {
                        return Err(DnsError::BadPointer { at: pos, target });
                    }
                    if end.is_none() {
                        end = Some(pos + 2);
                    }
                    run_start = target;
                    pos = target;
                }
                _ => return Err(DnsError::ReservedLabelType { at: pos, octet }),
            }
        }
    }

    /// The labels, first to last, without the root. Allocates nothing.
    pub fn labels(&self) -> Labels<'a> {
        Labels {
            msg: self.msg,
            pos: self.start,
            left: MAX_LABELS,
        }
    }

    /// The root name (a lone zero octet).
    pub fn is_root(&self) -> bool {
        self.labels().next().is_none()
    }

    /// Writes the name EVE-style: labels joined by dots, no trailing dot, `<root>` for the root.
    ///
    /// `<root>` keeps the root visible in a record where an empty string would read as "no name".
    /// Suricata's parser (rust/src/dns/parser.rs, as stored for this work) holds the root as an empty
    /// name; whether its EVE writer turns that into `<root>` could not be confirmed from the sources
    /// at hand, so compare with a real Suricata before relying on equality for the root.
    ///
    /// Bytes are written as Suricata's EVE writes them where the label is valid UTF-8 (as is,
    /// spaces included); control characters (below 0x20, and 0x7f) and, in a label that is not
    /// valid UTF-8, every byte from 0x80, become `\xNN` in lowercase hex. A dot inside a label is
    /// written as is, as Suricata does.
    pub fn write_to<W: fmt::Write + ?Sized>(&self, out: &mut W) -> fmt::Result {
        let mut first = true;
        for label in self.labels() {
            if !first {
                out.write_char('.')?;
            }
            first = false;
            write_escaped(label, out)?;
        }
        if first {
            out.write_str("<root>")?;
        }
        Ok(())
    }

    /// Compares with a name in text form (dots between labels, no escapes, trailing dot optional),
    /// ignoring ASCII case (RFC 4343). `""` and `"."` are the root.
    pub fn eq_text(&self, text: &str) -> bool {
        let text = text.strip_suffix('.').unwrap_or(text);
        let mut parts = text.split('.').filter(|_| !text.is_empty());
        for label in self.labels() {
            match parts.next() {
                Some(p) if p.as_bytes().eq_ignore_ascii_case(label) => {}
                _ => return false,
            }
        }
        parts.next().is_none()
    }
}

fn write_escaped<W: fmt::Write + ?Sized>(label: &[u8], out: &mut W) -> fmt::Result {
    match std::str::from_utf8(label) {
        // The common label: written whole, not a character at a time.
        Ok(s) if !s.bytes().any(|b| b.is_ascii_control()) => out.write_str(s)?,
        Ok(s) => {
            for c in s.chars() {
                if c.is_ascii_control() {
                    write!(out, "\\x{:02x}", c as u32)?;
                } else {
                    out.write_char(c)?;
                }
            }
        }
        Err(_) => {
            for &b in label {
                if b.is_ascii_control() || b >= 0x80 {
                    write!(out, "\\x{b:02x}")?;
                } else {
                    out.write_char(char::from(b))?;
                }
            }
        }
    }
    Ok(())
}

impl fmt::Display for Name<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_to(f)
    }
}

impl fmt::Debug for Name<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Name(\"{self}\")")
    }
}

impl PartialEq for Name<'_> {
    /// Equal labels, ASCII case ignored (RFC 4343), wherever each is stored.
    fn eq(&self, other: &Self) -> bool {
        let mut a = self.labels();
        let mut b = other.labels();
        loop {
            match (a.next(), b.next()) {
                (None, None) => return true,
                (Some(x), Some(y)) if x.eq_ignore_ascii_case(y) => {}
                _ => return false,
            }
        }
    }
}

/// The labels of a [`Name`].
#[derive(Clone)]
pub struct Labels<'a> {
    msg: &'a [u8],
    pos: usize,
    left: usize,
}

impl<'a> Iterator for Labels<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        // The name was checked when parsed; the bounds checks and the label budget here only keep
        // this iterator total.
        loop {
            if self.left == 0 {
                return None;
            }
            let octet = *self.msg.get(self.pos)?;
            match octet & 0xc0 {
                0x00 if octet == 0 => return None,
                0x00 => {
                    let len = usize::from(octet);
                    let label = self.msg.get(self.pos + 1..self.pos + 1 + len)?;
                    self.pos += 1 + len;
                    self.left -= 1;
                    return Some(label);
                }
                0xc0 => {
                    let target = usize::from(be16(self.msg, self.pos)? & 0x3fff);
                    if target >= self.pos {
                        return None;
                    }
                    self.pos = target;
                }
                _ => return None,
            }
        }
    }
}

/// A question (RFC 1035 §4.1.2).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Question<'a> {
    /// The name asked about.
    pub name: Name<'a>,
    /// The type asked for.
    pub qtype: u16,
    /// The class; mDNS uses the top bit as "unicast response wanted" (RFC 6762 §5.4).
    pub qclass: u16,
}

/// The section a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    /// Answers to the question.
    Answer,
    /// Authority records (NS, SOA of the zone).
    Authority,
    /// Additional records (glue, OPT).
    Additional,
}

/// A resource record (RFC 1035 §4.1.3), its data not yet decoded.
#[derive(Clone, Copy, PartialEq)]
pub struct Record<'a> {
    /// Where it came from.
    pub section: Section,
    /// Its owner name.
    pub name: Name<'a>,
    /// Its type.
    pub rtype: u16,
    /// Its class (for OPT, the sender's UDP payload size).
    pub class: u16,
    /// Its TTL (for OPT, the extended rcode, version and flags).
    pub ttl: u32,
    /// Its data, undecoded.
    pub rdata: &'a [u8],
    msg: &'a [u8],
    rdata_at: usize,
}

impl fmt::Debug for Record<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Without the message the record points into.
        f.debug_struct("Record")
            .field("section", &self.section)
            .field("name", &self.name)
            .field("rtype", &self.rtype)
            .field("class", &self.class)
            .field("ttl", &self.ttl)
            .field("rdata", &self.rdata)
            .finish()
    }
}

/// Decoded record data.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RData<'a> {
    /// An IPv4 address.
    A(Ipv4Addr),
    /// An IPv6 address.
    Aaaa(Ipv6Addr),
    /// The canonical name.
    Cname(Name<'a>),
    /// A name server.
    Ns(Name<'a>),
    /// A pointer target (reverse lookups, DNS-SD).
    Ptr(Name<'a>),
    /// A mail exchange.
    Mx {
        /// Lower is preferred.
        preference: u16,
        /// The host.
        exchange: Name<'a>,
    },
    /// Character-strings.
    Txt(TxtStrings<'a>),
    /// Start of authority.
    Soa(Soa<'a>),
    /// A service location.
    Srv {
        /// Lower is preferred.
        priority: u16,
        /// Share among equal priorities.
        weight: u16,
        /// The port.
        port: u16,
        /// The host.
        target: Name<'a>,
    },
    /// A service binding: SVCB, or HTTPS (the record says which in its `rtype`).
    Svcb(Svcb<'a>),
    /// The EDNS(0) pseudo-record.
    Opt(Opt<'a>),
    /// A type the parser does not decode.
    Other {
        /// Its type.
        rtype: u16,
        /// Its data length.
        len: u16,
    },
}

/// SOA data (RFC 1035 §3.3.13).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Soa<'a> {
    /// The primary name server.
    pub mname: Name<'a>,
    /// The responsible mailbox, as a name.
    pub rname: Name<'a>,
    /// Zone serial.
    pub serial: u32,
    /// Seconds between refreshes.
    pub refresh: u32,
    /// Seconds between retries.
    pub retry: u32,
    /// Seconds until the zone expires.
    pub expire: u32,
    /// Negative-caching TTL (RFC 2308).
    pub minimum: u32,
}

/// The character-strings of a TXT record, each without its length octet.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TxtStrings<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for TxtStrings<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        let (&len, tail) = self.rest.split_first()?;
        let s = tail.get(..usize::from(len))?;
        self.rest = &tail[s.len()..];
        Some(s)
    }
}

/// SVCB and HTTPS data (RFC 9460 §2.2).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Svcb<'a> {
    /// 0 for alias mode, otherwise the service's priority (lower preferred).
    pub priority: u16,
    /// The alias or service host; the root means the owner name itself.
    pub target: Name<'a>,
    params: &'a [u8],
}

impl<'a> Svcb<'a> {
    /// The SvcParams in wire order (RFC 9460 requires increasing keys).
    pub fn params(&self) -> SvcParams<'a> {
        SvcParams { rest: self.params }
    }

    /// The ALPN ids of the `alpn` parameter (key 1), e.g. `h2`, `h3`; empty if absent.
    pub fn alpn(&self) -> AlpnIds<'a> {
        let value = self
            .params()
            .find(|p| p.key == svc_key::ALPN)
            .map_or(&[][..], |p| p.value);
        AlpnIds { rest: value }
    }
}

/// SvcParamKeys (RFC 9460 §14.3.2).
pub mod svc_key {
    /// Keys the client must understand.
    pub const MANDATORY: u16 = 0;
    /// Application protocols offered.
    pub const ALPN: u16 = 1;
    /// The default protocol is not offered.
    pub const NO_DEFAULT_ALPN: u16 = 2;
    /// Alternative port.
    pub const PORT: u16 = 3;
    /// IPv4 address hints.
    pub const IPV4HINT: u16 = 4;
    /// Encrypted ClientHello configuration.
    pub const ECH: u16 = 5;
    /// IPv6 address hints.
    pub const IPV6HINT: u16 = 6;
}

/// One SvcParam.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SvcParam<'a> {
    /// Its key.
    pub key: u16,
    /// Its value, undecoded.
    pub value: &'a [u8],
}

/// The SvcParams of an SVCB/HTTPS record (checked whole when the record was decoded).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SvcParams<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for SvcParams<'a> {
    type Item = SvcParam<'a>;
    fn next(&mut self) -> Option<SvcParam<'a>> {
        let key = be16(self.rest, 0)?;
        let len = usize::from(be16(self.rest, 2)?);
        let value = self.rest.get(4..4 + len)?;
        self.rest = &self.rest[4 + len..];
        Some(SvcParam { key, value })
    }
}

/// The ids of an `alpn` SvcParam: length-prefixed strings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AlpnIds<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for AlpnIds<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        let (&len, tail) = self.rest.split_first()?;
        let s = tail.get(..usize::from(len))?;
        self.rest = &tail[s.len()..];
        Some(s)
    }
}

/// The EDNS(0) OPT pseudo-record (RFC 6891 §6.1.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opt<'a> {
    /// The largest UDP payload the sender can take.
    pub udp_payload_size: u16,
    /// The upper 8 bits of the 12-bit response code.
    pub extended_rcode: u8,
    /// The EDNS version (0).
    pub version: u8,
    /// DNSSEC OK: the sender wants DNSSEC records (RFC 3225).
    pub dnssec_ok: bool,
    /// The options (code, length, data …), undecoded.
    pub options: &'a [u8],
}

impl Opt<'_> {
    /// The full response code: these upper bits joined with the header's 4.
    pub fn full_rcode(&self, header: &Header) -> u16 {
        (u16::from(self.extended_rcode) << 4) | u16::from(header.rcode())
    }
}

impl<'a> Record<'a> {
    /// Decodes the data for the types the parser knows; others come back as
    /// [`RData::Other`]. Names inside must end within the data (they may point back into the
    /// message); fixed-size data must have its exact size.
    pub fn data(&self) -> Result<RData<'a>, DnsError> {
        let bad = DnsError::BadRdata { rtype: self.rtype };
        let d = self.rdata;
        let end = self.rdata_at + d.len();
        // A name in the data, which must end inside it; returns the name and the offset after it.
        let name_at = |at: usize| -> Result<(Name<'a>, usize), DnsError> {
            let (name, after) = Name::parse(self.msg, at)?;
            if after > end {
                return Err(bad);
            }
            Ok((name, after))
        };
        let whole = |at: usize| -> Result<Name<'a>, DnsError> {
            let (name, after) = name_at(at)?;
            if after != end {
                return Err(bad);
            }
            Ok(name)
        };
        Ok(match self.rtype {
            rtype::A => {
                let o: [u8; 4] = d.try_into().map_err(|_| bad)?;
                RData::A(Ipv4Addr::from(o))
            }
            rtype::AAAA => {
                let o: [u8; 16] = d.try_into().map_err(|_| bad)?;
                RData::Aaaa(Ipv6Addr::from(o))
            }
            rtype::CNAME => RData::Cname(whole(self.rdata_at)?),
            rtype::NS => RData::Ns(whole(self.rdata_at)?),
            rtype::PTR => RData::Ptr(whole(self.rdata_at)?),
            rtype::MX => {
                let preference = be16(d, 0).ok_or(bad)?;
                RData::Mx {
                    preference,
                    exchange: whole(self.rdata_at + 2)?,
                }
            }
            rtype::TXT => {
                // Every string must fit: the iterator then yields them all.
                let mut rest = d;
                while let Some((&len, tail)) = rest.split_first() {
                    rest = tail.get(usize::from(len)..).ok_or(bad)?;
                }
                RData::Txt(TxtStrings { rest: d })
            }
            rtype::SOA => {
                let (mname, after) = name_at(self.rdata_at)?;
                let (rname, after) = name_at(after)?;
                if end - after != 20 {
                    return Err(bad);
                }
                let n = |i: usize| be32(self.msg, after + 4 * i).ok_or(bad);
                RData::Soa(Soa {
                    mname,
                    rname,
                    serial: n(0)?,
                    refresh: n(1)?,
                    retry: n(2)?,
                    expire: n(3)?,
                    minimum: n(4)?,
                })
            }
            rtype::SRV => {
                let (Some(priority), Some(weight), Some(port)) =
                    (be16(d, 0), be16(d, 2), be16(d, 4))
                else {
                    return Err(bad);
                };
                RData::Srv {
                    priority,
                    weight,
                    port,
                    target: whole(self.rdata_at + 6)?,
                }
            }
            rtype::SVCB | rtype::HTTPS => {
                let priority = be16(d, 0).ok_or(bad)?;
                let (target, after) = name_at(self.rdata_at + 2)?;
                let params = &d[after - self.rdata_at..];
                // Every parameter must fit, and so must ALPN ids: the iterators then see it all.
                let mut rest = params;
                while !rest.is_empty() {
                    let len = usize::from(be16(rest, 2).ok_or(bad)?);
                    let value = rest.get(4..4 + len).ok_or(bad)?;
                    if be16(rest, 0) == Some(svc_key::ALPN) {
                        let mut ids = value;
                        while let Some((&l, tail)) = ids.split_first() {
                            ids = tail.get(usize::from(l)..).ok_or(bad)?;
                        }
                    }
                    rest = &rest[4 + len..];
                }
                RData::Svcb(Svcb {
                    priority,
                    target,
                    params,
                })
            }
            rtype::OPT => {
                // Options must tile the data.
                let mut rest = d;
                while !rest.is_empty() {
                    let len = usize::from(be16(rest, 2).ok_or(bad)?);
                    rest = rest.get(4 + len..).ok_or(bad)?;
                }
                RData::Opt(Opt {
                    udp_payload_size: self.class,
                    extended_rcode: (self.ttl >> 24) as u8,
                    version: (self.ttl >> 16) as u8,
                    dnssec_ok: self.ttl & 0x8000 != 0,
                    options: d,
                })
            }
            other => RData::Other {
                rtype: other,
                // rdlength is a u16 on the wire.
                len: d.len() as u16,
            },
        })
    }
}

/// A parsed DNS message: a view over its bytes.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    bytes: &'a [u8],
    header: Header,
    /// Questions and records per section that the walk accepted.
    questions: u16,
    records: [u16; 3],
    end: usize,
    malformed: Option<DnsError>,
}

impl<'a> Message<'a> {
    /// Parses a message (a UDP payload, or one message from [`TcpMessages`]).
    ///
    /// Fails only when there is no header. Otherwise every question and record is checked (names
    /// with their limits, fixed fields, data lengths; record data is decoded later, by
    /// [`Record::data`]); the first fault stops the walk and is kept in [`Message::malformed`],
    /// with the items before it still readable. Work is bounded by the message length: each item
    /// takes at least 5 bytes, and a name at most 127 labels and as many pointer jumps as there are
    /// bytes before it.
    pub fn parse(bytes: &'a [u8]) -> Result<Message<'a>, DnsError> {
        let header = Header::parse(bytes).ok_or(DnsError::ShortHeader)?;
        let mut m = Message {
            bytes,
            header,
            questions: 0,
            records: [0; 3],
            end: HEADER_LEN,
            malformed: None,
        };
        if let Err(e) = m.walk() {
            m.malformed = Some(e);
        }
        Ok(m)
    }

    fn walk(&mut self) -> Result<(), DnsError> {
        let b = self.bytes;
        let mut pos = HEADER_LEN;
        for index in 0..self.header.qdcount {
            let (_, after) = Name::parse(b, pos)?;
            if after + 4 > b.len() {
                return Err(DnsError::QuestionTruncated { index });
            }
            pos = after + 4;
            self.questions += 1;
            self.end = pos;
        }
        let counts = [
            self.header.ancount,
            self.header.nscount,
            self.header.arcount,
        ];
        for (s, (&count, section)) in counts.iter().zip(SECTIONS).enumerate() {
            for index in 0..count {
                let (_, after) = Name::parse(b, pos)?;
                let truncated = DnsError::RecordTruncated { section, index };
                let rdlen = usize::from(be16(b, after + 8).ok_or(truncated)?);
                let next = after + 10 + rdlen;
                if next > b.len() {
                    return Err(truncated);
                }
                pos = next;
                self.records[s] += 1;
                self.end = pos;
            }
        }
        Ok(())
    }

    /// The header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The whole message's bytes.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The first fault, if the message is malformed; the items before it are still readable.
    pub fn malformed(&self) -> Option<DnsError> {
        self.malformed
    }

    /// Where the last readable item ends; bytes after it in a well-formed message are trailing.
    pub fn end(&self) -> usize {
        self.end
    }

    /// The questions that could be read.
    pub fn questions(&self) -> Questions<'a> {
        Questions {
            msg: self.bytes,
            pos: HEADER_LEN,
            left: self.questions,
        }
    }

    /// All readable records, answers first, then authority, then additional.
    pub fn records(&self) -> Records<'a> {
        // The records start after the questions.
        let mut q = self.questions();
        while q.next().is_some() {}
        Records {
            msg: self.bytes,
            pos: q.pos,
            section: 0,
            left: self.records,
        }
    }

    /// The readable answer records.
    pub fn answers(&self) -> impl Iterator<Item = Record<'a>> + 'a {
        self.records().filter(|r| r.section == Section::Answer)
    }

    /// The readable authority records.
    pub fn authorities(&self) -> impl Iterator<Item = Record<'a>> + 'a {
        self.records().filter(|r| r.section == Section::Authority)
    }

    /// The readable additional records.
    pub fn additionals(&self) -> impl Iterator<Item = Record<'a>> + 'a {
        self.records().filter(|r| r.section == Section::Additional)
    }

    /// The EDNS(0) OPT record of the additional section, if there is a well-formed one.
    pub fn opt(&self) -> Option<Opt<'a>> {
        self.additionals()
            .filter(|r| r.rtype == rtype::OPT)
            .find_map(|r| match r.data() {
                Ok(RData::Opt(o)) => Some(o),
                _ => None,
            })
    }

    /// The 12-bit response code: the header's, extended by OPT when present.
    pub fn rcode(&self) -> u16 {
        match self.opt() {
            Some(o) => o.full_rcode(&self.header),
            None => u16::from(self.header.rcode()),
        }
    }
}

const SECTIONS: [Section; 3] = [Section::Answer, Section::Authority, Section::Additional];

/// The questions of a [`Message`].
#[derive(Debug, Clone)]
pub struct Questions<'a> {
    msg: &'a [u8],
    pos: usize,
    left: u16,
}

impl<'a> Iterator for Questions<'a> {
    type Item = Question<'a>;
    fn next(&mut self) -> Option<Question<'a>> {
        if self.left == 0 {
            return None;
        }
        let (name, after) = Name::parse(self.msg, self.pos).ok()?;
        let q = Question {
            name,
            qtype: be16(self.msg, after)?,
            qclass: be16(self.msg, after + 2)?,
        };
        self.pos = after + 4;
        self.left -= 1;
        Some(q)
    }
}

/// The records of a [`Message`], in wire order.
#[derive(Debug, Clone)]
pub struct Records<'a> {
    msg: &'a [u8],
    pos: usize,
    section: usize,
    left: [u16; 3],
}

impl<'a> Iterator for Records<'a> {
    type Item = Record<'a>;
    fn next(&mut self) -> Option<Record<'a>> {
        while self.left.get(self.section) == Some(&0) {
            self.section += 1;
        }
        let section = *SECTIONS.get(self.section)?;
        let (name, after) = Name::parse(self.msg, self.pos).ok()?;
        let rtype = be16(self.msg, after)?;
        let class = be16(self.msg, after + 2)?;
        let ttl = be32(self.msg, after + 4)?;
        let len = usize::from(be16(self.msg, after + 8)?);
        let rdata_at = after + 10;
        let rdata = self.msg.get(rdata_at..rdata_at + len)?;
        self.pos = rdata_at + len;
        self.left[self.section] -= 1;
        Some(Record {
            section,
            name,
            rtype,
            class,
            ttl,
            rdata,
            msg: self.msg,
            rdata_at,
        })
    }
}

/// Does this UDP payload look like DNS? For finding DNS on ports other than 53 and 5353.
///
/// True when the message parses whole with nothing left over, the opcode is one in use (0 query,
/// 2 status, 4 notify, 5 update, 6 DSO), the Z bit is clear, and it carries something: a query
/// must ask 1 to 16 questions (mDNS batches a few; RFC 9619 says 1), a response must have a
/// question or a record. Cheap: one walk of the message, no record data decoded.
pub fn probe(payload: &[u8]) -> bool {
    let Ok(m) = Message::parse(payload) else {
        return false;
    };
    let h = m.header();
    if m.malformed().is_some() || m.end() != payload.len() || h.z() {
        return false;
    }
    if !matches!(h.opcode(), 0 | 2 | 4 | 5 | 6) {
        return false;
    }
    if h.qr() {
        u32::from(h.qdcount) + u32::from(h.ancount) + u32::from(h.nscount) + u32::from(h.arcount)
            > 0
    } else {
        (1..=16).contains(&h.qdcount) || (h.opcode() == 6 && h.qdcount == 0)
    }
}

/// Where a byte stream stands in DNS over TCP framing (RFC 1035 §4.2.2, RFC 7766 §8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpFrame<'a> {
    /// A whole message, and how many stream bytes it took (its 2-byte length included).
    Message {
        /// The message, without the length prefix.
        message: &'a [u8],
        /// Bytes consumed from the stream.
        consumed: usize,
    },
    /// The next message is not all here: this many more bytes are needed before it is (at least
    /// the rest of the length prefix, then the rest of the message).
    NeedMore {
        /// Bytes missing.
        needed: usize,
    },
}

/// Reads the first length-prefixed message of a DNS over TCP stream.
///
/// A message split across segments gives [`TcpFrame::NeedMore`] with the count of missing bytes, so
/// the caller can keep the tail and wait for that much. A zero length gives an empty message, which
/// [`Message::parse`] then refuses.
pub fn tcp_frame(stream: &[u8]) -> TcpFrame<'_> {
    let Some(len) = be16(stream, 0) else {
        return TcpFrame::NeedMore {
            needed: 2 - stream.len(),
        };
    };
    let total = 2 + usize::from(len);
    match stream.get(2..total) {
        Some(message) => TcpFrame::Message {
            message,
            consumed: total,
        },
        None => TcpFrame::NeedMore {
            needed: total - stream.len(),
        },
    }
}

/// The whole messages at the front of a DNS over TCP stream buffer, in order.
///
/// After the iterator ends, [`TcpMessages::remainder`] is the incomplete tail to keep and
/// [`TcpMessages::needed`] how many more bytes complete its message (0 when the tail is empty).
#[derive(Debug, Clone)]
pub struct TcpMessages<'a> {
    rest: &'a [u8],
}

impl<'a> TcpMessages<'a> {
    /// Iterates over the messages in `stream`.
    pub fn new(stream: &'a [u8]) -> Self {
        TcpMessages { rest: stream }
    }

    /// The bytes not yet yielded.
    pub fn remainder(&self) -> &'a [u8] {
        self.rest
    }

    /// Bytes still missing for the next message; 0 with nothing pending.
    pub fn needed(&self) -> usize {
        if self.rest.is_empty() {
            return 0;
        }
        match tcp_frame(self.rest) {
            TcpFrame::NeedMore { needed } => needed,
            TcpFrame::Message { .. } => 0,
        }
    }
}

impl<'a> Iterator for TcpMessages<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        match tcp_frame(self.rest) {
            TcpFrame::Message { message, consumed } => {
                self.rest = &self.rest[consumed..];
                Some(message)
            }
            TcpFrame::NeedMore { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A query for www.example.com A, recursion desired, with an EDNS OPT (4096, DO).
    const QUERY: &[u8] = &[
        0x12, 0x34, 0x01, 0x20, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, // header
        3, b'w', b'w', b'w', 7, b'e', b'x', b'a', b'm', b'p', b'l', b'e', 3, b'c', b'o', b'm',
        0, // name
        0x00, 0x01, 0x00, 0x01, // A IN
        0x00, 0x00, 0x29, 0x10, 0x00, 0x00, 0x00, 0x80, 0x00, 0x00, 0x00, // OPT
    ];

    /// The response: a CNAME (compressed) and an A, an SOA in authority, and an OPT with an
    /// extended rcode bit set.
    fn response() -> Vec<u8> {
        let mut m = vec![
            0x12, 0x34, 0x81, 0x80, 0x00, 0x01, 0x00, 0x02, 0x00, 0x01, 0x00, 0x01,
        ];
        m.extend_from_slice(&QUERY[12..33]);
        // www.example.com CNAME web.example.com (web + pointer to example.com at 16)
        m.extend_from_slice(&[0xc0, 0x0c, 0, 5, 0, 1, 0, 0, 0x0e, 0x10, 0, 6]);
        m.extend_from_slice(&[3, b'w', b'e', b'b', 0xc0, 16]);
        // web.example.com (at 45) A 93.184.215.14
        m.extend_from_slice(&[0xc0, 45, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 93, 184, 215, 14]);
        // example.com SOA ns.example.com hostmaster.example.com 1 2 3 4 5
        let soa_data: &[u8] = &[
            2, b'n', b's', 0xc0, 16, 10, b'h', b'o', b's', b't', b'm', b'a', b's', b't', b'e',
            b'r', 0xc0, 16, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0, 5,
        ];
        m.extend_from_slice(&[0xc0, 16, 0, 6, 0, 1, 0, 0, 0, 5]);
        m.extend_from_slice(&(soa_data.len() as u16).to_be_bytes());
        m.extend_from_slice(soa_data);
        // OPT: udp 1232, extended rcode 1, version 0, DO
        m.extend_from_slice(&[0, 0, 0x29, 0x04, 0xd0, 0x01, 0x00, 0x80, 0x00, 0, 0]);
        m
    }

    #[test]
    fn dns_query_header_and_question() {
        let m = Message::parse(QUERY).unwrap();
        let h = m.header();
        assert_eq!(h.id, 0x1234);
        assert!(!h.qr() && h.rd() && !h.ra() && h.ad() && !h.cd() && !h.aa() && !h.tc());
        assert_eq!((h.opcode(), h.rcode()), (0, 0));
        assert_eq!(m.malformed(), None);
        assert_eq!(m.end(), QUERY.len());
        let q: Vec<_> = m.questions().collect();
        assert_eq!(q.len(), 1);
        assert_eq!(q[0].name.to_string(), "www.example.com");
        assert!(q[0].name.eq_text("WWW.Example.com."));
        assert_eq!((q[0].qtype, q[0].qclass), (rtype::A, 1));
        let opt = m.opt().unwrap();
        assert_eq!(opt.udp_payload_size, 4096);
        assert!(opt.dnssec_ok);
        assert_eq!((opt.version, opt.extended_rcode), (0, 0));
        assert!(probe(QUERY));
    }

    #[test]
    fn dns_response_records_decode() {
        let bytes = response();
        let m = Message::parse(&bytes).unwrap();
        assert_eq!(m.malformed(), None);
        assert!(m.header().qr() && m.header().ra());
        let answers: Vec<_> = m.answers().collect();
        assert_eq!(answers.len(), 2);
        assert_eq!(answers[0].name.to_string(), "www.example.com");
        assert_eq!(answers[0].ttl, 3600);
        match answers[0].data().unwrap() {
            RData::Cname(n) => assert_eq!(n.to_string(), "web.example.com"),
            other => panic!("{other:?}"),
        }
        assert_eq!(answers[1].name.to_string(), "web.example.com");
        assert_eq!(
            answers[1].data().unwrap(),
            RData::A(Ipv4Addr::new(93, 184, 215, 14))
        );
        let auth: Vec<_> = m.authorities().collect();
        assert_eq!(auth.len(), 1);
        match auth[0].data().unwrap() {
            RData::Soa(s) => {
                assert_eq!(s.mname.to_string(), "ns.example.com");
                assert_eq!(s.rname.to_string(), "hostmaster.example.com");
                assert_eq!(
                    (s.serial, s.refresh, s.retry, s.expire, s.minimum),
                    (1, 2, 3, 4, 5)
                );
            }
            other => panic!("{other:?}"),
        }
        // Extended rcode 1 << 4 | 0 = 16 (BADVERS).
        assert_eq!(m.rcode(), 16);
        assert_eq!(rcode_name(m.rcode()), Some("BADVERS"));
        assert_eq!(m.records().count(), 4);
        assert!(probe(&bytes));
    }

    fn with_answer(rtype: u16, rdata: &[u8]) -> Vec<u8> {
        let mut m = vec![0, 1, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0];
        m.extend_from_slice(&QUERY[12..29]);
        m.extend_from_slice(&rtype.to_be_bytes());
        m.extend_from_slice(&[0, 1]);
        m.extend_from_slice(&[0xc0, 12]);
        m.extend_from_slice(&rtype.to_be_bytes());
        m.extend_from_slice(&[0, 1, 0, 0, 0, 30]);
        m.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        m.extend_from_slice(rdata);
        m
    }

    fn first_answer(bytes: &[u8]) -> Result<RData<'_>, DnsError> {
        let m = Message::parse(bytes).unwrap();
        assert_eq!(m.malformed(), None);
        m.answers().next().unwrap().data()
    }

    #[test]
    fn dns_rdata_types() {
        let aaaa = with_answer(
            rtype::AAAA,
            &[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
        );
        assert_eq!(
            first_answer(&aaaa).unwrap(),
            RData::Aaaa("2001:db8::1".parse().unwrap())
        );
        let mx = with_answer(rtype::MX, &[0, 10, 2, b'm', b'x', 0xc0, 16]);
        match first_answer(&mx).unwrap() {
            RData::Mx {
                preference,
                exchange,
            } => {
                assert_eq!(preference, 10);
                assert_eq!(exchange.to_string(), "mx.example.com");
            }
            other => panic!("{other:?}"),
        }
        let txt = with_answer(
            rtype::TXT,
            &[5, b'v', b'=', b's', b'p', b'f', 0, 2, b'h', b'i'],
        );
        match first_answer(&txt).unwrap() {
            RData::Txt(t) => {
                let s: Vec<_> = t.collect();
                assert_eq!(s, vec![&b"v=spf"[..], b"", b"hi"]);
            }
            other => panic!("{other:?}"),
        }
        let srv = with_answer(rtype::SRV, &[0, 1, 0, 5, 0x01, 0xbb, 0xc0, 12]);
        match first_answer(&srv).unwrap() {
            RData::Srv {
                priority,
                weight,
                port,
                target,
            } => {
                assert_eq!((priority, weight, port), (1, 5, 443));
                assert_eq!(target.to_string(), "www.example.com");
            }
            other => panic!("{other:?}"),
        }
        let ptr = with_answer(rtype::PTR, &[0xc0, 16]);
        assert!(matches!(first_answer(&ptr).unwrap(), RData::Ptr(n) if n.eq_text("example.com")));
        let ns = with_answer(rtype::NS, &[0]);
        assert!(
            matches!(first_answer(&ns).unwrap(), RData::Ns(n) if n.is_root() && n.to_string() == "<root>")
        );
        let caa = with_answer(257, &[0, 5, b'i', b's', b's', b'u', b'e']);
        assert_eq!(
            first_answer(&caa).unwrap(),
            RData::Other { rtype: 257, len: 7 }
        );
    }

    #[test]
    fn dns_https_record() {
        // HTTPS 1 . alpn=h2,h3 ipv4hint=192.0.2.1 (RFC 9460 appendix D style)
        let rdata: &[u8] = &[
            0, 1, 0, // priority 1, target root
            0, 1, 0, 6, 2, b'h', b'2', 2, b'h', b'3', // alpn
            0, 4, 0, 4, 192, 0, 2, 1, // ipv4hint
        ];
        let bytes = with_answer(rtype::HTTPS, rdata);
        match first_answer(&bytes).unwrap() {
            RData::Svcb(s) => {
                assert_eq!(s.priority, 1);
                assert!(s.target.is_root());
                let keys: Vec<u16> = s.params().map(|p| p.key).collect();
                assert_eq!(keys, vec![svc_key::ALPN, svc_key::IPV4HINT]);
                let alpn: Vec<_> = s.alpn().collect();
                assert_eq!(alpn, vec![&b"h2"[..], b"h3"]);
            }
            other => panic!("{other:?}"),
        }
        // An ALPN id running past its parameter.
        let bad: &[u8] = &[0, 1, 0, 0, 1, 0, 3, 5, b'h', b'2'];
        assert_eq!(
            first_answer(&with_answer(rtype::SVCB, bad)),
            Err(DnsError::BadRdata { rtype: rtype::SVCB })
        );
    }

    #[test]
    fn dns_bad_rdata_is_an_error_not_a_panic() {
        for (t, d) in [
            (rtype::A, &[1, 2, 3][..]),
            (rtype::AAAA, &[0; 4][..]),
            (rtype::CNAME, &[3, b'a', b'b'][..]),
            (rtype::CNAME, &[0, 0][..]),
            (rtype::MX, &[0][..]),
            (rtype::TXT, &[4, b'a'][..]),
            (rtype::SOA, &[0, 0, 0, 0, 0][..]),
            (rtype::SRV, &[0, 1, 0][..]),
            (rtype::OPT, &[0, 1, 0, 9][..]),
        ] {
            let bytes = with_answer(t, d);
            assert!(first_answer(&bytes).is_err(), "type {t} {d:?}");
        }
    }

    #[test]
    fn dns_name_rendering_escapes() {
        let mut m = vec![0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        m.extend_from_slice(&[
            3, b'a', 0x01, b' ', 2, 0xc3, 0xa9, 2, 0xff, b'.', 0, 0, 1, 0, 1,
        ]);
        let msg = Message::parse(&m).unwrap();
        let q = msg.questions().next().unwrap();
        // \x01 escaped; "é" valid UTF-8 kept; 0xff not UTF-8 so escaped; the dot kept.
        assert_eq!(q.name.to_string(), "a\\x01 .é.\\xff.");
        let mut s = String::new();
        q.name.write_to(&mut s).unwrap();
        assert_eq!(s, q.name.to_string());
    }

    #[test]
    fn dns_pointer_loops_and_limits() {
        // A pointer to itself.
        let mut m = vec![0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1];
        let msg = Message::parse(&m).unwrap();
        assert_eq!(
            msg.malformed(),
            Some(DnsError::BadPointer { at: 12, target: 12 })
        );
        assert_eq!(msg.questions().count(), 0);
        // A label then a pointer back to that label: a loop that moves backwards per jump only once.
        m.truncate(12);
        m.extend_from_slice(&[1, b'a', 0xc0, 12, 0, 1, 0, 1]);
        assert!(matches!(
            Message::parse(&m).unwrap().malformed(),
            Some(DnsError::BadPointer { at: 14, target: 12 })
        ));
        // A forward pointer.
        m.truncate(12);
        m.extend_from_slice(&[0xc0, 14, 0, 0, 1, 0, 1]);
        assert!(matches!(
            Message::parse(&m).unwrap().malformed(),
            Some(DnsError::BadPointer { .. })
        ));
        // 128 one-byte labels: too many labels.
        m.truncate(12);
        for _ in 0..128 {
            m.extend_from_slice(&[1, b'x']);
        }
        m.extend_from_slice(&[0, 0, 1, 0, 1]);
        assert_eq!(
            Message::parse(&m).unwrap().malformed(),
            Some(DnsError::TooManyLabels { at: 12 })
        );
        // 5 labels of 63 bytes: 320 bytes, too long.
        m.truncate(12);
        for _ in 0..5 {
            m.push(63);
            m.extend_from_slice(&[b'y'; 63]);
        }
        m.extend_from_slice(&[0, 0, 1, 0, 1]);
        assert_eq!(
            Message::parse(&m).unwrap().malformed(),
            Some(DnsError::NameTooLong { at: 12 })
        );
        // Reserved label type 0x40.
        m.truncate(12);
        m.extend_from_slice(&[0x41, 0, 0, 1, 0, 1]);
        assert_eq!(
            Message::parse(&m).unwrap().malformed(),
            Some(DnsError::ReservedLabelType {
                at: 12,
                octet: 0x41
            })
        );
    }

    #[test]
    fn dns_partial_message_keeps_header_and_questions() {
        let bytes = response();
        // Cut in the middle of the SOA record.
        let cut = &bytes[..bytes.len() - 30];
        let m = Message::parse(cut).unwrap();
        assert_eq!(m.header().id, 0x1234);
        assert_eq!(m.questions().count(), 1);
        assert_eq!(m.answers().count(), 2);
        assert_eq!(m.authorities().count(), 0);
        assert_eq!(
            m.malformed(),
            Some(DnsError::RecordTruncated {
                section: Section::Authority,
                index: 0
            })
        );
        assert!(!probe(cut));
        // Cut inside the question's type.
        let m = Message::parse(&QUERY[..31]).unwrap();
        assert_eq!(
            m.malformed(),
            Some(DnsError::QuestionTruncated { index: 0 })
        );
        assert_eq!(
            Message::parse(&QUERY[..11]).unwrap_err(),
            DnsError::ShortHeader
        );
        // Every prefix parses without panicking.
        for n in 0..bytes.len() {
            if let Ok(m) = Message::parse(&bytes[..n]) {
                for r in m.records() {
                    let _ = r.data();
                }
                for q in m.questions() {
                    let _ = q.name.to_string();
                }
            }
        }
    }

    #[test]
    fn dns_probe_rejects_other_protocols() {
        assert!(!probe(b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"));
        assert!(!probe(&[0; 12]));
        assert!(!probe(&[
            0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03, 0x00
        ]));
        let mut trailing = QUERY.to_vec();
        trailing.push(0);
        assert!(!probe(&trailing));
    }

    #[test]
    fn dns_tcp_framing_across_segments() {
        let mut stream = Vec::new();
        stream.extend_from_slice(&(QUERY.len() as u16).to_be_bytes());
        stream.extend_from_slice(QUERY);
        let resp = response();
        stream.extend_from_slice(&(resp.len() as u16).to_be_bytes());
        stream.extend_from_slice(&resp);

        assert_eq!(tcp_frame(&[]), TcpFrame::NeedMore { needed: 2 });
        assert_eq!(tcp_frame(&stream[..1]), TcpFrame::NeedMore { needed: 1 });
        assert_eq!(
            tcp_frame(&stream[..10]),
            TcpFrame::NeedMore {
                needed: QUERY.len() + 2 - 10
            }
        );
        assert_eq!(
            tcp_frame(&stream),
            TcpFrame::Message {
                message: QUERY,
                consumed: QUERY.len() + 2
            }
        );

        // Cut anywhere: the whole messages come out, and the tail says what it lacks.
        for cut in 0..=stream.len() {
            let mut it = TcpMessages::new(&stream[..cut]);
            let got: Vec<_> = it.by_ref().collect();
            let whole = if cut >= stream.len() {
                2
            } else if cut >= QUERY.len() + 2 {
                1
            } else {
                0
            };
            assert_eq!(got.len(), whole, "cut {cut}");
            let pending = it.remainder().len();
            assert_eq!(cut - pending, [0, QUERY.len() + 2, stream.len()][whole]);
            if pending > 0 {
                let next_end = if whole == 0 {
                    QUERY.len() + 2
                } else {
                    stream.len()
                };
                // Until the length prefix is whole, only its missing bytes are known to be needed.
                let expect = if pending < 2 {
                    2 - pending
                } else {
                    next_end - cut
                };
                assert_eq!(it.needed(), expect, "cut {cut}");
            } else {
                assert_eq!(it.needed(), 0);
            }
        }
    }

    /// Wireshark's DNS dissector as the oracle on the project's captures (the tunnelled ones
    /// included: the inner UDP payload is the last one tshark lists): ids, question names,
    /// addresses, canonical names and rcodes must agree. Skipped with a notice where tshark is
    /// missing, except in CI, which installs it.
    #[test]
    fn dns_matches_tshark_on_sample_captures() {
        use std::fmt::Write as _;
        use std::process::Command;
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("pcaps");
        let mut checked = 0;
        for file in [
            "plain.pcapng",
            "aws-mirror.pcap",
            "gwlb-geneve.pcapng",
            "third-party/geneve-vxlan-dns-truncated.pcap",
        ] {
            let out = Command::new("tshark")
                .args(["-Y", "dns && !icmp", "-T", "fields", "-r"])
                .arg(dir.join(file))
                .args(["-e", "udp.payload", "-e", "dns.id", "-e", "dns.qry.name"])
                .args(["-e", "dns.a", "-e", "dns.aaaa", "-e", "dns.cname"])
                .args(["-e", "dns.flags.rcode"])
                .output();
            let out = match out {
                Ok(out) if out.status.success() => out,
                other => {
                    assert!(
                        std::env::var("CI").as_deref() != Ok("true"),
                        "tshark is required in CI: {other:?}"
                    );
                    eprintln!("skipped: tshark not available ({other:?})");
                    return;
                }
            };
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                let v: Vec<&str> = line.split('\t').collect();
                let hex = v[0].rsplit(',').next().unwrap_or("");
                let bytes: Vec<u8> = (0..hex.len() / 2)
                    .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
                    .collect();
                let m = Message::parse(&bytes).unwrap();
                assert_eq!(format!("0x{:04x}", m.header().id), v[1], "{file}: {line}");
                let q = m.questions().next().unwrap();
                assert_eq!(q.name.to_string(), v[2].split(',').next().unwrap());
                let mut a = String::new();
                let mut aaaa = String::new();
                let mut cname = String::new();
                for r in m.answers() {
                    let (list, item) = match r.data().unwrap() {
                        RData::A(x) => (&mut a, x.to_string()),
                        RData::Aaaa(x) => (&mut aaaa, x.to_string()),
                        RData::Cname(n) => (&mut cname, n.to_string()),
                        _ => continue,
                    };
                    if !list.is_empty() {
                        list.push(',');
                    }
                    let _ = write!(list, "{item}");
                }
                assert_eq!(
                    (a.as_str(), aaaa.as_str(), cname.as_str()),
                    (v[3], v[4], v[5])
                );
                if !v[6].is_empty() {
                    assert_eq!(m.rcode().to_string(), v[6]);
                }
                checked += 1;
            }
        }
        assert!(checked > 0, "tshark found no DNS to compare");
    }
}
