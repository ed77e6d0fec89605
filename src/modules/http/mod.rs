//! HTTP/1.x metadata (issue 13), in Suricata's split: [`parser`] holds pure functions over borrowed
//! bytes with no state beyond what a caller carries between calls; this file follows both streams
//! of a connection, pairs pipelined requests with their responses in order, and writes one
//! EVE-shaped record per transaction (`record.rs`).
//!
//! HTTP is found by content, on any port: the first bytes of the client's stream must probe as a
//! request line. Every other connection stops its streams at its first bytes, so following all TCP
//! flows costs one probe per connection. CONNECT answered with 2xx and 101 upgrades end the
//! inspection of their connection; the bytes after them are not HTTP.

pub mod parser;
mod record;

use std::collections::VecDeque;

use serde::Deserialize;

use self::parser::{
    find_message_start, parse_request, parse_response, probe, BodyKind, BodyTracker, Probe,
    MAX_HEAD_LEN,
};
use crate::base::{Packet, Timestamp};
use crate::flow::{Chunk, Dir, EndReason, Flow, PerFlow};
use crate::modules::{BuildError, Emitter, Module, ModuleConfig, ModuleContext};
use crate::sinks::{OutputConfig, SeriesName, Sink};

/// Idle per-flow states kept for reuse.
const SPARE_STATES: usize = 256;
/// A kept state's head buffer is kept only up to this capacity: one long head must not make every
/// spare state hold 64 KiB.
const KEEP_BUF: usize = 4096;

fn default_max_pipeline() -> usize {
    32
}
fn default_max_field_len() -> usize {
    2048
}

/// `[[module]] kind = "http"`: one EVE-shaped record per HTTP/1.x transaction.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Requests a connection may have waiting for their responses (pipelining); more are dropped
    /// and counted, since no browser or proxy pipelines that deep.
    #[serde(default = "default_max_pipeline")]
    pub max_pipeline: usize,
    /// Longest value kept for a text field (URL, user agent, ...), in bytes; longer ones are cut
    /// and the record says so (`fields_cut`).
    #[serde(default = "default_max_field_len")]
    pub max_field_len: usize,
    /// Where records go (standard output by default).
    #[serde(default)]
    pub output: OutputConfig,
}

impl ModuleConfig for HttpConfig {
    fn validate(&self) -> Result<(), String> {
        if !(1..=1024).contains(&self.max_pipeline) {
            return Err("max_pipeline: must be from 1 to 1024".into());
        }
        if !(16..=65536).contains(&self.max_field_len) {
            return Err("max_field_len: must be from 16 to 65536".into());
        }
        self.output.validate()
    }

    fn build(&self, _ctx: &ModuleContext) -> Result<Box<dyn Module>, BuildError> {
        Ok(Box::new(Http {
            limits: Limits {
                max_pipeline: self.max_pipeline,
                max_field_len: self.max_field_len,
            },
            flows: PerFlow::new(),
            spare: Vec::new(),
            spare_txs: Vec::new(),
            spare_bufs: Vec::new(),
        }))
    }

    fn sink(&self, ctx: &ModuleContext) -> Result<Box<dyn Sink>, BuildError> {
        let name = SeriesName {
            stem: format!("http-shard{}", ctx.shard),
            ext: "json".into(),
            aws_prefix: None,
        };
        Ok(self.output.record_sink(name, Vec::new())?)
    }
}

#[derive(Debug, Clone, Copy)]
struct Limits {
    max_pipeline: usize,
    max_field_len: usize,
}

/// One request and its response, as far as they were seen.
#[derive(Debug, Default)]
pub(crate) struct Tx {
    seq: u64,
    pub(crate) ts: Timestamp,
    pub(crate) method: Option<String>,
    pub(crate) uri: Option<String>,
    pub(crate) host: Option<String>,
    pub(crate) user_agent: Option<String>,
    pub(crate) referer: Option<String>,
    pub(crate) xff: Option<String>,
    pub(crate) request_content_type: Option<String>,
    pub(crate) request_version: Option<u8>,
    pub(crate) request_body: u64,
    pub(crate) request_done: bool,
    pub(crate) status: Option<u16>,
    pub(crate) response_version: Option<u8>,
    pub(crate) content_type: Option<String>,
    pub(crate) response_body: u64,
    /// The response's body runs until the connection closes: the flow's end completes it.
    until_close: bool,
    /// Why the transaction is not whole: `gap` or `flow_end`.
    pub(crate) interrupted: Option<&'static str>,
    /// A gap fell inside a body whose framing accounted for it: the transaction went on.
    pub(crate) gap: bool,
    pub(crate) malformed: bool,
    pub(crate) request_missing: bool,
    pub(crate) fields_cut: bool,
    pub(crate) too_many_headers: bool,
    pub(crate) tunnel: bool,
}

#[derive(Debug)]
enum Mode {
    /// Expecting a head.
    Head,
    /// Inside the body of the transaction `seq`.
    Body { tracker: BodyTracker, seq: u64 },
    /// After a gap or a malformed head: looking for the next request or status line.
    Resync,
}

#[derive(Debug)]
struct Side {
    /// Bytes of an unfinished head (or resync candidate), kept until the rest comes.
    buf: Vec<u8>,
    mode: Mode,
}

impl Default for Side {
    fn default() -> Self {
        Side {
            buf: Vec::new(),
            mode: Mode::Head,
        }
    }
}

#[derive(Debug, Default)]
struct HttpFlow {
    sides: [Side; 2],
    /// Transactions in request order; the front one is the next a response answers.
    txs: VecDeque<Tx>,
    next_seq: u64,
    /// The connection stopped speaking HTTP (an upgrade or a tunnel), or never did.
    done: bool,
    /// A whole head has been read: until then a head that fails to parse means the connection is
    /// not HTTP (its first bytes only looked like it), not that HTTP went wrong.
    confirmed: bool,
}

impl HttpFlow {
    fn clear(&mut self) {
        for s in &mut self.sides {
            s.buf.clear();
            if s.buf.capacity() > KEEP_BUF {
                s.buf = Vec::new();
            }
            s.mode = Mode::Head;
        }
        self.txs.clear();
        self.next_seq = 0;
        self.done = false;
        self.confirmed = false;
    }

    fn tx(&mut self, seq: u64) -> Option<&mut Tx> {
        self.txs.iter_mut().find(|t| t.seq == seq)
    }

    fn take_tx(&mut self, seq: u64) -> Option<Tx> {
        let i = self.txs.iter().position(|t| t.seq == seq)?;
        self.txs.remove(i)
    }
}

struct Http {
    limits: Limits,
    flows: PerFlow<HttpFlow>,
    spare: Vec<HttpFlow>,
    /// Transaction queues and head buffers of connections with nothing in flight. A keep-alive
    /// connection between requests holds none of its own, so what the module keeps grows with the
    /// transactions in flight rather than with the connections open (which live on in the flow
    /// table for as long as its timeouts say, ten minutes idle by default).
    spare_txs: Vec<VecDeque<Tx>>,
    spare_bufs: Vec<Vec<u8>>,
}

/// A header value as record text: lossy UTF-8, cut at `max` bytes on a character boundary.
fn text(bytes: &[u8], max: usize, cut: &mut bool) -> String {
    let mut s = String::from_utf8_lossy(&bytes[..bytes.len().min(max)]).into_owned();
    if bytes.len() > max {
        *cut = true;
        while s.len() > max {
            s.pop();
        }
    }
    s
}

/// Everything one call of [`consume`] needs besides the bytes.
struct Ctx<'a, 'b, 'f> {
    flow: &'a Flow<'f>,
    out: &'a mut Emitter<'b>,
    limits: Limits,
    ts: Timestamp,
}

/// Feeds `input` to one side of `st`; returns how many bytes were used. It stops early only when
/// a head (or a resync candidate) is cut off at the end of `input`: the caller keeps the rest.
fn consume(st: &mut HttpFlow, dir: Dir, input: &[u8], cx: &mut Ctx<'_, '_, '_>) -> usize {
    let mut at = 0;
    while at < input.len() && !st.done {
        let rest = &input[at..];
        match st.sides[dir.index()].mode {
            Mode::Head => {
                let used = match dir {
                    Dir::ToServer => request_head(st, rest, cx),
                    Dir::ToClient => response_head(st, rest, cx),
                };
                match used {
                    Some(n) => at += n,
                    None => return at,
                }
            }
            Mode::Body {
                ref mut tracker,
                seq,
            } => match tracker.feed(rest) {
                Ok(p) => {
                    at += p.consumed;
                    if let Some(tx) = st.tx(seq) {
                        match dir {
                            Dir::ToServer => tx.request_body += p.content as u64,
                            Dir::ToClient => tx.response_body += p.content as u64,
                        }
                    }
                    if p.done {
                        st.sides[dir.index()].mode = Mode::Head;
                        finish_body(st, dir, seq, cx);
                    } else if p.consumed == 0 {
                        return at;
                    }
                }
                Err(_) => {
                    cx.out.malformed(1);
                    if let Some(tx) = st.tx(seq) {
                        tx.malformed = true;
                    }
                    st.sides[dir.index()].mode = Mode::Resync;
                    if dir == Dir::ToClient {
                        if let Some(tx) = st.take_tx(seq) {
                            record::write(cx.flow, &tx, cx.out);
                        }
                    }
                }
            },
            Mode::Resync => {
                let want = match dir {
                    Dir::ToServer => Probe::Request,
                    Dir::ToClient => Probe::Response,
                };
                match find_message_start(rest, want) {
                    Some(off) => {
                        at += off;
                        if probe(&input[at..]) == want {
                            st.sides[dir.index()].mode = Mode::Head;
                        } else {
                            return at;
                        }
                    }
                    None => return input.len(),
                }
            }
        }
    }
    if st.done {
        input.len()
    } else {
        at
    }
}

/// Bytes of the first line, LF included (all of `buf` without one): skipped after a bad head so
/// that resynchronising cannot find the same line again.
fn first_line(buf: &[u8]) -> usize {
    buf.iter()
        .position(|&b| b == b'\n')
        .map_or(buf.len(), |p| p + 1)
}

fn request_head(st: &mut HttpFlow, rest: &[u8], cx: &mut Ctx<'_, '_, '_>) -> Option<usize> {
    match parse_request(rest) {
        Ok(Some(h)) => {
            st.confirmed = true;
            let seq = st.next_seq;
            st.next_seq += 1;
            let max = cx.limits.max_field_len;
            let f = &h.fields;
            let mut tx = Tx {
                seq,
                ts: cx.ts,
                request_version: Some(h.version),
                too_many_headers: f.too_many_headers,
                ..Tx::default()
            };
            let mut cut = false;
            tx.method = Some(text(h.method.as_bytes(), max, &mut cut));
            tx.uri = Some(text(h.uri.as_bytes(), max, &mut cut));
            tx.host = f.host.map(|v| text(v, max, &mut cut));
            tx.user_agent = f.user_agent.map(|v| text(v, max, &mut cut));
            tx.referer = f.referer.map(|v| text(v, max, &mut cut));
            tx.xff = f.x_forwarded_for.map(|v| text(v, max, &mut cut));
            tx.request_content_type = f.content_type.map(|v| text(v, max, &mut cut));
            tx.fields_cut = cut;
            if f.bad_content_length {
                tx.malformed = true;
                cx.out.malformed(1);
            }
            let tracker = BodyTracker::new(h.body());
            if st.txs.len() >= cx.limits.max_pipeline {
                // The body is still followed, so that the next request is found.
                cx.out.dropped(1);
            } else {
                if tracker.is_done() {
                    tx.request_done = true;
                }
                st.txs.push_back(tx);
            }
            if !tracker.is_done() {
                st.sides[0].mode = Mode::Body { tracker, seq };
            }
            Some(h.head_len)
        }
        Ok(None) => None,
        Err(_) if !st.confirmed => {
            st.done = true;
            Some(rest.len())
        }
        Err(_) => {
            cx.out.malformed(1);
            st.sides[0].mode = Mode::Resync;
            Some(first_line(rest))
        }
    }
}

fn response_head(st: &mut HttpFlow, rest: &[u8], cx: &mut Ctx<'_, '_, '_>) -> Option<usize> {
    match parse_response(rest) {
        Ok(Some(h)) => {
            st.confirmed = true;
            if h.is_interim() {
                return Some(h.head_len);
            }
            let max = cx.limits.max_field_len;
            let seq = match st.txs.iter().find(|t| t.status.is_none()) {
                Some(t) => t.seq,
                None => {
                    // Its request was lost in a gap, came before the capture, or was dropped.
                    let seq = st.next_seq;
                    st.next_seq += 1;
                    if st.txs.len() >= cx.limits.max_pipeline {
                        cx.out.dropped(1);
                    } else {
                        st.txs.push_back(Tx {
                            seq,
                            ts: cx.ts,
                            request_missing: true,
                            ..Tx::default()
                        });
                    }
                    seq
                }
            };
            let mut kind = h.body(b"");
            if let Some(tx) = st.tx(seq) {
                let mut cut = tx.fields_cut;
                tx.status = Some(h.status);
                tx.response_version = Some(h.version);
                tx.content_type = h.fields.content_type.map(|v| text(v, max, &mut cut));
                tx.fields_cut = cut;
                tx.too_many_headers |= h.fields.too_many_headers;
                if h.fields.bad_content_length {
                    tx.malformed = true;
                    cx.out.malformed(1);
                }
                kind = h.body(tx.method.as_deref().unwrap_or("").as_bytes());
                tx.until_close = kind == BodyKind::UntilClose;
                tx.tunnel = kind == BodyKind::Tunnel;
            }
            if kind == BodyKind::Tunnel {
                if let Some(tx) = st.take_tx(seq) {
                    record::write(cx.flow, &tx, cx.out);
                }
                st.done = true;
                return Some(rest.len());
            }
            let tracker = BodyTracker::new(kind);
            if tracker.is_done() {
                finish_body(st, Dir::ToClient, seq, cx);
            } else {
                st.sides[1].mode = Mode::Body { tracker, seq };
            }
            Some(h.head_len)
        }
        Ok(None) => None,
        Err(_) if !st.confirmed => {
            st.done = true;
            Some(rest.len())
        }
        Err(_) => {
            cx.out.malformed(1);
            st.sides[1].mode = Mode::Resync;
            Some(first_line(rest))
        }
    }
}

/// A body ended: a request's is noted, a response's completes its transaction.
fn finish_body(st: &mut HttpFlow, dir: Dir, seq: u64, cx: &mut Ctx<'_, '_, '_>) {
    match dir {
        Dir::ToServer => {
            if let Some(tx) = st.tx(seq) {
                tx.request_done = true;
            }
        }
        Dir::ToClient => {
            if let Some(tx) = st.take_tx(seq) {
                record::write(cx.flow, &tx, cx.out);
            }
        }
    }
}

impl Http {
    fn feed(&mut self, flow: &mut Flow<'_>, dir: Dir, bytes: &[u8], out: &mut Emitter<'_>) {
        let ts = flow.last_seen();
        let limits = self.limits;
        let spare = &mut self.spare;
        let Some(st) = self.flows.get(flow) else {
            // Not known to be HTTP yet: the first bytes decide.
            let want = match dir {
                Dir::ToServer => Probe::Request,
                Dir::ToClient => Probe::Response,
            };
            let p = probe(bytes);
            if p != want && p != Probe::NeedMore {
                flow.stop_stream(Dir::ToServer);
                flow.stop_stream(Dir::ToClient);
                return;
            }
            self.flows
                .get_or_insert_with(flow, || spare.pop().unwrap_or_default());
            return self.feed(flow, dir, bytes, out);
        };
        if st.txs.capacity() == 0 {
            if let Some(q) = self.spare_txs.pop() {
                st.txs = q;
            }
        }
        let mut cx = Ctx {
            flow,
            out,
            limits,
            ts,
        };
        let side = &mut st.sides[dir.index()];
        if side.buf.is_empty() {
            let used = consume(st, dir, bytes, &mut cx);
            let rest = &bytes[used..];
            let buf = &mut st.sides[dir.index()].buf;
            if !rest.is_empty() && buf.capacity() == 0 {
                if let Some(spare) = self.spare_bufs.pop() {
                    *buf = spare;
                }
            }
            buf.extend_from_slice(rest);
        } else {
            let mut held = std::mem::take(&mut side.buf);
            held.extend_from_slice(bytes);
            let used = consume(st, dir, &held, &mut cx);
            held.drain(..used);
            st.sides[dir.index()].buf = held;
        }
        let side = &mut st.sides[dir.index()];
        if side.buf.len() > MAX_HEAD_LEN {
            // Only a resync candidate can grow past a head's limit (a head gives HeadTooLong).
            side.buf.clear();
            side.mode = Mode::Resync;
            cx.out.malformed(1);
        }
        if st.done {
            flow.stop_stream(Dir::ToServer);
            flow.stop_stream(Dir::ToClient);
            if st.txs.is_empty() {
                // Nothing left to write at the flow's end (a connection that only looked like
                // HTTP, or a tunnel with no request waiting): the state goes back to the pool now
                // instead of staying with the flow, which may live on for long.
                if let Some(mut st) = self.flows.take(flow) {
                    st.clear();
                    if self.spare.len() < SPARE_STATES {
                        self.spare.push(st);
                    }
                }
                return;
            }
        }
        if let Some(st) = self.flows.get(flow) {
            if st.txs.is_empty() && st.txs.capacity() > 0 {
                let q = std::mem::take(&mut st.txs);
                if self.spare_txs.len() < SPARE_STATES {
                    self.spare_txs.push(q);
                }
            }
            for side in &mut st.sides {
                if side.buf.is_empty() && side.buf.capacity() > 0 {
                    let buf = std::mem::take(&mut side.buf);
                    if buf.capacity() <= KEEP_BUF && self.spare_bufs.len() < SPARE_STATES {
                        self.spare_bufs.push(buf);
                    }
                }
            }
        }
    }

    fn gap(&mut self, flow: &mut Flow<'_>, dir: Dir, len: u64, out: &mut Emitter<'_>) {
        out.gaps(1);
        let Some(st) = self.flows.get(flow) else {
            // Nothing seen yet to say the connection is HTTP: give up on it.
            flow.stop_stream(Dir::ToServer);
            flow.stop_stream(Dir::ToClient);
            return;
        };
        let side = &mut st.sides[dir.index()];
        // Inside a body whose length is known, a hole is only missing content: the next message
        // still starts where the framing says, with no resynchronising and no guessing.
        if let Mode::Body { tracker, seq } = &mut side.mode {
            let seq = *seq;
            if side.buf.is_empty() && tracker.skip(len) {
                let done = tracker.is_done();
                if let Some(tx) = st.tx(seq) {
                    tx.gap = true;
                    match dir {
                        Dir::ToServer => tx.request_body += len,
                        Dir::ToClient => tx.response_body += len,
                    }
                }
                if done {
                    st.sides[dir.index()].mode = Mode::Head;
                    let mut cx = Ctx {
                        flow,
                        out,
                        limits: self.limits,
                        ts: flow.last_seen(),
                    };
                    finish_body(st, dir, seq, &mut cx);
                }
                return;
            }
        }
        let side = &mut st.sides[dir.index()];
        side.buf.clear();
        let current = match std::mem::replace(&mut side.mode, Mode::Resync) {
            Mode::Body { seq, .. } => Some(seq),
            _ => None,
        };
        match dir {
            Dir::ToServer => {
                if let Some(tx) = current.and_then(|seq| st.tx(seq)) {
                    tx.interrupted = Some("gap");
                }
            }
            Dir::ToClient => {
                // The response in progress will not complete: log it now with what is known.
                let seq = current.or_else(|| st.txs.front().map(|t| t.seq));
                if let Some(mut tx) = seq.and_then(|s| st.take_tx(s)) {
                    tx.interrupted = Some("gap");
                    record::write(flow, &tx, out);
                }
            }
        }
    }
}

impl Module for Http {
    fn wants_flows(&self) -> bool {
        true
    }

    fn wants_packets(&self) -> bool {
        false
    }

    /// Streams only: the bytes come through `on_stream`.
    fn wants_flow_packets(&self) -> bool {
        false
    }

    fn on_flow_start(&mut self, flow: &mut Flow<'_>, _pkt: &Packet<'_>, _out: &mut Emitter<'_>) {
        if flow.key().protocol == 6 {
            flow.want_stream(Dir::ToServer);
            flow.want_stream(Dir::ToClient);
        }
    }

    fn on_stream(
        &mut self,
        flow: &mut Flow<'_>,
        dir: Dir,
        chunk: &Chunk<'_>,
        out: &mut Emitter<'_>,
    ) {
        match *chunk {
            Chunk::Data { bytes, .. } => self.feed(flow, dir, bytes, out),
            Chunk::Gap { len, .. } => self.gap(flow, dir, len, out),
        }
    }

    fn on_flow_end(&mut self, flow: &mut Flow<'_>, _reason: EndReason, out: &mut Emitter<'_>) {
        let Some(mut st) = self.flows.take(flow) else {
            return;
        };
        for mut tx in st.txs.drain(..) {
            let complete = tx.status.is_some() && tx.until_close;
            if !complete && tx.interrupted.is_none() {
                tx.interrupted = Some("flow_end");
            }
            record::write(flow, &tx, out);
        }
        st.clear();
        if self.spare.len() < SPARE_STATES {
            self.spare.push(st);
        }
    }
}
