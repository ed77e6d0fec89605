//! Wire formats: views over borrowed bytes.
//!
//! Everything here is pure: nothing allocates, logs or touches the OS. The outer encapsulations that AWS
//! uses (VXLAN, GENEVE) are written in smoltcp's shape — a checked view plus a small `Repr` — because
//! untrusted bytes arrive here first. The inner frame is dissected in [`inner`]: the common frame by hand,
//! everything else with etherparse's per-layer slices, which are the oracle a differential fuzz target
//! holds the hand-written path to (see docs/performance.md).

pub mod flow_hash;
pub mod geneve;
pub mod inner;
pub mod link;
pub mod vxlan;

use thiserror::Error;

/// Why a buffer is not a valid header of the expected kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum WireError {
    /// The buffer is shorter than the fixed header, or than the length the header claims.
    #[error("buffer too short for the header")]
    Truncated,
    /// A field has a value the format forbids (a missing VXLAN I flag, an unknown GENEVE version).
    #[error("malformed header")]
    Malformed,
}

/// Shorthand for results of the checked constructors.
pub type Result<T> = core::result::Result<T, WireError>;

/// A byte range within a header.
pub(crate) type Field = core::ops::Range<usize>;
