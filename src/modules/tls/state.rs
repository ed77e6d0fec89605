//! The per-flow state machine: one TCP connection's two reassembled directions in, one handshake
//! summary out.
//!
//! Each direction starts by *seeking* the start of TLS: at its first byte and, for STARTTLS, after
//! each line feed of a plaintext exchange (SMTP, IMAP, POP3 and FTP all switch to TLS at a line
//! boundary, after the server's go-ahead line). Seeking copies nothing: a candidate is probed in the
//! chunk itself, and only a candidate cut by a chunk's end keeps its first few bytes inline. Once a
//! direction is found to be TLS, its bytes from the record's start are gathered in a buffer of at
//! most [`BUFFER_BYTES`] (allocated then, per TLS flow, never for other flows) until the parser
//! says the wanted messages are whole: the ClientHello (and the second one after a
//! HelloRetryRequest) to the server; the ServerHello and, for TLS ≤ 1.2, the Certificate to the
//! client. Then the connection is [`Verdict::Complete`] and its buffers are given back.
//!
//! Pure, like the parser: no clock, no I/O, no emitter. What the caller must count comes back in a
//! [`Tally`], so that the fuzz target can drive this with arbitrary chunks and gaps.

use std::sync::Arc;

use super::cert::{parse_certificate, CertError, CertInfo};
use super::ja4::{ja4, Ja4, Transport};
use super::parser::{
    content_type, find_handshake, handshake_status, handshake_type, is_grease, probe,
    skip_compat_change_cipher_spec, version, Certificate, ClientHello, Found, Probe, ServerHello,
    Status,
};
use crate::flow::{Chunk, Dir, GapReason};

/// The most handshake bytes kept per direction. A ClientHello is a few hundred bytes (2 KiB with a
/// post-quantum key share); a TLS 1.2 server flight up to the end of its Certificate is 3–8 KiB for
/// the chains seen in practice (cloudflare.com's: 2.7 KiB). 32 KiB leaves room for long chains
/// while bounding a connection to 64 KiB.
pub const BUFFER_BYTES: usize = 32 * 1024;

/// How far into a direction a TLS start is looked for when the connection began in plaintext
/// (STARTTLS): an SMTP greeting, EHLO and its capabilities, and the go-ahead take well under 2 KiB.
pub const STARTTLS_WINDOW: u64 = 8 * 1024;

/// Bytes [`probe`] needs to decide.
const PROBE_BYTES: usize = 11;

/// First allocation of a direction's buffer; it doubles up to [`BUFFER_BYTES`] as needed.
const INITIAL_CAPACITY: usize = 2 * 1024;

/// Given-back buffers a [`Memory`] keeps for the next TLS connections, so that a shard that has
/// warmed up takes its handshake buffers from the pool instead of from the allocator (two to four
/// allocations and frees per TLS connection before, and the allocator's merging of the freed
/// blocks was a tenth of the module's time on the benchmark capture).
const SPARE_BUFFERS: usize = 64;

/// A given-back buffer is kept only up to this capacity, enough for the usual handshake (a
/// ClientHello, or a TLS 1.2 server flight up to its Certificate): the pool holds at most
/// `SPARE_BUFFERS × KEEP_CAPACITY` = 512 KiB, whatever the long chains seen.
const KEEP_CAPACITY: usize = 8 * 1024;

/// Leaf certificates a [`Memory`] keeps decoded, with their DER. Servers send the same leaf to every
/// client until it is renewed, so the handshakes of a VPC's busy endpoints repeat a few
/// certificates many times; decoding one (x509-parser's walk of the DER, its distinguished names
/// printed, the SHA-256 fingerprint: about 20 allocations) cost more than the rest of the TLS
/// record. A repeated leaf is found by comparing its bytes (the lengths first, then the bytes up
/// to the first difference), so a hit costs no hashing, and the record is the same whichever way
/// its fields came.
const CACHED_CERTS: usize = 32;

/// A leaf longer than this is decoded every time rather than kept (real leaves are 1–2 KiB), so
/// the cache holds at most `CACHED_CERTS × CACHED_CERT_BYTES` = 256 KiB of DER.
const CACHED_CERT_BYTES: usize = 8 * 1024;

/// Written handshake summaries a [`Memory`] keeps for the next connections, with the strings and
/// lists their ClientHellos filled: a warmed-up shard then reads a handshake without asking the
/// allocator for its summary (six allocations and frees per TLS connection before: the box, the
/// server name, the ALPN list and its names, the version list). A kept summary's text is at most
/// [`KEEP_SUMMARY_BYTES`], so the pool stays small whatever names were seen.
const SPARE_SUMMARIES: usize = 64;

/// The most string and list capacity a kept [`ClientSummary`] may hold.
const KEEP_SUMMARY_BYTES: usize = 1024;

/// Anomalies a record reports in its `flags` list; each is one bit.
pub mod flag {
    /// A gap (lost or cut bytes) hit the client's handshake before its ClientHello was read.
    pub const CLIENT_GAP: u32 = 1 << 0;
    /// A gap hit the server's handshake before its ServerHello (and Certificate) was read.
    pub const SERVER_GAP: u32 = 1 << 1;
    /// One of those gaps was a packet cut by truncation (the session's `PacketLength`).
    pub const TRUNCATED: u32 = 1 << 2;
    /// The client's handshake did not fit in [`super::BUFFER_BYTES`] (or the module's memory).
    pub const CLIENT_BUFFER_FULL: u32 = 1 << 3;
    /// The server's handshake did not fit.
    pub const SERVER_BUFFER_FULL: u32 = 1 << 4;
    /// The ClientHello, or the records framing it, did not parse.
    pub const MALFORMED_CLIENT_HELLO: u32 = 1 << 5;
    /// The ServerHello, or the records framing it, did not parse.
    pub const MALFORMED_SERVER_HELLO: u32 = 1 << 6;
    /// The Certificate message or its leaf certificate did not parse.
    pub const MALFORMED_CERTIFICATE: u32 = 1 << 7;
    /// A hello repeated a known extension (the first one was used).
    pub const DUPLICATE_EXTENSION: u32 = 1 << 8;
    /// A hello carried a known extension that did not parse (its field is absent).
    pub const MALFORMED_EXTENSION: u32 = 1 << 9;
    /// The chain had more certificates than the parser reads.
    pub const CHAIN_TRUNCATED: u32 = 1 << 10;
    /// The leaf had more subject alternative names than are kept.
    pub const SANS_TRUNCATED: u32 = 1 << 11;
    /// The leaf's subjectAltName extension did not decode.
    pub const SANS_MALFORMED: u32 = 1 << 12;
    /// The flow ended before the handshake was read to the point the record needs.
    pub const INCOMPLETE: u32 = 1 << 13;

    /// Every flag with its name in records, in bit order.
    pub const NAMES: [(u32, &str); 14] = [
        (CLIENT_GAP, "client_gap"),
        (SERVER_GAP, "server_gap"),
        (TRUNCATED, "truncated"),
        (CLIENT_BUFFER_FULL, "client_buffer_full"),
        (SERVER_BUFFER_FULL, "server_buffer_full"),
        (MALFORMED_CLIENT_HELLO, "malformed_client_hello"),
        (MALFORMED_SERVER_HELLO, "malformed_server_hello"),
        (MALFORMED_CERTIFICATE, "malformed_certificate"),
        (DUPLICATE_EXTENSION, "duplicate_extension"),
        (MALFORMED_EXTENSION, "malformed_extension"),
        (CHAIN_TRUNCATED, "chain_truncated"),
        (SANS_TRUNCATED, "sans_truncated"),
        (SANS_MALFORMED, "sans_malformed"),
        (INCOMPLETE, "incomplete"),
    ];
}

/// What the caller counts after a call: the module turns these into its `malformed`, `gaps` and
/// `drops` counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    /// TLS messages that failed to parse.
    pub malformed: u64,
    /// Gaps that hit a handshake before it was read.
    pub gaps: u64,
    /// Handshake messages given up for want of buffer space.
    pub dropped: u64,
}

/// The handshake buffers of all of one module instance's connections, bounded together: a flood of
/// half-sent handshakes costs refused (counted) buffers, not unbounded memory. Buffers given back
/// are pooled here (at most `SPARE_BUFFERS` of up to `KEEP_CAPACITY` each) and are not counted
/// in `held`, which is what connections hold now.
#[derive(Debug)]
pub struct Memory {
    /// Bytes of buffer capacity held now.
    pub held: usize,
    /// The most that may be held.
    pub limit: usize,
    /// Empty buffers given back, for the next connections.
    spare: Vec<Vec<u8>>,
    /// Leaf certificates decoded lately ([`CACHED_CERTS`]).
    certs: CertCache,
    /// The parser's buffer for a message split across records, kept between calls.
    scratch: Vec<u8>,
    /// Written handshakes' boxes and ClientHello summaries, for the next connections
    /// ([`SPARE_SUMMARIES`]).
    // The boxes themselves are what is reused: a connection holds its summary boxed.
    #[allow(clippy::vec_box)]
    spare_handshakes: Vec<Box<Handshake>>,
    spare_clients: Vec<ClientSummary>,
}

/// Recently decoded leaf certificates, replaced oldest first.
#[derive(Debug, Default)]
struct CertCache {
    entries: Vec<(Box<[u8]>, Arc<CertInfo>)>,
    /// The entry the next new certificate replaces once the cache is full.
    next: usize,
}

impl CertCache {
    /// `der` decoded: from the cache when the same bytes were decoded lately.
    fn decode(&mut self, der: &[u8]) -> Result<Arc<CertInfo>, CertError> {
        if let Some((_, info)) = self.entries.iter().find(|(kept, _)| **kept == *der) {
            return Ok(Arc::clone(info));
        }
        let info = Arc::new(parse_certificate(der)?);
        if der.len() <= CACHED_CERT_BYTES {
            let entry = (Box::from(der), Arc::clone(&info));
            if self.entries.len() < CACHED_CERTS {
                self.entries.push(entry);
            } else if let Some(slot) = self.entries.get_mut(self.next) {
                *slot = entry;
                self.next = (self.next + 1) % CACHED_CERTS;
            }
        }
        Ok(info)
    }
}

impl Memory {
    /// An empty budget of `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Memory {
            held: 0,
            limit,
            spare: Vec::new(),
            certs: CertCache::default(),
            scratch: Vec::new(),
            spare_handshakes: Vec::new(),
            spare_clients: Vec::new(),
        }
    }

    /// The smallest pooled buffer of at least `want` bytes that the budget has room for (the
    /// smallest, so that the budget is charged as little more than a fresh buffer as can be).
    fn take_spare(&mut self, want: usize) -> Option<Vec<u8>> {
        let room = self.limit.saturating_sub(self.held);
        let (i, _) = self
            .spare
            .iter()
            .enumerate()
            .filter(|(_, b)| b.capacity() >= want && b.capacity() <= room)
            .min_by_key(|(_, b)| b.capacity())?;
        let buf = self.spare.swap_remove(i);
        self.held += buf.capacity();
        Some(buf)
    }

    /// An empty handshake summary, pooled when there is one.
    fn take_handshake(&mut self) -> Box<Handshake> {
        self.spare_handshakes.pop().unwrap_or_default()
    }

    /// Takes a written handshake back: its box and its ClientHello summaries into the pools.
    fn give_handshake(&mut self, mut hs: Box<Handshake>) {
        for c in [hs.client.take(), hs.retry.take()].into_iter().flatten() {
            if self.spare_clients.len() < SPARE_SUMMARIES && c.capacity() <= KEEP_SUMMARY_BYTES {
                self.spare_clients.push(c);
            }
        }
        if self.spare_handshakes.len() < SPARE_SUMMARIES {
            // What is left (the server's summary, the chain's shared leaf) goes now.
            *hs = Handshake::default();
            self.spare_handshakes.push(hs);
        }
    }

    /// Takes a connection's buffer back: into the pool when it is small and the pool has room.
    fn give_back(&mut self, mut buf: Vec<u8>) {
        self.held = self.held.saturating_sub(buf.capacity());
        if buf.capacity() > 0 && buf.capacity() <= KEEP_CAPACITY && self.spare.len() < SPARE_BUFFERS
        {
            buf.clear();
            self.spare.push(buf);
        }
    }
}

/// What a chunk did to the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Keep the streams coming.
    Pending,
    /// Not TLS: stop both streams; nothing will be recorded.
    NotTls,
    /// The handshake is read: record it and stop both streams.
    Complete,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Looking for the start of TLS.
    Seek,
    /// Gathering handshake bytes.
    Tls,
    /// Nothing more is wanted from this direction.
    Done,
}

/// One direction of the connection.
#[derive(Debug)]
struct Side {
    phase: Phase,
    /// Stream bytes seen (gaps included).
    seen: u64,
    /// The first bytes of a candidate TLS start that a chunk's end cut.
    head: [u8; PROBE_BYTES],
    head_len: usize,
    /// Stream offset of `head[0]`.
    head_at: u64,
    /// Whether the next byte starts a line (a STARTTLS candidate).
    line_start: bool,
    /// Whether the direction's very first byte was probed and is not TLS.
    first_not_tls: bool,
    /// Where TLS started in the stream.
    tls_at: u64,
    /// Handshake bytes from the TLS start.
    buf: Vec<u8>,
    /// Do not ask the parser again before `buf` holds this many bytes.
    need: usize,
    /// Bytes were left out: the buffer reached its cap or the memory budget.
    full: bool,
}

impl Side {
    fn new() -> Self {
        Side {
            phase: Phase::Seek,
            seen: 0,
            head: [0; PROBE_BYTES],
            head_len: 0,
            head_at: 0,
            line_start: true,
            first_not_tls: false,
            tls_at: 0,
            buf: Vec::new(),
            need: 0,
            full: false,
        }
    }

    /// Looks for a TLS record start in plaintext bytes: at the stream's first byte and after each
    /// line feed. Returns where TLS starts as (bytes carried in `head`, index in `bytes`).
    fn seek(&mut self, bytes: &[u8]) -> Option<(usize, usize)> {
        let mut from = 0;
        if self.head_len > 0 {
            // A candidate carried over from the previous chunk.
            let have = self.head_len;
            let take = (PROBE_BYTES - have).min(bytes.len());
            self.head[have..have + take].copy_from_slice(&bytes[..take]);
            match probe(&self.head[..have + take]) {
                Probe::Tls => {
                    self.head_len = 0;
                    return Some((have, 0));
                }
                Probe::NeedMore(_) => {
                    self.head_len = have + take;
                    return None;
                }
                // A line feed inside the carried bytes is not looked at again: the candidate
                // looked like a record header, which text lines are not.
                Probe::NotTls => {
                    self.head_len = 0;
                    self.line_start = false;
                    if self.head_at == 0 {
                        self.first_not_tls = true;
                    }
                }
            }
        }
        let mut at = if self.line_start { Some(0) } else { None };
        loop {
            if let Some(p) = at {
                let rest = &bytes[p..];
                match probe(rest) {
                    Probe::Tls => return Some((0, p)),
                    Probe::NeedMore(_) => {
                        if rest.is_empty() {
                            self.line_start = true;
                            return None;
                        }
                        // `probe` decides with PROBE_BYTES, so a shorter rest is what is left.
                        let n = rest.len().min(PROBE_BYTES);
                        self.head[..n].copy_from_slice(&rest[..n]);
                        self.head_len = n;
                        self.head_at = self.seen + p as u64;
                        self.line_start = false;
                        return None;
                    }
                    Probe::NotTls => {
                        if self.seen == 0 && p == 0 {
                            self.first_not_tls = true;
                        }
                    }
                }
                from = p;
            }
            match bytes[from..].iter().position(|&b| b == b'\n') {
                Some(lf) => {
                    let next = from + lf + 1;
                    if next == bytes.len() {
                        self.line_start = true;
                        return None;
                    }
                    at = Some(next);
                }
                None => {
                    self.line_start = false;
                    return None;
                }
            }
        }
    }

    /// Adds handshake bytes, within the buffer's cap and the instance's memory.
    fn append(&mut self, bytes: &[u8], mem: &mut Memory) {
        let room = BUFFER_BYTES.saturating_sub(self.buf.len());
        let take = room.min(bytes.len());
        if take < bytes.len() {
            self.full = true;
        }
        if take == 0 {
            return;
        }
        let len = self.buf.len() + take;
        let want = len
            .next_power_of_two()
            .clamp(INITIAL_CAPACITY, BUFFER_BYTES);
        if self.buf.capacity() == 0 {
            if let Some(spare) = mem.take_spare(want) {
                self.buf = spare;
            }
        }
        let before = self.buf.capacity();
        if len > before {
            if mem.held + (want - before) > mem.limit {
                self.full = true;
                return;
            }
            self.buf.reserve_exact(want - self.buf.len());
            mem.held += self.buf.capacity() - before;
        }
        self.buf.extend_from_slice(&bytes[..take]);
    }

    fn release(&mut self, mem: &mut Memory) {
        mem.give_back(std::mem::take(&mut self.buf));
        self.phase = Phase::Done;
    }
}

/// A ClientHello, as the record shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientSummary {
    /// The server name, when printable.
    pub sni: Option<String>,
    /// ALPN protocols offered, in order.
    pub alpns: Vec<String>,
    /// Versions offered (supported_versions, else the legacy version), GREASE left out.
    pub versions: Vec<u16>,
    /// Cipher suites offered, GREASE left out.
    pub ciphers: usize,
    /// Extensions sent, GREASE left out.
    pub extensions: usize,
    /// The JA4 fingerprint.
    pub ja4: Ja4,
}

impl Default for ClientSummary {
    fn default() -> Self {
        ClientSummary {
            sni: None,
            alpns: Vec::new(),
            versions: Vec::new(),
            ciphers: 0,
            extensions: 0,
            ja4: Ja4::EMPTY,
        }
    }
}

impl ClientSummary {
    /// The summary of `hello`, written over `self`: the strings and lists a pooled summary holds
    /// are reused, so that a warmed-up shard reads a ClientHello without allocating.
    fn fill(&mut self, hello: &ClientHello<'_>) {
        self.versions.clear();
        match hello.supported_versions() {
            Some(list) => self.versions.extend(list.filter(|&v| !is_grease(v))),
            None => self.versions.push(hello.legacy_version),
        }
        match hello.server_name() {
            Some(name) => {
                let mut sni = self.sni.take().unwrap_or_default();
                sni.clear();
                sni.push_str(&String::from_utf8_lossy(name));
                self.sni = Some(sni);
            }
            None => self.sni = None,
        }
        let mut n = 0;
        for alpn in hello.alpn() {
            let alpn = String::from_utf8_lossy(alpn);
            match self.alpns.get_mut(n) {
                Some(kept) => {
                    kept.clear();
                    kept.push_str(&alpn);
                }
                None => self.alpns.push(alpn.into_owned()),
            }
            n += 1;
        }
        self.alpns.truncate(n);
        self.ciphers = hello.cipher_suites().filter(|&c| !is_grease(c)).count();
        self.extensions = hello.extension_types().filter(|&e| !is_grease(e)).count();
        self.ja4 = ja4(hello, Transport::Tcp);
    }

    /// Heap bytes the summary holds, for the pool's bound.
    fn capacity(&self) -> usize {
        self.sni.as_ref().map_or(0, String::capacity)
            + self.alpns.capacity() * std::mem::size_of::<String>()
            + self.alpns.iter().map(String::capacity).sum::<usize>()
            + self.versions.capacity() * 2
    }
}

/// A ServerHello, as the record shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSummary {
    /// The version chosen.
    pub version: u16,
    /// The cipher suite chosen.
    pub cipher: u16,
    /// The ALPN protocol chosen.
    pub alpn: Option<String>,
}

/// The server's certificate chain (TLS ≤ 1.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    /// Certificates in the message (up to the parser's limit).
    pub len: usize,
    /// The leaf's fields, when it decoded (shared with the instance's cache of recent leaves).
    pub leaf: Option<Arc<CertInfo>>,
}

/// What one connection's handshake showed: what a record is written from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Handshake {
    /// The first ClientHello.
    pub client: Option<ClientSummary>,
    /// The second ClientHello, after a HelloRetryRequest.
    pub retry: Option<ClientSummary>,
    /// Whether the server sent a HelloRetryRequest.
    pub hello_retry: bool,
    /// The (final) ServerHello.
    pub server: Option<ServerSummary>,
    /// The certificate chain.
    pub chain: Option<Chain>,
    /// Whether TLS started after a plaintext exchange.
    pub starttls: bool,
    /// [`flag`] bits.
    pub flags: u32,
}

/// Where the server's side stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ServerStep {
    /// Looking for the first ServerHello.
    Hello,
    /// A HelloRetryRequest ended at this buffer offset; looking for the real ServerHello.
    AfterRetry(usize),
    /// A TLS ≤ 1.2 ServerHello started at this offset; looking for the Certificate after it.
    Certificate(usize),
    /// All read (or given up).
    Done,
}

/// One TCP connection as the TLS module follows it.
#[derive(Debug)]
pub struct Conn {
    client: Side,
    server: Side,
    server_first: bool,
    hs: Option<Box<Handshake>>,
    /// ClientHellos read so far, and where the last one's record ended.
    hellos: u8,
    hello_end: usize,
    client_done: bool,
    server_step: ServerStep,
    recorded: bool,
}

impl Default for Conn {
    fn default() -> Self {
        Conn::new()
    }
}

impl Conn {
    /// A connection with nothing seen; holds no heap memory until TLS is found.
    pub fn new() -> Self {
        Conn {
            client: Side::new(),
            server: Side::new(),
            server_first: false,
            hs: None,
            hellos: 0,
            hello_end: 0,
            client_done: false,
            server_step: ServerStep::Hello,
            recorded: false,
        }
    }

    /// The handshake so far, once either direction was found to be TLS.
    pub fn handshake(&self) -> Option<&Handshake> {
        self.hs.as_deref()
    }

    /// Whether a record was already made for this connection.
    pub fn recorded(&self) -> bool {
        self.recorded
    }

    /// Marks the record made and gives the buffers back; nothing more is read. The handshake's
    /// summary goes too: it was written, and a connection that lives on after its handshake (most
    /// do) should not hold its strings until its end.
    pub fn finish(&mut self, mem: &mut Memory) {
        self.stop(mem);
        if let Some(hs) = self.hs.take() {
            mem.give_handshake(hs);
        }
    }

    fn stop(&mut self, mem: &mut Memory) {
        self.recorded = true;
        self.client.release(mem);
        self.server.release(mem);
    }

    /// At the flow's end without a complete handshake: flags what is missing and gives the buffers
    /// back, keeping the summary for the caller to write. Returns whether there is anything TLS to
    /// record.
    pub fn end(&mut self, mem: &mut Memory) -> bool {
        let worth = !self.recorded && self.hs.is_some();
        if worth && !self.complete() {
            if let Some(hs) = self.hs.as_deref_mut() {
                hs.flags |= flag::INCOMPLETE;
            }
        }
        self.stop(mem);
        worth
    }

    /// Feeds one chunk of `dir`'s reassembled stream.
    pub fn on_chunk(
        &mut self,
        dir: Dir,
        chunk: &Chunk<'_>,
        mem: &mut Memory,
        tally: &mut Tally,
    ) -> Verdict {
        if self.recorded {
            return Verdict::Pending;
        }
        match *chunk {
            Chunk::Data { bytes, .. } => self.on_data(dir, bytes, mem, tally),
            Chunk::Gap { len, why, .. } => self.on_gap(dir, len, why, mem, tally),
        }
    }

    fn side(&mut self, dir: Dir) -> &mut Side {
        match dir {
            Dir::ToServer => &mut self.client,
            Dir::ToClient => &mut self.server,
        }
    }

    fn on_data(&mut self, dir: Dir, bytes: &[u8], mem: &mut Memory, tally: &mut Tally) -> Verdict {
        if dir == Dir::ToClient && self.server.seen == 0 && self.client.seen == 0 {
            // The server spoke first: a greeting (SMTP, IMAP, POP3, FTP), the case where STARTTLS
            // may follow, so the client's plaintext is not a reason to give up.
            self.server_first = true;
        }
        // A side that has given all it has to give keeps nothing more.
        let finished = match dir {
            Dir::ToServer => self.client_done,
            Dir::ToClient => self.server_step == ServerStep::Done,
        };
        let side = self.side(dir);
        match side.phase {
            Phase::Done => return Verdict::Pending,
            Phase::Tls if finished => return Verdict::Pending,
            Phase::Tls => side.append(bytes, mem),
            Phase::Seek => {
                let start = side.seen;
                let found = side.seek(bytes);
                side.seen += bytes.len() as u64;
                match found {
                    Some((carried, from)) => {
                        side.phase = Phase::Tls;
                        side.tls_at = if carried > 0 {
                            side.head_at
                        } else {
                            start + from as u64
                        };
                        let head = side.head;
                        side.append(&head[..carried], mem);
                        side.append(&bytes[from..], mem);
                        let starttls = side.tls_at > 0;
                        let hs = self.hs.get_or_insert_with(|| mem.take_handshake());
                        hs.starttls |= starttls;
                    }
                    None => {
                        let give_up = side.seen > STARTTLS_WINDOW;
                        let first_not_tls = side.first_not_tls;
                        if give_up {
                            side.phase = Phase::Done;
                        }
                        if self.hs.is_none()
                            && dir == Dir::ToServer
                            && ((first_not_tls && !self.server_first) || give_up)
                        {
                            return self.not_tls(mem);
                        }
                        return Verdict::Pending;
                    }
                }
            }
        }
        self.evaluate(tally, mem)
    }

    fn on_gap(
        &mut self,
        dir: Dir,
        len: u64,
        why: GapReason,
        mem: &mut Memory,
        tally: &mut Tally,
    ) -> Verdict {
        let server_first = self.server_first;
        let undecided = self.hs.is_none();
        let hello_retry = self.hs.as_deref().is_some_and(|h| h.hello_retry);
        // After the first ClientHello the client's bytes matter only for a second one.
        let wanted = match dir {
            Dir::ToServer => {
                !self.client_done && (self.hellos == 0 || (self.hellos == 1 && hello_retry))
            }
            Dir::ToClient => self.server_step != ServerStep::Done,
        };
        let side = self.side(dir);
        match side.phase {
            Phase::Done => Verdict::Pending,
            Phase::Seek => {
                let at_start = side.seen == 0;
                side.seen = side.seen.saturating_add(len);
                side.head_len = 0;
                side.line_start = false;
                if dir == Dir::ToServer && undecided && at_start && !server_first {
                    // The client's first bytes are missing: where TLS would start is unknowable.
                    return self.not_tls(mem);
                }
                Verdict::Pending
            }
            Phase::Tls => {
                side.phase = Phase::Done;
                if !wanted {
                    return Verdict::Pending;
                }
                tally.gaps += 1;
                let mut bits = match dir {
                    Dir::ToServer => flag::CLIENT_GAP,
                    Dir::ToClient => flag::SERVER_GAP,
                };
                if why == GapReason::Truncated {
                    bits |= flag::TRUNCATED;
                }
                match dir {
                    Dir::ToServer => self.client_done = true,
                    Dir::ToClient => self.server_step = ServerStep::Done,
                }
                self.flag(bits);
                self.evaluate(tally, mem)
            }
        }
    }

    fn not_tls(&mut self, mem: &mut Memory) -> Verdict {
        self.stop(mem);
        Verdict::NotTls
    }

    fn complete(&self) -> bool {
        self.hs.is_some() && self.client_done && self.server_step == ServerStep::Done
    }

    fn verdict(&self) -> Verdict {
        if self.complete() {
            Verdict::Complete
        } else {
            Verdict::Pending
        }
    }

    fn evaluate(&mut self, tally: &mut Tally, mem: &mut Memory) -> Verdict {
        let mut scratch = std::mem::take(&mut mem.scratch);
        // The server first: a HelloRetryRequest there means a second ClientHello to look for.
        self.eval_server(tally, mem, &mut scratch);
        self.eval_client(tally, mem, &mut scratch);
        if scratch.capacity() <= KEEP_CAPACITY {
            scratch.clear();
            mem.scratch = scratch;
        }
        self.verdict()
    }

    fn flag(&mut self, bits: u32) {
        if let Some(hs) = self.hs.as_deref_mut() {
            hs.flags |= bits;
        }
    }

    fn hello_flags(&mut self, duplicate: bool, malformed: bool) {
        if duplicate {
            self.flag(flag::DUPLICATE_EXTENSION);
        }
        if malformed {
            self.flag(flag::MALFORMED_EXTENSION);
        }
    }

    fn eval_client(&mut self, tally: &mut Tally, mem: &mut Memory, scratch: &mut Vec<u8>) {
        loop {
            if self.client.phase != Phase::Tls && self.client.phase != Phase::Done {
                return;
            }
            let hello_retry = self.hs.as_deref().is_some_and(|h| h.hello_retry);
            // After the first ClientHello, a second one is looked for while the server has not
            // answered (a one-way mirror, or a capture of the client alone, shows the retry only
            // as a second hello) and after a HelloRetryRequest; a ServerHello without one ends it.
            let server_answered = !matches!(
                self.server_step,
                ServerStep::Hello | ServerStep::AfterRetry(_)
            );
            let wanted =
                self.hellos == 0 || (self.hellos == 1 && (hello_retry || !server_answered));
            if !wanted {
                self.client_done = true;
                return;
            }
            // A missing second hello is worth a flag only when the server asked for it.
            let needed = self.hellos == 0 || hello_retry;
            // Waiting for more bytes, unless no more will come.
            let more = !self.client.full && self.client.phase == Phase::Tls;
            if self.client_done || (more && self.client.buf.len() < self.client.need) {
                return;
            }
            let buf = &self.client.buf;
            let mut at = self.hello_end;
            if self.hellos == 1 {
                at += skip_compat_change_cipher_spec(buf.get(at..).unwrap_or(&[]));
            }
            let rest = buf.get(at..).unwrap_or(&[]);
            // A change_cipher_spec record whose one byte is still to come is not the end of the
            // handshake: wait for it.
            if rest.first() == Some(&content_type::CHANGE_CIPHER_SPEC) && rest.len() < 6 {
                self.client.need = at + 6;
                if self.client.full || self.client.phase == Phase::Done {
                    self.client_done = true;
                }
                return;
            }
            match handshake_status(rest, handshake_type::CLIENT_HELLO) {
                Status::Complete { end, .. } => {
                    let parsed = match find_handshake(rest, handshake_type::CLIENT_HELLO, scratch) {
                        Found::Complete { body, .. } => ClientHello::parse(body)
                            .map(|h| {
                                let mut summary = mem.spare_clients.pop().unwrap_or_default();
                                summary.fill(&h);
                                (summary, h.flags)
                            })
                            .ok(),
                        _ => None,
                    };
                    let Some((summary, flags)) = parsed else {
                        tally.malformed += 1;
                        self.flag(flag::MALFORMED_CLIENT_HELLO);
                        self.client_done = true;
                        return;
                    };
                    self.hello_flags(flags.duplicate_extension, flags.malformed_extension);
                    if let Some(hs) = self.hs.as_deref_mut() {
                        if self.hellos == 0 {
                            hs.client = Some(summary);
                        } else {
                            hs.retry = Some(summary);
                        }
                    }
                    self.hellos += 1;
                    self.hello_end = at + end;
                    self.client.need = 0;
                }
                Status::NeedMore { need } => {
                    self.client.need = at + need;
                    if self.client.phase == Phase::Done {
                        // A gap already ended this direction (and flagged it, if it mattered).
                        self.client_done = true;
                    } else if self.client.full {
                        if needed {
                            tally.dropped += 1;
                            self.flag(flag::CLIENT_BUFFER_FULL);
                        }
                        self.client_done = true;
                    }
                    return;
                }
                Status::Absent => {
                    // No (second) ClientHello before encrypted data: nothing more to read.
                    self.client_done = true;
                    return;
                }
                Status::Invalid(_) => {
                    // After the first hello, the client's later messages are not ours to judge.
                    if needed {
                        tally.malformed += 1;
                        self.flag(flag::MALFORMED_CLIENT_HELLO);
                    }
                    self.client_done = true;
                    return;
                }
            }
        }
    }

    fn eval_server(&mut self, tally: &mut Tally, mem: &mut Memory, scratch: &mut Vec<u8>) {
        loop {
            if self.server.phase == Phase::Seek || self.server_step == ServerStep::Done {
                return;
            }
            let more = !self.server.full && self.server.phase == Phase::Tls;
            if more && self.server.buf.len() < self.server.need {
                return;
            }
            let buf = &self.server.buf;
            let (at, wanted) = match self.server_step {
                ServerStep::Hello => (0, handshake_type::SERVER_HELLO),
                ServerStep::AfterRetry(end) => {
                    let skip = skip_compat_change_cipher_spec(buf.get(end..).unwrap_or(&[]));
                    (end + skip, handshake_type::SERVER_HELLO)
                }
                ServerStep::Certificate(at) => (at, handshake_type::CERTIFICATE),
                ServerStep::Done => return,
            };
            let rest = buf.get(at..).unwrap_or(&[]);
            let malformed = if wanted == handshake_type::CERTIFICATE {
                flag::MALFORMED_CERTIFICATE
            } else {
                flag::MALFORMED_SERVER_HELLO
            };
            match handshake_status(rest, wanted) {
                Status::Complete { end, .. } => {
                    let Found::Complete { body, .. } = find_handshake(rest, wanted, scratch) else {
                        tally.malformed += 1;
                        self.flag(malformed);
                        self.server_step = ServerStep::Done;
                        return;
                    };
                    if wanted == handshake_type::CERTIFICATE {
                        let chain = read_chain(body, tally, &mut mem.certs);
                        let Some((chain, bits)) = chain else {
                            self.flag(flag::MALFORMED_CERTIFICATE);
                            self.server_step = ServerStep::Done;
                            return;
                        };
                        self.flag(bits);
                        if let Some(hs) = self.hs.as_deref_mut() {
                            hs.chain = Some(chain);
                        }
                        self.server_step = ServerStep::Done;
                        return;
                    }
                    let Ok(hello) = ServerHello::parse(body) else {
                        tally.malformed += 1;
                        self.flag(flag::MALFORMED_SERVER_HELLO);
                        self.server_step = ServerStep::Done;
                        return;
                    };
                    let (duplicate, bad_extension) = (
                        hello.flags.duplicate_extension,
                        hello.flags.malformed_extension,
                    );
                    let retry = hello.is_hello_retry_request();
                    // From TLS 1.3 on, the certificate is encrypted: the ServerHello is the end.
                    let tls13 =
                        hello.selected_version().is_some() || hello.version() > version::TLS_1_2;
                    let summary = ServerSummary {
                        version: hello.version(),
                        cipher: hello.cipher_suite,
                        alpn: hello
                            .alpn()
                            .map(|a| String::from_utf8_lossy(a).into_owned()),
                    };
                    self.hello_flags(duplicate, bad_extension);
                    if retry && self.server_step == ServerStep::Hello {
                        if let Some(hs) = self.hs.as_deref_mut() {
                            hs.hello_retry = true;
                        }
                        self.server_step = ServerStep::AfterRetry(at + end);
                        self.server.need = 0;
                        continue;
                    }
                    if let Some(hs) = self.hs.as_deref_mut() {
                        hs.server = Some(summary);
                    }
                    self.server_step = if tls13 {
                        ServerStep::Done
                    } else {
                        ServerStep::Certificate(at)
                    };
                    self.server.need = 0;
                }
                Status::NeedMore { need } => {
                    self.server.need = at + need;
                    if self.server.phase == Phase::Done {
                        self.server_step = ServerStep::Done;
                    } else if self.server.full {
                        tally.dropped += 1;
                        self.flag(flag::SERVER_BUFFER_FULL);
                        self.server_step = ServerStep::Done;
                    }
                    return;
                }
                Status::Absent => {
                    // Encrypted data or a change_cipher_spec before the message: a resumed
                    // session sends no Certificate.
                    self.server_step = ServerStep::Done;
                    return;
                }
                Status::Invalid(_) => {
                    tally.malformed += 1;
                    self.flag(malformed);
                    self.server_step = ServerStep::Done;
                    return;
                }
            }
        }
    }
}

/// Reads a Certificate message body: the chain's length and its leaf, with the flags to add.
/// `None` when the message itself is malformed (counted).
fn read_chain(body: &[u8], tally: &mut Tally, certs: &mut CertCache) -> Option<(Chain, u32)> {
    let Ok(cert) = Certificate::parse(body) else {
        tally.malformed += 1;
        return None;
    };
    let mut bits = 0;
    if cert.chain_truncated {
        bits |= flag::CHAIN_TRUNCATED;
    }
    let leaf = match cert.chain().next().map(|der| certs.decode(der)) {
        None => None,
        Some(Ok(info)) => {
            if info.sans_truncated {
                bits |= flag::SANS_TRUNCATED;
            }
            if info.sans_malformed {
                bits |= flag::SANS_MALFORMED;
            }
            Some(info)
        }
        Some(Err(_)) => {
            tally.malformed += 1;
            bits |= flag::MALFORMED_CERTIFICATE;
            None
        }
    };
    Some((
        Chain {
            len: cert.len(),
            leaf,
        },
        bits,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::tls::parser::tests::CLIENT_HELLO_RECORD;

    const SERVER_FLIGHT: &[u8] = include_bytes!("testdata/tls-alpn-h2-server-flight.bin");

    /// A TLS 1.3 ServerHello record (or a HelloRetryRequest).
    fn server_hello13(retry: bool) -> Vec<u8> {
        let mut body = vec![0x03, 0x03];
        if retry {
            body.extend_from_slice(&[
                0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65,
                0xb8, 0x91, 0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2,
                0xc8, 0xa8, 0x33, 0x9c,
            ]);
        } else {
            body.extend_from_slice(&[0x77; 32]);
        }
        body.extend_from_slice(&[0, 0x13, 0x02, 0, 0, 6, 0, 0x2b, 0, 2, 3, 4]);
        let mut rec = vec![22, 3, 3];
        rec.extend_from_slice(&((body.len() + 4) as u16).to_be_bytes());
        rec.extend_from_slice(&[2, 0, 0, body.len() as u8]);
        rec.extend_from_slice(&body);
        rec
    }

    struct Run {
        conn: Conn,
        mem: Memory,
        tally: Tally,
        offset: [u64; 2],
    }

    impl Run {
        fn new() -> Self {
            Run {
                conn: Conn::new(),
                mem: Memory::new(1 << 20),
                tally: Tally::default(),
                offset: [0; 2],
            }
        }

        fn data(&mut self, dir: Dir, bytes: &[u8]) -> Verdict {
            let offset = self.offset[dir.index()];
            self.offset[dir.index()] += bytes.len() as u64;
            self.conn.on_chunk(
                dir,
                &Chunk::Data { offset, bytes },
                &mut self.mem,
                &mut self.tally,
            )
        }

        fn gap(&mut self, dir: Dir, len: u64, why: GapReason) -> Verdict {
            let offset = self.offset[dir.index()];
            self.offset[dir.index()] += len;
            self.conn.on_chunk(
                dir,
                &Chunk::Gap { offset, len, why },
                &mut self.mem,
                &mut self.tally,
            )
        }

        fn hs(&self) -> &Handshake {
            self.conn.handshake().expect("TLS was found")
        }
    }

    #[test]
    fn hello_byte_by_byte_then_tls12_flight_with_certificate() {
        let mut r = Run::new();
        for b in CLIENT_HELLO_RECORD.iter() {
            assert_eq!(r.data(Dir::ToServer, &[*b]), Verdict::Pending);
        }
        let client = r.hs().client.clone().expect("the ClientHello is read");
        assert_eq!(client.sni.as_deref(), Some("example.com"));
        assert_eq!(client.alpns, ["h2", "http/1.1"]);
        assert_eq!(client.versions, [0x0304, 0x0303]);
        assert_eq!((client.ciphers, client.extensions), (3, 6));
        let (a, b) = SERVER_FLIGHT.split_at(1000);
        assert_eq!(r.data(Dir::ToClient, a), Verdict::Pending);
        assert_eq!(r.data(Dir::ToClient, b), Verdict::Complete);
        let hs = r.hs();
        let server = hs.server.as_ref().unwrap();
        assert_eq!(
            (server.version, server.cipher, server.alpn.as_deref()),
            (0x0303, 0xcca9, Some("h2"))
        );
        let chain = hs.chain.as_ref().unwrap();
        assert_eq!(chain.len, 2);
        assert!(chain
            .leaf
            .as_ref()
            .unwrap()
            .subject
            .ends_with("CN=cloudflare.com"));
        assert_eq!((hs.flags, hs.starttls), (0, false));
        assert_eq!(r.tally, Tally::default());
        assert!(r.mem.held > 0);
        r.conn.finish(&mut r.mem);
        assert_eq!(r.mem.held, 0, "buffers given back");
    }

    #[test]
    fn written_summaries_serve_the_next_connections() {
        let mut r = Run::new();
        r.data(Dir::ToServer, &CLIENT_HELLO_RECORD);
        assert_eq!(r.data(Dir::ToClient, SERVER_FLIGHT), Verdict::Complete);
        let first = r.hs().clone();
        let boxed = r.conn.hs.as_deref().map(|h| h as *const Handshake);
        let client = first.client.as_ref().expect("the ClientHello is read");
        let sni = r
            .hs()
            .client
            .as_ref()
            .and_then(|c| c.sni.as_ref())
            .map(|s| s.as_ptr());
        assert!(sni.is_some() && !client.alpns.is_empty());
        r.conn.finish(&mut r.mem);
        assert_eq!(
            (r.mem.spare_handshakes.len(), r.mem.spare_clients.len()),
            (1, 1)
        );
        let mut next = Run::new();
        next.mem = std::mem::replace(&mut r.mem, Memory::new(0));
        next.data(Dir::ToServer, &CLIENT_HELLO_RECORD);
        assert_eq!(next.data(Dir::ToClient, SERVER_FLIGHT), Verdict::Complete);
        assert_eq!(*next.hs(), first, "the same handshake reads the same");
        assert_eq!(
            next.conn.hs.as_deref().map(|h| h as *const Handshake),
            boxed
        );
        let next_sni = next.hs().client.as_ref().and_then(|c| c.sni.as_ref());
        assert_eq!(next_sni.map(|s| s.as_ptr()), sni);
        assert!(next.mem.spare_handshakes.is_empty() && next.mem.spare_clients.is_empty());
        // A pooled summary filled from a hello with fewer fields keeps none of the old ones.
        let mut summary = next.hs().client.clone().unwrap();
        summary.alpns.push("extra".into());
        let mut scratch = Vec::new();
        let Found::Complete { body, .. } = find_handshake(
            &CLIENT_HELLO_RECORD,
            handshake_type::CLIENT_HELLO,
            &mut scratch,
        ) else {
            panic!("the fixture holds a ClientHello");
        };
        summary.fill(&ClientHello::parse(body).unwrap());
        assert_eq!(Some(&summary), first.client.as_ref());
    }

    #[test]
    fn a_repeated_leaf_is_decoded_once_and_the_cache_is_bounded() {
        let mut scratch = Vec::new();
        let Found::Complete { body, .. } =
            find_handshake(SERVER_FLIGHT, handshake_type::CERTIFICATE, &mut scratch)
        else {
            panic!("the fixture holds a Certificate message");
        };
        let leaf = Certificate::parse(body)
            .unwrap()
            .chain()
            .next()
            .unwrap()
            .to_vec();
        let mut cache = CertCache::default();
        let first = cache.decode(&leaf).unwrap();
        assert_eq!(*first, parse_certificate(&leaf).unwrap());
        assert!(
            Arc::ptr_eq(&first, &cache.decode(&leaf).unwrap()),
            "a repeat is the kept decoding"
        );
        // Leaves that differ in their signature's last byte only: other certificates to the cache
        // (and to x509-parser, which does not check signatures), each with its own fingerprint.
        for i in 1..=CACHED_CERTS as u8 + 1 {
            let mut other = leaf.clone();
            *other.last_mut().unwrap() ^= i;
            let info = cache.decode(&other).unwrap();
            assert_eq!(*info, parse_certificate(&other).unwrap());
            assert_ne!(info.fingerprint_sha256, first.fingerprint_sha256);
        }
        assert_eq!(cache.entries.len(), CACHED_CERTS);
        let again = cache.decode(&leaf).unwrap();
        assert!(!Arc::ptr_eq(&first, &again), "the oldest was replaced");
        assert_eq!(again, first);
        // A leaf that does not decode is an error every time, and is not kept.
        assert!(cache.decode(&leaf[..100]).is_err());
        assert!(cache.entries.iter().all(|(der, _)| der.len() == leaf.len()));
    }

    #[test]
    fn given_back_buffers_serve_the_next_connections_and_the_pool_is_bounded() {
        let mut r = Run::new();
        r.data(Dir::ToServer, &CLIENT_HELLO_RECORD);
        assert_eq!(r.data(Dir::ToClient, SERVER_FLIGHT), Verdict::Complete);
        r.conn.finish(&mut r.mem);
        assert!(
            r.conn.handshake().is_none(),
            "the written summary is dropped"
        );
        let pooled: Vec<*const u8> = r.mem.spare.iter().map(|b| b.as_ptr()).collect();
        assert_eq!(pooled.len(), 2, "both directions' buffers are pooled");
        // The next connection's buffers are the pooled ones, charged to the budget again, and the
        // same handshake reads the same.
        let mut next = Run::new();
        next.mem = std::mem::replace(&mut r.mem, Memory::new(0));
        next.data(Dir::ToServer, &CLIENT_HELLO_RECORD);
        assert_eq!(next.data(Dir::ToClient, SERVER_FLIGHT), Verdict::Complete);
        assert!(next.mem.spare.is_empty());
        assert!(pooled.contains(&next.conn.client.buf.as_ptr()));
        assert!(pooled.contains(&next.conn.server.buf.as_ptr()));
        let held = next.conn.client.buf.capacity() + next.conn.server.buf.capacity();
        assert_eq!(next.mem.held, held);
        let chain = next.hs().chain.as_ref().expect("the certificate is read");
        assert!(chain
            .leaf
            .as_ref()
            .unwrap()
            .subject
            .ends_with("CN=cloudflare.com"));
        next.conn.finish(&mut next.mem);
        assert_eq!(next.mem.held, 0);
        // Many connections given back at once: the pool keeps SPARE_BUFFERS, and none over
        // KEEP_CAPACITY.
        let mut mem = Memory::new(1 << 30);
        for _ in 0..SPARE_BUFFERS + 10 {
            mem.give_back(Vec::with_capacity(INITIAL_CAPACITY));
        }
        mem.give_back(Vec::with_capacity(BUFFER_BYTES));
        assert_eq!(mem.spare.len(), SPARE_BUFFERS);
        assert!(mem.spare.iter().all(|b| b.capacity() <= KEEP_CAPACITY));
        // A pooled buffer larger than the budget has room for is not taken.
        let mut tight = Memory::new(INITIAL_CAPACITY - 1);
        tight.give_back(Vec::with_capacity(INITIAL_CAPACITY));
        assert!(tight.take_spare(16).is_none());
        assert_eq!(tight.held, 0);
    }

    #[test]
    fn not_tls_at_once_and_no_allocation() {
        let mut r = Run::new();
        assert_eq!(
            r.data(Dir::ToServer, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"),
            Verdict::NotTls
        );
        assert!(r.conn.handshake().is_none());
        assert_eq!(r.mem.held, 0);
        // Nor a first segment of one byte, or a gap where the first bytes should be.
        let mut r = Run::new();
        assert_eq!(r.data(Dir::ToServer, b"E"), Verdict::NotTls);
        let mut r = Run::new();
        assert_eq!(r.gap(Dir::ToServer, 100, GapReason::Lost), Verdict::NotTls);
    }

    #[test]
    fn starttls_after_a_server_greeting() {
        let mut r = Run::new();
        let lines: [(Dir, &[u8]); 5] = [
            (Dir::ToClient, b"220 mx ESMTP\r\n"),
            (Dir::ToServer, b"EHLO me\r\n"),
            (Dir::ToClient, b"250-mx\r\n250 STARTTLS\r\n"),
            (Dir::ToServer, b"STARTTLS\r\n"),
            (Dir::ToClient, b"220 go ahead\r\n"),
        ];
        for (dir, line) in lines {
            assert_eq!(r.data(dir, line), Verdict::Pending);
        }
        assert!(r.conn.handshake().is_none());
        // The hello's first bytes end one chunk; the rest follows.
        assert_eq!(
            r.data(Dir::ToServer, &CLIENT_HELLO_RECORD[..4]),
            Verdict::Pending
        );
        assert_eq!(
            r.data(Dir::ToServer, &CLIENT_HELLO_RECORD[4..]),
            Verdict::Pending
        );
        assert_eq!(
            r.data(Dir::ToClient, &server_hello13(false)),
            Verdict::Complete
        );
        let hs = r.hs();
        assert!(hs.starttls);
        assert_eq!(hs.server.as_ref().unwrap().version, 0x0304);
        assert!(hs.client.is_some());
    }

    #[test]
    fn a_client_that_talks_first_in_plaintext_is_given_up() {
        let mut r = Run::new();
        assert_eq!(r.data(Dir::ToServer, b"EHLO me\r\n"), Verdict::NotTls);
        // A server-first flow that never turns to TLS is given up after the window.
        let mut r = Run::new();
        assert_eq!(r.data(Dir::ToClient, b"SSH-2.0-x\r\n"), Verdict::Pending);
        let line = [b'a'; 1023];
        let mut verdict = Verdict::Pending;
        for _ in 0..=(STARTTLS_WINDOW / 1024) {
            verdict = r.data(Dir::ToServer, &line);
            if verdict != Verdict::Pending {
                break;
            }
        }
        assert_eq!(verdict, Verdict::NotTls);
    }

    #[test]
    fn truncated_hello_is_flagged_and_counted() {
        let mut r = Run::new();
        r.data(Dir::ToServer, &CLIENT_HELLO_RECORD[..60]);
        let left = (CLIENT_HELLO_RECORD.len() - 60) as u64;
        assert_eq!(
            r.gap(Dir::ToServer, left, GapReason::Truncated),
            Verdict::Pending
        );
        assert_eq!(
            r.data(Dir::ToClient, &server_hello13(false)),
            Verdict::Complete
        );
        let hs = r.hs();
        assert_eq!(hs.flags, flag::CLIENT_GAP | flag::TRUNCATED);
        assert!(hs.client.is_none());
        assert_eq!(r.tally.gaps, 1);
    }

    #[test]
    fn hello_retry_request_gives_two_fingerprints() {
        let mut r = Run::new();
        r.data(Dir::ToServer, &CLIENT_HELLO_RECORD);
        assert_eq!(
            r.data(Dir::ToClient, &server_hello13(true)),
            Verdict::Pending
        );
        let mut second = vec![20, 3, 3, 0, 1, 1];
        second.extend_from_slice(&CLIENT_HELLO_RECORD);
        assert_eq!(r.data(Dir::ToServer, &second), Verdict::Pending);
        let mut flight = vec![20, 3, 3, 0, 1, 1];
        flight.extend_from_slice(&server_hello13(false));
        assert_eq!(r.data(Dir::ToClient, &flight), Verdict::Complete);
        let hs = r.hs();
        assert!(hs.hello_retry);
        assert_eq!(
            hs.retry.as_ref().unwrap().ja4,
            hs.client.as_ref().unwrap().ja4
        );
        assert_eq!(hs.server.as_ref().unwrap().cipher, 0x1302);
    }

    #[test]
    fn malformed_hello_and_incomplete_handshake() {
        let mut r = Run::new();
        let mut bad = CLIENT_HELLO_RECORD;
        bad[9 + 2 + 32] = 40; // a session id longer than 32 bytes
        r.data(Dir::ToServer, &bad);
        assert_eq!(r.tally.malformed, 1);
        assert_eq!(r.hs().flags, flag::MALFORMED_CLIENT_HELLO);
        // The flow ends without the server's side: still a record, flagged.
        assert!(r.conn.end(&mut r.mem));
        assert_eq!(
            r.hs().flags,
            flag::MALFORMED_CLIENT_HELLO | flag::INCOMPLETE
        );
        assert!(!r.conn.end(&mut r.mem), "one record per connection");
    }

    #[test]
    fn memory_budget_is_shared_and_bounded() {
        let mut r = Run::new();
        r.mem = Memory::new(INITIAL_CAPACITY);
        // A hello announcing 16,000 bytes: the buffer cannot grow past the budget.
        let mut head = vec![22, 3, 3, 0x3e, 0x80, 1, 0, 0x3e, 0x7c, 3, 3];
        head.extend_from_slice(&[0; 2000]);
        r.data(Dir::ToServer, &head);
        r.data(Dir::ToServer, &[0; 2000]);
        assert_eq!(r.hs().flags, flag::CLIENT_BUFFER_FULL);
        assert_eq!(r.tally.dropped, 1);
        assert!(r.mem.held <= r.mem.limit);
    }
}
