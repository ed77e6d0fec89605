//! Packet time.

use std::time::{SystemTime, UNIX_EPOCH};

/// A point in packet time: nanoseconds since the Unix epoch.
///
/// Live, it is the kernel's receive timestamp; offline, the capture's. Modules read time only from
/// packets and ticks, never from the clock, so a replay gives the same output every time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(u64);

impl Timestamp {
    /// From nanoseconds since the epoch.
    pub const fn from_nanos(nanos: u64) -> Self {
        Timestamp(nanos)
    }

    /// From whole seconds since the epoch.
    pub const fn from_secs(secs: u64) -> Self {
        Timestamp(secs.saturating_mul(1_000_000_000))
    }

    /// The wall clock, for sources without a kernel timestamp and for idle ticks.
    pub fn now() -> Self {
        let d = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp(d.as_nanos() as u64)
    }

    /// Nanoseconds since the epoch.
    pub const fn nanos(self) -> u64 {
        self.0
    }

    /// Whole seconds since the epoch.
    pub const fn secs(self) -> u64 {
        self.0 / 1_000_000_000
    }

    /// The nanoseconds past [`Timestamp::secs`].
    pub const fn subsec_nanos(self) -> u32 {
        (self.0 % 1_000_000_000) as u32
    }

    /// The first multiple of `period_ns` (counted from the epoch) after this time: where the interval
    /// this time falls in ends. Aligning to the epoch is what makes every shard, file and replay agree on
    /// interval boundaries without talking to each other. A zero period is taken as one nanosecond.
    pub const fn next_boundary(self, period_ns: u64) -> Self {
        let p = if period_ns == 0 { 1 } else { period_ns };
        Timestamp((self.0 / p).saturating_add(1).saturating_mul(p))
    }

    /// This time plus `nanos`.
    pub const fn add_nanos(self, nanos: u64) -> Self {
        Timestamp(self.0.saturating_add(nanos))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_boundary_is_strictly_after_and_aligned_to_the_epoch() {
        let min = 60_000_000_000;
        assert_eq!(
            Timestamp::from_secs(0).next_boundary(min),
            Timestamp::from_secs(60)
        );
        assert_eq!(
            Timestamp::from_secs(59).next_boundary(min),
            Timestamp::from_secs(60)
        );
        // On a boundary, the interval that starts there ends one period later.
        assert_eq!(
            Timestamp::from_secs(60).next_boundary(min),
            Timestamp::from_secs(120)
        );
        assert_eq!(
            Timestamp::from_nanos(7).next_boundary(0),
            Timestamp::from_nanos(8)
        );
        // The end of time saturates instead of wrapping to the epoch.
        assert_eq!(
            Timestamp::from_nanos(u64::MAX).next_boundary(10).nanos(),
            u64::MAX
        );
    }
}
