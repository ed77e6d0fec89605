//! The per-shard flow table: one entry per direction of a flow per session, bounded, allocated once.
//!
//! Entries live in a slab (`Vec` reserved to the cap at start, reused through a free list) and are
//! indexed by a hash map reserved to the same size, so steady state allocates nothing. An intrusive
//! list in last-seen order makes idle expiry cost only the entries that expire.

use std::hash::BuildHasherDefault;

use rustc_hash::FxHasher;

use super::format::Direction;
use crate::pipeline::{FlowKey, Timestamp};

type FxMap<K, V> = std::collections::HashMap<K, V, BuildHasherDefault<FxHasher>>;

const NIL: u32 = u32::MAX;

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
    prev: u32,
    next: u32,
}

/// The table is at its cap: the packet's flow cannot be added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Full;

pub(crate) struct FlowTable {
    index: FxMap<DirKey, u32>,
    slots: Vec<Entry>,
    free: Vec<u32>,
    /// Least recently seen.
    head: u32,
    /// Most recently seen.
    tail: u32,
    max: usize,
}

impl FlowTable {
    /// A table for at most `max` entries, with all its memory reserved now.
    pub(crate) fn new(max: usize) -> Self {
        FlowTable {
            index: FxMap::with_capacity_and_hasher(max, Default::default()),
            slots: Vec::with_capacity(max),
            free: Vec::with_capacity(max),
            head: NIL,
            tail: NIL,
            max,
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.index.len()
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
        let i = match self.index.get(&key) {
            Some(&i) => {
                self.unlink(i);
                i
            }
            None => {
                if self.index.len() >= self.max {
                    return Err(Full);
                }
                let entry = Entry {
                    key,
                    packets: 0,
                    bytes: 0,
                    first: ts,
                    last: ts,
                    tcp_flags: 0,
                    direction: direction(),
                    prev: NIL,
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
                self.index.insert(key, i);
                i
            }
        };
        let e = &mut self.slots[i as usize];
        e.packets += 1;
        e.bytes += bytes;
        e.tcp_flags |= tcp_flags;
        e.first = e.first.min(ts);
        e.last = e.last.max(ts);
        self.push_back(i);
        Ok(())
    }

    /// Removes and returns the least recently seen entry if it was last seen before `cutoff`.
    pub(crate) fn pop_idle(&mut self, cutoff: Timestamp) -> Option<Entry> {
        if self.head == NIL || self.slots[self.head as usize].last >= cutoff {
            return None;
        }
        self.pop_front()
    }

    /// Removes and returns the least recently seen entry.
    pub(crate) fn pop_front(&mut self) -> Option<Entry> {
        let i = self.head;
        if i == NIL {
            return None;
        }
        self.unlink(i);
        let e = self.slots[i as usize];
        self.index.remove(&e.key);
        self.free.push(i);
        Some(e)
    }

    fn unlink(&mut self, i: u32) {
        let (prev, next) = {
            let e = &self.slots[i as usize];
            (e.prev, e.next)
        };
        match prev {
            NIL => self.head = next,
            p => self.slots[p as usize].next = next,
        }
        match next {
            NIL => self.tail = prev,
            n => self.slots[n as usize].prev = prev,
        }
    }

    fn push_back(&mut self, i: u32) {
        let tail = self.tail;
        {
            let e = &mut self.slots[i as usize];
            e.prev = tail;
            e.next = NIL;
        }
        match tail {
            NIL => self.head = i,
            t => self.slots[t as usize].next = i,
        }
        self.tail = i;
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

    #[test]
    fn counts_caps_and_expires_least_recently_seen_first() {
        let mut t = FlowTable::new(2);
        let ts = Timestamp::from_secs;
        let d = || Direction::Unknown;
        t.update(key(1), ts(10), 100, 2, d).unwrap();
        t.update(key(2), ts(11), 50, 0, d).unwrap();
        assert_eq!(t.update(key(3), ts(12), 40, 0, d), Err(Full));
        t.update(key(1), ts(13), 100, 16 | 1, d).unwrap();
        // key(2) was seen last at 11, key(1) at 13.
        assert!(t.pop_idle(ts(11)).is_none());
        let e = t.pop_idle(ts(12)).unwrap();
        assert_eq!((e.key, e.packets, e.bytes), (key(2), 1, 50));
        t.update(key(3), ts(14), 40, 0, d).unwrap();
        let e = t.pop_front().unwrap();
        assert_eq!(
            (e.key, e.packets, e.bytes, e.tcp_flags, e.first, e.last),
            (key(1), 2, 200, 19, ts(10), ts(13))
        );
        assert_eq!(t.pop_front().unwrap().key, key(3));
        assert!(t.pop_front().is_none());
        assert_eq!(t.len(), 0);
        assert_eq!(t.slots.capacity(), 2, "never grew past the reservation");
    }
}
