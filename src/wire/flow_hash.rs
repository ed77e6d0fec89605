//! The symmetric flow hash: equal for both directions of a flow within one session.
//!
//! It lives here, below every layer that needs it, because two of them do: the pipeline steers packets
//! to shards by it (`pipeline::steer` re-exports it), and the `forward` module picks a VXLAN outer source
//! port by it, so that a load balancer downstream keeps both directions of a flow on one target, as
//! AWS's own choice of source port does. Pure: no state, no allocation.

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
