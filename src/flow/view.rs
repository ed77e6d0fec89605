//! What a flow-aware module sees of a flow, and where it keeps its own state for one.

use std::net::IpAddr;
use std::sync::Arc;

use super::community_id::{community_id_v1, community_id_v1_without_ports, CommunityId};
use super::table::{Cold, Entry};
use super::types::{Dir, DirStats, IntervalClose, IntervalCounts, TcpState, TcpTimes};
use crate::base::{FlowKey, Session, Timestamp};

/// One flow, as a flow-aware module is shown it during an event. Read-only, except for the module's
/// own stream requests and its per-flow slot.
pub struct Flow<'a> {
    pub(super) entry: &'a mut Entry,
    pub(super) cold: &'a mut Cold,
    /// Every flow-aware module's slot for this flow.
    pub(super) slots: &'a mut [u32],
    /// Which flow-aware module is being called (its position among them).
    pub(super) module: usize,
}

impl std::fmt::Debug for Flow<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flow")
            .field("id", &self.id())
            .field("key", &self.key())
            .finish()
    }
}

impl<'a> Flow<'a> {
    pub(crate) fn set_module(&mut self, module: usize) {
        self.module = module;
    }

    /// A 53-bit id, the same for every event and record of this flow, and for the same flow in a
    /// replay of the same capture (it is a hash of the session, the 5-tuple and the first packet's
    /// time, not a counter). 53 bits so that JSON readers that hold numbers as doubles (jq, most
    /// SIEMs) keep it exact.
    pub fn id(&self) -> u64 {
        self.cold.id
    }

    /// The mirror session the flow was seen in.
    pub fn session(&self) -> &Arc<Session> {
        &self.cold.session
    }

    /// The 5-tuple as the client sends it: `src` is the client, `dst` the server. For ICMP the ports
    /// are 0 (the type and code of the first packet are in [`Flow::icmp`]).
    pub fn key(&self) -> FlowKey {
        if self.entry.client_is_a {
            self.entry.canon
        } else {
            self.entry.canon.reversed()
        }
    }

    /// The client's address and port.
    pub fn client(&self) -> (IpAddr, u16) {
        let k = self.key();
        (k.src, k.src_port)
    }

    /// The server's address and port.
    pub fn server(&self) -> (IpAddr, u16) {
        let k = self.key();
        (k.dst, k.dst_port)
    }

    /// Whether client and server were guessed: a TCP connection picked up without its SYN or
    /// SYN-ACK (the side with the lower port is taken as the server), or a UDP flow whose first
    /// packet came from a port below 1024 to one above (taken as the server's reply).
    pub fn guessed(&self) -> bool {
        self.entry.guessed
    }

    /// The TCP state; `None` for other protocols.
    pub fn tcp_state(&self) -> Option<TcpState> {
        self.entry.state
    }

    /// When the TCP handshake, FINs and RST were seen.
    pub fn tcp_times(&self) -> TcpTimes {
        let t = |ns: u64| (ns != 0).then(|| Timestamp::from_nanos(ns));
        let [syn, syn_ack, established, fin_s, fin_c, rst] = self.cold.times;
        TcpTimes {
            syn: t(syn),
            syn_ack: t(syn_ack),
            established: t(established),
            fin_to_server: t(fin_s),
            fin_to_client: t(fin_c),
            rst: t(rst),
        }
    }

    /// The ICMP type and code of the flow's first packet; `None` for other protocols.
    pub fn icmp(&self) -> Option<(u8, u8)> {
        matches!(self.entry.canon.protocol, 1 | 58)
            .then_some((self.entry.icmp[0], self.entry.icmp[1]))
    }

    /// The first packet's time.
    pub fn first_seen(&self) -> Timestamp {
        self.cold.first
    }

    /// The latest packet's time.
    pub fn last_seen(&self) -> Timestamp {
        self.entry.last
    }

    /// What one direction carried so far.
    pub fn stats(&self, dir: Dir) -> DirStats {
        let c = &self.entry.stats[dir.index()];
        let (retransmissions, gaps) = self.cold.repair[dir.index()];
        DirStats {
            packets: c.packets,
            bytes: c.bytes,
            payload_bytes: c.payload_bytes,
            retransmissions,
            gaps,
        }
    }

    /// The flow's Community ID (v1, seed 0): the string Zeek, Suricata and Arkime log as
    /// `community_id`, so records join with theirs. Computed on demand (a SHA-1 of 40 bytes or so):
    /// call it once per record, not per packet.
    pub fn community_id(&self) -> CommunityId {
        flow_community_id(self.key(), self.icmp())
    }

    /// Asks for `dir`'s bytes in order (the module's `on_stream`), from the next
    /// segment on (from the first byte, when asked at flow start). TCP only; reassembly costs
    /// nothing for directions no module asked for.
    pub fn want_stream(&mut self, dir: Dir) {
        if self.entry.canon.protocol == 6 {
            self.entry.want[dir.index()] |= self.bit();
        }
    }

    /// Stops asking for `dir`'s bytes (e.g. TLS after the handshake). When no module wants them
    /// any more, the direction's buffers are released at once.
    pub fn stop_stream(&mut self, dir: Dir) {
        self.entry.want[dir.index()] &= !self.bit();
    }

    /// Stops this module's per-packet events for this flow (the module's `on_flow_packet`), e.g.
    /// for a protocol it has nothing to do with; its other events still come. When no module
    /// wants a flow's packets any more, a packet of it makes no per-packet call at all.
    pub fn stop_packets(&mut self) {
        self.entry.packets &= !self.bit();
    }

    /// Which flow-aware modules (one bit each, by position) still want this flow's packets.
    pub(crate) fn packet_modules(&self) -> u16 {
        self.entry.packets
    }

    /// Whether this module asked for `dir`'s bytes and has not stopped.
    pub fn wants_stream(&self, dir: Dir) -> bool {
        self.entry.want[dir.index()] & self.bit() != 0
    }

    /// The module's own 32-bit word for this flow, kept in the flow table beside the flow (no
    /// lookup, no allocation): for per-flow state that fits in it, such as the id of a verdict the
    /// module reached at the flow's start. Unlike [`PerFlow`] state it outlives the flow: the
    /// flow's interval counters carry it to [`DirInterval::tag`], after the flow ended too. 0
    /// until set. [`PerFlow`] keeps its index in the same word, so a module uses one or the other.
    pub fn tag(&self) -> u32 {
        self.slots[self.module]
    }

    /// Sets [`Flow::tag`].
    pub fn set_tag(&mut self, tag: u32) {
        self.slots[self.module] = tag;
    }

    fn bit(&self) -> u16 {
        1 << self.module
    }

    /// The module's own per-flow slot; [`PerFlow`] uses it.
    fn slot(&mut self) -> &mut u32 {
        &mut self.slots[self.module]
    }
}

/// One direction of a flow with packets since it was last handed over, as
/// `Module::on_flow_interval` is shown it.
/// Self-contained rather than a [`Flow`]: a flow that ended inside the interval is handed over at
/// the interval's end, after it left the table, its counters joined with those of any later
/// connection on the same 5-tuple (VPC Flow Logs count by 5-tuple and interval). What a joined
/// direction says of its flow (id, client, tag) is the latest connection's.
#[derive(Debug, Clone, Copy)]
pub struct DirInterval<'a> {
    pub(super) session: &'a Arc<Session>,
    pub(super) key: FlowKey,
    pub(super) dir: Dir,
    pub(super) counts: IntervalCounts,
    /// Whether this is the direction a flow is counted on ([`DirInterval::counts_flow`]).
    pub(super) counts_flow: bool,
    pub(super) id: u64,
    /// ICMP type and code of the flow's first packet (meaningful for ICMP flows only).
    pub(super) icmp: [u8; 2],
    /// Every flow-aware module's tag for the flow, by position.
    pub(super) tags: &'a [u32],
    /// The position among flow-aware modules of the module being shown it, if it is one.
    pub(super) module: Option<usize>,
    pub(super) why: IntervalClose,
    pub(super) now: Timestamp,
}

impl DirInterval<'_> {
    pub(crate) fn set_module(&mut self, module: Option<usize>) {
        self.module = module;
    }

    /// The mirror session.
    pub fn session(&self) -> &Arc<Session> {
        self.session
    }

    /// The 5-tuple as this direction sends it (`src` is the sender).
    pub fn key(&self) -> FlowKey {
        self.key
    }

    /// Which way this direction goes: to the flow's server (the side that did not open it) or
    /// back to its client.
    pub fn dir(&self) -> Dir {
        self.dir
    }

    /// The 5-tuple as the flow's client sends it, as [`Flow::key`] gives it.
    pub fn client_key(&self) -> FlowKey {
        match self.dir {
            Dir::ToServer => self.key,
            Dir::ToClient => self.key.reversed(),
        }
    }

    /// What the direction carried since it was last handed over.
    pub fn counts(&self) -> &IntervalCounts {
        &self.counts
    }

    /// True for exactly one of the directions of a flow handed over together (the one to the
    /// server, or the one to the client when no packet went to the server since the last hand-over):
    /// where a module counts flows rather than directions.
    pub fn counts_flow(&self) -> bool {
        self.counts_flow
    }

    /// The flow's id ([`Flow::id`]).
    pub fn flow_id(&self) -> u64 {
        self.id
    }

    /// The ICMP type and code of the flow's first packet ([`Flow::icmp`]).
    pub fn icmp(&self) -> Option<(u8, u8)> {
        matches!(self.key.protocol, 1 | 58).then_some((self.icmp[0], self.icmp[1]))
    }

    /// The flow's Community ID ([`Flow::community_id`]); computed on demand, a SHA-1.
    pub fn community_id(&self) -> CommunityId {
        flow_community_id(self.client_key(), self.icmp())
    }

    /// The module's [`Flow::tag`] for the flow, as the flow last had it; 0 for a module that is
    /// not flow-aware.
    pub fn tag(&self) -> u32 {
        self.module
            .and_then(|m| self.tags.get(m))
            .copied()
            .unwrap_or(0)
    }

    /// Why it is handed over now.
    pub fn why(&self) -> IntervalClose {
        self.why
    }

    /// The packet time of the hand-over: the packet or tick that ended the interval, or the
    /// packet whose flow took an evicted one's place.
    pub fn now(&self) -> Timestamp {
        self.now
    }
}

/// The Community ID of a flow whose client sends `key`, with the ICMP type and code of its first
/// packet for ICMP flows.
pub fn flow_community_id(key: FlowKey, icmp: Option<(u8, u8)>) -> CommunityId {
    let k = key;
    match icmp {
        Some((ty, code)) => {
            community_id_v1(0, k.protocol, k.src, k.dst, u16::from(ty), u16::from(code))
        }
        None if k.src_port == 0 && k.dst_port == 0 && matches!(k.protocol, 6 | 17 | 132) => {
            // A flow of later fragments, which carry no ports.
            community_id_v1_without_ports(0, k.protocol, k.src, k.dst)
        }
        None => community_id_v1(0, k.protocol, k.src, k.dst, k.src_port, k.dst_port),
    }
}

/// A module's state for each of its flows, found through the flow itself: no hash map, no
/// lookup, and no allocation once the module has seen as many concurrent flows as it will hold.
/// Take a flow's state out in `on_flow_end` ([`PerFlow::take`]), or its place is not reused.
#[derive(Debug)]
pub struct PerFlow<T> {
    items: Vec<Option<T>>,
    free: Vec<u32>,
}

impl<T> Default for PerFlow<T> {
    fn default() -> Self {
        PerFlow::new()
    }
}

impl<T> PerFlow<T> {
    /// Empty.
    pub fn new() -> Self {
        PerFlow {
            items: Vec::new(),
            free: Vec::new(),
        }
    }

    /// The flow's state, made by `make` the first time.
    pub fn get_or_insert_with(&mut self, flow: &mut Flow<'_>, make: impl FnOnce() -> T) -> &mut T {
        let slot = *flow.slot();
        if slot != 0 {
            if let Some(Some(_)) = self.items.get((slot - 1) as usize) {
                let item = &mut self.items[(slot - 1) as usize];
                return item.as_mut().expect("checked just above");
            }
        }
        let i = match self.free.pop() {
            Some(i) => {
                self.items[i as usize] = Some(make());
                i
            }
            None => {
                self.items.push(Some(make()));
                (self.items.len() - 1) as u32
            }
        };
        *flow.slot() = i + 1;
        self.items[i as usize]
            .as_mut()
            .expect("the state was put there above")
    }

    /// The flow's state, if the module made one.
    pub fn get(&mut self, flow: &mut Flow<'_>) -> Option<&mut T> {
        let slot = *flow.slot();
        if slot == 0 {
            return None;
        }
        self.items.get_mut((slot - 1) as usize)?.as_mut()
    }

    /// Takes the flow's state out (at its end): its place is reused.
    pub fn take(&mut self, flow: &mut Flow<'_>) -> Option<T> {
        let slot = std::mem::take(flow.slot());
        if slot == 0 {
            return None;
        }
        let item = self.items.get_mut((slot - 1) as usize)?.take();
        if item.is_some() {
            self.free.push(slot - 1);
        }
        item
    }

    /// Visits every flow's state, in no particular order: for work a module does for all its
    /// flows at once (an interval's close) rather than flow by flow.
    pub fn for_each_mut(&mut self, mut visit: impl FnMut(&mut T)) {
        self.items.iter_mut().flatten().for_each(&mut visit);
    }

    /// How many flows have state now.
    pub fn len(&self) -> usize {
        self.items.len() - self.free.len()
    }

    /// Whether no flow has state.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
