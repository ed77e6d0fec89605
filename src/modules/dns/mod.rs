//! DNS inspection (issue 13), in Suricata's split: [`parser`] holds pure functions over borrowed
//! bytes with no state; this file holds the per-flow state (queries waiting for their response,
//! DNS over TCP framing) and `record.rs` writes one EVE-shaped record per transaction.
//!
//! The parser is vxtap's own rather than a crate's. Of the Rust DNS crates looked at,
//! `dns-parser` is unmaintained and knows no SVCB/HTTPS; `hickory-proto` and `simple-dns`
//! build owned or collection-backed values (`Vec`s of records, a `BTreeMap` of SvcParams), which
//! would allocate for every message on the packet path; `flex-dns` is allocation-free but reads
//! SVCB as SRV-like fields (priority, weight, port) plus one character-string, which is not RFC
//! 9460's wire format; `dnsbox` is pre-1.0 and needs Rust 1.89 (vxtap builds with 1.85); `domain`
//! is zero-copy and maintained, but a large dependency for the narrow need here. That need: a view
//! that validates once, iterators that allocate nothing, names that render only when a record is
//! written, and a malformed message that stays readable up to its first fault, in ~600 lines.
//!
//! Transactions are matched by (flow, id): the flow layer keeps both directions of a UDP
//! exchange in one flow, and a TCP connection's two streams are one flow too. A query waits in its
//! flow's state until its response, its deadline, or the flow's end. The deadline is checked on
//! each packet of the flow and on every tick (a heap of one deadline per waiting flow, with the
//! flow's envelope kept in its state so that the record is the one the flow would have written).

pub mod parser;
mod record;

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use serde::Deserialize;

use self::parser::{DnsError, Message, TcpMessages};
use crate::base::{Packet, Timestamp};
use crate::flow::{Chunk, Dir, EndReason, Flow, PerFlow};
use crate::modules::eve::Envelope;
use crate::modules::{BuildError, Emitter, Module, ModuleConfig, ModuleContext};
use crate::sinks::{OutputConfig, SeriesName, Sink};

/// The longest query kept while it waits for its response. Queries are small (a question and
/// perhaps an OPT record); a longer one keeps its first bytes, enough for the question.
const MAX_KEPT_QUERY: usize = 1024;
/// Idle per-flow states kept for reuse, so that short UDP flows (one query, one answer) allocate
/// nothing once the shard has warmed up.
const SPARE_STATES: usize = 256;
/// A spare state keeps its DNS over TCP buffers only up to this capacity, so that the pool does
/// not hold a 64 KiB zone transfer's worth per state.
const KEEP_BUF: usize = 4096;
/// Longest DNS over TCP message: its length prefix is 16 bits (RFC 1035 §4.2.2).
const MAX_TCP_MESSAGE: usize = 2 + 65535;

fn default_timeout_ms() -> u64 {
    5000
}
fn default_max_pending() -> usize {
    64
}
fn default_max_answers() -> usize {
    64
}
fn default_ports() -> Vec<u16> {
    vec![53, 5353]
}
fn default_true() -> bool {
    true
}

/// `[[module]] kind = "dns"`: one EVE-shaped record per DNS transaction.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsConfig {
    /// A query without a response this long after it (packet time) is logged as unanswered.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Queries a flow may have waiting at once; more are dropped and counted, since a flow with
    /// that many outstanding is a flood rather than a resolver.
    #[serde(default = "default_max_pending")]
    pub max_pending: usize,
    /// Answer and authority records written per record; the rest are counted in the record.
    #[serde(default = "default_max_answers")]
    pub max_answers: usize,
    /// Ports where every UDP payload is taken as DNS (a malformed one is logged as such), and
    /// where TCP connections are followed.
    #[serde(default = "default_ports")]
    pub ports: Vec<u16>,
    /// On other UDP ports, log payloads that the parser's probe takes for DNS.
    #[serde(default = "default_true")]
    pub probe_other_ports: bool,
    /// Where records go (standard output by default).
    #[serde(default)]
    pub output: OutputConfig,
}

impl ModuleConfig for DnsConfig {
    fn validate(&self) -> Result<(), String> {
        if !(1..=3_600_000).contains(&self.timeout_ms) {
            return Err("timeout_ms: must be from 1 to 3600000 (an hour)".into());
        }
        if !(1..=4096).contains(&self.max_pending) {
            return Err("max_pending: must be from 1 to 4096".into());
        }
        if !(1..=1024).contains(&self.max_answers) {
            return Err("max_answers: must be from 1 to 1024".into());
        }
        self.output.validate()
    }

    fn build(&self, _ctx: &ModuleContext) -> Result<Box<dyn Module>, BuildError> {
        Ok(Box::new(Dns {
            timeout_ns: self.timeout_ms.saturating_mul(1_000_000),
            max_pending: self.max_pending,
            max_answers: self.max_answers,
            ports: self.ports.clone(),
            probe: self.probe_other_ports,
            slots: PerFlow::new(),
            states: Vec::new(),
            free: Vec::new(),
            deadlines: BinaryHeap::new(),
            spare_bufs: Vec::new(),
        }))
    }

    fn sink(&self, ctx: &ModuleContext) -> Result<Box<dyn Sink>, BuildError> {
        let name = SeriesName {
            stem: format!("dns-shard{}", ctx.shard),
            ext: "json".into(),
            aws_prefix: None,
        };
        Ok(self.output.record_sink(name, Vec::new())?)
    }
}

/// A query waiting for its response: its bytes are kept (up to [`MAX_KEPT_QUERY`]) so that the
/// record can show it whole once the response comes.
#[derive(Debug)]
struct Pending {
    id: u16,
    ts: Timestamp,
    /// The query itself was malformed, or cut by the capture.
    malformed: Option<DnsError>,
    truncated: bool,
    bytes: Vec<u8>,
}

/// DNS over TCP bytes of one direction that do not make a whole message yet.
#[derive(Debug, Default)]
struct TcpBuf {
    bytes: Vec<u8>,
    /// A gap went through this direction: framing is lost for good.
    dead: bool,
}

/// One flow's state, in the module's own slab so that a tick can reach it without the flow.
#[derive(Debug, Default)]
struct FlowState {
    /// Bumped each time the slot is given back, so that a deadline left in the heap for an
    /// earlier flow in this slot is recognised and skipped.
    generation: u32,
    /// The flow's envelope, kept while the flow has state: an unanswered query is written on the
    /// tick after its deadline, when no flow is at hand. `None` only while the slot is free.
    env: Option<Envelope>,
    /// A deadline for this slot and generation is in the heap.
    armed: bool,
    pending: Vec<Pending>,
    tcp: [TcpBuf; 2],
}

impl FlowState {
    fn clear(&mut self) {
        self.generation = self.generation.wrapping_add(1);
        self.env = None;
        self.armed = false;
        self.pending.clear();
        for t in &mut self.tcp {
            t.bytes.clear();
            if t.bytes.capacity() > KEEP_BUF {
                t.bytes = Vec::new();
            }
            t.dead = false;
        }
    }
}

/// When a flow's oldest waiting query (at the time it was armed) is due: ordered by time, then
/// slot, so the heap pops the earliest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Deadline {
    due_ns: u64,
    slot: u32,
    generation: u32,
}

/// One side of a transaction, ready to write.
pub(crate) struct Side<'a> {
    pub(crate) msg: Message<'a>,
    pub(crate) ts: Timestamp,
    pub(crate) malformed: Option<DnsError>,
    pub(crate) truncated: bool,
}

struct Dns {
    timeout_ns: u64,
    max_pending: usize,
    max_answers: usize,
    ports: Vec<u16>,
    probe: bool,
    /// Each flow's slot in `states`.
    slots: PerFlow<u32>,
    /// Per-flow states; a freed one keeps its buffers for the next flow, so that short UDP flows
    /// (one query, one answer) allocate nothing once the shard has warmed up.
    states: Vec<FlowState>,
    free: Vec<u32>,
    /// At most one deadline per flow with waiting queries, plus those of flows that ended within
    /// the last timeout (skipped when popped): bounded by the flows, not by the queries.
    deadlines: BinaryHeap<Reverse<Deadline>>,
    spare_bufs: Vec<Vec<u8>>,
}

/// The UDP payload without Ethernet padding: the UDP length says where the datagram ends.
fn udp_payload<'a>(pkt: &Packet<'a>) -> &'a [u8] {
    let payload = pkt.payload();
    let Some(l4) = pkt.layers.l4_offset else {
        return payload;
    };
    let l4 = l4 as usize;
    let Some(len) = pkt.frame.get(l4 + 4..l4 + 6) else {
        return payload;
    };
    let datagram = usize::from(u16::from_be_bytes([len[0], len[1]]));
    payload.get(..datagram.saturating_sub(8)).unwrap_or(payload)
}

impl Dns {
    /// The flow's slot in `states`, made (with the flow's envelope) the first time.
    fn slot(&mut self, flow: &mut Flow<'_>) -> usize {
        if let Some(&mut i) = self.slots.get(flow) {
            return i as usize;
        }
        let env = Envelope::of(flow);
        let i = match self.free.pop() {
            Some(i) => i,
            None => {
                self.states.push(FlowState::default());
                (self.states.len() - 1) as u32
            }
        };
        self.states[i as usize].env = Some(env);
        *self.slots.get_or_insert_with(flow, || i) = i;
        i as usize
    }

    /// Arms the slot's deadline for its oldest waiting query, unless one is in the heap already.
    fn arm(&mut self, i: usize) {
        let state = &mut self.states[i];
        if state.armed {
            return;
        }
        if let Some(first) = state.pending.first() {
            state.armed = true;
            self.deadlines.push(Reverse(Deadline {
                due_ns: first.ts.nanos().saturating_add(self.timeout_ns),
                slot: i as u32,
                generation: state.generation,
            }));
        }
    }

    /// One DNS message from `dir`, at `ts`.
    fn message(
        &mut self,
        flow: &mut Flow<'_>,
        bytes: &[u8],
        ts: Timestamp,
        truncated: bool,
        out: &mut Emitter<'_>,
    ) {
        let msg = match Message::parse(bytes) {
            Ok(m) => m,
            Err(e) => {
                out.malformed(1);
                record::write_headerless(&Envelope::of(flow), ts, bytes.len(), e, truncated, out);
                return;
            }
        };
        let malformed = msg.malformed();
        if malformed.is_some() {
            out.malformed(1);
        }
        let side = Side {
            msg,
            ts,
            malformed,
            truncated,
        };
        let k = flow.key();
        if k.dst.is_multicast() || k.src.is_multicast() {
            // Multicast DNS (RFC 6762 §6): answers go to the group from whoever answers, a flow
            // of their own, so nothing pairs; each message is a record, written at once.
            record::write_alone(&Envelope::of(flow), &side, self.max_answers, out);
            return;
        }
        let i = self.slot(flow);
        let state = &mut self.states[i];
        expire(
            state,
            ts,
            self.timeout_ns,
            self.max_answers,
            out,
            &mut self.spare_bufs,
        );
        let id = msg.header().id;
        if !msg.header().qr() {
            if state.pending.iter().any(|p| p.id == id) {
                // A retransmission: the first copy's time is the one the response answers.
                return;
            }
            if state.pending.len() >= self.max_pending {
                out.dropped(1);
                return;
            }
            let mut kept = self.spare_bufs.pop().unwrap_or_default();
            kept.clear();
            kept.extend_from_slice(&bytes[..bytes.len().min(MAX_KEPT_QUERY)]);
            state.pending.push(Pending {
                id,
                ts,
                malformed,
                truncated,
                bytes: kept,
            });
            self.arm(i);
            return;
        }
        let Some(env) = state.env.as_ref() else {
            // A slot in use always has its envelope; were it missing, the record is counted.
            out.dropped(1);
            return;
        };
        match state.pending.iter().position(|p| p.id == id) {
            Some(at) => {
                let q = state.pending.remove(at);
                let query = Message::parse(&q.bytes).ok().map(|msg| Side {
                    msg,
                    ts: q.ts,
                    malformed: q.malformed,
                    truncated: q.truncated,
                });
                record::write(env, query.as_ref(), Some(&side), self.max_answers, out);
                if self.spare_bufs.len() < SPARE_STATES {
                    self.spare_bufs.push(q.bytes);
                }
            }
            None => record::write(env, None, Some(&side), self.max_answers, out),
        }
    }

    fn on_port(&self, flow: &Flow<'_>) -> bool {
        let (c, s) = (flow.client().1, flow.server().1);
        self.ports.contains(&s) || self.ports.contains(&c)
    }

    /// Gives a flow's slot back (at its end, or once a UDP flow has nothing waiting); the caller has
    /// taken the flow's `slots` entry and written its queries.
    fn release(&mut self, i: usize) {
        self.states[i].clear();
        self.free.push(i as u32);
    }
}

/// Logs the state's queries whose deadline passed before `now`.
fn expire(
    state: &mut FlowState,
    now: Timestamp,
    timeout_ns: u64,
    max_answers: usize,
    out: &mut Emitter<'_>,
    spare_bufs: &mut Vec<Vec<u8>>,
) {
    // Queries wait in arrival order, so the expired ones are at the front.
    let expired = state
        .pending
        .iter()
        .take_while(|p| now.nanos().saturating_sub(p.ts.nanos()) > timeout_ns)
        .count();
    if expired == 0 {
        return;
    }
    let Some(env) = state.env.as_ref() else {
        out.dropped(expired as u64);
        state.pending.drain(..expired);
        return;
    };
    for q in state.pending.drain(..expired) {
        unanswered(&q, max_answers, env, out);
        if spare_bufs.len() < SPARE_STATES {
            spare_bufs.push(q.bytes);
        }
    }
}

fn unanswered(q: &Pending, max_answers: usize, env: &Envelope, out: &mut Emitter<'_>) {
    if let Ok(msg) = Message::parse(&q.bytes) {
        let side = Side {
            msg,
            ts: q.ts,
            malformed: q.malformed,
            truncated: q.truncated,
        };
        record::write(env, Some(&side), None, max_answers, out);
    }
}

impl Module for Dns {
    fn wants_flows(&self) -> bool {
        true
    }

    fn wants_packets(&self) -> bool {
        false
    }

    fn on_flow_start(&mut self, flow: &mut Flow<'_>, _pkt: &Packet<'_>, _out: &mut Emitter<'_>) {
        // DNS over TCP is only followed on DNS ports: TCP has no cheap per-packet probe.
        if flow.key().protocol == 6 && self.on_port(flow) {
            flow.want_stream(Dir::ToServer);
            flow.want_stream(Dir::ToClient);
        }
        // Only UDP packets are read one by one (below): the flow's other packets need no call.
        if flow.key().protocol != 17 {
            flow.stop_packets();
        }
    }

    fn on_flow_packet(
        &mut self,
        flow: &mut Flow<'_>,
        pkt: &Packet<'_>,
        _dir: Dir,
        out: &mut Emitter<'_>,
    ) {
        if flow.key().protocol != 17 {
            return;
        }
        let payload = udp_payload(pkt);
        if payload.is_empty() {
            return;
        }
        if self.on_port(flow) || (self.probe && parser::probe(payload)) {
            self.message(flow, payload, pkt.ts, pkt.truncated(), out);
        } else if let Some(&mut i) = self.slots.get(flow) {
            // Not DNS itself, but time passes for the flow's waiting queries.
            expire(
                &mut self.states[i as usize],
                pkt.ts,
                self.timeout_ns,
                self.max_answers,
                out,
                &mut self.spare_bufs,
            );
        }
        // A UDP flow with nothing waiting gives its state back now rather than at its end, which
        // is the UDP timeout later: held to the end, the states of answered lookups were most of
        // what the module's memory grew by with the length of a capture.
        if let Some(&mut i) = self.slots.get(flow) {
            if self.states[i as usize].pending.is_empty() {
                self.slots.take(flow);
                self.release(i as usize);
            }
        }
    }

    /// Writes the queries whose deadline has passed, at the tick after it (packet time; wall time
    /// on an idle live feed) rather than at their flow's next packet or end, which for a flow that
    /// never sends again is its idle timeout later.
    fn on_tick(&mut self, now: Timestamp, out: &mut Emitter<'_>) {
        while let Some(&Reverse(d)) = self.deadlines.peek() {
            // The same test as `expire`: a query is late once more than the timeout has passed.
            if d.due_ns >= now.nanos() {
                break;
            }
            self.deadlines.pop();
            let i = d.slot as usize;
            let Some(state) = self.states.get_mut(i) else {
                continue;
            };
            if state.generation != d.generation || !state.armed {
                continue;
            }
            state.armed = false;
            expire(
                state,
                now,
                self.timeout_ns,
                self.max_answers,
                out,
                &mut self.spare_bufs,
            );
            self.arm(i);
        }
    }

    fn on_stream(
        &mut self,
        flow: &mut Flow<'_>,
        dir: Dir,
        chunk: &Chunk<'_>,
        out: &mut Emitter<'_>,
    ) {
        let ts = flow.last_seen();
        let bytes = match *chunk {
            Chunk::Gap { .. } => {
                // Framing is a running count of lengths: after a hole, no byte can be trusted to
                // be a length prefix again.
                out.gaps(1);
                let i = self.slot(flow);
                let t = &mut self.states[i].tcp[dir.index()];
                t.dead = true;
                t.bytes.clear();
                flow.stop_stream(dir);
                return;
            }
            Chunk::Data { bytes, .. } => bytes,
        };
        let i = self.slot(flow);
        if self.states[i].tcp[dir.index()].dead {
            return;
        }
        let mut held = std::mem::take(&mut self.states[i].tcp[dir.index()].bytes);
        let rest_len = if held.is_empty() {
            // The common case: whole messages in the chunk, read in place.
            let mut msgs = TcpMessages::new(bytes);
            for m in msgs.by_ref() {
                self.message(flow, m, ts, false, out);
            }
            let rest = msgs.remainder();
            held.extend_from_slice(rest);
            rest.len()
        } else {
            held.extend_from_slice(bytes);
            let mut msgs = TcpMessages::new(&held);
            for m in msgs.by_ref() {
                self.message(flow, m, ts, false, out);
            }
            let rest = msgs.remainder().len();
            let start = held.len() - rest;
            held.drain(..start);
            rest
        };
        debug_assert!(rest_len <= MAX_TCP_MESSAGE);
        self.states[i].tcp[dir.index()].bytes = held;
    }

    fn on_flow_end(&mut self, flow: &mut Flow<'_>, _reason: EndReason, out: &mut Emitter<'_>) {
        let Some(i) = self.slots.take(flow) else {
            return;
        };
        let i = i as usize;
        let state = &mut self.states[i];
        if let Some(env) = state.env.as_ref() {
            for q in state.pending.drain(..) {
                unanswered(&q, self.max_answers, env, out);
                if self.spare_bufs.len() < SPARE_STATES {
                    self.spare_bufs.push(q.bytes);
                }
            }
        }
        for d in 0..2 {
            let t = &self.states[i].tcp[d];
            if !t.bytes.is_empty() && !t.dead {
                // A message cut by the connection's end: what arrived of it is still a record.
                let held = std::mem::take(&mut self.states[i].tcp[d].bytes);
                if let Some(msg) = held.get(2..).filter(|m| !m.is_empty()) {
                    self.cut_tcp_message(flow, i, msg, out);
                }
                self.states[i].tcp[d].bytes = held;
            }
        }
        self.release(i);
    }
}

impl Dns {
    /// A DNS over TCP message whose end never came: logged malformed with what it holds.
    fn cut_tcp_message(&mut self, flow: &Flow<'_>, i: usize, bytes: &[u8], out: &mut Emitter<'_>) {
        let ts = flow.last_seen();
        out.malformed(1);
        let Some(env) = self.states[i].env.as_ref() else {
            out.dropped(1);
            return;
        };
        match Message::parse(bytes) {
            Ok(msg) => {
                let side = Side {
                    msg,
                    ts,
                    malformed: msg.malformed(),
                    truncated: true,
                };
                if msg.header().qr() {
                    record::write(env, None, Some(&side), self.max_answers, out);
                } else {
                    record::write(env, Some(&side), None, self.max_answers, out);
                }
            }
            Err(e) => record::write_headerless(env, ts, bytes.len(), e, true, out),
        }
    }
}
