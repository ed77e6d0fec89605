//! The flow layer: what sits between single packets (`base`, `wire`) and the modules that want
//! connections and byte streams. It may use `crate::base`, `crate::wire` and `crate::config` only.
//!
//! - [`reassembly`]: one direction of a TCP connection put back in order, with gaps reported as
//!   data rather than hidden, from a per-shard pool allocated once.
//! - [`community_id`]: the identifier Zeek, Suricata and Arkime log for a flow, so records join.

pub mod community_id;
pub(crate) mod index;
pub mod reassembly;
