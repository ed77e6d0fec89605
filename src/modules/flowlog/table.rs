//! The per-shard flow table: one entry per direction of a flow per session, bounded, allocated once.
//!
//! Entries live in a slab (`Vec` reserved to the cap at start, reused through a free list), found
//! through an index of slab positions ([`Index`]), so steady state allocates nothing and a lookup
//! touches one cache line of the index and the entry itself, nothing else.
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

use super::format::Direction;
use crate::base::{FlowKey, Timestamp};
use crate::flow::index::{advise_huge_pages, key_hash, prefetch, Index};

const NIL: u32 = u32::MAX;
const NANOS: u64 = 1_000_000_000;
/// Table size (bytes of entries) above which `prepare` prefetches: about a core's L2 cache.
const PREFETCH_ABOVE_BYTES: usize = 1 << 20;

/// What one table entry is keyed by: the session and the 5-tuple as sent (one direction).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct DirKey {
    pub(crate) session: u32,
    pub(crate) flow: FlowKey,
}

/// One direction of one flow, counted over the current interval.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Entry {
    pub(crate) key: DirKey,
    pub(crate) packets: u64,
    pub(crate) bytes: u64,
    pub(crate) first: Timestamp,
    pub(crate) last: Timestamp,
    pub(crate) tcp_flags: u8,
    pub(crate) direction: Direction,
    /// The next entry in the same wheel slot.
    next: u32,
}

/// The table is at its cap: the packet's flow cannot be added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Full;

pub(crate) struct FlowTable {
    index: Index,
    slots: Vec<Entry>,
    free: Vec<u32>,
    /// Heads of the wheel's per-second lists; an entry is in the slot of `due(entry) % wheel.len()`.
    wheel: Vec<u32>,
    /// Every second up to this one has been checked by `expire`.
    checked_through: u64,
    idle_ns: u64,
    /// Entries taken out by `expire` or `take_all` with their last-seen time (ns), least recently
    /// seen first, and how many of them `next_out` has handed over.
    out: Vec<(u64, u32)>,
    out_pos: usize,
    max: usize,
}

impl FlowTable {
    /// A table for at most `max` entries that expire after `idle_ns` without a packet, with all its
    /// memory reserved now.
    pub(crate) fn new(max: usize, idle_ns: u64) -> Self {
        // Every entry's expiry second lies within `idle + 1` seconds of the last checked second, so
        // this many slots never put two different seconds' entries in one slot.
        let slots = (idle_ns.div_ceil(NANOS) + 2) as usize;
        let entries: Vec<Entry> = Vec::with_capacity(max);
        advise_huge_pages(entries.as_ptr().cast(), max * std::mem::size_of::<Entry>());
        FlowTable {
            index: Index::new(max),
            slots: entries,
            free: Vec::with_capacity(max),
            wheel: vec![NIL; slots],
            checked_through: 0,
            idle_ns,
            out: Vec::with_capacity(max),
            out_pos: 0,
            max,
        }
    }

    /// Entries in the table.
    pub(crate) fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// The hash `update` and the prefetches use for `key` (see [`key_hash`]).
    pub(crate) fn hash(&self, key: &DirKey) -> u64 {
        key_hash(key.session, &key.flow)
    }

    /// What `prepare`'s prefetching can pay for: the index cells when the index (sized for the cap,
    /// however few entries are in use) is larger than a core's share of the caches, the entries
    /// when those in use are. Below both, everything is in cache and a second hash per packet is
    /// waste. (The drain benchmark's 10 k entries per shard are 1 MB of entries but 8 MB of index
    /// at `max_flows = 400000`: its cell loads were 80 % of flowlog's time until this looked at both.)
    pub(crate) fn worth_prefetching(&self) -> (bool, bool) {
        (
            std::mem::size_of_val(&*self.index.cells) > PREFETCH_ABOVE_BYTES,
            self.len() * std::mem::size_of::<Entry>() > PREFETCH_ABOVE_BYTES,
        )
    }

    /// Starts loading the index cells a lookup of `hash` reads first.
    pub(crate) fn prefetch_index(&self, hash: u64) {
        prefetch(&self.index.cells[self.index.home(Index::cell(hash, 0))]);
    }

    /// Starts loading the entry a lookup of `hash` will most likely find, if its index cells are
    /// already at hand (after `prefetch_index`, some packets later). Only the hash bits are
    /// compared, so another key may be loaded: a wasted load, nothing worse.
    pub(crate) fn prefetch_entry(&self, hash: u64) {
        if let Some(i) = self.index.find(hash, |_| true) {
            let e = self.slots.as_ptr_range().start.wrapping_add(i as usize);
            // An entry may straddle two cache lines.
            prefetch(e.cast::<u8>());
            prefetch(
                e.cast::<u8>()
                    .wrapping_add(std::mem::size_of::<Entry>() - 1),
            );
        }
    }

    /// Counts one packet; `direction` is used only when the entry is new.
    pub(crate) fn update(
        &mut self,
        key: DirKey,
        ts: Timestamp,
        bytes: u64,
        tcp_flags: u8,
        direction: impl FnOnce() -> Direction,
    ) -> Result<(), Full> {
        debug_assert!(
            self.out_pos >= self.out.len(),
            "entries taken out but not handed over"
        );
        let hash = self.hash(&key);
        let slots = &self.slots;
        if let Some(i) = self.index.find(hash, |i| slots[i as usize].key == key) {
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
        let entry = Entry {
            key,
            packets: 1,
            bytes,
            first: ts,
            last: ts,
            tcp_flags,
            direction: direction(),
            next: NIL,
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
                let e = self.slots[i as usize];
                self.index.remove(self.hash(&e.key), i);
                self.free.push(i);
                return Some(e);
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
    pub(crate) fn take_all(&mut self) {
        self.out.clear();
        self.out_pos = 0;
        for w in 0..self.wheel.len() {
            let mut i = std::mem::replace(&mut self.wheel[w], NIL);
            while i != NIL {
                let e = &self.slots[i as usize];
                self.out.push((e.last.nanos(), i));
                i = e.next;
            }
        }
        self.sort_out();
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
            let e = self.slots.as_ptr_range().start.wrapping_add(ahead as usize);
            prefetch(e.cast::<u8>());
            prefetch(
                e.cast::<u8>()
                    .wrapping_add(std::mem::size_of::<Entry>() - 1),
            );
        }
        if let Some(&(_, near)) = self.out.get(self.out_pos + 4) {
            self.prefetch_index(self.hash(&self.slots[near as usize].key));
        }
        self.out_pos += 1;
        let e = self.slots[i as usize];
        self.index.remove(self.hash(&e.key), i);
        self.free.push(i);
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

    fn drain(t: &mut FlowTable) -> Vec<Entry> {
        std::iter::from_fn(|| t.next_out()).collect()
    }

    #[test]
    fn counts_caps_and_expires_least_recently_seen_first() {
        let mut t = FlowTable::new(2, NANOS);
        let ts = Timestamp::from_secs;
        let d = || Direction::Unknown;
        t.update(key(1), ts(10), 100, 2, d).unwrap();
        t.update(key(2), ts(11), 50, 0, d).unwrap();
        assert_eq!(t.update(key(3), ts(12), 40, 0, d), Err(Full));
        t.update(key(1), ts(13), 100, 16 | 1, d).unwrap();
        // key(2) was seen last at 11, key(1) at 13; idle after 1 s.
        t.expire(ts(12));
        assert!(drain(&mut t).is_empty(), "11 is not before 12 - 1");
        t.expire(Timestamp::from_nanos(12_000_000_001));
        let out = drain(&mut t);
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].key, out[0].packets, out[0].bytes), (key(2), 1, 50));
        t.update(key(3), ts(14), 40, 0, d).unwrap();
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
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut now = 1_000 * NANOS;
        for step in 0..20_000 {
            now += match next() % 100 {
                0 => 40 * NANOS,
                1..=10 => 0,
                r => r * NANOS / 50,
            };
            let ts = now - next() % (NANOS / 2);
            let k = key((next() % 40) as u16);
            if t.update(k, Timestamp::from_nanos(ts), 1, 0, || Direction::Unknown)
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
}
