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

use std::hash::{Hash, Hasher};
use std::net::IpAddr;

use rustc_hash::FxHasher;

use crate::wire::inner::{Fragment, Layers};

/// A hash that is equal for both directions of a flow within one session.
#[inline]
pub fn symmetric_hash(session_id: u32, layers: &Layers) -> u64 {
    let mut h = FxHasher::default();
    session_id.hash(&mut h);
    if let Some(ip) = layers.ip {
        let ports = match ip.fragment {
            Fragment::None => layers.transport.ports().unwrap_or((0, 0)),
            Fragment::First | Fragment::Later => (0, 0),
        };
        // Each endpoint folded to one u64 first, so that ordering the pair is one integer compare
        // rather than a derived (IpAddr, u16) comparison (which was a third of this function).
        let a = endpoint(ip.src, ports.0);
        let b = endpoint(ip.dst, ports.1);
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        h.write_u64(lo);
        h.write_u64(hi);
        h.write_u8(ip.protocol);
    }
    h.finish()
}

/// An address and port as one u64: exact for IPv4, a fold for IPv6 (equal endpoints still fold
/// equally, which is all symmetry needs; a rare fold collision only costs spread).
#[inline]
fn endpoint(addr: IpAddr, port: u16) -> u64 {
    let a = match addr {
        IpAddr::V4(a) => u64::from(a.to_bits()),
        IpAddr::V6(a) => {
            let b = a.to_bits();
            (b as u64) ^ ((b >> 64) as u64).rotate_left(32)
        }
    };
    a.rotate_left(16) ^ u64::from(port)
}

/// Maps a hash onto `n` shards using its high bits (FxHash's best mixed ones).
#[inline]
pub fn shard_of(hash: u64, n: usize) -> usize {
    ((u128::from(hash) * n as u128) >> 64) as usize
}

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
