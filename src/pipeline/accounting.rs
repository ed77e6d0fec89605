//! Every datagram ends in exactly one counter: dispatched to a shard, or dropped with a reason.
//!
//! Each worker owns its counters and is their only writer (plain load + store, no lock prefix, no
//! shared cache line); readers sum them on scrape. At rest,
//! `received == dispatched + Σ dropped[reason]` holds per worker and in total.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::base::counter::bump;
pub use crate::base::drop_reason::DROP_REASONS;
use crate::base::DropReason;

/// One worker's counters. Written only by that worker.
#[derive(Debug, Default)]
pub struct WorkerCounters {
    received: AtomicU64,
    received_bytes: AtomicU64,
    dispatched: AtomicU64,
    dropped: [AtomicU64; DROP_REASONS],
    /// Wall-clock nanoseconds of the worker's last sign of life: a batch received, or a receive
    /// timeout while waiting. The health endpoint reads it to tell a stuck worker from an idle one.
    heartbeat: AtomicU64,
}

impl WorkerCounters {
    /// Counts a received datagram of `bytes`.
    #[inline]
    pub fn received(&self, bytes: usize) {
        bump(&self.received, 1);
        bump(&self.received_bytes, bytes as u64);
    }

    /// Counts `n` datagrams handed to a shard.
    #[inline]
    pub fn dispatched(&self, n: u64) {
        bump(&self.dispatched, n);
    }

    /// Counts `n` datagrams dropped for `reason`.
    #[inline]
    pub fn dropped(&self, reason: DropReason, n: u64) {
        bump(&self.dropped[reason as usize], n);
    }

    /// Records a sign of life at wall-clock `now_nanos`.
    #[inline]
    pub fn beat(&self, now_nanos: u64) {
        self.heartbeat.store(now_nanos, Ordering::Relaxed);
    }

    /// The last sign of life, wall-clock nanoseconds (0 = never).
    pub fn heartbeat(&self) -> u64 {
        self.heartbeat.load(Ordering::Relaxed)
    }

    fn add_to(&self, total: &mut Counts) {
        total.received += self.received.load(Ordering::Relaxed);
        total.received_bytes += self.received_bytes.load(Ordering::Relaxed);
        total.dispatched += self.dispatched.load(Ordering::Relaxed);
        for (t, c) in total.dropped.iter_mut().zip(&self.dropped) {
            *t += c.load(Ordering::Relaxed);
        }
    }
}

/// A sum of counters at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    /// Datagrams (or capture records) received.
    pub received: u64,
    /// Their bytes (UDP payload, or capture record length).
    pub received_bytes: u64,
    /// Handed to a shard.
    pub dispatched: u64,
    /// Dropped, indexed by `DropReason as usize`.
    pub dropped: [u64; DROP_REASONS],
}

impl Counts {
    /// Drops for one reason.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped[reason as usize]
    }

    /// All drops.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.iter().sum()
    }

    /// Non-zero drops by reason name.
    pub fn drops_by_reason(&self) -> Vec<(&'static str, u64)> {
        DropReason::ALL
            .iter()
            .filter(|r| self.dropped(**r) > 0)
            .map(|r| (r.name(), self.dropped(*r)))
            .collect()
    }

    /// Whether every received datagram is dispatched or dropped.
    pub fn balanced(&self) -> bool {
        self.received == self.dispatched + self.dropped_total()
    }
}

/// All workers' counters, summed on read.
#[derive(Debug, Default)]
pub struct Accounting {
    workers: Mutex<Vec<Arc<WorkerCounters>>>,
}

impl Accounting {
    /// Registers a new worker and returns its counters. Workers that stop keep their counts.
    pub fn register(&self) -> Arc<WorkerCounters> {
        let c = Arc::new(WorkerCounters::default());
        self.workers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(c.clone());
        c
    }

    /// Every registered worker's counters.
    pub fn workers(&self) -> Vec<Arc<WorkerCounters>> {
        self.workers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The current totals.
    pub fn snapshot(&self) -> Counts {
        let mut total = Counts::default();
        for w in self
            .workers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            w.add_to(&mut total);
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_snake_case() {
        let mut names: Vec<_> = DropReason::ALL.iter().map(|r| r.name()).collect();
        assert!(names
            .iter()
            .all(|n| n.chars().all(|c| c.is_ascii_lowercase() || c == '_')));
        names.sort();
        names.dedup();
        assert_eq!(names.len(), DROP_REASONS);
    }

    #[test]
    fn sums_workers() {
        let acc = Accounting::default();
        let (a, b) = (acc.register(), acc.register());
        a.received(100);
        a.dispatched(1);
        b.received(5);
        b.dropped(DropReason::TooShort, 1);
        let c = acc.snapshot();
        assert_eq!((c.received, c.received_bytes, c.dispatched), (2, 105, 1));
        assert_eq!(c.drops_by_reason(), vec![("too_short", 1)]);
        assert!(c.balanced());
    }
}
