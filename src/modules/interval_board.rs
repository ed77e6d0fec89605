//! Where the shards of one module kind meet once per interval: each shard publishes what it gathered
//! over an interval of packet time when it closes it, and the interval is released, merged, when
//! every shard has closed it. The packet path never touches it; a shard takes its lock once per
//! interval (and once more at its finish).
//!
//! Why a watermark per shard rather than "shard 0 merges on its tick": shards run on their own
//! threads and, offline, on their own packets' time, so one shard may reach minute 5 while another is
//! still in minute 3. Releasing an interval only when the slowest shard has closed it makes the
//! merged content independent of thread timing and of the number of shards, so a replay gives the
//! same records every time and with any `shards`. The shard whose publish completes an interval
//! emits it, through its own sink.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// Per-interval data that shards can combine; merging must not depend on order.
pub(crate) trait Merge: Default + Send {
    /// Folds `other` (another shard's view of the same interval) into `self`.
    fn merge(&mut self, other: Self);
}

/// Intervals a stuck shard (a module instance disabled by a panic never publishes again) may hold
/// back before the oldest is released without it: the board's memory stays bounded. Offline, a
/// shard that gets no packets for a long stretch of capture time also closes nothing (it ticks on
/// its own packets only); should it hold back more than this many intervals, they are released
/// without it, and what it publishes for them later is released on its own, as a second part.
const MAX_PENDING: usize = 32;

/// The meeting point of one module kind's instances (shared through their config).
#[derive(Debug)]
pub(crate) struct IntervalBoard<T> {
    inner: Mutex<Inner<T>>,
}

#[derive(Debug)]
struct Inner<T> {
    /// For each shard, the end (ns) of the latest interval it has closed; `u64::MAX` once finished.
    closed: Vec<u64>,
    /// Merged data of intervals not yet released, by interval end.
    pending: BTreeMap<u64, T>,
}

impl<T> Default for IntervalBoard<T> {
    fn default() -> Self {
        IntervalBoard {
            inner: Mutex::new(Inner {
                closed: Vec::new(),
                pending: BTreeMap::new(),
            }),
        }
    }
}

impl<T: Merge> IntervalBoard<T> {
    /// Shard `shard` (of `shards`) publishes `data` for the interval ending at `end`, and declares
    /// every interval ending at or before `through` closed on its side (`u64::MAX` at its finish).
    /// Intervals that every shard has now closed are appended to `released`, oldest first.
    pub(crate) fn publish(
        &self,
        shard: usize,
        shards: usize,
        end: u64,
        data: Option<T>,
        through: u64,
        released: &mut Vec<(u64, T)>,
    ) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if inner.closed.len() < shards.max(shard + 1) {
            inner.closed.resize(shards.max(shard + 1), 0);
        }
        if let Some(data) = data {
            inner.pending.entry(end).or_default().merge(data);
        }
        inner.closed[shard] = inner.closed[shard].max(through);
        let all = inner.closed.iter().copied().min().unwrap_or(0);
        while let Some((&first, _)) = inner.pending.first_key_value() {
            if first > all && inner.pending.len() <= MAX_PENDING {
                break;
            }
            if let Some(entry) = inner.pending.pop_first() {
                released.push(entry);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, PartialEq)]
    struct Sum(u64);
    impl Merge for Sum {
        fn merge(&mut self, other: Self) {
            self.0 += other.0;
        }
    }

    #[test]
    fn an_interval_is_released_once_every_shard_closed_it() {
        let board = IntervalBoard::<Sum>::default();
        let mut out = Vec::new();
        board.publish(0, 2, 60, Some(Sum(1)), 60, &mut out);
        assert!(out.is_empty(), "shard 1 has not closed minute 1");
        board.publish(1, 2, 120, Some(Sum(5)), 120, &mut out);
        assert_eq!(out, [(60, Sum(1))]);
        out.clear();
        board.publish(1, 2, 180, Some(Sum(2)), u64::MAX, &mut out);
        assert!(out.is_empty());
        board.publish(0, 2, 120, Some(Sum(3)), u64::MAX, &mut out);
        assert_eq!(out, [(120, Sum(8)), (180, Sum(2))]);
    }
}
