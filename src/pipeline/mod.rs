//! The pipeline core: from a datagram payload (or a plain frame) to module instances on shards.
//!
//! In quinn's spirit the core never touches a socket: [`Ingress::datagram`] takes the receive time, the
//! outer source and the UDP payload, and is driven alike by the UDP workers, the capture reader and the
//! tests. Each ingest thread owns one `Ingress` (its session cache, counters and outgoing batches), so the
//! hot path shares no lock with other workers.
//!
//! Two dispatch modes, as types: [`Pipeline::builder`] builds [`Shards`], which either start as
//! threads fed by every ingest thread ([`Shards::start_handoff`] → [`Pipeline<Handoff>`], whose
//! [`Pipeline::ingress`] gives each ingest thread its handle), or go one each to receive workers
//! that run them in place ([`Shards::run_to_completion`] → [`Pipeline<RunToCompletion>`] and the
//! workers' handles). A run-to-completion pipeline has no `ingress()` to ask: there is no shard
//! thread to send to.

pub mod accounting;
mod batch;
mod builder;
pub mod decap;
mod ingress;
mod lane;
pub mod reuseport;
mod running;
mod shard;
pub mod steer;
mod tallies;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use thiserror::Error;

pub use self::accounting::{Accounting, Counts, WorkerCounters};
pub use self::builder::{PipelineBuilder, Shards};
pub use self::decap::Encap;
pub use self::ingress::Ingress;
pub use self::running::{DispatchMode, Handoff, Pipeline, PlainSessions, RunToCompletion};
pub use self::shard::ShardCounters;
pub use self::tallies::SessionTally;

use crate::base::Session;
use crate::config::ConfigError;
use crate::modules::BuildError;

/// A turn at reading the input, which a hand-off shard thread (its index the argument) takes
/// whenever it has little queued ([`Shards::start_handoff_reading`]): true if it did some, false if
/// it could not (another thread is reading, a shard has no room, the input has ended). It must
/// never wait for a shard: the thread running it is one.
pub type ReadTurn = Arc<dyn Fn(usize) -> bool + Send + Sync>;

/// Why a pipeline could not be built.
#[derive(Debug, Error)]
pub enum PipelineError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A module refused to build.
    #[error("module {kind:?} (shard {shard}): {source}")]
    Module {
        /// Its kind.
        kind: String,
        /// The shard it was built for.
        shard: usize,
        /// Why.
        source: BuildError,
    },
    /// A shard thread could not be started.
    #[error("cannot start shard thread: {0}")]
    Spawn(#[source] std::io::Error),
}

/// The module list itself changed (kinds added, removed or reordered): that needs a restart.
#[derive(Debug, Error)]
#[error("the list of modules changed; that takes effect after a restart")]
pub struct ModulesChanged;

/// What a finished pipeline reports.
#[derive(Debug, Clone)]
pub struct PipelineReport {
    /// Datagram accounting, summed over workers.
    pub counts: Counts,
    /// Packets each shard processed.
    pub shard_packets: Vec<u64>,
    /// Sessions seen.
    pub sessions: Vec<Arc<Session>>,
    /// Each configured module's counters, in config order, summed over shards.
    pub modules: Vec<ModuleReport>,
}

/// One module's counters at the end, summed over shards: what a replay's summary says of it, so
/// that what a module could not keep (a full table's drops) is not seen only by a `/metrics` scrape
/// a replay has none of.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModuleReport {
    /// The module's `kind`.
    pub kind: String,
    /// Records it wrote.
    pub records: u64,
    /// Records its sink refused (I/O errors), and its own errors.
    pub errors: u64,
    /// What it dropped (each module's page says what a drop is).
    pub drops: u64,
}
