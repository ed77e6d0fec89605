//! Per-direction interval counters kept beside the flow table's entries, for modules that write one
//! record per direction per aggregation interval (flowlog, as VPC Flow Logs do) and would otherwise
//! keep a second table with a second lookup per packet.
//!
//! A flow's two directions share one cache line at the flow's own position, which `prepare` loads
//! with the entry; a packet adds to its direction and touches nothing else. At an interval's end every
//! direction that carried packets is handed over, least recently seen first, and starts again from
//! zero. VPC Flow Logs count by 5-tuple and interval, not by connection: a flow that ends inside an
//! interval leaves its counters here (parked) until the interval's end, where they are joined with
//! those of any later connection on the same 5-tuple. Parking is an append and a small map from the
//! table's own key hash, so the flows that end, most of them, cost no lookup by 5-tuple.

use std::sync::Arc;

use rustc_hash::FxHashMap;

use super::types::{Dir, IntervalCounts};
use crate::base::{FlowKey, Session, TcpHeader, Timestamp};

/// No parked flow.
pub(super) const NONE: u32 = u32::MAX;
/// In a hand-over's order, the bit that says a direction is a parked flow's, not a live one's.
pub(super) const PARKED: u32 = 1 << 31;

/// One flow's counters, both directions (indexed by [`Dir::index`]): one cache line.
#[derive(Debug, Clone, Copy, Default)]
#[repr(C, align(64))]
pub(super) struct Pair(pub(super) [IntervalCounts; 2]);

impl Pair {
    pub(super) fn is_empty(&self) -> bool {
        self.0[0].packets == 0 && self.0[1].packets == 0
    }
}

/// An ended flow's counters, waiting for its interval's end.
pub(super) struct Parked {
    pub(super) session: Arc<Session>,
    pub(super) canon: FlowKey,
    /// Whether the canonical first endpoint was the client: which of `counts` sends which way.
    pub(super) client_is_a: bool,
    pub(super) counts: [IntervalCounts; 2],
    /// The flow's id and its first packet's ICMP type and code, for what the hand-over says of it.
    pub(super) id: u64,
    pub(super) icmp: [u8; 2],
    /// The flow parked before it with the same key hash, or [`NONE`].
    pub(super) next: u32,
}

impl Parked {
    /// The 5-tuple as `dir` sends it.
    pub(super) fn key(&self, dir: Dir) -> FlowKey {
        dir_key(&self.canon, self.client_is_a, dir)
    }
}

/// Whether `dir` is the direction a flow with these counts is counted on
/// ([`super::DirInterval::counts_flow`]).
pub(super) fn counts_flow(counts: &[IntervalCounts; 2], dir: Dir) -> bool {
    dir == Dir::ToServer || counts[Dir::ToServer.index()].packets == 0
}

/// The 5-tuple as `dir` of a flow sends it.
pub(super) fn dir_key(canon: &FlowKey, client_is_a: bool, dir: Dir) -> FlowKey {
    if client_is_a == (dir == Dir::ToServer) {
        *canon
    } else {
        canon.reversed()
    }
}

/// The counters of a shard's flows, and the schedule of intervals on packet time.
pub(super) struct Intervals {
    interval_ns: u64,
    /// The end of the current interval (ns); 0 before the first packet.
    end: u64,
    /// Parallel to the table's entries.
    pub(super) pairs: Vec<Pair>,
    /// Flows that ended in the current interval.
    pub(super) parked: Vec<Parked>,
    /// The modules' tags of each parked flow, `tag_width` apiece, parallel to `parked`.
    pub(super) parked_tags: Vec<u32>,
    pub(super) tag_width: usize,
    /// The latest parked flow by the table's key hash (session and canonical 5-tuple).
    by_hash: FxHashMap<u64, u32>,
    /// A hand-over's directions by latest packet time: (time, live entry × 2 + direction, or
    /// [`PARKED`] | parked flow × 2 + direction). Reused.
    pub(super) order: Vec<(u64, u32)>,
}

impl Intervals {
    /// Counters for `capacity` flows, each with `tag_width` modules' tags.
    pub(super) fn new(interval_secs: u64, capacity: usize, tag_width: usize) -> Intervals {
        Intervals {
            interval_ns: interval_secs.max(1).saturating_mul(1_000_000_000),
            end: 0,
            pairs: Vec::with_capacity(capacity),
            parked: Vec::new(),
            parked_tags: Vec::new(),
            tag_width,
            by_hash: FxHashMap::default(),
            order: Vec::new(),
        }
    }

    /// Whether `now` is past the current interval (the first time seen only starts the schedule).
    #[inline]
    pub(super) fn due(&mut self, now: Timestamp) -> bool {
        if self.end == 0 {
            self.end = now.next_boundary(self.interval_ns).nanos();
            return false;
        }
        now.nanos() >= self.end
    }

    /// The next interval's end after `now`.
    pub(super) fn advance(&mut self, now: Timestamp) {
        self.end = now.next_boundary(self.interval_ns).nanos();
    }

    /// Adds one packet to a direction of the flow at `i`.
    #[inline]
    pub(super) fn count(&mut self, i: u32, dir: usize, ts: Timestamp, bytes: u64, flags: u8) {
        let c = &mut self.pairs[i as usize].0[dir];
        if c.packets == 0 {
            c.first = ts;
        }
        c.packets = c.packets.saturating_add(1);
        c.bytes += bytes;
        c.last = c.last.max(ts);
        c.tcp_flags |= flags;
        const SYN_ACK: u8 = TcpHeader::SYN | TcpHeader::ACK;
        c.syn_ack |= flags & SYN_ACK == SYN_ACK;
    }

    /// Keeps an ended flow's counters, and what the hand-over says of the flow, until the
    /// interval's end.
    pub(super) fn park(&mut self, hash: u64, flow: Parked, tags: &[u32]) {
        let at = self.parked.len() as u32;
        let next = self.by_hash.insert(hash, at).unwrap_or(NONE);
        self.parked.push(Parked { next, ..flow });
        self.parked_tags.extend_from_slice(&tags[..self.tag_width]);
    }

    /// Parked flow `k`'s tags.
    pub(super) fn parked_tags(&self, k: usize) -> &[u32] {
        &self.parked_tags[k * self.tag_width..(k + 1) * self.tag_width]
    }

    /// Joins into `pair` (a flow with this hash, session and canonical 5-tuple, oriented by
    /// `client_is_a`) what the flows that ended before it on the same 5-tuple in this interval
    /// left, and empties theirs. What the joined direction says of its flow (id, client, the
    /// modules' tags) stays the later flow's.
    pub(super) fn join_parked(
        &mut self,
        hash: u64,
        session: u32,
        canon: &FlowKey,
        client_is_a: bool,
        pair: &mut Pair,
    ) {
        if self.by_hash.is_empty() {
            return;
        }
        let mut at = self.by_hash.get(&hash).copied().unwrap_or(NONE);
        while at != NONE {
            let p = &mut self.parked[at as usize];
            if p.session.id == session && p.canon == *canon {
                // The same direction of the 5-tuple, whichever side opened each connection.
                let swap = p.client_is_a != client_is_a;
                for (d, c) in pair.0.iter_mut().enumerate() {
                    let from = &mut p.counts[if swap { 1 - d } else { d }];
                    c.join(from);
                    *from = IntervalCounts::default();
                }
            }
            at = p.next;
        }
    }

    /// Joins into parked flow `k` what the flows parked before it on the same 5-tuple left (a
    /// hand-over visits parked flows newest first, so each 5-tuple's counters end up in its newest).
    pub(super) fn join_older(&mut self, k: usize) {
        let mut at = self.parked[k].next;
        while at != NONE {
            let (older, newer) = self.parked.split_at_mut(k);
            let (p, q) = (&mut older[at as usize], &mut newer[0]);
            if p.session.id == q.session.id && p.canon == q.canon {
                let swap = p.client_is_a != q.client_is_a;
                for (d, c) in q.counts.iter_mut().enumerate() {
                    let from = &mut p.counts[if swap { 1 - d } else { d }];
                    c.join(from);
                    *from = IntervalCounts::default();
                }
            }
            at = p.next;
        }
    }

    /// Forgets the parked flows, once handed over.
    pub(super) fn clear_parked(&mut self) {
        self.parked.clear();
        self.parked_tags.clear();
        self.by_hash.clear();
    }
}

impl IntervalCounts {
    /// Adds another span of the same direction.
    pub(super) fn join(&mut self, other: &IntervalCounts) {
        if other.packets == 0 {
            return;
        }
        if self.packets == 0 {
            *self = *other;
            return;
        }
        self.packets = self.packets.saturating_add(other.packets);
        self.bytes += other.bytes;
        self.first = self.first.min(other.first);
        self.last = self.last.max(other.last);
        self.tcp_flags |= other.tcp_flags;
        self.syn_ack |= other.syn_ack;
    }
}
