//! The packets-per-second cap of an output, on packet time.
//!
//! Packet time rather than wall time, so that a replay forwards the same packets however fast the
//! file is read, and a test can check the cap exactly; live, packet time is the kernel's receive
//! timestamp, so the two agree. The cap is shared out evenly: each of the `shards` instances allows
//! `pps / shards`, which needs no coordination on the packet path (a shard that gets more than its
//! share of the traffic is capped below the total; the documentation says so).
//!
//! The algorithm is GCRA, the token bucket written as one timestamp: a packet at `t` passes when the
//! theoretical arrival time `tat` is at most `t + burst`, and then moves `tat` on by one interval.

use crate::base::Timestamp;

/// How much packet time of credit a quiet output may bank: a tenth of a second's worth of packets
/// passes at once after a pause, which absorbs the bursts a mirror normally delivers.
const BURST_NS: u64 = 100_000_000;

#[derive(Debug, Clone)]
pub(crate) struct RateCap {
    interval_ns: u64,
    burst_ns: u64,
    tat: u64,
}

impl RateCap {
    /// A cap of `pps` in total over `shards` instances; `None` when `pps` is 0 (no cap).
    pub(crate) fn new(pps: u64, shards: usize) -> Option<RateCap> {
        if pps == 0 {
            return None;
        }
        let interval_ns = (1_000_000_000u128 * shards.max(1) as u128 / u128::from(pps))
            .clamp(1, u128::from(u64::MAX / 4)) as u64;
        Some(RateCap {
            interval_ns,
            burst_ns: BURST_NS.max(interval_ns),
            tat: 0,
        })
    }

    /// Whether a packet at `now` may pass; if so, it is counted against the cap.
    #[inline]
    pub(crate) fn allow(&mut self, now: Timestamp) -> bool {
        let t = now.nanos();
        let tat = self.tat.max(t);
        if tat > t.saturating_add(self.burst_ns) - self.interval_ns {
            return false;
        }
        self.tat = tat.saturating_add(self.interval_ns);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_to_the_rate_after_the_burst() {
        let mut cap = RateCap::new(1000, 1).unwrap();
        let start = 1_000_000_000_000u64;
        // 10,000 packets spread over one second at 10 kpps: about 1000 pass, plus the burst.
        let passed = (0..10_000u64)
            .filter(|i| cap.allow(Timestamp::from_nanos(start + i * 100_000)))
            .count();
        assert!((1000..=1101).contains(&passed), "{passed}");
        // Shared over 4 shards: each allows a quarter.
        let mut quarter = RateCap::new(1000, 4).unwrap();
        let passed = (0..10_000u64)
            .filter(|i| quarter.allow(Timestamp::from_nanos(start + i * 100_000)))
            .count();
        assert!((250..=276).contains(&passed), "{passed}");
        assert!(RateCap::new(0, 4).is_none());
    }
}
