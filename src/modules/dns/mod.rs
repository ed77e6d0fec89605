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
//! flow's state until its response, its deadline (checked on each packet of the flow and at the
//! flow's end, since a tick has no flow to write the envelope from), or the flow's end.

pub mod parser;
mod record;

use serde::Deserialize;

use self::parser::{DnsError, Message, TcpMessages};
use crate::base::{Packet, Timestamp};
use crate::flow::{Chunk, Dir, EndReason, Flow, PerFlow};
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
            flows: PerFlow::new(),
            spare: Vec::new(),
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

#[derive(Debug, Default)]
struct FlowState {
    pending: Vec<Pending>,
    tcp: [TcpBuf; 2],
}

impl FlowState {
    fn clear(&mut self) {
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
    flows: PerFlow<FlowState>,
    spare: Vec<FlowState>,
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
    fn state<'s>(
        flows: &'s mut PerFlow<FlowState>,
        spare: &mut Vec<FlowState>,
        flow: &mut Flow<'_>,
    ) -> &'s mut FlowState {
        flows.get_or_insert_with(flow, || spare.pop().unwrap_or_default())
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
                record::write_headerless(flow, ts, bytes.len(), e, truncated, out);
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
            record::write_alone(flow, &side, self.max_answers, out);
            return;
        }
        let state = Self::state(&mut self.flows, &mut self.spare, flow);
        Self::expire(
            state,
            ts,
            self.timeout_ns,
            self.max_answers,
            flow,
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
            return;
        }
        match state.pending.iter().position(|p| p.id == id) {
            Some(i) => {
                let q = state.pending.remove(i);
                let query = Message::parse(&q.bytes).ok().map(|msg| Side {
                    msg,
                    ts: q.ts,
                    malformed: q.malformed,
                    truncated: q.truncated,
                });
                record::write(flow, query.as_ref(), Some(&side), self.max_answers, out);
                if self.spare_bufs.len() < SPARE_STATES {
                    self.spare_bufs.push(q.bytes);
                }
            }
            None => record::write(flow, None, Some(&side), self.max_answers, out),
        }
    }

    /// Logs the flow's queries whose deadline passed before `now`.
    fn expire(
        state: &mut FlowState,
        now: Timestamp,
        timeout_ns: u64,
        max_answers: usize,
        flow: &Flow<'_>,
        out: &mut Emitter<'_>,
        spare_bufs: &mut Vec<Vec<u8>>,
    ) {
        // Queries wait in arrival order, so the expired ones are at the front.
        let expired = state
            .pending
            .iter()
            .take_while(|p| now.nanos().saturating_sub(p.ts.nanos()) > timeout_ns)
            .count();
        for q in state.pending.drain(..expired) {
            Self::unanswered(&q, max_answers, flow, out);
            if spare_bufs.len() < SPARE_STATES {
                spare_bufs.push(q.bytes);
            }
        }
    }

    fn unanswered(q: &Pending, max_answers: usize, flow: &Flow<'_>, out: &mut Emitter<'_>) {
        if let Ok(msg) = Message::parse(&q.bytes) {
            let side = Side {
                msg,
                ts: q.ts,
                malformed: q.malformed,
                truncated: q.truncated,
            };
            record::write(flow, Some(&side), None, max_answers, out);
        }
    }

    fn on_port(&self, flow: &Flow<'_>) -> bool {
        let (c, s) = (flow.client().1, flow.server().1);
        self.ports.contains(&s) || self.ports.contains(&c)
    }
}

impl Module for Dns {
    fn wants_flows(&self) -> bool {
        true
    }

    fn on_flow_start(&mut self, flow: &mut Flow<'_>, _pkt: &Packet<'_>, _out: &mut Emitter<'_>) {
        // DNS over TCP is only followed on DNS ports: TCP has no cheap per-packet probe.
        if flow.key().protocol == 6 && self.on_port(flow) {
            flow.want_stream(Dir::ToServer);
            flow.want_stream(Dir::ToClient);
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
        } else if let Some(state) = self.flows.get(flow) {
            // Not DNS itself, but time passes for the flow's waiting queries.
            Self::expire(
                state,
                pkt.ts,
                self.timeout_ns,
                self.max_answers,
                flow,
                out,
                &mut self.spare_bufs,
            );
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
                let state = Self::state(&mut self.flows, &mut self.spare, flow);
                let t = &mut state.tcp[dir.index()];
                t.dead = true;
                t.bytes.clear();
                flow.stop_stream(dir);
                return;
            }
            Chunk::Data { bytes, .. } => bytes,
        };
        let state = Self::state(&mut self.flows, &mut self.spare, flow);
        if state.tcp[dir.index()].dead {
            return;
        }
        let mut held = std::mem::take(&mut state.tcp[dir.index()].bytes);
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
        let state = Self::state(&mut self.flows, &mut self.spare, flow);
        state.tcp[dir.index()].bytes = held;
    }

    fn on_flow_end(&mut self, flow: &mut Flow<'_>, _reason: EndReason, out: &mut Emitter<'_>) {
        let Some(mut state) = self.flows.take(flow) else {
            return;
        };
        for q in state.pending.drain(..) {
            Self::unanswered(&q, self.max_answers, flow, out);
            if self.spare_bufs.len() < SPARE_STATES {
                self.spare_bufs.push(q.bytes);
            }
        }
        for t in &state.tcp {
            if !t.bytes.is_empty() {
                // A message cut by the connection's end: what arrived of it is still a record.
                let msg = t.bytes.get(2..).unwrap_or(&[]);
                if !msg.is_empty() && !t.dead {
                    self.cut_tcp_message(flow, msg, out);
                }
            }
        }
        state.clear();
        if self.spare.len() < SPARE_STATES {
            self.spare.push(state);
        }
    }
}

impl Dns {
    /// A DNS over TCP message whose end never came: logged malformed with what it holds.
    fn cut_tcp_message(&mut self, flow: &mut Flow<'_>, bytes: &[u8], out: &mut Emitter<'_>) {
        let ts = flow.last_seen();
        out.malformed(1);
        match Message::parse(bytes) {
            Ok(msg) => {
                let side = Side {
                    msg,
                    ts,
                    malformed: msg.malformed(),
                    truncated: true,
                };
                if msg.header().qr() {
                    record::write(flow, None, Some(&side), self.max_answers, out);
                } else {
                    record::write(flow, Some(&side), None, self.max_answers, out);
                }
            }
            Err(e) => record::write_headerless(flow, ts, bytes.len(), e, true, out),
        }
    }
}
