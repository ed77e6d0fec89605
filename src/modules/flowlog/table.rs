//! The per-shard flow table: one entry per direction of a flow per session, bounded, allocated once.
//!
//! Entries live in a slab (`Vec` reserved to the cap at start, reused through a free list), found
//! through an index of slab positions ([`Index`]), so steady state allocates nothing and a lookup
//! touches one cache line of the index and one line of the slab, nothing else.
//!
//! An entry is one aligned 64-byte line. The key is kept compact: an IPv4 direction's addresses fit
//! in one word, and an IPv6 direction's 32 bytes of addresses go to a second slab of their own, read
//! only when the compact part already matched; so the common entry is key and counters in a line,
//! where a `FlowKey` of two `IpAddr` (17 bytes each) made it 88 bytes and a packet touch two lines.
//!
//! A packet only updates its own entry. Idle expiry does not keep entries in last-seen order, which
//! would cost every packet a relink of two neighbouring entries (two more cache misses on a large
//! table: the previous design spent half the shard's time there). Instead each entry sits in a timing
//! wheel of one-second slots under the second in which it would expire if no packet came; when that
//! second is checked, an entry that did see packets is moved to its new second. So an entry costs the
//! wheel once per idle timeout, not once per packet, and expiry is still exact: [`FlowTable::expire`]
//! takes out precisely the entries last seen before the cutoff. What is taken out is handed over
//! least recently seen first, by last-seen packet time: an order that depends on the traffic only,
//! not on the table, so that a replay's merge can stream the records of every shard (see
//! `FlowLog::emit_entry`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::format::Direction;
use crate::base::{FlowKey, Timestamp};
use crate::flow::index::{advise_huge_pages, prefetch, Index};
use crate::wire::inner::IpLayer;

const NIL: u32 = u32::MAX;
const NANOS: u64 = 1_000_000_000;
/// Table size (bytes of entries) above which `prepare` prefetches: about a core's L2 cache.
const PREFETCH_ABOVE_BYTES: usize = 1 << 20;

/// What one entry is handed over as: the session and the 5-tuple as sent (one direction).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct DirKey {
    pub(crate) session: u32,
    pub(crate) flow: FlowKey,
}

/// A packet's key in the table's own form (see [`Key::new`]), built once per packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Key {
    /// IPv4: source in the high half, destination in the low; IPv6: a fold of each.
    addrs: u64,
    /// Source port, destination port, session.
    ports_session: u64,
    protocol: u8,
    /// Bit 0: the source is IPv6, bit 1: the destination (the full addresses are then in `wide`).
    family: u8,
    wide: [u128; 2],
}

impl Key {
    /// The key of a packet of `session` with IP layer `ip` and transport ports `ports` (0, 0 for
    /// protocols without ports and later fragments).
    #[inline]
    pub(crate) fn new(session: u32, ip: &IpLayer, ports: (u16, u16)) -> Key {
        Key::of(session, ip.src, ip.dst, ip.protocol, ports)
    }

    #[inline]
    fn of(
        session: u32,
        src: IpAddr,
        dst: IpAddr,
        protocol: u8,
        (src_port, dst_port): (u16, u16),
    ) -> Key {
        let ports_session =
            u64::from(src_port) << 48 | u64::from(dst_port) << 32 | u64::from(session);
        match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => Key {
                addrs: u64::from(s.to_bits()) << 32 | u64::from(d.to_bits()),
                ports_session,
                protocol,
                family: 0,
                wide: [0; 2],
            },
            // Both from one IP header, so never mixed in practice; kept exact if they ever are.
            (s, d) => {
                let wide = |a: IpAddr| match a {
                    IpAddr::V4(a) => u128::from(a.to_bits()),
                    IpAddr::V6(a) => a.to_bits(),
                };
                let fold = |w: u128| {
                    let x = (w >> 64) as u64 ^ (w as u64).rotate_left(29);
                    (x ^ x >> 32) as u32
                };
                let (s, d, family) = (
                    wide(s),
                    wide(d),
                    u8::from(s.is_ipv6()) | u8::from(d.is_ipv6()) << 1,
                );
                Key {
                    addrs: u64::from(fold(s)) << 32 | u64::from(fold(d)),
                    ports_session,
                    protocol,
                    family,
                    wide: [s, d],
                }
            }
        }
    }

    /// The hash the index finds the key by: each part multiplied by its own odd constant and the
    /// sum through MurmurHash3's `fmix64`, whose every output bit depends on every input bit (see
    /// `flow::index::key_hash` for what a weaker finish cost on ENI-like traffic).
    #[inline]
    pub(crate) fn hash(&self) -> u64 {
        let mut h = self.addrs.wrapping_mul(0x9e37_79b9_7f4a_7c15)
            ^ self.ports_session.wrapping_mul(0xc2b2_ae3d_27d4_eb4f)
            ^ (u64::from(self.protocol) << 8 | u64::from(self.family))
                .wrapping_mul(0x1656_67b1_9e37_79f9);
        if self.family != 0 {
            let fold = |w: u128| (w >> 64) as u64 ^ (w as u64).rotate_left(29);
            h ^= fold(self.wide[0]).wrapping_mul(0x27d4_eb2f_1656_67c5)
                ^ fold(self.wide[1]).wrapping_mul(0xd6e8_feb8_6659_fd93);
        }
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }

    /// The session and 5-tuple the key was made from.
    fn dir_key(&self) -> DirKey {
        let addr = |v6: bool, wide: u128, narrow: u32| {
            if v6 {
                IpAddr::V6(Ipv6Addr::from_bits(wide))
            } else if self.family == 0 {
                IpAddr::V4(Ipv4Addr::from_bits(narrow))
            } else {
                IpAddr::V4(Ipv4Addr::from_bits(wide as u32))
            }
        };
        DirKey {
            session: self.ports_session as u32,
            flow: FlowKey {
                src: addr(
                    self.family & 1 != 0,
                    self.wide[0],
                    (self.addrs >> 32) as u32,
                ),
                dst: addr(self.family & 2 != 0, self.wide[1], self.addrs as u32),
                src_port: (self.ports_session >> 48) as u16,
                dst_port: (self.ports_session >> 32) as u16,
                protocol: self.protocol,
            },
        }
    }
}

/// One direction of one flow as handed over: its key and what it counted over the interval.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Entry {
    pub(crate) key: DirKey,
    pub(crate) packets: u64,
    pub(crate) bytes: u64,
    pub(crate) first: Timestamp,
    pub(crate) last: Timestamp,
    pub(crate) tcp_flags: u8,
    pub(crate) direction: Direction,
}

/// One direction of one flow in the slab: one cache line, everything a packet reads or writes.
#[derive(Debug, Clone, Copy)]
#[repr(C, align(64))]
struct Slot {
    addrs: u64,
    ports_session: u64,
    packets: u64,
    bytes: u64,
    first: Timestamp,
    last: Timestamp,
    /// The next entry in the same wheel slot.
    next: u32,
    /// Where the full addresses are in `FlowTable::wide` when `family` is not 0.
    wide: u32,
    /// The top half of the key's hash, all the index needs to remove the entry (no rehashing).
    tag: u32,
    protocol: u8,
    family: u8,
    tcp_flags: u8,
    direction: Direction,
}

const _: () = assert!(std::mem::size_of::<Slot>() == 64);

/// The table is at its cap: the packet's flow cannot be added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Full;

pub(crate) struct FlowTable {
    index: Index,
    slots: Vec<Slot>,
    free: Vec<u32>,
    /// The full addresses of entries with an IPv6 address, by `Slot::wide`; reserved to the cap
    /// but only touched as IPv6 directions come (pages never written take no memory).
    wide: Vec<[u128; 2]>,
    wide_free: Vec<u32>,
    /// Heads of the wheel's per-second lists; an entry is in the slot of `due(entry) % wheel.len()`.
    wheel: Vec<u32>,
    /// Every second up to this one has been checked by `expire`.
    checked_through: u64,
    idle_ns: u64,
    /// Entries taken out by `expire` or `take_all` with their last-seen time (ns), least recently
    /// seen first, and how many of them `next_out` has handed over.
    out: Vec<(u64, u32)>,
    out_pos: usize,
    /// `take_all` took everything out: `next_out` hands entries over without removing them one by
    /// one, and empties the slab after the last.
    taking_all: bool,
    max: usize,
}

impl FlowTable {
    /// A table for at most `max` entries that expire after `idle_ns` without a packet, with all its
    /// memory reserved now.
    pub(crate) fn new(max: usize, idle_ns: u64) -> Self {
        // Every entry's expiry second lies within `idle + 1` seconds of the last checked second, so
        // this many slots never put two different seconds' entries in one slot.
        let slots = (idle_ns.div_ceil(NANOS) + 2) as usize;
        let entries: Vec<Slot> = Vec::with_capacity(max);
        advise_huge_pages(entries.as_ptr().cast(), max * std::mem::size_of::<Slot>());
        FlowTable {
            index: Index::new(max),
            slots: entries,
            free: Vec::with_capacity(max),
            wide: Vec::with_capacity(max),
            wide_free: Vec::with_capacity(max),
            wheel: vec![NIL; slots],
            checked_through: 0,
            idle_ns,
            out: Vec::with_capacity(max),
            out_pos: 0,
            taking_all: false,
            max,
        }
    }

    /// Entries in the table.
    pub(crate) fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// What `prepare`'s prefetching can pay for: the index cells when the index (sized for the cap,
    /// however few entries are in use) is larger than a core's share of the caches, the entries
    /// when those in use are. Below both, everything is in cache and a second hash per packet is
    /// waste. (The drain benchmark's 10 k entries per shard are under 1 MB of entries but 8 MB of
    /// index at `max_flows = 400000`: its cell loads were 80 % of flowlog's time until this looked
    /// at both.)
    pub(crate) fn worth_prefetching(&self) -> (bool, bool) {
        (
            std::mem::size_of_val(&*self.index.cells) > PREFETCH_ABOVE_BYTES,
            self.len() * std::mem::size_of::<Slot>() > PREFETCH_ABOVE_BYTES,
        )
    }

    /// Starts loading the index cells a lookup of `hash` reads first.
    #[inline]
    pub(crate) fn prefetch_index(&self, hash: u64) {
        prefetch(&self.index.cells[self.index.home(Index::cell(hash, 0))]);
    }

    /// Starts loading the entry a lookup of `hash` will most likely find, if its index cells are
    /// already at hand (after `prefetch_index`, some packets later). Only the hash bits are
    /// compared, so another key may be loaded: a wasted load, nothing worse.
    #[inline]
    pub(crate) fn prefetch_entry(&self, hash: u64) {
        if let Some(i) = self.index.find(hash, |_| true) {
            prefetch(self.slots.as_ptr_range().start.wrapping_add(i as usize));
        }
    }

    fn matches(&self, s: &Slot, k: &Key) -> bool {
        s.addrs == k.addrs
            && s.ports_session == k.ports_session
            && s.protocol == k.protocol
            && s.family == k.family
            && (k.family == 0 || self.wide[s.wide as usize] == k.wide)
    }

    /// Counts one packet of `key`, whose [`Key::hash`] is `hash`; `direction` is used only when the
    /// entry is new.
    #[inline]
    pub(crate) fn update(
        &mut self,
        key: &Key,
        hash: u64,
        ts: Timestamp,
        bytes: u64,
        tcp_flags: u8,
        direction: impl FnOnce() -> Direction,
    ) -> Result<(), Full> {
        debug_assert!(
            self.out_pos >= self.out.len(),
            "entries taken out but not handed over"
        );
        debug_assert_eq!(hash, key.hash());
        if let Some(i) = self
            .index
            .find(hash, |i| self.matches(&self.slots[i as usize], key))
        {
            let e = &mut self.slots[i as usize];
            e.packets += 1;
            e.bytes += bytes;
            e.tcp_flags |= tcp_flags;
            e.first = e.first.min(ts);
            e.last = e.last.max(ts);
            return Ok(());
        }
        if self.len() >= self.max {
            return Err(Full);
        }
        let wide = if key.family == 0 {
            NIL
        } else {
            match self.wide_free.pop() {
                Some(w) => {
                    self.wide[w as usize] = key.wide;
                    w
                }
                None => {
                    self.wide.push(key.wide);
                    (self.wide.len() - 1) as u32
                }
            }
        };
        let entry = Slot {
            addrs: key.addrs,
            ports_session: key.ports_session,
            packets: 1,
            bytes,
            first: ts,
            last: ts,
            next: NIL,
            wide,
            tag: (hash >> 32) as u32,
            protocol: key.protocol,
            family: key.family,
            tcp_flags,
            direction: direction(),
        };
        let i = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = entry;
                i
            }
            None => {
                self.slots.push(entry);
                (self.slots.len() - 1) as u32
            }
        };
        self.index.insert(hash, i);
        self.schedule(i);
        Ok(())
    }

    /// The second in which entry `i` expires if it sees no further packet: its last packet plus the
    /// idle timeout, rounded down. Never one that was already checked, so nothing is missed.
    fn due(&self, i: u32) -> u64 {
        let last = self.slots[i as usize].last.nanos();
        (last.saturating_add(self.idle_ns) / NANOS).max(self.checked_through + 1)
    }

    fn schedule(&mut self, i: u32) {
        let w = (self.due(i) % self.wheel.len() as u64) as usize;
        self.slots[i as usize].next = self.wheel[w];
        self.wheel[w] = i;
    }

    /// Entry `i` as it is handed over.
    fn entry(&self, i: u32) -> Entry {
        let s = &self.slots[i as usize];
        let key = Key {
            addrs: s.addrs,
            ports_session: s.ports_session,
            protocol: s.protocol,
            family: s.family,
            wide: if s.family == 0 {
                [0; 2]
            } else {
                self.wide[s.wide as usize]
            },
        };
        Entry {
            key: key.dir_key(),
            packets: s.packets,
            bytes: s.bytes,
            first: s.first,
            last: s.last,
            tcp_flags: s.tcp_flags,
            direction: s.direction,
        }
    }

    /// Takes entry `i` out of the index and the slab, as what it hands over.
    fn remove(&mut self, i: u32) -> Entry {
        let e = self.entry(i);
        let s = &mut self.slots[i as usize];
        // Marks the slot free for `take_all`'s scan.
        s.packets = 0;
        if s.family != 0 {
            self.wide_free.push(s.wide);
        }
        self.index.remove(u64::from(s.tag) << 32, i);
        self.free.push(i);
        e
    }

    /// Takes out the entry that would expire first (the least recently seen, to within the wheel's
    /// second), to make room when the table is full: its record goes out early, complete, rather
    /// than a new flow's packets going uncounted. AWS's aggregation interval is a maximum, and a
    /// flow's packets in one interval may be split over several records, so this loses nothing.
    /// Entries met on the way that saw packets since they were scheduled move to their real second.
    pub(crate) fn evict_oldest(&mut self) -> Option<Entry> {
        let len = self.wheel.len() as u64;
        // Every entry is visited at most once per slot it moves through; this bounds the walk even
        // if packet times ran far ahead of the last tick.
        let mut budget = self.len() + self.wheel.len();
        for second in self.checked_through + 1..=self.checked_through + len {
            let w = (second % len) as usize;
            loop {
                let i = self.wheel[w];
                if i == NIL || budget == 0 {
                    break;
                }
                budget -= 1;
                self.wheel[w] = self.slots[i as usize].next;
                if self.due(i) > second {
                    self.schedule(i);
                    continue;
                }
                return Some(self.remove(i));
            }
        }
        None
    }

    /// Takes out every entry last seen before `now - idle` (hand them over with [`Self::next_out`]).
    pub(crate) fn expire(&mut self, now: Timestamp) {
        let cutoff = now.nanos().saturating_sub(self.idle_ns);
        let now_secs = now.secs();
        if now_secs < self.checked_through + 1 {
            return;
        }
        // Seconds from the first unchecked one to the current one (checked again next time, since
        // more of its entries may fall due within it). After a jump in time, each slot once.
        let first = self.checked_through + 1;
        let count = (now_secs - first + 1).min(self.wheel.len() as u64);
        // From here on, entries that saw packets are rescheduled no earlier than this second.
        self.checked_through = now_secs - 1;
        self.out.clear();
        self.out_pos = 0;
        for second in first..first + count {
            let w = (second % self.wheel.len() as u64) as usize;
            let mut i = std::mem::replace(&mut self.wheel[w], NIL);
            while i != NIL {
                let e = &self.slots[i as usize];
                let next = e.next;
                if e.last.nanos() < cutoff {
                    self.out.push((e.last.nanos(), i));
                } else {
                    // Saw packets since it was scheduled: due later (or again in this second).
                    self.schedule(i);
                }
                i = next;
            }
        }
        self.sort_out();
    }

    /// Takes out every entry (hand them over with [`Self::next_out`]).
    ///
    /// Everything goes, so this reads the slab front to back (a stream the CPU loads ahead) rather
    /// than following the wheel's lists across it, and forgets the index at once rather than
    /// entry by entry: at an interval's close with 300 k entries, those random accesses were most
    /// of the close's time. The table starts the next interval from the front of the slab.
    pub(crate) fn take_all(&mut self) {
        self.out.clear();
        self.out_pos = 0;
        self.wheel.fill(NIL);
        for (i, e) in self.slots.iter().enumerate() {
            // A free slot has no packets (see `remove`).
            if e.packets != 0 {
                self.out.push((e.last.nanos(), i as u32));
            }
        }
        self.index.clear();
        self.taking_all = true;
        self.sort_out();
        if self.out.is_empty() {
            self.emptied();
        }
    }

    /// After `take_all`'s last entry is handed over.
    fn emptied(&mut self) {
        self.taking_all = false;
        self.slots.clear();
        self.free.clear();
        self.wide.clear();
        self.wide_free.clear();
    }

    fn sort_out(&mut self) {
        // Least recently seen first. Entries seen last at the same nanosecond come in slab order,
        // which depends on the shard: the replay's merge orders those few by their bytes.
        self.out.sort_unstable_by_key(|&(last, _)| last);
    }

    /// The next entry taken out by `expire` or `take_all`, removed from the table.
    pub(crate) fn next_out(&mut self) -> Option<Entry> {
        let &(_, i) = self.out.get(self.out_pos)?;
        // Taken-out entries are spread over the slab: load a few ahead, and the index cells of
        // those whose entries are at hand by now, so that handing them over does not wait on each.
        if let Some(&(_, ahead)) = self.out.get(self.out_pos + 8) {
            prefetch(self.slots.as_ptr_range().start.wrapping_add(ahead as usize));
        }
        if let Some(&(_, near)) = self.out.get(self.out_pos + 4).filter(|_| !self.taking_all) {
            self.prefetch_index(u64::from(self.slots[near as usize].tag) << 32);
        }
        self.out_pos += 1;
        if !self.taking_all {
            return Some(self.remove(i));
        }
        let e = self.entry(i);
        if self.out_pos == self.out.len() {
            self.emptied();
        }
        Some(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(port: u16) -> DirKey {
        DirKey {
            session: 1,
            flow: FlowKey {
                src: "10.0.0.1".parse().unwrap(),
                dst: "10.0.0.2".parse().unwrap(),
                src_port: port,
                dst_port: 80,
                protocol: 6,
            },
        }
    }

    impl FlowTable {
        /// `update` with the key as handed over.
        fn count(
            &mut self,
            k: DirKey,
            ts: Timestamp,
            bytes: u64,
            flags: u8,
            direction: impl FnOnce() -> Direction,
        ) -> Result<(), Full> {
            let f = k.flow;
            let key = Key::of(
                k.session,
                f.src,
                f.dst,
                f.protocol,
                (f.src_port, f.dst_port),
            );
            self.update(&key, key.hash(), ts, bytes, flags, direction)
        }
    }

    fn drain(t: &mut FlowTable) -> Vec<Entry> {
        std::iter::from_fn(|| t.next_out()).collect()
    }

    #[test]
    fn counts_caps_and_expires_least_recently_seen_first() {
        let mut t = FlowTable::new(2, NANOS);
        let ts = Timestamp::from_secs;
        let d = || Direction::Unknown;
        t.count(key(1), ts(10), 100, 2, d).unwrap();
        t.count(key(2), ts(11), 50, 0, d).unwrap();
        assert_eq!(t.count(key(3), ts(12), 40, 0, d), Err(Full));
        t.count(key(1), ts(13), 100, 16 | 1, d).unwrap();
        // key(2) was seen last at 11, key(1) at 13; idle after 1 s.
        t.expire(ts(12));
        assert!(drain(&mut t).is_empty(), "11 is not before 12 - 1");
        t.expire(Timestamp::from_nanos(12_000_000_001));
        let out = drain(&mut t);
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].key, out[0].packets, out[0].bytes), (key(2), 1, 50));
        t.count(key(3), ts(14), 40, 0, d).unwrap();
        t.take_all();
        let out = drain(&mut t);
        assert_eq!(
            (
                out[0].key,
                out[0].packets,
                out[0].bytes,
                out[0].tcp_flags,
                out[0].first,
                out[0].last
            ),
            (key(1), 2, 200, 19, ts(10), ts(13))
        );
        assert_eq!(out[1].key, key(3));
        assert_eq!(out.len(), 2);
        assert_eq!(t.len(), 0);
        assert_eq!(t.slots.capacity(), 2, "never grew past the reservation");
    }

    /// The wheel against the obvious definition: after every tick, exactly the entries last seen
    /// more than `idle` before it are gone, in last-seen order; with time jumps, ties and packets
    /// older than the newest.
    #[test]
    fn expiry_matches_a_scan_of_every_entry() {
        let idle = 3 * NANOS;
        let mut t = FlowTable::new(64, idle);
        let mut model: Vec<(DirKey, u64)> = Vec::new(); // key, last
        let mut next = crate::base::xorshift(0x2545_f491_4f6c_dd1d);
        let mut now = 1_000 * NANOS;
        for step in 0..20_000 {
            now += match next() % 100 {
                0 => 40 * NANOS,
                1..=10 => 0,
                r => r * NANOS / 50,
            };
            let ts = now - next() % (NANOS / 2);
            let k = key((next() % 40) as u16);
            if t.count(k, Timestamp::from_nanos(ts), 1, 0, || Direction::Unknown)
                .is_ok()
            {
                match model.iter_mut().find(|m| m.0 == k) {
                    Some(m) => m.1 = m.1.max(ts),
                    None => model.push((k, ts)),
                }
            }
            if step % 7 == 0 {
                t.expire(Timestamp::from_nanos(now));
                let mut got: Vec<(u64, u16)> = drain(&mut t)
                    .iter()
                    .map(|e| (e.last.nanos(), e.key.flow.src_port))
                    .collect();
                assert!(
                    got.is_sorted_by_key(|g| g.0),
                    "step {step}: last seen first"
                );
                let cutoff = now - idle;
                let mut want: Vec<(u64, u16)> = model
                    .iter()
                    .filter(|m| m.1 < cutoff)
                    .map(|m| (m.1, m.0.flow.src_port))
                    .collect();
                model.retain(|m| m.1 >= cutoff);
                // Entries seen last at the same time may come in any order.
                got.sort_unstable();
                want.sort_unstable();
                assert_eq!(got, want, "step {step}");
            }
        }
        t.take_all();
        assert_eq!(drain(&mut t).len(), model.len());
    }

    /// IPv6 and (never from one header, but representable) mixed keys keep their addresses apart
    /// from the line, and come back exactly; keys whose compact folds agree are still told apart.
    #[test]
    fn wide_keys_round_trip_and_stay_distinct() {
        let v6 = |hi: u64, lo: u64| {
            IpAddr::V6(Ipv6Addr::from_bits(u128::from(hi) << 64 | u128::from(lo)))
        };
        let a = v6(0x2001_0db8_0000_0001, 0);
        // The same fold as `a`: the low word rotated by 29 cancels the change to the high word.
        let b = v6(0x2001_0db8_0000_0000, 1u64.rotate_right(29));
        let c: IpAddr = "2001:db8::2".parse().unwrap();
        let v4: IpAddr = "10.0.0.1".parse().unwrap();
        let mk = |src, dst, port| DirKey {
            session: 7,
            flow: FlowKey {
                src,
                dst,
                src_port: port,
                dst_port: 443,
                protocol: 6,
            },
        };
        let keys = [
            mk(a, c, 1),
            mk(b, c, 1),
            mk(c, a, 1),
            mk(v4, c, 1),
            mk(c, v4, 1),
            mk(v4, v4, 1),
            mk(
                IpAddr::V6(Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped()),
                c,
                1,
            ),
        ];
        let fold = |k: &DirKey| {
            let f = k.flow;
            Key::of(
                k.session,
                f.src,
                f.dst,
                f.protocol,
                (f.src_port, f.dst_port),
            )
            .addrs
        };
        assert_eq!(fold(&keys[0]), fold(&keys[1]), "the test needs equal folds");
        let mut t = FlowTable::new(16, NANOS);
        t.take_all();
        assert!(drain(&mut t).is_empty(), "an empty table takes nothing out");
        for round in 0..3u64 {
            for (n, k) in keys.iter().enumerate() {
                for _ in 0..=n {
                    t.count(*k, Timestamp::from_secs(10 + round), 1, 0, || {
                        Direction::Unknown
                    })
                    .unwrap();
                }
            }
            assert_eq!(t.len(), keys.len());
            t.take_all();
            let mut out = drain(&mut t);
            out.sort_by_key(|e| e.packets);
            let got: Vec<(DirKey, u64)> = out.iter().map(|e| (e.key, e.packets)).collect();
            let want: Vec<(DirKey, u64)> = keys
                .iter()
                .enumerate()
                .map(|(n, k)| (*k, n as u64 + 1))
                .collect();
            assert_eq!(got, want, "round {round}");
        }
        assert!(
            t.wide.len() <= 6,
            "freed address slots are reused: {}",
            t.wide.len()
        );
    }
}
