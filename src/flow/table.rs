//! The per-shard flow table: one entry per flow (both directions) per mirror session, bounded,
//! allocated up front, on packet time.
//!
//! Lookups go through the shared open-addressing [`Index`] (one cache line of cells, then the
//! entry). An entry is split: what every packet reads or writes is an [`Entry`] of exactly two
//! aligned cache lines, which `prepare` loads for a whole batch before its packets come; the rest is
//! its [`Cold`] part in a parallel slab, touched at the flow's start and end and when a module asks.
//! Idle expiry uses a timing wheel of one-second slots ([`Wheel`]) from which a flow can be taken
//! out in O(1): a flow's timeout depends on its TCP state, and a connection that closes (FIN both
//! ways, RST) moves from the ten-minute established timeout to the 30-second closed one, so it is
//! taken out and scheduled again at once. Entries that saw packets since they were scheduled are
//! moved when their slot comes up, so a packet never touches the wheel otherwise.
//!
//! Reassembly state lives outside the entry, in a slab taken only for TCP flows a module asked
//! bytes of, so a flow nobody reassembles costs its entry and nothing else. Out-of-order bytes
//! come from one [`SegmentPool`] per shard.

use std::hash::Hasher;
use std::sync::Arc;

use rustc_hash::FxHasher;

use super::index::{advise_huge_pages, key_hash, prefetch, Index};
use super::interval::{counts_flow, dir_key, Intervals, Pair, Parked, NONE, PARKED};
use super::reassembly::{Chunk, Limits, SegmentPool, StreamDir};
use super::types::{Dir, EndReason, FlowCounters, IntervalClose, IntervalSpec, TcpState};
use super::view::{DirInterval, Flow};
use super::wheel::Wheel;
use crate::base::counter::bump;
use crate::base::{FlowKey, Packet, Session, TcpHeader, Timestamp};
use crate::config::FlowConfig;
use crate::wire::inner::Transport;

const NIL: u32 = u32::MAX;
const NANOS: u64 = 1_000_000_000;
/// Flow-aware modules a shard can have: one bit each in a flow's stream requests.
pub(crate) const MAX_FLOW_MODULES: usize = 16;
/// How many flows ahead a tick's expiry starts loading what ending a flow touches.
const ENDING_AHEAD: usize = 8;
/// How many directions ahead an interval's hand-over starts loading their flows.
const HANDING_AHEAD: usize = 8;
/// How many flows of a due wheel slot ahead a tick's expiry starts loading their entries.
const JUDGING_AHEAD: usize = 8;
/// Table size (bytes of entries) above which `prepare` prefetches: about a core's L2 cache.
const PREFETCH_ABOVE_BYTES: usize = 1 << 20;

/// Packets `prepare` looks at ahead of `packet`: the shard's batch.
const PREPARED: usize = 64;

/// What `prepare` worked out for one packet of a batch, so that `packet` does not work it out
/// again: the key, its hash, and which entry the index pointed at.
#[derive(Clone, Copy)]
struct Prepared {
    /// The packet's dissection, by address: `packet` uses this only for the packet it was made
    /// from (benchmarks and tests may call `packet` without `prepare`).
    layers: usize,
    /// `None` for a packet that is no flow's (not IP).
    flow: Option<PreparedFlow>,
}

#[derive(Clone, Copy)]
struct PreparedFlow {
    canon: FlowKey,
    sender_is_a: bool,
    hash: u64,
    /// The entry whose hash bits matched at `prepare`, or NIL: only a hint, checked against the
    /// key and the entry's liveness before use, since the packets and ticks between `prepare` and
    /// `packet` start and end flows.
    slot: u32,
    /// A TCP FIN or RST, which may close the flow and so move it in the wheel.
    closing: bool,
}

/// What the table tells the modules. The shard implements it: it owns the modules, and calls each
/// flow-aware one in config order, with panic isolation.
pub(crate) trait FlowEvents {
    /// A flow's first packet (before `packet` for it).
    fn start(&mut self, flow: &mut Flow<'_>, pkt: &Packet<'_>);
    /// Every packet, with its direction.
    fn packet(&mut self, flow: &mut Flow<'_>, pkt: &Packet<'_>, dir: Dir);
    /// In-order bytes (or a gap) of a direction, for the modules that asked for it.
    fn stream(&mut self, flow: &mut Flow<'_>, dir: Dir, chunk: &Chunk<'_>);
    /// The flow's last event.
    fn end(&mut self, flow: &mut Flow<'_>, reason: EndReason);
    /// One direction's interval counters, for the modules that asked for them.
    fn interval(&mut self, interval: &DirInterval<'_>);
    /// Every direction of the interval that ended at `now` has been handed over.
    fn interval_end(&mut self, now: Timestamp);
}

/// What one direction carried that every packet adds to: the hot part of [`DirStats`].
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Counts {
    pub(super) packets: u64,
    pub(super) bytes: u64,
    pub(super) payload_bytes: u64,
}

/// What every packet of a flow reads or writes: two cache lines, aligned, which `prepare` loads for
/// a whole batch before the packets come. Everything else about the flow is in its [`Cold`] part,
/// read at the flow's start and end and when a module asks.
#[repr(C, align(64))]
pub(crate) struct Entry {
    /// The 5-tuple in canonical order (the lower endpoint first): the same key for both directions.
    pub(super) canon: FlowKey,
    pub(super) session_id: u32,
    /// Per direction, one bit per flow-aware module that asked for the bytes.
    pub(super) want: [u16; 2],
    pub(super) last: Timestamp,
    /// Reassembly state in `FlowTable::streams`, or NIL.
    stream: u32,
    pub(super) state: Option<TcpState>,
    /// Whether the canonical first endpoint is the client.
    pub(super) client_is_a: bool,
    /// Which of [`Cold::times`] are set, one bit each: a packet with TCP flags then reads no cold
    /// line, and writes one only the first time a milestone is seen.
    marked: u8,
    pub(super) guessed: bool,
    /// The table's packet count at this flow's latest packet: orders flows by recency.
    seq: u64,
    /// Indexed by [`Dir::index`].
    pub(super) stats: [Counts; 2],
    /// The entry's position in the wheel ([`Wheel::push`]), or NIL when it is in no slot (free,
    /// or being judged by a tick). Here rather than in the cold part: the wheel's walk reads this
    /// part anyway (the last packet's time, the TCP state), and a removal that moves another
    /// flow into the freed place writes that flow's position.
    wheel_at: u32,
    /// ICMP type and code of the first packet.
    pub(super) icmp: [u8; 2],
    /// One bit per flow-aware module that still wants this flow's packets
    /// ([`Flow::stop_packets`]): none left, and a packet makes no per-packet event at all.
    pub(super) packets: u16,
}

/// The rest of a flow: what its start, its end and the modules' questions need.
pub(crate) struct Cold {
    pub(super) id: u64,
    pub(super) session: Arc<Session>,
    pub(super) first: Timestamp,
    /// Nanoseconds of syn, syn-ack, established, fin to server, fin to client, rst (valid where
    /// [`Entry::marked`] says so).
    pub(super) times: [u64; 6],
    /// Per direction: retransmitted segments and gaps (reassembled directions only).
    pub(super) repair: [(u32, u32); 2],
}

/// Timeouts in nanoseconds, by what a flow is.
#[derive(Debug, Clone, Copy)]
struct Timeouts {
    tcp_new: u64,
    tcp_established: u64,
    tcp_closed: u64,
    udp: u64,
    icmp: u64,
    other: u64,
}

impl Timeouts {
    fn of(&self, e: &Entry) -> u64 {
        match (e.canon.protocol, e.state) {
            (6, Some(TcpState::SynSent | TcpState::SynReceived)) => self.tcp_new,
            (6, Some(TcpState::Closed | TcpState::Reset)) => self.tcp_closed,
            (6, _) => self.tcp_established,
            (17, _) => self.udp,
            (1 | 58, _) => self.icmp,
            _ => self.other,
        }
    }

    fn longest(&self) -> u64 {
        [
            self.tcp_new,
            self.tcp_established,
            self.tcp_closed,
            self.udp,
            self.icmp,
            self.other,
        ]
        .into_iter()
        .max()
        .unwrap_or(NANOS)
    }
}

/// A shard's flows.
pub(crate) struct FlowTable {
    index: Index,
    entries: Vec<Entry>,
    cold: Vec<Cold>,
    free: Vec<u32>,
    /// `modules` slots per entry, for [`super::PerFlow`].
    slots: Vec<u32>,
    modules: usize,
    streams: Vec<[StreamDir; 2]>,
    free_streams: Vec<u32>,
    pool: SegmentPool,
    limits: Limits,
    wheel: Wheel,
    checked_through: u64,
    timeouts: Timeouts,
    seq: u64,
    max: usize,
    counters: Arc<FlowCounters>,
    /// Flows due at a tick, with their recency, ended least recently seen first.
    due: Vec<(u64, u32)>,
    /// A due wheel slot's flows while a tick judges them, and the flows an eviction's search
    /// passed over.
    walk: Vec<u32>,
    /// Stands in for the session of a free entry, so that no entry keeps a gone session alive.
    no_session: Arc<Session>,
    /// The flow-aware modules that want per-packet events (one bit each): a new flow's
    /// [`Entry::packets`].
    packet_modules: u16,
    /// What `prepare` found for the current batch, and how many of its packets `packet` has had.
    prepared: arrayvec::ArrayVec<Prepared, PREPARED>,
    next_prepared: usize,
    /// Per-direction interval counters, when a module asked for them.
    intervals: Option<Intervals>,
}

impl FlowTable {
    /// A table for `config.max_flows` flows and `modules` flow-aware modules, its memory reserved now
    /// (and touched only as flows arrive).
    pub(crate) fn new(config: &FlowConfig, modules: usize) -> FlowTable {
        let s = |secs: u64| secs.saturating_mul(NANOS);
        let timeouts = Timeouts {
            tcp_new: s(config.tcp_new_timeout_secs),
            tcp_established: s(config.tcp_established_timeout_secs),
            tcp_closed: s(config.tcp_closed_timeout_secs),
            udp: s(config.udp_timeout_secs),
            icmp: s(config.icmp_timeout_secs),
            other: s(config.other_timeout_secs),
        };
        let max = config.max_flows.max(1);
        let entries: Vec<Entry> = Vec::with_capacity(max);
        advise_huge_pages(entries.as_ptr().cast(), max * std::mem::size_of::<Entry>());
        let cold: Vec<Cold> = Vec::with_capacity(max);
        advise_huge_pages(cold.as_ptr().cast(), max * std::mem::size_of::<Cold>());
        FlowTable {
            index: Index::new(max),
            entries,
            cold,
            free: Vec::with_capacity(max),
            slots: Vec::with_capacity(max * modules),
            modules: modules.min(MAX_FLOW_MODULES),
            streams: Vec::new(),
            free_streams: Vec::new(),
            pool: SegmentPool::new(config.reassembly_memcap_bytes),
            limits: Limits {
                per_direction_bytes: config.stream_buffer_bytes,
                ..Limits::DEFAULT
            },
            // Every due second lies within the longest timeout (+2) of the last checked second.
            wheel: Wheel::new((timeouts.longest() / NANOS + 2) as usize, max),
            checked_through: 0,
            timeouts,
            seq: 0,
            max,
            counters: Arc::new(FlowCounters::default()),
            due: Vec::new(),
            walk: Vec::new(),
            no_session: Arc::new(Session::plain("", 0)),
            packet_modules: ((1u32 << modules.min(MAX_FLOW_MODULES)) - 1) as u16,
            prepared: arrayvec::ArrayVec::new(),
            next_prepared: 0,
            intervals: None,
        }
    }

    /// Keeps per-direction interval counters for the modules that asked ([`FlowEvents::interval`]),
    /// or stops. Only while the table holds no flow: at build, and after a reload ended them all.
    pub(crate) fn set_intervals(&mut self, spec: Option<IntervalSpec>) {
        debug_assert_eq!(
            self.len(),
            0,
            "interval counters change only on an empty table"
        );
        self.intervals = spec.map(|s| {
            let mut iv = Intervals::new(s.interval_secs, self.max, self.modules);
            iv.pairs.resize(self.entries.len(), Pair::default());
            advise_huge_pages(
                iv.pairs.as_ptr().cast(),
                self.max * std::mem::size_of::<Pair>(),
            );
            iv
        });
    }

    /// Which flow-aware modules want per-packet events, one bit each (all of them until told): the
    /// flows that start from now on are built with these.
    pub(crate) fn set_packet_modules(&mut self, mask: u16) {
        self.packet_modules = mask;
    }

    /// The counters `/metrics` reads.
    pub(crate) fn counters(&self) -> &Arc<FlowCounters> {
        &self.counters
    }

    /// Flows in the table.
    pub(crate) fn len(&self) -> usize {
        self.entries.len() - self.free.len()
    }

    /// Directions of the flows in the table that carried a packet (a scan: for benchmarks).
    pub(crate) fn directions(&self) -> usize {
        self.entries
            .iter()
            .filter(|e| e.wheel_at != NIL)
            .map(|e| e.stats.iter().filter(|s| s.packets > 0).count())
            .sum()
    }

    fn hash(&self, session: u32, k: &FlowKey) -> u64 {
        key_hash(session, k)
    }

    /// Works out each packet's key, hash and likely entry for a batch (kept for `packet`), and starts loading
    /// what the batch's packets will read, so that their cache misses overlap: the TCP header in the
    /// frame (the reader's thread wrote it, so it is in another core's cache), and, when the table
    /// is larger than the caches, the index cells, then the entries (both hot lines and the
    /// modules' slots), then the reassembly state of flows that have some and the wheel block of
    /// flows a FIN or RST may close. Each stage runs over the
    /// whole batch before the next, so a stage's loads have had the previous stage's time to land.
    pub(crate) fn prepare(&mut self, packets: &[Packet<'_>]) {
        self.prepared.clear();
        self.next_prepared = 0;
        let cells = std::mem::size_of_val(&*self.index.cells) > PREFETCH_ABOVE_BYTES;
        let entries = self.len() * std::mem::size_of::<Entry>() > PREFETCH_ABOVE_BYTES;
        let mut closing = false;
        for pkt in packets.iter().take(PREPARED) {
            let mut fin_or_rst = false;
            if let (Transport::Tcp { flags, .. }, Some(at)) =
                (pkt.layers.transport, pkt.layers.l4_offset)
            {
                prefetch(pkt.frame.as_ptr().wrapping_add(at as usize + 4));
                fin_or_rst = flags & (TcpHeader::FIN | TcpHeader::RST) != 0;
                closing |= fin_or_rst;
            }
            let flow = pkt.flow().map(|k| {
                let (canon, sender_is_a) = k.canonical();
                let hash = self.hash(pkt.session.id, &canon);
                if cells {
                    prefetch(&self.index.cells[self.index.home(Index::cell(hash, 0))]);
                }
                PreparedFlow {
                    canon,
                    sender_is_a,
                    hash,
                    slot: NIL,
                    closing: fin_or_rst,
                }
            });
            self.prepared.push(Prepared {
                layers: std::ptr::from_ref(pkt.layers) as usize,
                flow,
            });
        }
        let m = self.modules;
        for p in self.prepared.iter_mut().filter_map(|p| p.flow.as_mut()) {
            if let Some(i) = self.index.find(p.hash, |_| true) {
                p.slot = i;
                if !entries {
                    continue;
                }
                // Both lines of the hot part (aligned), and the modules' slots when they have
                // any (a flow-aware module with per-flow state reads its slot on every packet).
                let e = self.entries.as_ptr().wrapping_add(i as usize).cast::<u8>();
                prefetch(e);
                prefetch(e.wrapping_add(64));
                if m > 0 {
                    prefetch(self.slots.as_ptr().wrapping_add(i as usize * m));
                }
                if let Some(iv) = &self.intervals {
                    prefetch(iv.pairs.as_ptr().wrapping_add(i as usize));
                }
            }
        }
        if !entries || (self.streams.is_empty() && !closing) {
            return;
        }
        for p in self
            .prepared
            .iter()
            .filter_map(|p| p.flow)
            .filter(|p| p.slot != NIL)
        {
            let e = &self.entries[p.slot as usize];
            if p.closing && e.wheel_at != NIL {
                // A connection that closes moves to the closed timeout's second: its wheel block
                // is the first thing the move reads.
                self.wheel.prefetch(e.wheel_at);
            }
            let s = e.stream;
            if s != NIL {
                // A direction's state is 48 bytes and the pair 96: its first and last byte.
                let d = self.streams.as_ptr().wrapping_add(s as usize).cast::<u8>();
                prefetch(d);
                prefetch(d.wrapping_add(std::mem::size_of::<[StreamDir; 2]>() - 1));
            }
        }
    }

    /// What `prepare` found for `pkt`, when it is the batch's next packet.
    fn take_prepared(&mut self, pkt: &Packet<'_>) -> Option<Prepared> {
        let p = *self.prepared.get(self.next_prepared)?;
        if p.layers != std::ptr::from_ref(pkt.layers) as usize {
            return None;
        }
        self.next_prepared += 1;
        Some(p)
    }

    /// Tracks one packet and tells the modules what it means: a flow's start, the packet with its
    /// direction, in-order stream bytes. Non-IP frames are not flows.
    pub(crate) fn packet(&mut self, pkt: &Packet<'_>, events: &mut dyn FlowEvents) {
        let session = pkt.session.id;
        let (canon, sender_is_a, hash, hint) = match self.take_prepared(pkt) {
            Some(Prepared { flow: Some(p), .. }) => (p.canon, p.sender_is_a, p.hash, p.slot),
            Some(Prepared { flow: None, .. }) => return,
            None => {
                let Some(key) = pkt.flow() else { return };
                let (canon, sender_is_a) = key.canonical();
                (canon, sender_is_a, self.hash(session, &canon), NIL)
            }
        };
        if self.intervals.as_mut().is_some_and(|iv| iv.due(pkt.ts)) {
            self.close_interval(pkt.ts, events);
        }
        let tcp = pkt.tcp();
        let flags = tcp.map_or(0, |t| t.flags);
        self.seq += 1;
        let entries = &self.entries;
        let is = |i: u32| {
            let e = &entries[i as usize];
            e.session_id == session && e.canon == canon
        };
        // A live entry (every live flow is in the wheel) with the key is the flow: keys are unique.
        let found = if hint != NIL && entries[hint as usize].wheel_at != NIL && is(hint) {
            Some(hint)
        } else {
            self.index.find(hash, is)
        };
        let i = match found {
            // A new connection on the 5-tuple of one that closed: the old one ends first.
            Some(i)
                if flags & (TcpHeader::SYN | TcpHeader::ACK) == TcpHeader::SYN
                    && matches!(
                        self.entries[i as usize].state,
                        Some(TcpState::Closed | TcpState::Reset)
                    ) =>
            {
                let reason = end_reason(self.entries[i as usize].state);
                self.end(i, reason, events);
                self.insert(pkt, canon, sender_is_a, hash, events)
            }
            Some(i) => Some(i),
            None => self.insert(pkt, canon, sender_is_a, hash, events),
        };
        if let Some(i) = i {
            self.update(i, pkt, sender_is_a, tcp, events);
        }
    }

    fn insert(
        &mut self,
        pkt: &Packet<'_>,
        canon: FlowKey,
        sender_is_a: bool,
        hash: u64,
        events: &mut dyn FlowEvents,
    ) -> Option<u32> {
        if self.len() >= self.max {
            if let Some(victim) = self.nearest_to_expiry() {
                self.hand_over_evicted(victim, pkt.ts, events);
                self.end(victim, EndReason::Evicted, events);
            }
            if self.len() >= self.max {
                // Every flow is in the wheel, so a full table always has a victim; should that ever
                // fail, the packet goes untracked (counted) rather than the table outgrowing its cap.
                bump(&self.counters.untracked, 1);
                return None;
            }
        }
        let (sender_is_client, guessed) = orient(pkt);
        let state = (canon.protocol == 6).then(|| {
            let flags = pkt.tcp().map_or(0, |t| t.flags);
            match flags & (TcpHeader::SYN | TcpHeader::ACK) {
                TcpHeader::SYN => TcpState::SynSent,
                f if f == TcpHeader::SYN | TcpHeader::ACK => TcpState::SynReceived,
                _ => TcpState::Established,
            }
        });
        let icmp = match *pkt.transport() {
            Transport::Icmp { ty, code } => [ty, code],
            _ => [0, 0],
        };
        let entry = Entry {
            canon,
            session_id: pkt.session.id,
            want: [0; 2],
            last: pkt.ts,
            stream: NIL,
            state,
            client_is_a: sender_is_client == sender_is_a,
            marked: 0,
            seq: self.seq,
            stats: [Counts::default(); 2],
            wheel_at: NIL,
            icmp,
            guessed,
            packets: self.packet_modules,
        };
        let cold = Cold {
            id: flow_id(pkt.session, &canon, pkt.ts),
            session: pkt.session.clone(),
            first: pkt.ts,
            times: [0; 6],
            repair: [(0, 0); 2],
        };
        let i = match self.free.pop() {
            Some(i) => {
                self.entries[i as usize] = entry;
                self.cold[i as usize] = cold;
                i
            }
            None => {
                self.entries.push(entry);
                self.cold.push(cold);
                self.slots.extend(std::iter::repeat_n(0, self.modules));
                if let Some(iv) = &mut self.intervals {
                    iv.pairs.push(Pair::default());
                }
                (self.entries.len() - 1) as u32
            }
        };
        self.index.insert(hash, i);
        self.schedule(i);
        bump(&self.counters.started, 1);
        let mut flow = self.view(i);
        events.start(&mut flow, pkt);
        Some(i)
    }

    fn view(&mut self, i: u32) -> Flow<'_> {
        let m = self.modules;
        let at = i as usize * m;
        Flow {
            entry: &mut self.entries[i as usize],
            cold: &mut self.cold[i as usize],
            slots: &mut self.slots[at..at + m],
            module: 0,
        }
    }

    fn update(
        &mut self,
        i: u32,
        pkt: &Packet<'_>,
        sender_is_a: bool,
        tcp: Option<TcpHeader>,
        events: &mut dyn FlowEvents,
    ) {
        let e = &mut self.entries[i as usize];
        let dir = if sender_is_a == e.client_is_a {
            Dir::ToServer
        } else {
            Dir::ToClient
        };
        e.last = e.last.max(pkt.ts);
        e.seq = self.seq;
        let wire_payload = pkt.wire_payload_len();
        let s = &mut e.stats[dir.index()];
        let bytes = u64::from(pkt.ip_len().unwrap_or(pkt.orig_len));
        s.packets += 1;
        s.bytes += bytes;
        s.payload_bytes += u64::from(wire_payload);
        if let Some(iv) = &mut self.intervals {
            iv.count(i, dir.index(), pkt.ts, bytes, tcp.map_or(0, |t| t.flags));
        }
        let closed_before = matches!(e.state, Some(TcpState::Closed | TcpState::Reset));
        if let Some(t) = tcp {
            tcp_transition(
                e,
                &mut self.cold[i as usize],
                dir,
                t.flags,
                pkt.ts,
                wire_payload > 0,
            );
        }
        let closed_now = matches!(e.state, Some(TcpState::Closed | TcpState::Reset));
        if closed_now && !closed_before {
            // The closed timeout is far shorter than the one it was scheduled with.
            self.unlink(i);
            self.schedule(i);
        }
        if self.entries[i as usize].packets != 0 {
            let mut flow = self.view(i);
            events.packet(&mut flow, pkt, dir);
        }
        if let Some(t) = tcp {
            self.reassemble(i, pkt, dir, t, wire_payload, events);
        }
    }

    /// Feeds a TCP segment to its direction's stream, and its acknowledgement to the other one, for
    /// the directions modules asked for; releases what no module wants any more.
    fn reassemble(
        &mut self,
        i: u32,
        pkt: &Packet<'_>,
        dir: Dir,
        t: TcpHeader,
        wire_payload: u32,
        events: &mut dyn FlowEvents,
    ) {
        let want = self.entries[i as usize].want;
        if want == [0, 0] && self.entries[i as usize].stream == NIL {
            return;
        }
        let s = self.stream_of(i);
        let m = self.modules;
        let at = i as usize * m;
        let Self {
            entries,
            cold,
            slots,
            streams,
            pool,
            limits,
            counters,
            ..
        } = self;
        let entry = &mut entries[i as usize];
        let cold = &mut cold[i as usize];
        let flow_slots = &mut slots[at..at + m];
        let d = dir.index();
        let mut deliver =
            |entry: &mut Entry, cold: &mut Cold, slots: &mut [u32], dir: Dir, c: Chunk<'_>| {
                count_chunk(counters, cold, dir, &c);
                let mut flow = Flow {
                    entry,
                    cold,
                    slots,
                    module: 0,
                };
                events.stream(&mut flow, dir, &c);
            };
        if want[d] != 0 {
            let stream = &mut streams[s as usize][d];
            if !stream.is_active() && !stream.is_complete() {
                let syn = t.flags & TcpHeader::SYN != 0;
                stream.start(if syn { t.seq.wrapping_add(1) } else { t.seq });
            }
            let seq = if t.flags & TcpHeader::SYN != 0 {
                t.seq.wrapping_add(1)
            } else {
                t.seq
            };
            let payload = pkt.payload();
            let payload = &payload[..payload.len().min(wire_payload as usize)];
            let before = stream.retransmitted();
            stream.segment(
                pool,
                limits,
                seq,
                payload,
                wire_payload.max(payload.len() as u32),
                t.flags & TcpHeader::FIN != 0,
                &mut |c| deliver(entry, cold, flow_slots, dir, c),
            );
            // Written only when it changed: the cold part is otherwise not touched per packet.
            let retransmitted = stream.retransmitted() - before;
            if retransmitted != 0 {
                cold.repair[d].0 += retransmitted;
            }
        }
        let o = dir.reverse();
        if t.flags & TcpHeader::ACK != 0 && entry.want[o.index()] != 0 {
            let stream = &mut streams[s as usize][o.index()];
            stream.acked(pool, limits, t.ack, &mut |c| {
                deliver(entry, cold, flow_slots, o, c)
            });
        }
        self.release_unwanted(i);
    }

    /// The reassembly slot of flow `i`, taken now if it has none.
    fn stream_of(&mut self, i: u32) -> u32 {
        let e = &mut self.entries[i as usize];
        if e.stream != NIL {
            return e.stream;
        }
        let s = match self.free_streams.pop() {
            Some(s) => s,
            None => {
                self.streams.push([StreamDir::idle(), StreamDir::idle()]);
                (self.streams.len() - 1) as u32
            }
        };
        e.stream = s;
        s
    }

    /// Releases the directions no module wants any more, and the reassembly slot once both are idle
    /// and unwanted.
    fn release_unwanted(&mut self, i: u32) {
        let e = &mut self.entries[i as usize];
        if e.stream == NIL {
            return;
        }
        let s = e.stream as usize;
        for d in 0..2 {
            if e.want[d] == 0 && self.streams[s][d].is_active() {
                self.streams[s][d].release(&mut self.pool);
            }
        }
        if e.want == [0, 0] {
            self.streams[s] = [StreamDir::idle(), StreamDir::idle()];
            self.free_streams.push(e.stream);
            e.stream = NIL;
        }
    }

    /// Ends flow `i`: what its streams still hold is delivered (holes as gaps), the modules get the
    /// end event, and everything the flow held is released.
    fn end(&mut self, i: u32, reason: EndReason, events: &mut dyn FlowEvents) {
        let s = self.entries[i as usize].stream;
        if s != NIL {
            let m = self.modules;
            let at = i as usize * m;
            let Self {
                entries,
                cold,
                slots,
                streams,
                pool,
                counters,
                ..
            } = self;
            let entry = &mut entries[i as usize];
            let cold = &mut cold[i as usize];
            let flow_slots = &mut slots[at..at + m];
            for dir in Dir::BOTH {
                let stream = &mut streams[s as usize][dir.index()];
                if entry.want[dir.index()] != 0 {
                    stream.finish(pool, &mut |c| {
                        count_chunk(counters, cold, dir, &c);
                        let mut flow = Flow {
                            entry: &mut *entry,
                            cold: &mut *cold,
                            slots: &mut *flow_slots,
                            module: 0,
                        };
                        events.stream(&mut flow, dir, &c);
                    });
                } else {
                    stream.release(pool);
                }
            }
            self.streams[s as usize] = [StreamDir::idle(), StreamDir::idle()];
            self.free_streams.push(s);
            self.entries[i as usize].stream = NIL;
        }
        {
            let mut flow = self.view(i);
            events.end(&mut flow, reason);
        }
        self.park(i);
        self.unlink(i);
        let e = &mut self.entries[i as usize];
        let hash = {
            let (session, canon) = (e.session_id, e.canon);
            self.hash(session, &canon)
        };
        self.index.remove(hash, i);
        self.cold[i as usize].session = self.no_session.clone();
        self.entries[i as usize].want = [0, 0];
        let m = self.modules;
        self.slots[i as usize * m..(i as usize + 1) * m].fill(0);
        self.free.push(i);
        bump(&self.counters.ended[reason as usize], 1);
    }

    /// At a tick: if an interval ended by `now`, hands its counters over. The shard calls it in the
    /// riders' turn of the tick, after the flows that timed out ended ([`FlowTable::expire`]); a
    /// packet past the interval's end that comes before any tick closes it too.
    pub(crate) fn close_interval_if_due(&mut self, now: Timestamp, events: &mut dyn FlowEvents) {
        if self.intervals.as_mut().is_some_and(|iv| iv.due(now)) {
            self.close_interval(now, events);
        }
    }

    /// An interval ended at `now`: every direction with packets in it is handed over, and counts
    /// again from zero.
    fn close_interval(&mut self, now: Timestamp, events: &mut dyn FlowEvents) {
        self.hand_over(now, IntervalClose::IntervalEnd, events);
        if let Some(iv) = &mut self.intervals {
            iv.advance(now);
        }
        events.interval_end(now);
    }

    /// Hands over every direction with packets since it was last handed over, live flows' and
    /// parked ones', least recently seen first: an order no spread over shards decides (directions
    /// last seen in the same nanosecond, rare, come in an order an ordered replay's merge settles by
    /// the records' bytes).
    fn hand_over(&mut self, now: Timestamp, why: IntervalClose, events: &mut dyn FlowEvents) {
        let Some(iv) = &mut self.intervals else {
            return;
        };
        let m = self.modules;
        let mut order = std::mem::take(&mut iv.order);
        order.clear();
        for i in 0..iv.pairs.len() {
            if iv.pairs[i].is_empty() {
                continue;
            }
            let e = &self.entries[i];
            let mut pair = iv.pairs[i];
            let hash = key_hash(e.session_id, &e.canon);
            iv.join_parked(hash, e.session_id, &e.canon, e.client_is_a, &mut pair);
            iv.pairs[i] = pair;
            for (d, c) in pair.0.iter().enumerate() {
                if c.packets > 0 {
                    order.push((c.last.nanos(), (i as u32) << 1 | d as u32));
                }
            }
        }
        for k in (0..iv.parked.len()).rev() {
            iv.join_older(k);
            for (d, c) in iv.parked[k].counts.iter().enumerate() {
                if c.packets > 0 {
                    order.push((c.last.nanos(), PARKED | (k as u32) << 1 | d as u32));
                }
            }
        }
        order.sort_unstable_by_key(|&(last, _)| last);
        for (n, &(_, at)) in order.iter().enumerate() {
            if let Some(&(_, ahead)) = order.get(n + HANDING_AHEAD) {
                // In time order, live flows are scattered over the table: their entry, cold part,
                // counters and modules' tags are misses, started a few directions early.
                if ahead & PARKED == 0 {
                    let k = (ahead >> 1) as usize;
                    prefetch(self.entries.as_ptr().wrapping_add(k));
                    prefetch(self.cold.as_ptr().wrapping_add(k));
                    prefetch(iv.pairs.as_ptr().wrapping_add(k));
                    if m > 0 {
                        prefetch(self.slots.as_ptr().wrapping_add(k * m));
                    }
                }
            }
            let dir = if at & 1 == 0 {
                Dir::ToServer
            } else {
                Dir::ToClient
            };
            let k = ((at & !PARKED) >> 1) as usize;
            let interval = if at & PARKED != 0 {
                let p = &iv.parked[k];
                DirInterval {
                    session: &p.session,
                    key: p.key(dir),
                    dir,
                    counts: p.counts[dir.index()],
                    counts_flow: counts_flow(&p.counts, dir),
                    id: p.id,
                    icmp: p.icmp,
                    tags: iv.parked_tags(k),
                    module: None,
                    why,
                    now,
                }
            } else {
                let e = &self.entries[k];
                let counts = &iv.pairs[k].0;
                DirInterval {
                    session: &self.cold[k].session,
                    key: dir_key(&e.canon, e.client_is_a, dir),
                    dir,
                    counts: counts[dir.index()],
                    counts_flow: counts_flow(counts, dir),
                    id: self.cold[k].id,
                    icmp: e.icmp,
                    tags: &self.slots[k * m..(k + 1) * m],
                    module: None,
                    why,
                    now,
                }
            };
            events.interval(&interval);
        }
        for &(_, at) in order.iter().filter(|&&(_, at)| at & PARKED == 0) {
            iv.pairs[(at >> 1) as usize] = Pair::default();
        }
        iv.clear_parked();
        iv.order = order;
    }

    /// An evicted flow's directions go out at once, complete (the interval is a maximum), with
    /// what earlier connections on their 5-tuple left in the interval.
    fn hand_over_evicted(&mut self, i: u32, now: Timestamp, events: &mut dyn FlowEvents) {
        let Some(iv) = &mut self.intervals else {
            return;
        };
        let mut pair = std::mem::take(&mut iv.pairs[i as usize]);
        if pair.is_empty() {
            return;
        }
        let i = i as usize;
        let m = self.modules;
        let e = &self.entries[i];
        let hash = key_hash(e.session_id, &e.canon);
        iv.join_parked(hash, e.session_id, &e.canon, e.client_is_a, &mut pair);
        for dir in Dir::BOTH {
            let counts = pair.0[dir.index()];
            if counts.packets > 0 {
                events.interval(&DirInterval {
                    session: &self.cold[i].session,
                    key: dir_key(&e.canon, e.client_is_a, dir),
                    dir,
                    counts,
                    counts_flow: counts_flow(&pair.0, dir),
                    id: self.cold[i].id,
                    icmp: e.icmp,
                    tags: &self.slots[i * m..(i + 1) * m],
                    module: None,
                    why: IntervalClose::FlowEnd(EndReason::Evicted),
                    now,
                });
            }
        }
    }

    /// An ending flow's counters wait for the interval's end.
    fn park(&mut self, i: u32) {
        let Some(iv) = &mut self.intervals else {
            return;
        };
        let i = i as usize;
        let pair = std::mem::take(&mut iv.pairs[i]);
        if pair.is_empty() {
            return;
        }
        let e = &self.entries[i];
        let hash = key_hash(e.session_id, &e.canon);
        // Moved, not cloned: the session's count is shared by every shard, and the entry lets
        // go of it now anyway.
        let session = std::mem::replace(&mut self.cold[i].session, self.no_session.clone());
        let m = self.modules;
        iv.park(
            hash,
            Parked {
                session,
                canon: e.canon,
                client_is_a: e.client_is_a,
                counts: pair.0,
                id: self.cold[i].id,
                icmp: e.icmp,
                next: NONE,
            },
            &self.slots[i * m..(i + 1) * m],
        );
    }

    /// Starts loading both lines of flow `i`'s entry (its time and state, its recency).
    fn prefetch_entry(&self, i: u32) {
        let e = self.entries.as_ptr().wrapping_add(i as usize).cast::<u8>();
        prefetch(e);
        prefetch(e.wrapping_add(64));
    }

    /// Starts loading what ending flow `i` will touch beyond its entry (which the wheel's walk
    /// has just read): its index cell, its cold part, the modules' slots and its interval
    /// counters. The flows a tick ends are scattered over the table, and the index cell in
    /// particular is a miss for each.
    fn prefetch_end(&self, i: u32) {
        let e = &self.entries[i as usize];
        let hash = self.hash(e.session_id, &e.canon);
        prefetch(&self.index.cells[self.index.home(Index::cell(hash, 0))]);
        prefetch(self.cold.as_ptr().wrapping_add(i as usize));
        if self.modules > 0 {
            prefetch(self.slots.as_ptr().wrapping_add(i as usize * self.modules));
        }
        if let Some(iv) = &self.intervals {
            // Parked at its end.
            prefetch(iv.pairs.as_ptr().wrapping_add(i as usize));
        }
    }

    /// Publishes the gauges `/metrics` reads: once per tick (and at the end), not per packet, since
    /// both are derived from the table's own state.
    fn publish_gauges(&self) {
        let set = |gauge: &std::sync::atomic::AtomicU64, value: usize| {
            gauge.store(value as u64, std::sync::atomic::Ordering::Relaxed)
        };
        set(&self.counters.active, self.len());
        set(&self.counters.reassembly_bytes, self.pool.held_bytes());
    }

    /// The second in which flow `i` times out if no packet comes; never one already checked.
    fn due(&self, i: u32) -> u64 {
        let e = &self.entries[i as usize];
        (e.last.nanos().saturating_add(self.timeouts.of(e)) / NANOS).max(self.checked_through + 1)
    }

    fn schedule(&mut self, i: u32) {
        let w = (self.due(i) % self.wheel.len() as u64) as usize;
        self.entries[i as usize].wheel_at = self.wheel.push(w, i);
    }

    fn unlink(&mut self, i: u32) {
        let at = std::mem::replace(&mut self.entries[i as usize].wheel_at, NIL);
        if at == NIL {
            return;
        }
        if let Some((moved, pos)) = self.wheel.remove(at) {
            self.entries[moved as usize].wheel_at = pos;
        }
    }

    /// The flow that would time out first (the longest idle among flows of one timeout), for
    /// eviction; entries met on the way that saw packets since are moved to their real second.
    fn nearest_to_expiry(&mut self) -> Option<u32> {
        let len = self.wheel.len() as u64;
        let mut passed = std::mem::take(&mut self.walk);
        let mut found = None;
        for second in self.checked_through + 1..self.checked_through + 1 + len {
            let w = (second % len) as usize;
            passed.clear();
            found = self.wheel.find(w, |i| {
                let due = self.due(i) <= second;
                if !due {
                    passed.push(i);
                }
                due
            });
            for &i in &passed {
                self.unlink(i);
                self.schedule(i);
            }
            if found.is_some() {
                break;
            }
        }
        self.walk = passed;
        if found.is_none() {
            // Due seconds lie within one turn of the wheel from the last checked second only once
            // ticks run; before the first (a table fed packets alone) any flow will do.
            found = (0..len as usize).find_map(|w| self.wheel.find(w, |_| true));
        }
        found
    }

    /// Ends every flow idle past its timeout at `now`, least recently seen first.
    pub(crate) fn expire(&mut self, now: Timestamp, events: &mut dyn FlowEvents) {
        let now_secs = now.secs();
        if now_secs < self.checked_through + 1 {
            self.publish_gauges();
            return;
        }
        let first = self.checked_through + 1;
        let count = (now_secs - first + 1).min(self.wheel.len() as u64);
        self.checked_through = now_secs - 1;
        let mut due = std::mem::take(&mut self.due);
        due.clear();
        let mut walk = std::mem::take(&mut self.walk);
        for second in first..first + count {
            let w = (second % self.wheel.len() as u64) as usize;
            walk.clear();
            self.wheel.take(w, &mut walk);
            for &i in walk.iter().take(JUDGING_AHEAD) {
                self.prefetch_entry(i);
            }
            for (k, &i) in walk.iter().enumerate() {
                if let Some(&ahead) = walk.get(k + JUDGING_AHEAD) {
                    // The slot's flows are scattered over the table: their entries are misses,
                    // started a few flows early.
                    self.prefetch_entry(ahead);
                }
                let e = &mut self.entries[i as usize];
                // Taken out of the wheel with its slot: a due flow is in none until it ends.
                e.wheel_at = NIL;
                if e.last.nanos().saturating_add(self.timeouts.of(e)) <= now.nanos() {
                    due.push((e.seq, i));
                } else {
                    self.schedule(i);
                }
            }
        }
        self.walk = walk;
        due.sort_unstable_by_key(|&(seq, _)| seq);
        for (k, &(_, i)) in due.iter().enumerate() {
            if let Some(&(_, ahead)) = due.get(k + ENDING_AHEAD) {
                self.prefetch_end(ahead);
            }
            let reason = end_reason(self.entries[i as usize].state);
            self.end(i, reason, events);
        }
        self.due = due;
        self.publish_gauges();
    }

    /// Ends every flow (the drain, the end of a replay), least recently seen first; interval
    /// counters are handed over first, at `now` (the latest packet time).
    pub(crate) fn end_all(
        &mut self,
        reason: EndReason,
        now: Timestamp,
        events: &mut dyn FlowEvents,
    ) {
        // Everything counted goes out now, in one hand-over, before the flows end.
        self.hand_over(now, IntervalClose::FlowEnd(reason), events);
        let mut all = std::mem::take(&mut self.due);
        all.clear();
        for w in 0..self.wheel.len() {
            self.wheel.find(w, |i| {
                all.push((self.entries[i as usize].seq, i));
                false
            });
        }
        all.sort_unstable_by_key(|&(seq, _)| seq);
        for (k, &(_, i)) in all.iter().enumerate() {
            if let Some(&(_, ahead)) = all.get(k + ENDING_AHEAD) {
                self.prefetch_end(ahead);
            }
            self.end(i, reason, events);
        }
        self.due = all;
        self.publish_gauges();
    }
}

/// Counts a delivered chunk in the flow's and the shard's counters.
fn count_chunk(counters: &FlowCounters, cold: &mut Cold, dir: Dir, c: &Chunk<'_>) {
    match *c {
        Chunk::Data { bytes, .. } => bump(&counters.stream_bytes, bytes.len() as u64),
        Chunk::Gap { len, .. } => {
            cold.repair[dir.index()].1 += 1;
            bump(&counters.gaps, 1);
            bump(&counters.gap_bytes, len);
        }
    }
}

/// How a flow that times out or is replaced ended, from its TCP state.
fn end_reason(state: Option<TcpState>) -> EndReason {
    match state {
        Some(TcpState::Closed) => EndReason::Fin,
        Some(TcpState::Reset) => EndReason::Rst,
        _ => EndReason::IdleTimeout,
    }
}

/// Whether the first packet's sender is the client, and whether that is a guess.
///
/// TCP: a SYN without ACK comes from the client, a SYN-ACK from the server; anything else means
/// the connection was picked up mid-stream (vxtap started after it, or AWS dropped the handshake's
/// mirror copies), and the side with the lower port is taken as the server (equal ports: the
/// receiver). UDP: the sender is the client, unless it sends from a port below 1024 to one above
/// (a reply seen first, e.g. DNS), which is a guess. ICMP: an echo reply comes from the server;
/// anything else from the client. Other protocols: the sender.
fn orient(pkt: &Packet<'_>) -> (bool, bool) {
    match *pkt.transport() {
        Transport::Tcp { src, dst, flags } => match flags & (TcpHeader::SYN | TcpHeader::ACK) {
            TcpHeader::SYN => (true, false),
            f if f == TcpHeader::SYN | TcpHeader::ACK => (false, false),
            _ => (src > dst, true),
        },
        Transport::Udp { src, dst } if src < 1024 && dst >= 1024 => (false, true),
        // ICMP echo reply (v4 type 0) and ICMPv6 echo reply (129).
        Transport::Icmp { ty, .. } => {
            let v6 = pkt.ip().is_some_and(|ip| ip.protocol == 58);
            (!matches!((v6, ty), (false, 0) | (true, 129)), false)
        }
        _ => (true, false),
    }
}

/// TCP state changes for a packet of `dir` with `flags`.
fn tcp_transition(e: &mut Entry, cold: &mut Cold, dir: Dir, flags: u8, ts: Timestamp, data: bool) {
    const SYN: usize = 0;
    const SYN_ACK: usize = 1;
    const ESTABLISHED: usize = 2;
    const FIN_TO_SERVER: usize = 3;
    const FIN_TO_CLIENT: usize = 4;
    const RST: usize = 5;
    let now = ts.nanos().max(1);
    let mut mark = |e: &mut Entry, at: usize| {
        if e.marked & 1 << at == 0 {
            e.marked |= 1 << at;
            cold.times[at] = now;
        }
    };
    let syn = flags & TcpHeader::SYN != 0;
    let ack = flags & TcpHeader::ACK != 0;
    if flags & TcpHeader::RST != 0 {
        mark(e, RST);
        e.state = Some(TcpState::Reset);
        return;
    }
    if syn && !ack && dir == Dir::ToServer {
        mark(e, SYN);
    }
    if syn && ack && dir == Dir::ToClient {
        mark(e, SYN_ACK);
        if e.state == Some(TcpState::SynSent) {
            e.state = Some(TcpState::SynReceived);
        }
    }
    let handshaking = matches!(e.state, Some(TcpState::SynSent | TcpState::SynReceived));
    if handshaking
        && !syn
        && (ack && dir == Dir::ToServer && e.state == Some(TcpState::SynReceived) || data)
    {
        mark(e, ESTABLISHED);
        e.state = Some(TcpState::Established);
    }
    if flags & TcpHeader::FIN != 0 {
        mark(
            e,
            match dir {
                Dir::ToServer => FIN_TO_SERVER,
                Dir::ToClient => FIN_TO_CLIENT,
            },
        );
        if e.state != Some(TcpState::Reset) {
            let both = e.marked & (1 << FIN_TO_SERVER | 1 << FIN_TO_CLIENT)
                == (1 << FIN_TO_SERVER | 1 << FIN_TO_CLIENT);
            e.state = Some(if both {
                TcpState::Closed
            } else {
                TcpState::Closing
            });
        }
    }
}

/// A flow's id: a hash of its session, 5-tuple and first packet's time, so that a replay of the
/// same capture gives the same ids whatever the shard count, cut to 53 bits for JSON readers.
fn flow_id(session: &Session, canon: &FlowKey, first: Timestamp) -> u64 {
    let mut h = FxHasher::default();
    std::hash::Hash::hash(&session.key, &mut h);
    std::hash::Hash::hash(canon, &mut h);
    h.write_u64(first.nanos());
    // Fx's last multiply leaves the low bits weakest: fold the high half in.
    let x = h.finish();
    (x ^ (x >> 29)).wrapping_mul(0xbf58_476d_1ce4_e5b9) >> 11
}

#[cfg(test)]
mod tests;
