//! The flow layer: what sits between single packets (`base`, `wire`) and the modules that want
//! connections and byte streams. It may use `crate::base`, `crate::wire` and `crate::config` only.
//!
//! - [`reassembly`]: one direction of a TCP connection put back in order, with gaps reported as
//!   data rather than hidden, from a per-shard pool allocated once.
//! - [`community_id`]: the identifier Zeek, Suricata and Arkime log for a flow, so records join.
//! - the per-shard flow table (connection tracking, client/server orientation, TCP state, idle
//!   expiry and eviction on packet time), shared by every flow-aware module of a shard; what a module
//!   sees of a flow is a [`Flow`], where it keeps its own state is a [`PerFlow`].

#[doc(hidden)]
pub mod bench;
pub mod community_id;
pub(crate) mod index;
mod interval;
pub mod reassembly;
pub(crate) mod table;
mod types;
mod view;
mod wheel;

pub use self::reassembly::{Chunk, GapReason};
pub use self::types::{
    Dir, DirStats, EndReason, FlowCounters, IntervalClose, IntervalCounts, IntervalSpec, TcpState,
    TcpTimes,
};
pub use self::view::{flow_community_id, DirInterval, Flow, PerFlow};
