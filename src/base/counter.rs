//! Counters with one writer and many readers.

use std::sync::atomic::{AtomicU64, Ordering};

/// Adds `n` to a counter that only the calling thread writes (a worker's accounting, a shard's or a
/// module's counters) and the control plane reads on scrape. A load and a store are enough for a
/// single writer and, unlike `fetch_add`, take no lock prefix: the packet path pays for no shared
/// cache-line traffic. Wraps rather than panics, as Prometheus counters may.
#[inline]
pub(crate) fn bump(counter: &AtomicU64, n: u64) {
    counter.store(
        counter.load(Ordering::Relaxed).wrapping_add(n),
        Ordering::Relaxed,
    );
}
