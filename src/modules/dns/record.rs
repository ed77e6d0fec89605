//! The `dns` record: one per transaction, in Suricata's EVE DNS version 2 shape where EVE has the
//! field (see docs/modules/dns.md). A query and its response make one record, so it carries the
//! response's header and records under EVE's names, the question of the query, and the time
//! between them; a query never answered and a response whose query was not seen each make a
//! record of their own, flagged.

use std::fmt;

use super::parser::{rcode_name, rtype_name, svc_key, DnsError, RData, Record, TxtStrings};
use super::Side;
use crate::base::Timestamp;
use crate::modules::eve::{self, Envelope, JsonArray, JsonObject};
use crate::modules::Emitter;

/// Writes a transaction: `query`, `response`, or both.
pub(super) fn write(
    env: &Envelope,
    query: Option<&Side<'_>>,
    response: Option<&Side<'_>>,
    max_answers: usize,
    out: &mut Emitter<'_>,
) {
    write_with(env, query, response, max_answers, false, out);
}

/// Writes one message that has nothing to pair with (multicast DNS): a query or a response,
/// without the `unanswered` or `query_missing` flags, which would say something went missing.
pub(super) fn write_alone(
    env: &Envelope,
    side: &Side<'_>,
    max_answers: usize,
    out: &mut Emitter<'_>,
) {
    let (query, response) = if side.msg.header().qr() {
        (None, Some(side))
    } else {
        (Some(side), None)
    };
    write_with(env, query, response, max_answers, true, out);
}

fn write_with(
    env: &Envelope,
    query: Option<&Side<'_>>,
    response: Option<&Side<'_>>,
    max_answers: usize,
    alone: bool,
    out: &mut Emitter<'_>,
) {
    let Some(main) = response.or(query) else {
        return;
    };
    let ts = query.map_or(main.ts, |q| q.ts);
    out.keyed(&env.session.name).emit_line(|s| {
        let mut o = env.begin(s, ts, "dns");
        o.object("dns", |d| {
            fill(d, query, response, main, max_answers, alone)
        });
        o.end();
        Ok(())
    });
}

fn fill(
    d: &mut JsonObject<'_>,
    query: Option<&Side<'_>>,
    response: Option<&Side<'_>>,
    main: &Side<'_>,
    max_answers: usize,
    alone: bool,
) {
    let h = main.msg.header();
    d.u64("version", 2);
    d.str(
        "type",
        if response.is_some() {
            "answer"
        } else {
            "query"
        },
    );
    d.u64("id", u64::from(h.id));
    // EVE writes the flags word as four hex digits, then the set bits as booleans.
    d.field("flags", |s| {
        s.push('"');
        eve::push_hex4(s, h.flags);
        s.push('"');
    });
    for (set, name) in [
        (h.qr(), "qr"),
        (h.aa(), "aa"),
        (h.tc(), "tc"),
        (h.rd(), "rd"),
        (h.ra(), "ra"),
        (h.z(), "z"),
        (h.ad(), "ad"),
        (h.cd(), "cd"),
    ] {
        if set {
            d.bool(name, true);
        }
    }
    d.u64("opcode", u64::from(h.opcode()));
    // The question as asked; a response repeats it, and stands in when the query was not seen.
    let asked = query.and_then(|q| q.msg.questions().next());
    if let Some(q) = asked.or_else(|| response.and_then(|r| r.msg.questions().next())) {
        d.text("rrname", |w| q.name.write_to(w));
        rrtype(d, "rrtype", q.qtype);
        if q.qclass != 1 {
            rrclass(d, q.qclass);
        }
    }
    if let Some(r) = response {
        let rcode = r.msg.rcode();
        match rcode_name(rcode) {
            Some(name) => d.str("rcode", name),
            None => d.display("rcode", format_args!("RCODE{rcode}")),
        };
        if let Some(q) = query {
            let us = r.ts.nanos().saturating_sub(q.ts.nanos()) / 1000;
            d.f64("response_time_ms", us as f64 / 1000.0);
        }
        section(d, "answers", r.msg.answers(), max_answers);
        section(d, "authorities", r.msg.authorities(), max_answers);
    } else if !alone {
        d.bool("unanswered", true);
    }
    if query.is_none() && !alone {
        d.bool("query_missing", true);
    }
    let fault = response
        .and_then(|r| r.malformed)
        .or_else(|| query.and_then(|q| q.malformed));
    if let Some(e) = fault {
        d.bool("malformed", true);
        d.display("error", e);
    }
    if response.is_some_and(|r| r.truncated) || query.is_some_and(|q| q.truncated) {
        d.bool("truncated", true);
    }
}

/// A DNS payload too short for a header: all a record can say is that it came and how long it was.
pub(super) fn write_headerless(
    env: &Envelope,
    ts: Timestamp,
    len: usize,
    error: DnsError,
    truncated: bool,
    out: &mut Emitter<'_>,
) {
    out.keyed(&env.session.name).emit_line(|s| {
        let mut o = env.begin(s, ts, "dns");
        o.object("dns", |d| {
            d.u64("version", 2);
            d.u64("length", len as u64);
            d.bool("malformed", true);
            d.display("error", error);
            if truncated {
                d.bool("truncated", true);
            }
        });
        o.end();
        Ok(())
    });
}

fn rrtype(o: &mut JsonObject<'_>, key: &str, t: u16) {
    match rtype_name(t) {
        Some(name) => o.str(key, name),
        // RFC 3597 §5's generic form, so the field stays a string.
        None => o.display(key, format_args!("TYPE{t}")),
    };
}

fn rrclass(o: &mut JsonObject<'_>, class: u16) {
    // mDNS uses the top bit for "unicast response" (questions) or "cache flush" (records).
    match class & 0x7fff {
        1 if class & 0x8000 != 0 => o.str("rrclass", "IN"),
        3 => o.str("rrclass", "CH"),
        4 => o.str("rrclass", "HS"),
        254 => o.str("rrclass", "NONE"),
        255 => o.str("rrclass", "ANY"),
        _ => o.display("rrclass", format_args!("CLASS{class}")),
    };
}

fn section<'a>(
    d: &mut JsonObject<'_>,
    key: &str,
    records: impl Iterator<Item = Record<'a>>,
    max: usize,
) {
    let mut records = records.peekable();
    if records.peek().is_none() {
        return;
    }
    let mut omitted = 0u64;
    d.array(key, |a| {
        for (i, r) in records.enumerate() {
            if i < max {
                answer(a, &r);
            } else {
                omitted += 1;
            }
        }
    });
    if omitted > 0 {
        d.u64(&format!("{key}_omitted"), omitted);
    }
}

fn answer(a: &mut JsonArray<'_>, r: &Record<'_>) {
    a.object(|o| {
        o.text("rrname", |w| r.name.write_to(w));
        rrtype(o, "rrtype", r.rtype);
        o.u64("ttl", u64::from(r.ttl));
        match r.data() {
            Ok(RData::A(ip)) => {
                o.ip("rdata", ip.into());
            }
            Ok(RData::Aaaa(ip)) => {
                o.ip("rdata", ip.into());
            }
            Ok(RData::Cname(n) | RData::Ns(n) | RData::Ptr(n)) => {
                o.text("rdata", |w| n.write_to(w));
            }
            Ok(RData::Mx {
                preference,
                exchange,
            }) => {
                o.text("rdata", |w| exchange.write_to(w));
                o.u64("preference", u64::from(preference));
            }
            Ok(RData::Txt(strings)) => {
                o.text("rdata", |w| Txt::Strings(strings).write_to(w));
            }
            Ok(RData::Soa(soa)) => {
                o.object("soa", |s| {
                    s.text("mname", |w| soa.mname.write_to(w))
                        .text("rname", |w| soa.rname.write_to(w))
                        .u64("serial", u64::from(soa.serial))
                        .u64("refresh", u64::from(soa.refresh))
                        .u64("retry", u64::from(soa.retry))
                        .u64("expire", u64::from(soa.expire))
                        .u64("minimum", u64::from(soa.minimum));
                });
            }
            Ok(RData::Srv {
                priority,
                weight,
                port,
                target,
            }) => {
                o.object("srv", |s| {
                    s.u64("priority", u64::from(priority))
                        .u64("weight", u64::from(weight))
                        .u64("port", u64::from(port))
                        .text("name", |w| target.write_to(w));
                });
            }
            Ok(RData::Svcb(svcb)) => {
                o.object("svcb", |s| {
                    s.u64("priority", u64::from(svcb.priority));
                    s.text("target", |w| svcb.target.write_to(w));
                    if svcb.alpn().next().is_some() {
                        s.array("alpn", |a| {
                            for id in svcb.alpn() {
                                a.text(|w| Txt::One(id).write_to(w));
                            }
                        });
                    }
                    for p in svcb.params() {
                        match p.key {
                            svc_key::PORT if p.value.len() == 2 => {
                                s.u64(
                                    "port",
                                    u64::from(u16::from_be_bytes([p.value[0], p.value[1]])),
                                );
                            }
                            svc_key::IPV4HINT => {
                                s.array("ipv4hint", |a| {
                                    for c in p.value.chunks_exact(4) {
                                        a.ip(std::net::Ipv4Addr::new(c[0], c[1], c[2], c[3]).into());
                                    }
                                });
                            }
                            svc_key::IPV6HINT => {
                                s.array("ipv6hint", |a| {
                                    for c in p.value.chunks_exact(16) {
                                        let mut o = [0u8; 16];
                                        o.copy_from_slice(c);
                                        a.ip(std::net::Ipv6Addr::from(o).into());
                                    }
                                });
                            }
                            svc_key::ECH => {
                                s.bool("ech", true);
                            }
                            _ => {}
                        }
                    }
                });
            }
            Ok(RData::Opt(_)) => {}
            Ok(RData::Other { len, .. }) => {
                o.u64("rdlength", u64::from(len));
            }
            Err(_) => {
                o.u64("rdlength", r.rdata.len() as u64);
                o.bool("malformed", true);
            }
        }
    });
}

/// TXT character-strings (or one ALPN id), concatenated as RFC 7208 §3.3 reads SPF and DKIM
/// records, with the name writer's escaping: control bytes, and every byte of a string that is not
/// UTF-8 from 0x80 up, as `\xNN`.
enum Txt<'a> {
    Strings(TxtStrings<'a>),
    One(&'a [u8]),
}

impl Txt<'_> {
    /// Writes the text through `out` (generic, so that the record's escaping writer takes it
    /// without a trip through `core::fmt`).
    fn write_to<W: fmt::Write + ?Sized>(&self, out: &mut W) -> fmt::Result {
        match self {
            Txt::Strings(strings) => {
                for s in *strings {
                    escaped(s, out)?;
                }
                Ok(())
            }
            Txt::One(s) => escaped(s, out),
        }
    }
}

fn escaped<W: fmt::Write + ?Sized>(bytes: &[u8], f: &mut W) -> fmt::Result {
    match std::str::from_utf8(bytes) {
        Ok(s) => {
            for c in s.chars() {
                if c.is_ascii_control() {
                    write!(f, "\\x{:02x}", c as u32)?;
                } else {
                    f.write_char(c)?;
                }
            }
        }
        Err(_) => {
            for &b in bytes {
                if b.is_ascii_control() || b >= 0x80 {
                    write!(f, "\\x{b:02x}")?;
                } else {
                    f.write_char(char::from(b))?;
                }
            }
        }
    }
    Ok(())
}
