//! A pipeline whose shards run: what the control plane reads and steers, and how it ends.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::Sender;

use super::batch::Batch;
use super::lane::{Lane, WhenFull};
use super::shard::{Reconfigure, ShardCounters};
use super::{Accounting, Ingress, ModuleReport, ModulesChanged, PipelineReport};
use crate::base::{Feed, Session};
use crate::config::Config;
use crate::modules::ModuleSpec;
use crate::session::{SessionResolver, SessionTable};

/// What every running pipeline has, whichever way its shards run.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) specs: Vec<ModuleSpec>,
    pub(crate) sessions: Arc<SessionTable>,
    pub(crate) accounting: Arc<Accounting>,
    /// New module settings for each shard (config reload), applied between batches.
    pub(crate) controls: Vec<Sender<Reconfigure>>,
    pub(crate) shard_counters: Vec<Arc<ShardCounters>>,
    pub(crate) snaplen: Arc<AtomicU32>,
    pub(crate) next_plain_id: Arc<AtomicU32>,
    pub(crate) feed: Feed,
    /// Outputs merged in input order (replay): one ingest, which ticks for every shard.
    pub(crate) ordered: bool,
}

/// Running shards and what ingest and the control plane need to reach them. `D` says how packets
/// reach the shards: [`Handoff`] (shard threads, handles from [`Pipeline::ingress`]) or
/// [`RunToCompletion`] (the receive workers run the shards; their handles came with the pipeline).
/// Made by [`Pipeline::builder`] and then [`Shards`](super::Shards).
#[derive(Debug)]
pub struct Pipeline<D: DispatchMode = Handoff> {
    shared: Shared,
    dispatch: D,
}

/// Hand-off dispatch: one thread per shard, fed in batches by every ingest thread.
#[derive(Debug, Default)]
pub struct Handoff {
    pub(crate) senders: Vec<Sender<Box<Batch>>>,
    pub(crate) threads: Vec<JoinHandle<()>>,
    /// Set when a shard thread has ended, so an offline ingress never waits on a dead shard.
    pub(crate) gone: Vec<Arc<AtomicBool>>,
}

/// Run-to-completion dispatch: each receive worker runs one shard itself. The shards live in the
/// workers' [`Ingress`] handles and finish when those are dropped.
#[derive(Debug)]
pub struct RunToCompletion(pub(crate) ());

/// How a pipeline's shards run: [`Handoff`] or [`RunToCompletion`].
pub trait DispatchMode: sealed::Wind + Send + 'static {}
impl DispatchMode for Handoff {}
impl DispatchMode for RunToCompletion {}

mod sealed {
    /// Only vxtap's own dispatch modes exist, and only [`Pipeline::finish`](super::Pipeline::finish)
    /// winds them down.
    pub trait Wind {
        /// Waits until every shard has processed what it was sent and finished its modules.
        fn wind_down(self);
    }
}

impl sealed::Wind for Handoff {
    fn wind_down(self) {
        // The senders here are the last ones once every Ingress is gone: dropping them lets the
        // shard threads see the end of their input.
        drop(self.senders);
        for thread in self.threads {
            if thread.join().is_err() {
                tracing::error!(message = "A shard thread panicked outside a module.");
            }
        }
    }
}

impl sealed::Wind for RunToCompletion {
    fn wind_down(self) {}
}

impl Pipeline {
    /// Starts building a pipeline for `config`: live, with the built-in module kinds, unless the
    /// builder says otherwise.
    pub fn builder(config: Config) -> super::PipelineBuilder {
        super::PipelineBuilder::new(config)
    }
}

/// Offline, at most this many batches per shard in flight (1 MiB of frames at most), whatever
/// `queue_batches` says: the reader waits for a shard rather than dropping, so a deeper queue
/// absorbs no burst, and each batch is memory held per shard (64 KiB of frames): at the default
/// 64 the read-ahead was 4 MiB a shard, the largest fixed part of what a second shard adds to a
/// replay's peak RSS. Measured no slower (docs/performance.md, "Bounding what two shards hold").
const OFFLINE_QUEUE_BATCHES: usize = 16;

impl Pipeline<Handoff> {
    /// A new ingest handle for one thread, steering each packet to its shard's thread. On a live feed
    /// a shard that is behind costs counted drops; offline the handle waits for it. A pipeline built
    /// with [`merge_outputs`](super::PipelineBuilder::merge_outputs) takes exactly one: its order is
    /// the order of the output.
    pub fn ingress(&self) -> Ingress {
        let queue_batches = self.shared.config.pipeline.queue_batches;
        let lanes = self
            .dispatch
            .senders
            .iter()
            .zip(&self.dispatch.gone)
            .map(|(tx, gone)| {
                let (when_full, batches) = match self.shared.feed {
                    Feed::Live => (WhenFull::Drop, queue_batches),
                    Feed::Offline => (
                        WhenFull::Wait {
                            shard_gone: gone.clone(),
                        },
                        queue_batches.min(OFFLINE_QUEUE_BATCHES),
                    ),
                };
                Lane::handoff(tx.clone(), batches + 1, when_full)
            })
            .collect();
        let ingress = Ingress::new(
            SessionResolver::new(self.shared.sessions.clone()),
            lanes,
            self.shared.accounting.register(),
            self.shared.snaplen.clone(),
        );
        if self.shared.ordered {
            ingress.ordered(self.shared.config.pipeline.tick_ms.max(1) * 1_000_000)
        } else {
            ingress
        }
    }
}

/// Makes sessions for plain frames, each with an id of its own ([`Pipeline::plain_sessions`]).
#[derive(Debug, Clone)]
pub struct PlainSessions {
    next_id: Arc<AtomicU32>,
}

impl PlainSessions {
    /// A session named `name` (e.g. a capture file's).
    pub fn session(&self, name: &str) -> Arc<Session> {
        let id = self.next_id.fetch_sub(1, Ordering::Relaxed);
        Arc::new(Session::plain(name, id))
    }
}

impl<D: DispatchMode> Pipeline<D> {
    pub(crate) fn new(shared: Shared, dispatch: D) -> Pipeline<D> {
        Pipeline { shared, dispatch }
    }

    /// How many shards (module instance sets) there are.
    pub fn shard_count(&self) -> usize {
        self.shared.shard_counters.len()
    }

    /// The configuration the pipeline was built from.
    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// What feeds it.
    pub fn feed(&self) -> Feed {
        self.shared.feed
    }

    /// The configured modules, in order.
    pub fn modules(&self) -> &[ModuleSpec] {
        &self.shared.specs
    }

    /// The session registry.
    pub fn sessions(&self) -> &Arc<SessionTable> {
        &self.shared.sessions
    }

    /// Datagram accounting.
    pub fn accounting(&self) -> &Arc<Accounting> {
        &self.shared.accounting
    }

    /// Per-shard counters, module counters included.
    pub fn shard_counters(&self) -> &[Arc<ShardCounters>] {
        &self.shared.shard_counters
    }

    /// Packets the shards have processed so far, all shards together. Compared with
    /// `accounting().snapshot().dispatched`, it tells whether the shards have caught up with
    /// what ingest handed them (benchmarks and tests wait on it).
    pub fn processed_packets(&self) -> u64 {
        self.shared
            .shard_counters
            .iter()
            .map(|c| c.packets.load(Ordering::Relaxed))
            .sum()
    }

    /// Changes the global snap length (0 = off) for packets ingested from now on.
    pub fn set_snaplen(&self, snaplen: u32) {
        self.shared.snaplen.store(snaplen, Ordering::Relaxed);
    }

    /// Gives every shard new settings for its modules (config reload). The kinds must be those the
    /// pipeline was built with, in the same order; adding, removing or reordering modules needs a
    /// restart. Each shard builds fresh instances between two batches, finishes the old ones (so
    /// what they held is emitted, not lost) and swaps them in; counters carry on. A shard that cannot
    /// build the new instances keeps the old ones and logs why.
    pub fn reconfigure_modules(&self, specs: &[ModuleSpec]) -> Result<(), ModulesChanged> {
        let kinds = |s: &[ModuleSpec]| s.iter().map(|m| m.kind.clone()).collect::<Vec<_>>();
        if kinds(specs) != kinds(&self.shared.specs) {
            return Err(ModulesChanged);
        }
        for tx in &self.shared.controls {
            // A shard that has stopped needs no new settings.
            let _ = tx.send(Reconfigure(specs.to_vec()));
        }
        Ok(())
    }

    /// A session for plain (unencapsulated) frames, named after their source, e.g. a capture file.
    pub fn plain_session(&self, name: &str) -> Arc<Session> {
        self.plain_sessions().session(name)
    }

    /// What makes [`Pipeline::plain_session`]s, for a thread that does not hold the pipeline (a
    /// shard thread taking its turn at reading a capture).
    pub fn plain_sessions(&self) -> PlainSessions {
        PlainSessions {
            next_id: self.shared.next_plain_id.clone(),
        }
    }

    /// Waits for every shard to process what it was sent and finish its modules, and reports. Every
    /// [`Ingress`] must have been dropped first: that is what tells hand-off shards no more is
    /// coming, and what finishes run-to-completion shards.
    pub fn finish(self) -> PipelineReport {
        let Pipeline { shared, dispatch } = self;
        sealed::Wind::wind_down(dispatch);
        PipelineReport {
            counts: shared.accounting.snapshot(),
            shard_packets: shared
                .shard_counters
                .iter()
                .map(|c| c.packets.load(Ordering::Relaxed))
                .collect(),
            sessions: shared.sessions.sessions(),
            modules: shared
                .specs
                .iter()
                .enumerate()
                .map(|(i, spec)| {
                    let mut m = ModuleReport {
                        kind: spec.kind.clone(),
                        ..ModuleReport::default()
                    };
                    for c in shared
                        .shard_counters
                        .iter()
                        .filter_map(|s| s.modules.get(i))
                    {
                        m.records += c.events.load(Ordering::Relaxed);
                        m.errors += c.errors.load(Ordering::Relaxed);
                        m.drops += c.drops.load(Ordering::Relaxed);
                    }
                    m
                })
                .collect(),
        }
    }
}
