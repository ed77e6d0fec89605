//! `connectivity`: why a connection did not work, per mirror session (ENI), with the evidence and a
//! likely cause (docs/modules/connectivity.md has the inference table).
//!
//! The inference rests on docs/aws-facts.md §1 ("Security groups and network ACLs"): AWS mirrors an
//! inbound packet only after the source's security group and network ACL accepted it, and a packet
//! they drop is never mirrored. So an outbound SYN that is mirrored while no reply ever is means the
//! reply died before the mirror point (the inbound NACL; security groups are stateful and would
//! have let it in) or never came; an inbound SYN with no mirrored SYN-ACK means the instance did not
//! answer, or its answer was dropped on the way out.
//!
//! Records are aggregated: one per (session, kind, reason, client, server, server port) per interval
//! of packet time, aligned to the epoch like flowlog's. Shards merge their intervals through a
//! board (`interval_board.rs`), so the records are the same whatever the number of shards (a
//! client's connection attempts to one port use different source ports and land on different
//! shards).
//!
//! Bounds: `max_pending` connections waiting for an answer and `max_records` aggregates per shard
//! and interval; what does not fit is counted in the module's `drops` and not reported.

mod icmp;

use std::collections::{BTreeMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;

use rustc_hash::FxHashMap;
use serde::Deserialize;

use super::eve::{self, JsonObject};
use super::interval_board::{IntervalBoard, Merge};
use super::{BuildError, Emitter, Module, ModuleConfig, ModuleContext, PerSession};
use crate::base::{FlowKey, Packet, Session, Timestamp};
use crate::flow::community_id::community_id_v1;
use crate::flow::{Dir, EndReason, Flow, PerFlow};
use crate::session::SessionTable;
use crate::sinks::{OutputConfig, SeriesName, Sink};
use crate::wire::inner::Transport;

const NANOS: u64 = 1_000_000_000;
/// Empty intervals a shard reports when its time jumps (a gap in a capture, a long idle): enough to
/// flag silent sessions over a quarter of an hour at the default interval without unbounded work.
const MAX_EMPTY_INTERVALS: u64 = 16;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const ACK: u8 = 0x10;

/// `[[module]] kind = "connectivity"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectivityConfig {
    /// Seconds of packet time a TCP SYN waits for any answer (and a SYN-ACK for the client's ACK)
    /// before it is reported. 3 s is Linux's initial retransmission timeout of old (RFC 2988) and
    /// well above any in-region round trip.
    #[serde(default = "default_tcp_timeout")]
    pub tcp_timeout_secs: u64,
    /// Seconds a UDP flow's first datagram waits for any datagram back; 0 turns UDP off (for ENIs
    /// whose UDP is one-way by design: syslog, StatsD).
    #[serde(default = "default_udp_timeout")]
    pub udp_timeout_secs: u64,
    /// The aggregation interval in seconds of packet time, aligned to the epoch.
    #[serde(default = "default_interval")]
    pub interval_secs: u64,
    /// Connections each shard follows at once while they wait for an answer.
    #[serde(default = "default_max_pending")]
    pub max_pending: usize,
    /// Aggregated records each shard holds per interval.
    #[serde(default = "default_max_records")]
    pub max_records: usize,
    /// Where records go (standard output by default).
    #[serde(default)]
    pub output: OutputConfig,
    #[serde(skip)]
    board: Arc<IntervalBoard<Interval>>,
}

fn default_tcp_timeout() -> u64 {
    3
}
fn default_udp_timeout() -> u64 {
    5
}
fn default_interval() -> u64 {
    60
}
fn default_max_pending() -> usize {
    65_536
}
fn default_max_records() -> usize {
    16_384
}

impl ModuleConfig for ConnectivityConfig {
    fn validate(&self) -> Result<(), String> {
        if self.interval_secs == 0 || self.interval_secs > 86_400 {
            return Err("interval_secs: must be between 1 and 86400".into());
        }
        if self.tcp_timeout_secs == 0 || self.tcp_timeout_secs > self.interval_secs {
            return Err("tcp_timeout_secs: must be between 1 and interval_secs".into());
        }
        if self.udp_timeout_secs > self.interval_secs {
            return Err("udp_timeout_secs: must be at most interval_secs".into());
        }
        if self.max_pending == 0 || self.max_records == 0 {
            return Err("max_pending and max_records: must be at least 1".into());
        }
        self.output.validate()
    }

    fn build(&self, ctx: &ModuleContext) -> Result<Box<dyn Module>, BuildError> {
        Ok(Box::new(Connectivity {
            shard: ctx.shard,
            shards: ctx.shards,
            interval_ns: self.interval_secs * NANOS,
            tcp_timeout_ns: self.tcp_timeout_secs * NANOS,
            udp_timeout_ns: self.udp_timeout_secs * NANOS,
            max_pending: self.max_pending,
            max_records: self.max_records,
            sessions: ctx.sessions.clone(),
            board: self.board.clone(),
            conns: PerFlow::new(),
            waiting: FxHashMap::with_capacity_and_hasher(
                self.max_pending.min(1 << 16),
                Default::default(),
            ),
            tcp_queue: VecDeque::new(),
            udp_queue: VecDeque::new(),
            open_end: None,
            current: Interval::default(),
            seen: PerSession::new(),
            released: Vec::new(),
            unresolved: Vec::new(),
            last_seen: Timestamp::default(),
        }))
    }

    fn sink(&self, ctx: &ModuleContext) -> Result<Box<dyn Sink>, BuildError> {
        let name = SeriesName {
            stem: format!("connectivity-shard{}", ctx.shard),
            ext: "json".into(),
            aws_prefix: None,
        };
        Ok(self.output.record_sink(name, Vec::new())?)
    }
}

/// What went wrong, as records name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Kind {
    Unanswered,
    Refused,
    SynRetransmit,
    HalfOpen,
    ZeroWindow,
    Reset,
}

impl Kind {
    const fn name(self) -> &'static str {
        match self {
            Kind::Unanswered => "unanswered",
            Kind::Refused => "refused",
            Kind::SynRetransmit => "syn_retransmit",
            Kind::HalfOpen => "half_open",
            Kind::ZeroWindow => "zero_window",
            Kind::Reset => "reset",
        }
    }
}

/// Which way the connection crossed the ENI, as flowlog's `flow-direction` decides it: by the
/// session's configured addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Ingress,
    Egress,
    Unknown,
}

impl Direction {
    fn of(session: &Session, key: &FlowKey) -> Direction {
        if session.addresses.contains(&key.dst) {
            Direction::Ingress
        } else if session.addresses.contains(&key.src) {
            Direction::Egress
        } else {
            Direction::Unknown
        }
    }

    const fn name(self) -> &'static str {
        match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
            Direction::Unknown => "unknown",
        }
    }
}

/// The inference table of docs/modules/connectivity.md, as code: keep them in step.
fn likely_cause(kind: Kind, dir: Direction, reason: &str) -> &'static str {
    match (kind, dir, reason) {
        // The reply is dropped before the mirror point only by the inbound NACL (aws-facts §1).
        (Kind::Unanswered, Direction::Egress, _) => "inbound_nacl_or_peer_silent",
        (Kind::Unanswered, Direction::Ingress, _) => "host_firewall_or_outbound_nacl",
        (Kind::Unanswered, Direction::Unknown, _) => "no_reply_mirrored",
        (Kind::Refused, _, "rst" | "port_unreachable") => "port_closed",
        (Kind::Refused, _, "administratively_prohibited") => "filtered",
        (Kind::Refused, _, "host_unreachable") => "host_down",
        (Kind::Refused, _, "network_unreachable") => "no_route",
        (Kind::Refused, _, "fragmentation_needed") => "path_mtu",
        (Kind::Refused, _, _) => "unreachable",
        (Kind::SynRetransmit, _, _) => "loss_or_slow_listener",
        (Kind::HalfOpen, Direction::Ingress, _) => "client_never_acked_spoofed_or_flood",
        (Kind::HalfOpen, _, _) => "final_ack_not_mirrored",
        (Kind::ZeroWindow, _, _) => "receiver_not_reading",
        (Kind::Reset, _, "by_server") => "server_aborted",
        (Kind::Reset, _, _) => "client_aborted",
    }
}

/// What a record aggregates over: the connection's endpoints as its client sent them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct AggKey {
    session: u32,
    kind: Kind,
    reason: &'static str,
    protocol: u8,
    client: IpAddr,
    server: IpAddr,
    port: u16,
}

/// One record's evidence.
#[derive(Debug, Clone)]
struct Agg {
    session: Arc<Session>,
    direction: Direction,
    first: Timestamp,
    last: Timestamp,
    /// Of the first flow that gave evidence (the ICMP flow, for an ICMP error).
    flow_id: u64,
    /// The first flow's client port.
    src_port: u16,
    flows: u64,
    packets: u64,
    max_wait_ns: u64,
    /// ICMP type, code and the address that sent the error.
    icmp: Option<(u8, u8, IpAddr)>,
}

impl Agg {
    fn merge(&mut self, o: Agg) {
        if (o.first, o.flow_id) < (self.first, self.flow_id) {
            self.first = o.first;
            self.flow_id = o.flow_id;
            self.src_port = o.src_port;
            self.icmp = o.icmp;
        }
        self.last = self.last.max(o.last);
        self.flows += o.flows;
        self.packets += o.packets;
        self.max_wait_ns = self.max_wait_ns.max(o.max_wait_ns);
    }
}

/// One shard's (and, merged, every shard's) interval.
#[derive(Debug, Default)]
struct Interval {
    records: FxHashMap<AggKey, Agg>,
    /// Sessions that delivered at least one packet.
    seen: Vec<u32>,
    /// The earliest packet time the module saw (ns); 0 when none yet.
    started: u64,
    /// Closed by the end of the input rather than by time: not a whole interval.
    partial: bool,
    /// The end-of-input entry only: waits still running when their flows ended with the input.
    unresolved: Vec<Unresolved>,
    /// The end-of-input entry only: the latest packet time (ns) any shard saw.
    last: u64,
}

/// A wait cut short by the end of the input, judged once every shard has finished: a shard's own
/// time stops at its own last packet, so whether the wait ran out is a question of the latest time
/// any shard saw (otherwise a replay's output would depend on which shard the flow landed on).
#[derive(Debug)]
struct Unresolved {
    flow_id: u64,
    deadline: Timestamp,
    wait: Waiting,
}

/// The board's key for the end-of-input entry: after every interval, released only once every
/// shard has finished.
const END_OF_INPUT: u64 = u64::MAX;

impl Merge for Interval {
    fn merge(&mut self, other: Interval) {
        for (k, v) in other.records {
            match self.records.get_mut(&k) {
                Some(mine) => mine.merge(v),
                None => {
                    self.records.insert(k, v);
                }
            }
        }
        self.seen.extend(other.seen);
        self.seen.sort_unstable();
        self.seen.dedup();
        self.started = match (self.started, other.started) {
            (0, s) | (s, 0) => s,
            (a, b) => a.min(b),
        };
        self.partial |= other.partial;
        self.unresolved.extend(other.unresolved);
        self.last = self.last.max(other.last);
    }
}

/// What a connection is waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    /// Any answer to the client's SYN.
    Syn,
    /// The client's ACK after the server's SYN-ACK.
    Ack,
    /// Any datagram back.
    Udp,
}

/// A connection waiting for an answer, kept apart from its flow so that a tick can report it.
#[derive(Debug)]
struct Waiting {
    wait: Wait,
    since: Timestamp,
    session: Arc<Session>,
    key: FlowKey,
    /// The packets that went unanswered (SYNs, datagrams).
    packets: u64,
}

#[derive(Debug, Clone, Copy)]
struct Deadline {
    at: Timestamp,
    flow: u64,
    wait: Wait,
}

/// Per-flow state.
#[derive(Debug, Default)]
struct Conn {
    syns: u32,
    first_syn: Timestamp,
    waiting: Option<Wait>,
    reset_reported: bool,
    zero_window: [bool; 2],
}

/// One piece of evidence about a flow.
struct Event {
    at: Timestamp,
    kind: Kind,
    reason: &'static str,
    flows: u64,
    packets: u64,
    wait_ns: u64,
    icmp: Option<(u8, u8, IpAddr)>,
}

struct Connectivity {
    shard: usize,
    shards: usize,
    interval_ns: u64,
    tcp_timeout_ns: u64,
    udp_timeout_ns: u64,
    max_pending: usize,
    max_records: usize,
    sessions: Arc<SessionTable>,
    board: Arc<IntervalBoard<Interval>>,
    conns: PerFlow<Conn>,
    waiting: FxHashMap<u64, Waiting>,
    tcp_queue: VecDeque<Deadline>,
    udp_queue: VecDeque<Deadline>,
    /// The end of the interval being gathered; `None` before the first event.
    open_end: Option<Timestamp>,
    current: Interval,
    seen: PerSession<()>,
    released: Vec<(u64, Interval)>,
    /// Waits cut short by the end of the input, for the finish.
    unresolved: Vec<Unresolved>,
    /// The latest packet or tick time.
    last_seen: Timestamp,
}

impl Connectivity {
    /// Reports the waits that ran out by `now` (in deadline order, each in its own interval), then
    /// closes the intervals `now` is past.
    fn advance(&mut self, now: Timestamp, out: &mut Emitter<'_>) {
        self.last_seen = self.last_seen.max(now);
        loop {
            let tcp = self.tcp_queue.front().filter(|d| d.at <= now).map(|d| d.at);
            let udp = self.udp_queue.front().filter(|d| d.at <= now).map(|d| d.at);
            let d = match (tcp, udp) {
                (Some(t), Some(u)) if u < t => self.udp_queue.pop_front(),
                (Some(_), _) => self.tcp_queue.pop_front(),
                (None, Some(_)) => self.udp_queue.pop_front(),
                (None, None) => break,
            };
            let Some(d) = d else { break };
            if self.waiting.get(&d.flow).is_some_and(|w| w.wait == d.wait) {
                if let Some(w) = self.waiting.remove(&d.flow) {
                    self.report_wait(d.flow, &w, d.at, out);
                }
            }
        }
        self.roll(now, out);
    }

    fn report_wait(&mut self, flow_id: u64, w: &Waiting, at: Timestamp, out: &mut Emitter<'_>) {
        self.record(&w.session.clone(), w.key, flow_id, wait_event(w, at), out);
    }

    /// Closes the open interval if `now` is past it: publishes it (and any whole intervals skipped
    /// without events) to the board and emits what the board releases.
    fn roll(&mut self, now: Timestamp, out: &mut Emitter<'_>) {
        let Some(end) = self.open_end else {
            self.open_end = Some(now.next_boundary(self.interval_ns));
            self.current.started = now.nanos().max(1);
            return;
        };
        if now < end {
            return;
        }
        let next_end = now.next_boundary(self.interval_ns);
        let through = next_end.nanos() - self.interval_ns;
        let started = self.current.started;
        let data = self.take_current(false);
        self.board.publish(
            self.shard,
            self.shards,
            end.nanos(),
            Some(data),
            end.nanos(),
            &mut self.released,
        );
        // Intervals with no event on this shard still count for silent sessions.
        let mut e = end.nanos().saturating_add(self.interval_ns);
        let mut n = 0;
        while e <= through && n < MAX_EMPTY_INTERVALS {
            let empty = Interval {
                started,
                ..Interval::default()
            };
            self.board.publish(
                self.shard,
                self.shards,
                e,
                Some(empty),
                e,
                &mut self.released,
            );
            e = e.saturating_add(self.interval_ns);
            n += 1;
        }
        self.board.publish(
            self.shard,
            self.shards,
            through,
            None,
            through,
            &mut self.released,
        );
        self.open_end = Some(next_end);
        self.current.started = started;
        self.emit_released(out);
    }

    fn take_current(&mut self, partial: bool) -> Interval {
        let mut data = std::mem::take(&mut self.current);
        data.seen = self.seen.iter().map(|(id, _)| id).collect();
        data.seen.sort_unstable();
        data.partial = partial;
        self.seen.clear();
        data
    }

    fn record(
        &mut self,
        session: &Arc<Session>,
        key: FlowKey,
        flow_id: u64,
        ev: Event,
        out: &mut Emitter<'_>,
    ) {
        // An event past the open interval (a wait that ran out at a tick) closes it first; one
        // before it (a flow that ended late) counts in the open one.
        if self.open_end.is_none_or(|end| ev.at >= end) {
            self.roll(ev.at, out);
        }
        let (agg_key, agg) = aggregate(session, key, flow_id, ev);
        let full = self.current.records.len() >= self.max_records;
        match self.current.records.get_mut(&agg_key) {
            Some(mine) => mine.merge(agg),
            None if !full => {
                self.current.records.insert(agg_key, agg);
            }
            None => out.dropped(1),
        }
    }

    fn emit_released(&mut self, out: &mut Emitter<'_>) {
        if self.released.is_empty() {
            return;
        }
        let statics: Vec<Arc<Session>> = self
            .sessions
            .sessions()
            .into_iter()
            .filter(|s| !s.learned)
            .collect();
        for (end, iv) in std::mem::take(&mut self.released) {
            if end == END_OF_INPUT {
                self.emit_unresolved(iv, out);
                continue;
            }
            let mut records: Vec<_> = iv.records.into_iter().collect();
            records.sort_by_key(|(k, a)| (a.first, *k));
            for (k, a) in &records {
                write_record(out, end, self.interval_ns, k, a);
            }
            let start = end.saturating_sub(self.interval_ns);
            let whole = !iv.partial && iv.started != 0 && iv.started <= start;
            if whole {
                for s in statics
                    .iter()
                    .filter(|s| iv.seen.binary_search(&s.id).is_err())
                {
                    write_silent(out, end, self.interval_ns, s);
                }
            }
        }
    }

    /// The waits the end of the input cut short that had run out by the latest packet time any
    /// shard saw, each in the interval its deadline falls in (an interval already written may get a
    /// second record for the same key).
    fn emit_unresolved(&mut self, iv: Interval, out: &mut Emitter<'_>) {
        let mut late: BTreeMap<(u64, AggKey), Agg> = BTreeMap::new();
        for u in iv.unresolved {
            if u.deadline.nanos() > iv.last {
                continue;
            }
            let end = u.deadline.next_boundary(self.interval_ns).nanos();
            let (k, a) = aggregate(
                &u.wait.session,
                u.wait.key,
                u.flow_id,
                wait_event(&u.wait, u.deadline),
            );
            match late.get_mut(&(end, k)) {
                Some(mine) => mine.merge(a),
                None => {
                    late.insert((end, k), a);
                }
            }
        }
        let mut records: Vec<_> = late.into_iter().collect();
        records.sort_by_key(|((end, k), a)| (*end, a.first, *k));
        for ((end, k), a) in &records {
            write_record(out, *end, self.interval_ns, k, a);
        }
    }

    fn wait(&mut self, flow: &Flow<'_>, wait: Wait, at: Timestamp, out: &mut Emitter<'_>) -> bool {
        let timeout = match wait {
            Wait::Udp => self.udp_timeout_ns,
            _ => self.tcp_timeout_ns,
        };
        let queue = match wait {
            Wait::Udp => &mut self.udp_queue,
            _ => &mut self.tcp_queue,
        };
        if self.waiting.len() >= self.max_pending || queue.len() >= 2 * self.max_pending {
            out.dropped(1);
            return false;
        }
        queue.push_back(Deadline {
            at: at.add_nanos(timeout),
            flow: flow.id(),
            wait,
        });
        self.waiting.insert(
            flow.id(),
            Waiting {
                wait,
                since: at,
                session: flow.session().clone(),
                key: flow.key(),
                packets: 1,
            },
        );
        true
    }

    fn tcp(&mut self, flow: &mut Flow<'_>, pkt: &Packet<'_>, dir: Dir, out: &mut Emitter<'_>) {
        let Some(h) = pkt.tcp() else { return };
        let (syn, ack, rst) = (h.flags & SYN != 0, h.flags & ACK != 0, h.flags & RST != 0);
        let id = flow.id();
        let guessed = flow.guessed();
        let times = flow.tcp_times();
        let mut events: [Option<Event>; 2] = [None, None];
        let mut start_wait = None;
        {
            let conn = self.conns.get_or_insert_with(flow, Conn::default);
            match dir {
                Dir::ToServer if syn && !ack => {
                    conn.syns += 1;
                    if conn.syns == 1 && !guessed {
                        conn.first_syn = pkt.ts;
                        start_wait = Some(Wait::Syn);
                    } else if conn.waiting == Some(Wait::Syn) {
                        if let Some(w) = self.waiting.get_mut(&id) {
                            w.packets += 1;
                        }
                    }
                }
                Dir::ToServer => {
                    if conn.waiting == Some(Wait::Ack) {
                        conn.waiting = None;
                        self.waiting.remove(&id);
                    }
                }
                Dir::ToClient => {
                    if conn.waiting == Some(Wait::Syn) {
                        conn.waiting = None;
                        self.waiting.remove(&id);
                        if rst && !syn {
                            events[0] = Some(Event {
                                at: pkt.ts,
                                kind: Kind::Refused,
                                reason: "rst",
                                flows: 1,
                                packets: u64::from(conn.syns),
                                wait_ns: pkt.ts.nanos().saturating_sub(conn.first_syn.nanos()),
                                icmp: None,
                            });
                        } else if syn && ack {
                            if conn.syns > 1 {
                                events[0] = Some(Event {
                                    at: pkt.ts,
                                    kind: Kind::SynRetransmit,
                                    reason: "syn",
                                    flows: 1,
                                    packets: u64::from(conn.syns - 1),
                                    wait_ns: pkt.ts.nanos().saturating_sub(conn.first_syn.nanos()),
                                    icmp: None,
                                });
                            }
                            start_wait = Some(Wait::Ack);
                        }
                    }
                }
            }
            // A reset after the handshake and before any FIN: the connection was torn down.
            if rst
                && times.established.is_some()
                && times.fin_to_server.is_none()
                && times.fin_to_client.is_none()
                && !conn.reset_reported
            {
                conn.reset_reported = true;
                events[1] = Some(Event {
                    at: pkt.ts,
                    kind: Kind::Reset,
                    reason: if dir == Dir::ToClient {
                        "by_server"
                    } else {
                        "by_client"
                    },
                    flows: 1,
                    packets: 1,
                    wait_ns: 0,
                    icmp: None,
                });
            } else if h.window == 0 && ack && !syn && !rst && times.established.is_some() {
                // The advertiser's buffer is full: its application stopped reading.
                let first = !conn.zero_window[dir.index()];
                conn.zero_window[dir.index()] = true;
                events[1] = Some(Event {
                    at: pkt.ts,
                    kind: Kind::ZeroWindow,
                    reason: if dir == Dir::ToClient {
                        "by_server"
                    } else {
                        "by_client"
                    },
                    flows: u64::from(first),
                    packets: 1,
                    wait_ns: 0,
                    icmp: None,
                });
            }
        }
        if let Some(w) = start_wait {
            if self.wait(flow, w, pkt.ts, out) {
                if let Some(conn) = self.conns.get(flow) {
                    conn.waiting = Some(w);
                }
            }
        }
        if events.iter().any(Option::is_some) {
            let (session, key) = (flow.session().clone(), flow.key());
            for ev in events.into_iter().flatten() {
                self.record(&session, key, id, ev, out);
            }
        }
    }

    fn udp(&mut self, flow: &mut Flow<'_>, pkt: &Packet<'_>, dir: Dir, out: &mut Emitter<'_>) {
        if self.udp_timeout_ns == 0 {
            return;
        }
        let id = flow.id();
        let guessed = flow.guessed();
        let conn = self.conns.get_or_insert_with(flow, Conn::default);
        match dir {
            Dir::ToServer => {
                conn.syns = conn.syns.saturating_add(1);
                let first = conn.syns == 1;
                let waiting = conn.waiting;
                if first && !guessed {
                    if self.wait(flow, Wait::Udp, pkt.ts, out) {
                        if let Some(conn) = self.conns.get(flow) {
                            conn.waiting = Some(Wait::Udp);
                        }
                    }
                } else if waiting == Some(Wait::Udp) {
                    if let Some(w) = self.waiting.get_mut(&id) {
                        w.packets += 1;
                    }
                }
            }
            Dir::ToClient => {
                if conn.waiting.take().is_some() {
                    self.waiting.remove(&id);
                }
            }
        }
    }

    /// An ICMP or ICMPv6 destination unreachable: reported here, under the 5-tuple it quotes, since
    /// the flow it answers was steered by its own 5-tuple and most likely lives on another shard.
    fn icmp(&mut self, flow: &Flow<'_>, pkt: &Packet<'_>, out: &mut Emitter<'_>) {
        let (Transport::Icmp { ty, code }, Some(ip)) = (*pkt.transport(), pkt.ip()) else {
            return;
        };
        let Some(q) = icmp::unreachable(ip.protocol == 58, ty, code, pkt.payload()) else {
            return;
        };
        let ev = Event {
            at: pkt.ts,
            kind: Kind::Refused,
            reason: q.what.name(),
            flows: 1,
            packets: 1,
            wait_ns: 0,
            icmp: Some((ty, code, ip.src)),
        };
        self.record(&flow.session().clone(), q.flow, flow.id(), ev, out);
    }
}

/// The evidence of a wait that ran out at `at`.
fn wait_event(w: &Waiting, at: Timestamp) -> Event {
    let (kind, reason) = match w.wait {
        Wait::Syn => (Kind::Unanswered, "syn"),
        Wait::Udp => (Kind::Unanswered, "udp"),
        Wait::Ack => (Kind::HalfOpen, "no_ack"),
    };
    Event {
        at,
        kind,
        reason,
        flows: 1,
        packets: w.packets,
        wait_ns: at.nanos().saturating_sub(w.since.nanos()),
        icmp: None,
    }
}

/// One piece of evidence as a record's key and its start.
fn aggregate(session: &Arc<Session>, key: FlowKey, flow_id: u64, ev: Event) -> (AggKey, Agg) {
    let agg_key = AggKey {
        session: session.id,
        kind: ev.kind,
        reason: ev.reason,
        protocol: key.protocol,
        client: key.src,
        server: key.dst,
        port: key.dst_port,
    };
    let agg = Agg {
        session: session.clone(),
        direction: Direction::of(session, &key),
        first: ev.at,
        last: ev.at,
        flow_id,
        src_port: key.src_port,
        flows: ev.flows,
        packets: ev.packets,
        max_wait_ns: ev.wait_ns,
        icmp: ev.icmp,
    };
    (agg_key, agg)
}

fn interval_object(o: &mut JsonObject<'_>, end: u64, interval_ns: u64) {
    o.object("interval", |i| {
        i.timestamp(
            "start",
            Timestamp::from_nanos(end.saturating_sub(interval_ns)),
        );
        i.timestamp("end", Timestamp::from_nanos(end));
    });
}

fn write_record(out: &mut Emitter<'_>, end: u64, interval_ns: u64, k: &AggKey, a: &Agg) {
    // Per session and kind for Prometheus: connections, once per aggregated record.
    out.count_labelled(
        "connectivity_flows",
        &[("session", &a.session.name), ("kind", k.kind.name())],
        a.flows,
    );
    out.keyed(&a.session.name).emit_line(|s| {
        let mut o = JsonObject::begin(s);
        o.timestamp("timestamp", a.first);
        o.u64("flow_id", a.flow_id);
        o.str("event_type", "connectivity");
        o.ip("src_ip", k.client);
        o.u64("src_port", u64::from(a.src_port));
        o.ip("dest_ip", k.server);
        o.u64("dest_port", u64::from(k.port));
        o.str("proto", eve::proto_name(k.protocol));
        o.display(
            "community_id",
            community_id_v1(0, k.protocol, k.client, k.server, a.src_port, k.port),
        );
        eve::session_object(&mut o, &a.session);
        o.object("connectivity", |c| {
            c.str("kind", k.kind.name());
            c.str("reason", k.reason);
            c.str("direction", a.direction.name());
            c.str("likely_cause", likely_cause(k.kind, a.direction, k.reason));
            c.u64("flows", a.flows);
            c.u64("packets", a.packets);
            c.timestamp("first", a.first);
            c.timestamp("last", a.last);
            if a.max_wait_ns > 0 {
                // Microsecond precision: a RST from the same VPC comes within a millisecond.
                c.f64("max_wait_ms", (a.max_wait_ns / 1_000) as f64 / 1_000.0);
            }
            if let Some((ty, code, reporter)) = a.icmp {
                c.object("icmp", |i| {
                    i.u64("type", u64::from(ty));
                    i.u64("code", u64::from(code));
                    i.ip("reporter", reporter);
                });
            }
            interval_object(c, end, interval_ns);
        });
        o.end();
        Ok(())
    });
}

/// A configured session that delivered nothing for a whole interval: the mirror session was
/// deleted, its filter changed, the target is unhealthy, or the ENI is idle.
fn write_silent(out: &mut Emitter<'_>, end: u64, interval_ns: u64, session: &Session) {
    out.count_labelled(
        "connectivity_silent_intervals",
        &[("session", &session.name)],
        1,
    );
    out.keyed(&session.name).emit_line(|s| {
        let mut o = JsonObject::begin(s);
        o.timestamp(
            "timestamp",
            Timestamp::from_nanos(end.saturating_sub(interval_ns)),
        );
        o.str("event_type", "connectivity");
        eve::session_object(&mut o, session);
        o.object("connectivity", |c| {
            c.str("kind", "silent_session");
            c.str("likely_cause", "mirror_session_broken_or_source_idle");
            interval_object(c, end, interval_ns);
        });
        o.end();
        Ok(())
    });
}

impl Module for Connectivity {
    fn wants_flows(&self) -> bool {
        true
    }

    fn on_packet(&mut self, pkt: &Packet<'_>, out: &mut Emitter<'_>) {
        self.advance(pkt.ts, out);
        self.seen.get_or_insert_with(pkt.session.id, || ());
    }

    fn on_flow_packet(
        &mut self,
        flow: &mut Flow<'_>,
        pkt: &Packet<'_>,
        dir: Dir,
        out: &mut Emitter<'_>,
    ) {
        self.advance(pkt.ts, out);
        match flow.key().protocol {
            6 => self.tcp(flow, pkt, dir, out),
            17 => self.udp(flow, pkt, dir, out),
            1 | 58 => self.icmp(flow, pkt, out),
            _ => {}
        }
    }

    fn on_flow_end(&mut self, flow: &mut Flow<'_>, reason: EndReason, out: &mut Emitter<'_>) {
        let Some(conn) = self.conns.take(flow) else {
            return;
        };
        if conn.waiting.is_none() {
            return;
        }
        let Some(w) = self.waiting.remove(&flow.id()) else {
            return;
        };
        if matches!(
            reason,
            EndReason::EndOfReplay | EndReason::Shutdown | EndReason::Reload
        ) {
            // Judged at the finish, against the time every shard reached.
            let timeout = match w.wait {
                Wait::Udp => self.udp_timeout_ns,
                _ => self.tcp_timeout_ns,
            };
            self.unresolved.push(Unresolved {
                flow_id: flow.id(),
                deadline: w.since.add_nanos(timeout),
                wait: w,
            });
            return;
        }
        self.report_wait(flow.id(), &w, flow.last_seen(), out);
    }

    fn on_tick(&mut self, now: Timestamp, out: &mut Emitter<'_>) {
        self.advance(now, out);
    }

    fn finish(&mut self, out: &mut Emitter<'_>) {
        let end = self.open_end.map_or(0, Timestamp::nanos);
        let data = self.open_end.map(|_| self.take_current(true));
        self.board.publish(
            self.shard,
            self.shards,
            end,
            data,
            END_OF_INPUT - 1,
            &mut self.released,
        );
        let tail = Interval {
            unresolved: std::mem::take(&mut self.unresolved),
            last: self.last_seen.nanos(),
            partial: true,
            ..Interval::default()
        };
        self.board.publish(
            self.shard,
            self.shards,
            END_OF_INPUT,
            Some(tail),
            END_OF_INPUT,
            &mut self.released,
        );
        self.open_end = None;
        self.emit_released(out);
    }
}
