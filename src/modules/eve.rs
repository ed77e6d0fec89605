//! The record envelope every JSON-writing module shares, shaped like Suricata's EVE so that jq recipes
//! and SIEM parsers written for EVE read vxtap's records, plus the mirror session, which no other
//! tool can attach:
//!
//! ```json
//! {"timestamp":"2024-03-01T12:00:00.250000+0000","flow_id":1234,"event_type":"dns",
//!  "src_ip":"172.31.5.10","src_port":53000,"dest_ip":"10.0.0.2","dest_port":53,"proto":"UDP",
//!  "community_id":"1:...","vxtap":{"session":"web","eni":"eni-0a1b...","vni":1001,
//!  "source":"10.0.1.10","labels":{"team":"web"}},"dns":{...}}
//! ```
//!
//! `src_*` is the flow's client and `dest_*` its server (as EVE's application-layer records have
//! it). Records are written into the `Emitter`'s reused line buffer by [`JsonObject`], a small JSON
//! writer that allocates nothing.

use std::fmt::{self, Write as _};
use std::net::{IpAddr, Ipv6Addr};
use std::ops::Range;
use std::sync::Arc;

use crate::base::{FlowKey, Session, Timestamp};
use crate::flow::community_id::CommunityId;
use crate::flow::Flow;
use crate::sinks::UtcTime;

/// Writes EVE's `timestamp` form: `2024-03-01T12:00:00.250000+0000` (UTC, microseconds).
pub fn write_timestamp(out: &mut String, ts: Timestamp) {
    let t = UtcTime::of(ts);
    if !(0..=9999).contains(&t.year) {
        write_timestamp_by_format(out, ts, &t);
        return;
    }
    // Digits into a fixed template, appended at once: every record has one or two, and pushing
    // them one by one (a capacity check each) or through `write!` cost more than the rest of the
    // envelope together.
    let mut buf = *b"0000-00-00T00:00:00.000000+0000";
    put_digits(&mut buf[0..4], t.year as u32);
    put_digits(&mut buf[5..7], t.month);
    put_digits(&mut buf[8..10], t.day);
    put_digits(&mut buf[11..13], t.hour);
    put_digits(&mut buf[14..16], t.minute);
    put_digits(&mut buf[17..19], t.second);
    put_digits(&mut buf[20..26], ts.subsec_nanos() / 1000);
    debug_assert!(buf.is_ascii());
    // SAFETY: the template is ASCII and `put_digits` writes only b'0'..=b'9' into it, so `buf` is
    // UTF-8. Checking it (`from_utf8`) cost as many instructions as the rest of this function.
    out.push_str(unsafe { std::str::from_utf8_unchecked(&buf) });
}

/// [`write_timestamp`] through `write!`: for years the template has no room for, and the reference
/// the template is tested against.
fn write_timestamp_by_format(out: &mut String, ts: Timestamp, t: &UtcTime) {
    let _ = write!(
        out,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}+0000",
        t.year,
        t.month,
        t.day,
        t.hour,
        t.minute,
        t.second,
        ts.subsec_nanos() / 1000
    );
}

/// Writes the last `to.len()` decimal digits of `v` into `to`, zero-padded; two at a time, from a
/// table of the hundred pairs, which halves the divisions (seven fields per timestamp, one or two
/// timestamps rendered per record).
fn put_digits(to: &mut [u8], mut v: u32) {
    const PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
                                2021222324252627282930313233343536373839\
                                4041424344454647484950515253545556575859\
                                6061626364656667686970717273747576777879\
                                8081828384858687888990919293949596979899";
    let mut chunks = to.rchunks_exact_mut(2);
    for pair in &mut chunks {
        let i = (v % 100) as usize * 2;
        pair.copy_from_slice(&PAIRS[i..i + 2]);
        v /= 100;
    }
    if let [b] = chunks.into_remainder() {
        *b = b'0' + (v % 10) as u8;
    }
}

/// Appends an address as `Display` writes it. IPv4, most of what records carry, is written by
/// hand; IPv6's compression rules are left to the standard library. Addresses never need JSON
/// escaping.
pub fn push_ip(out: &mut String, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            let mut b = itoa::Buffer::new();
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                out.push_str(b.format(octet));
            }
        }
        IpAddr::V6(v6) => push_ipv6(out, v6),
    }
}

/// Appends an IPv6 address as the standard library's `Display` writes it (RFC 5952: lowercase,
/// no leading zeros, the first longest run of two or more zero groups as `::`, IPv4-mapped
/// addresses with a dotted tail), without the formatting machinery: half of the records of a
/// dual-stack VPC carry two of them.
fn push_ipv6(out: &mut String, v6: Ipv6Addr) {
    if let Some(v4) = v6.to_ipv4_mapped() {
        out.push_str("::ffff:");
        push_ip(out, IpAddr::V4(v4));
        return;
    }
    let groups = v6.segments();
    let (mut best, mut best_len, mut run, mut run_len) = (0, 0, 0, 0);
    for (i, &g) in groups.iter().enumerate() {
        if g == 0 {
            if run_len == 0 {
                run = i;
            }
            run_len += 1;
            if run_len > best_len {
                best = run;
                best_len = run_len;
            }
        } else {
            run_len = 0;
        }
    }
    if best_len > 1 {
        push_groups(out, &groups[..best]);
        out.push_str("::");
        push_groups(out, &groups[best + best_len..]);
    } else {
        push_groups(out, &groups);
    }
}

fn push_groups(out: &mut String, groups: &[u16]) {
    for (i, &g) in groups.iter().enumerate() {
        if i > 0 {
            out.push(':');
        }
        let digits = [g >> 12, (g >> 8) & 0xf, (g >> 4) & 0xf, g & 0xf];
        let skip = digits.iter().take(3).take_while(|&&d| d == 0).count();
        for &d in &digits[skip..] {
            out.push(char::from(HEX[usize::from(d)]));
        }
    }
}

/// Lowercase hex digits, by value.
pub(crate) const HEX: &[u8; 16] = b"0123456789abcdef";

/// `v` as four lowercase hex digits (what `{:04x}` writes), without the formatting machinery.
pub(crate) fn hex4(v: u16) -> [u8; 4] {
    [12, 8, 4, 0].map(|shift| HEX[usize::from((v >> shift) & 0xf)])
}

/// Appends `v` as four lowercase hex digits.
pub fn push_hex4(out: &mut String, v: u16) {
    out.extend(hex4(v).map(char::from));
}

/// Appends `bytes` as two-digit hex separated by colons (`"3b:0a:…"`; uppercase when `upper`),
/// the form of certificate serials and fingerprints.
pub fn push_colon_hex(out: &mut String, bytes: &[u8], upper: bool) {
    let digits: &[u8; 16] = if upper { b"0123456789ABCDEF" } else { HEX };
    out.reserve(bytes.len() * 3);
    for (i, &b) in bytes.iter().enumerate() {
        if i > 0 {
            out.push(':');
        }
        out.push(char::from(digits[usize::from(b >> 4)]));
        out.push(char::from(digits[usize::from(b & 0xf)]));
    }
}

/// EVE's name for an IP protocol number.
pub fn proto_name(protocol: u8) -> &'static str {
    match protocol {
        1 => "ICMP",
        6 => "TCP",
        17 => "UDP",
        58 => "IPv6-ICMP",
        132 => "SCTP",
        47 => "GRE",
        50 => "ESP",
        _ => "IP",
    }
}

/// Starts a record about `flow` at packet time `ts`: the envelope's fields are written and the
/// object is left open for the module's own object (`"dns":{...}` and the like). Close it with
/// [`JsonObject::end`].
pub fn begin<'a>(
    out: &'a mut String,
    ts: Timestamp,
    event_type: &str,
    flow: &Flow<'_>,
) -> JsonObject<'a> {
    begin_parts(
        out,
        ts,
        event_type,
        flow.id(),
        flow.key(),
        flow.community_id().as_str(),
        flow.session(),
    )
}

/// [`begin`] from a flow's parts, for records written after the flow's events are over (at the end
/// of an aggregation interval, when no [`Flow`] is at hand): the same fields in the same order.
/// `key` is oriented client → server.
pub fn begin_parts<'a>(
    out: &'a mut String,
    ts: Timestamp,
    event_type: &str,
    flow_id: u64,
    key: FlowKey,
    community_id: &str,
    session: &Session,
) -> JsonObject<'a> {
    begin_spans(out, ts, event_type, flow_id, key, community_id, session).0
}

/// Where [`begin_spans`] wrote the envelope's time and addresses in the line, quotes included: a
/// record that says them again (accessscope's `first_seen`, `client`, `server`) copies them with
/// [`JsonObject::again`] rather than rendering them twice. An IPv6 address or a timestamp costs
/// more to render than the rest of a short record's fields.
#[derive(Debug, Clone)]
pub struct Spans {
    /// `timestamp`'s value.
    pub timestamp: Range<usize>,
    /// `src_ip`'s value (the client).
    pub src_ip: Range<usize>,
    /// `dest_ip`'s value (the server).
    pub dest_ip: Range<usize>,
}

/// [`begin_parts`], telling where it wrote the values a record may repeat.
pub fn begin_spans<'a>(
    out: &'a mut String,
    ts: Timestamp,
    event_type: &str,
    flow_id: u64,
    key: FlowKey,
    community_id: &str,
    session: &Session,
) -> (JsonObject<'a>, Spans) {
    let k = key;
    let mut o = JsonObject::begin(out);
    // The envelope's keys are literals: written without the escape check, which cost as much as
    // the values on a short record.
    let timestamp = o.spanned("timestamp", |out| {
        quoted(out, |out| write_timestamp(out, ts))
    });
    o.known("flow_id", |out| push_u64(out, flow_id));
    o.known("event_type", |out| json_str(out, event_type));
    let src_ip = o.spanned("src_ip", |out| quoted(out, |out| push_ip(out, k.src)));
    o.known("src_port", |out| push_u64(out, u64::from(k.src_port)));
    let dest_ip = o.spanned("dest_ip", |out| quoted(out, |out| push_ip(out, k.dst)));
    o.known("dest_port", |out| push_u64(out, u64::from(k.dst_port)));
    o.known("proto", |out| {
        quoted(out, |out| out.push_str(proto_name(k.protocol)))
    });
    o.known("community_id", |out| json_str(out, community_id));
    session_object(&mut o, session);
    (
        o,
        Spans {
            timestamp,
            src_ip,
            dest_ip,
        },
    )
}

/// Appends `v` in decimal.
pub(crate) fn push_u64(out: &mut String, v: u64) {
    out.push_str(itoa::Buffer::new().format(v));
}

/// Appends the value at `span` of `out` (from [`begin_spans`]) again, as it is; `null` when the
/// span is not in `out`.
pub(crate) fn push_again(out: &mut String, span: Range<usize>) {
    // Through a stack copy (the values spans name are under 64 bytes): the line cannot lend
    // itself while it grows, and `String::extend_from_within` is newer than our MSRV.
    match out.get(span).map(arrayvec::ArrayString::<64>::from) {
        Some(Ok(value)) => out.push_str(&value),
        Some(Err(long)) => {
            let value = long.element().to_owned();
            out.push_str(&value);
        }
        None => out.push_str("null"),
    }
}

/// Writes `write`'s text between quotes.
pub(crate) fn quoted(out: &mut String, write: impl FnOnce(&mut String)) {
    out.push('"');
    write(out);
    out.push('"');
}

/// A flow's envelope fields, kept with state that outlives the flow's current event: a record
/// written on a tick (a DNS query unanswered at its deadline) has no [`Flow`] at hand, and must
/// still say exactly what a record written during the flow's events says. Keeping it also spares
/// the Community ID's SHA-1 on every later record of the flow.
#[derive(Clone)]
pub struct Envelope {
    /// [`Flow::id`].
    pub flow_id: u64,
    /// [`Flow::key`]: client → server.
    pub key: FlowKey,
    /// [`Flow::community_id`].
    pub community_id: CommunityId,
    /// [`Flow::session`].
    pub session: Arc<Session>,
}

impl Envelope {
    /// The envelope of `flow` as it is now (its orientation is fixed at its start).
    pub fn of(flow: &Flow<'_>) -> Envelope {
        Envelope {
            flow_id: flow.id(),
            key: flow.key(),
            community_id: flow.community_id(),
            session: Arc::clone(flow.session()),
        }
    }

    /// [`begin`] from the kept fields: the same fields in the same order.
    pub fn begin<'a>(
        &self,
        out: &'a mut String,
        ts: Timestamp,
        event_type: &str,
    ) -> JsonObject<'a> {
        begin_parts(
            out,
            ts,
            event_type,
            self.flow_id,
            self.key,
            self.community_id.as_str(),
            &self.session,
        )
    }
}

impl fmt::Debug for Envelope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Envelope")
            .field("flow_id", &self.flow_id)
            .field("key", &self.key)
            .field("session", &self.session.name)
            .finish()
    }
}

/// The `vxtap` object: the mirror session a record's traffic came from. It is the same in every
/// record of the session, so it is rendered once, the first time a record needs it, and copied
/// after: rendered per record it cost a quarter of the envelope.
pub fn session_object(o: &mut JsonObject<'_>, session: &Session) {
    let json = session.rendered(|session| {
        let mut out = String::new();
        let mut v = JsonObject::begin(&mut out);
        v.str("session", &session.name);
        if let Some(eni) = &session.eni {
            v.str("eni", eni);
        }
        v.u64("vni", u64::from(session.key.vni));
        v.ip("source", session.key.source);
        if !session.labels.is_empty() {
            v.object("labels", |l| {
                for (k, val) in &session.labels {
                    l.str(k, val);
                }
            });
        }
        v.end();
        out
    });
    o.field("vxtap", |out| out.push_str(json));
}

/// Appends `s` as a JSON string (quotes and escapes included).
pub fn json_str(out: &mut String, s: &str) {
    out.push('"');
    // Names, addresses and ids rarely need escaping: copy them whole rather than char by char.
    if needs_escape(s) {
        escape_into(out, s);
    } else {
        out.push_str(s);
    }
    out.push('"');
}

/// Escapes what is written to it, as it is written: for values (names, addresses) that would
/// otherwise need a `String` of their own. [`JsonObject::text`] hands one to a writer generic over
/// `fmt::Write` (a DNS name's labels), which then costs no trip through `core::fmt`.
pub struct Escaping<'a>(&'a mut String);

impl fmt::Write for Escaping<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        // Names are written label by label: most pieces need no escaping and are copied whole.
        if !needs_escape(s) {
            self.0.push_str(s);
            return Ok(());
        }
        escape_into(self.0, s);
        Ok(())
    }
}

/// Whether any byte of `s` must be escaped: a control character, `"`, `\` or DEL. Eight bytes at
/// a time (every record's keys and most of its values pass through here, 4.5 M calls in the L7
/// set's replay of the ENI-like capture, and almost none need escaping); each test below is exact
/// for "some byte of the word", which is all this asks, and the four are joined before the one
/// branch.
#[inline]
fn needs_escape(s: &str) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // High bit of a byte set where that byte of `w` is below `n` (n <= 0x80), among others where
    // an earlier byte was; never when no byte is.
    fn below(w: u64, n: u8) -> u64 {
        w.wrapping_sub(ONES * u64::from(n)) & !w
    }
    fn equal(w: u64, b: u8) -> u64 {
        below(w ^ (ONES * u64::from(b)), 1)
    }
    fn word(w: u64) -> bool {
        (below(w, 0x20) | equal(w, b'"') | equal(w, b'\\') | equal(w, 0x7f)) & HIGH != 0
    }
    fn at<const N: usize>(b: &[u8], i: usize) -> [u8; N] {
        b.get(i..i + N)
            .and_then(|b| <[u8; N]>::try_from(b).ok())
            .unwrap_or([b'a'; N])
    }
    let bytes = s.as_bytes();
    let n = bytes.len();
    if n >= 8 {
        // The tail as one more word, overlapping the last whole one, rather than byte by byte.
        return bytes
            .chunks_exact(8)
            .any(|c| word(u64::from_le_bytes(at(c, 0))))
            || word(u64::from_le_bytes(at(bytes, n - 8)));
    }
    if n >= 4 {
        // Most keys: the first and the last four bytes (overlapping) as one word.
        let lo = u32::from_le_bytes(at(bytes, 0));
        let hi = u32::from_le_bytes(at(bytes, n - 4));
        return word(u64::from(lo) | u64::from(hi) << 32);
    }
    bytes
        .iter()
        .any(|&b| b < 0x20 || b == b'"' || b == b'\\' || b == 0x7f)
}

/// `s` escaped, without quotes.
fn escape_into(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            // Every other control character as \u00XX, the form flowlog's records have always
            // used, so all of vxtap's JSON escapes alike.
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
}

/// A JSON object being written into a line buffer.
pub struct JsonObject<'a> {
    out: &'a mut String,
    first: bool,
}

impl<'a> JsonObject<'a> {
    /// Opens an object at the end of `out`.
    pub fn begin(out: &'a mut String) -> Self {
        out.push('{');
        JsonObject { out, first: true }
    }

    fn key(&mut self, key: &str) {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
        json_str(self.out, key);
        self.out.push(':');
    }

    /// A field with a key the crate writes as a literal, which needs no escaping (checked in debug
    /// builds), and a value `write` writes as JSON itself: for the fixed keys of records written
    /// by the hundred thousand, where checking each key cost as much as writing its value.
    pub(crate) fn known(
        &mut self,
        key: &'static str,
        write: impl FnOnce(&mut String),
    ) -> &mut Self {
        debug_assert!(!needs_escape(key), "{key:?} needs escaping");
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
        self.out.push('"');
        self.out.push_str(key);
        self.out.push_str("\":");
        write(self.out);
        self
    }

    /// A field whose value `write` writes as JSON itself.
    pub fn field(&mut self, key: &str, write: impl FnOnce(&mut String)) -> &mut Self {
        self.key(key);
        write(self.out);
        self
    }

    /// A string field.
    pub fn str(&mut self, key: &str, value: &str) -> &mut Self {
        self.key(key);
        json_str(self.out, value);
        self
    }

    /// A string field, when there is a value.
    pub fn opt_str(&mut self, key: &str, value: Option<&str>) -> &mut Self {
        if let Some(v) = value {
            self.str(key, v);
        }
        self
    }

    /// A string field from anything `Display`, escaped as it is written.
    pub fn display(&mut self, key: &str, value: impl fmt::Display) -> &mut Self {
        self.key(key);
        self.out.push('"');
        let _ = write!(Escaping(self.out), "{value}");
        self.out.push('"');
        self
    }

    /// A string field written by `write` through an escaping writer: for text kept in pieces (a
    /// DNS name's labels) whose writer is generic over `fmt::Write`, so that it costs neither a
    /// `String` nor a trip through `core::fmt`.
    pub fn text(
        &mut self,
        key: &str,
        write: impl FnOnce(&mut Escaping<'_>) -> fmt::Result,
    ) -> &mut Self {
        self.key(key);
        self.out.push('"');
        let _ = write(&mut Escaping(self.out));
        self.out.push('"');
        self
    }

    /// An address field, as [`push_ip`] writes it.
    pub fn ip(&mut self, key: &str, ip: IpAddr) -> &mut Self {
        self.key(key);
        quoted(self.out, |out| push_ip(out, ip));
        self
    }

    /// A packet time in EVE's form ([`write_timestamp`]).
    pub fn timestamp(&mut self, key: &str, ts: Timestamp) -> &mut Self {
        self.key(key);
        quoted(self.out, |out| write_timestamp(out, ts));
        self
    }

    /// A field whose value `write` writes, and where in the line that value is.
    fn spanned(&mut self, key: &'static str, write: impl FnOnce(&mut String)) -> Range<usize> {
        let mut span = 0..0;
        self.known(key, |out| {
            span.start = out.len();
            write(out);
            span.end = out.len();
        });
        span
    }

    /// A field whose value is one already written earlier in this line, at `span` (from
    /// [`begin_spans`]), copied as it is. A span that is not in the line gives `null`.
    pub fn again(&mut self, key: &str, span: Range<usize>) -> &mut Self {
        self.key(key);
        push_again(self.out, span);
        self
    }

    /// An unsigned number.
    pub fn u64(&mut self, key: &str, value: u64) -> &mut Self {
        self.key(key);
        self.out.push_str(itoa::Buffer::new().format(value));
        self
    }

    /// A signed number.
    pub fn i64(&mut self, key: &str, value: i64) -> &mut Self {
        self.key(key);
        self.out.push_str(itoa::Buffer::new().format(value));
        self
    }

    /// A number with a fraction (e.g. a response time in seconds).
    pub fn f64(&mut self, key: &str, value: f64) -> &mut Self {
        self.key(key);
        if value.is_finite() {
            let _ = write!(self.out, "{value}");
        } else {
            self.out.push_str("null");
        }
        self
    }

    /// A boolean.
    pub fn bool(&mut self, key: &str, value: bool) -> &mut Self {
        self.key(key);
        self.out.push_str(if value { "true" } else { "false" });
        self
    }

    /// A nested object.
    pub fn object(&mut self, key: &str, fill: impl FnOnce(&mut JsonObject<'_>)) -> &mut Self {
        self.key(key);
        let mut inner = JsonObject::begin(self.out);
        fill(&mut inner);
        inner.end();
        self
    }

    /// A nested array.
    pub fn array(&mut self, key: &str, fill: impl FnOnce(&mut JsonArray<'_>)) -> &mut Self {
        self.key(key);
        let mut inner = JsonArray::begin(self.out);
        fill(&mut inner);
        inner.end();
        self
    }

    /// Closes the object.
    pub fn end(self) {
        self.out.push('}');
    }
}

/// A JSON array being written into a line buffer.
pub struct JsonArray<'a> {
    out: &'a mut String,
    first: bool,
}

impl<'a> JsonArray<'a> {
    fn begin(out: &'a mut String) -> Self {
        out.push('[');
        JsonArray { out, first: true }
    }

    fn comma(&mut self) {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
    }

    /// A string element.
    pub fn str(&mut self, value: &str) -> &mut Self {
        self.comma();
        json_str(self.out, value);
        self
    }

    /// A string element from anything `Display`.
    pub fn display(&mut self, value: impl fmt::Display) -> &mut Self {
        self.comma();
        self.out.push('"');
        let _ = write!(Escaping(self.out), "{value}");
        self.out.push('"');
        self
    }

    /// A string element written through an escaping writer ([`JsonObject::text`]).
    pub fn text(&mut self, write: impl FnOnce(&mut Escaping<'_>) -> fmt::Result) -> &mut Self {
        self.comma();
        self.out.push('"');
        let _ = write(&mut Escaping(self.out));
        self.out.push('"');
        self
    }

    /// An address element, as [`push_ip`] writes it.
    pub fn ip(&mut self, ip: IpAddr) -> &mut Self {
        self.comma();
        self.out.push('"');
        push_ip(self.out, ip);
        self.out.push('"');
        self
    }

    /// A number element.
    pub fn u64(&mut self, value: u64) -> &mut Self {
        self.comma();
        self.out.push_str(itoa::Buffer::new().format(value));
        self
    }

    /// An object element.
    pub fn object(&mut self, fill: impl FnOnce(&mut JsonObject<'_>)) -> &mut Self {
        self.comma();
        let mut inner = JsonObject::begin(self.out);
        fill(&mut inner);
        inner.end();
        self
    }

    fn end(self) {
        self.out.push(']');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_arrays_and_escapes() {
        let mut out = String::new();
        let mut o = JsonObject::begin(&mut out);
        o.str("a", "q\"uote\\ \n\u{1}")
            .u64("n", 7)
            .i64("m", -3)
            .bool("t", true)
            .display("ip", std::net::IpAddr::from([10, 0, 0, 1]))
            .display("weird", "tab\there")
            .opt_str("none", None)
            .array("list", |a| {
                a.str("x").u64(1).object(|o| {
                    o.f64("f", 0.5);
                });
            })
            .object("o", |_| {});
        o.end();
        assert_eq!(
            out,
            r#"{"a":"q\"uote\\ \u000a\u0001","n":7,"m":-3,"t":true,"ip":"10.0.0.1","weird":"tab\u0009here","list":["x",1,{"f":0.5}],"o":{}}"#
        );
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["weird"], "tab\there");
    }

    /// The hand-written IPv6 form against the standard library's, on the cases RFC 5952 names
    /// (runs at either end, ties, single zero groups, mapped and compatible IPv4) and on every
    /// pattern of zero and non-zero groups.
    #[test]
    fn ipv6_as_the_standard_library_writes_it() {
        let mut cases: Vec<Ipv6Addr> = [
            "::",
            "::1",
            "1::",
            "2001:db8::1",
            "2001:db8:0:0:1:0:0:1",
            "2001:0:0:1::1",
            "2001:db8:0:1:1:1:1:1",
            "::ffff:10.0.0.1",
            "::10.0.0.1",
            "::ffff:0:1.2.3.4",
            "64:ff9b::192.0.2.33",
            "fe80::1:2:3:4",
            "2600:1f18:4000:1201:74e8:5328:35ff:42b8",
        ]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
        for mask in 0u32..256 {
            let mut g = [0u16; 8];
            for (i, v) in g.iter_mut().enumerate() {
                if mask & (1 << i) != 0 {
                    *v = [0x1, 0x20, 0x300, 0x4000, 0xabcd, 0xf, 0xff, 0xfff][i];
                }
            }
            cases.push(Ipv6Addr::from(g));
        }
        for a in cases {
            let mut out = String::new();
            push_ip(&mut out, IpAddr::V6(a));
            assert_eq!(out, a.to_string());
        }
    }

    /// The word-at-a-time test against the byte-at-a-time one, on every byte at every position of
    /// a word and its tail.
    #[test]
    fn escape_scan_matches_bytewise() {
        let slow = |s: &str| {
            s.bytes()
                .any(|b| b < 0x20 || b == b'"' || b == b'\\' || b == 0x7f)
        };
        for len in 1..=19 {
            for at in 0..len {
                for b in 0u8..0x80 {
                    let mut bytes = vec![b'a'; len];
                    bytes[at] = b;
                    let s = std::str::from_utf8(&bytes).unwrap();
                    assert_eq!(needs_escape(s), slow(s), "{bytes:?}");
                }
                // A multi-byte character around the byte under test.
                let s = format!("{}\u{e9}{}\"", "a".repeat(at), "b".repeat(len - at));
                assert!(needs_escape(&s));
                let s = format!("{}\u{10348}{}", "a".repeat(at), "b".repeat(len - at));
                assert!(!needs_escape(&s));
                // Every ASCII byte among bytes with the high bit set (a borrow through them must
                // neither hide the byte nor invent one).
                for b in 0u8..0x80 {
                    let s = format!(
                        "{}{}{}",
                        "\u{ff}".repeat(at),
                        char::from(b),
                        "\u{10348}".repeat(len - at)
                    );
                    assert_eq!(needs_escape(&s), slow(&s), "{s:?}");
                }
            }
        }
        let mut out = String::new();
        push_colon_hex(&mut out, &[0x0a, 0xbc, 0x01], true);
        out.push(' ');
        push_colon_hex(&mut out, &[0x0a, 0xbc], false);
        out.push(' ');
        push_hex4(&mut out, 0x0c2b);
        assert_eq!(out, "0A:BC:01 0a:bc 0c2b");
    }

    /// The values a record repeats are copied byte for byte from where the envelope wrote them;
    /// a span that is not in the line gives `null`, one longer than the stack copy still copies.
    #[test]
    fn spans_repeat_the_envelopes_values() {
        use crate::base::SessionKey;
        let session = Session::new(
            SessionKey {
                source: IpAddr::from([10, 0, 1, 10]),
                vni: 7,
            },
            1,
            false,
        );
        let key = FlowKey {
            src: "2600:1f18::20".parse().unwrap(),
            dst: IpAddr::from([192, 0, 2, 1]),
            src_port: 40000,
            dst_port: 443,
            protocol: 6,
        };
        let ts = Timestamp::from_nanos(1_709_294_400_250_000_999);
        let mut out = String::new();
        let (mut o, spans) = begin_spans(&mut out, ts, "x", 9, key, "1:id", &session);
        o.again("client", spans.src_ip.clone())
            .again("server", spans.dest_ip.clone())
            .again("first", spans.timestamp.clone())
            .again("outside", 10_000..10_004);
        o.end();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["client"], "2600:1f18::20");
        assert_eq!(v["server"], "192.0.2.1");
        assert_eq!(v["first"], "2024-03-01T12:00:00.250000+0000");
        assert_eq!(v["first"], v["timestamp"]);
        assert!(v["outside"].is_null());
        assert_eq!(v["vxtap"]["session"], "10.0.1.10/7");
        // The session object is rendered once and the same after.
        let mut again = String::new();
        begin_parts(&mut again, ts, "x", 9, key, "1:id", &session).end();
        assert!(again.contains(r#""vxtap":{"session":"10.0.1.10/7","vni":7,"source":"10.0.1.10"}"#));

        let mut out = String::new();
        let mut o = JsonObject::begin(&mut out);
        o.str("long", &"a".repeat(100));
        o.again("copy", 8..110);
        o.end();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["copy"], v["long"]);
    }

    #[test]
    fn timestamps_are_eves() {
        let mut out = String::new();
        write_timestamp(&mut out, Timestamp::from_nanos(1_709_294_400_250_000_999));
        assert_eq!(out, "2024-03-01T12:00:00.250000+0000");
        for (nanos, text) in [
            (0, "1970-01-01T00:00:00.000000+0000"),
            (951_868_799_999_999_000, "2000-02-29T23:59:59.999999+0000"),
            (u64::MAX, "2554-07-21T23:34:33.709551+0000"),
        ] {
            out.clear();
            write_timestamp(&mut out, Timestamp::from_nanos(nanos));
            assert_eq!(out, text);
        }
        // Every field through its values, against `write!`'s padding: an odd step of about 32
        // years and a few seconds, wrapping around the u64 range, lands all over 1970–2554.
        let mut nanos = 0u64;
        let mut want = String::new();
        for _ in 0..20_000 {
            nanos = nanos.wrapping_add(1_000_003_999_983_211);
            let ts = Timestamp::from_nanos(nanos);
            out.clear();
            write_timestamp(&mut out, ts);
            want.clear();
            write_timestamp_by_format(&mut want, ts, &UtcTime::of(ts));
            assert_eq!(out, want);
        }
    }
}
