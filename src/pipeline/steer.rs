//! Steering: which shard sees a packet.
//!
//! The kernel's SO_REUSEPORT hash is useless here: AWS's outer source port is a hash of the inner flow
//! (symmetric in recent captures, a constant 50000 in older ones), so it may put one whole ENI on one
//! socket, or the two directions of a flow on two. Workers therefore re-steer every packet by a
//! symmetric hash of (session, inner 5-tuple): both directions meet in one module instance, and one busy
//! session still spreads over every shard.
//!
//! Fragments are steered by (session, address pair, protocol) only, since later fragments carry no
//! ports; this keeps a fragmented datagram's pieces together at the cost of sometimes placing them on a
//! different shard from the same flow's unfragmented packets. Non-IP frames go by session alone.

pub use crate::wire::flow_hash::{shard_of, symmetric_hash};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::inner::dissect;
    use etherparse::PacketBuilder;

    fn frame(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> Vec<u8> {
        let mut out = Vec::new();
        PacketBuilder::ethernet2([2; 6], [4; 6])
            .ipv4(src, dst, 64)
            .tcp(sport, dport, 0, 100)
            .write(&mut out, &[])
            .unwrap();
        out
    }

    #[test]
    fn both_directions_hash_alike_and_sessions_differ() {
        let fwd = dissect(&frame([10, 0, 0, 1], 40000, [10, 0, 0, 2], 443));
        let rev = dissect(&frame([10, 0, 0, 2], 443, [10, 0, 0, 1], 40000));
        assert_eq!(symmetric_hash(1, &fwd), symmetric_hash(1, &rev));
        assert_ne!(symmetric_hash(1, &fwd), symmetric_hash(2, &fwd));
    }

    #[test]
    fn flows_spread_over_shards() {
        let mut hits = [0u32; 4];
        for port in 0..4000u16 {
            let l = dissect(&frame([10, 0, 0, 1], 10000 + port, [10, 0, 0, 2], 443));
            hits[shard_of(symmetric_hash(1, &l), 4)] += 1;
        }
        assert!(hits.iter().all(|&h| h > 800), "{hits:?}");
    }
}
