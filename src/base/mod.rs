//! The bottom layer: the vocabulary every other layer shares.
//!
//! A packet and its time, the 5-tuple, the mirror session as a module sees it, why a datagram was
//! dropped, and where packets come from. Nothing here imports any of vxtap's layers above [`wire`]
//! (`tests/layering.rs` checks it), so sessions, sinks, modules and the pipeline can all speak these
//! types without importing each other. Together with the module API (`modules`), this is the public
//! boundary a user's own module builds on.
//!
//! [`wire`]: crate::wire

pub(crate) mod counter;
pub(crate) mod drop_reason;
mod feed;
mod flow_key;
mod packet;
mod session;
mod time;

pub use self::drop_reason::DropReason;
pub use self::feed::Feed;
pub use self::flow_key::FlowKey;
pub use self::packet::{Packet, TcpHeader};
pub use self::session::{AwsMetadata, Session, SessionKey};
pub use self::time::Timestamp;

/// Tests' source of reproducible pseudo-random numbers (xorshift64): the same `seed`, the same
/// sequence, with no crate for it. `seed` must not be 0.
#[cfg(test)]
pub(crate) fn xorshift(mut seed: u64) -> impl FnMut() -> u64 {
    move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    }
}
