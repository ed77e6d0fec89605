//! From a configuration to shards with their modules, and from there to one of the two ways of
//! running them.

use std::sync::atomic::{AtomicBool, AtomicU32};
use std::sync::Arc;

use super::lane::Lane;
use super::running::{Handoff, Pipeline, RunToCompletion, Shared};
use super::shard::Shard;
use super::{Accounting, Ingress, PipelineError, ReadTurn};
use crate::base::Feed;
use crate::config::{Config, Dispatch};
use crate::modules::{ModuleContext, Registry};
use crate::session::{SessionResolver, SessionTable};
use crate::sinks::Merge;

/// Builds the shards of a pipeline: see [`Pipeline::builder`].
#[derive(Debug)]
pub struct PipelineBuilder {
    config: Config,
    registry: Registry,
    feed: Feed,
    merge: bool,
}

impl PipelineBuilder {
    pub(crate) fn new(config: Config) -> PipelineBuilder {
        PipelineBuilder {
            config,
            registry: Registry::with_builtins(),
            feed: Feed::Live,
            merge: false,
        }
    }

    /// Offline only: each module kind writes through one output (built as shard 0's) in which the
    /// records of every shard are merged in the order of the input, so the output is the same bytes
    /// whatever the number of shards (see [`Merge`](crate::sinks::Merge)). The pipeline then takes one
    /// ingest thread ([`Pipeline::ingress`] once), which decides when every shard ticks; it must be
    /// started with [`Shards::start_handoff`]. Ignored on a live feed.
    pub fn merge_outputs(mut self, merge: bool) -> Self {
        self.merge = merge;
        self
    }

    /// Uses `registry` for module kinds instead of the built-in one.
    pub fn registry(mut self, registry: Registry) -> Self {
        self.registry = registry;
        self
    }

    /// What feeds the pipeline (live by default); see [`Feed`] for what that changes.
    pub fn feed(mut self, feed: Feed) -> Self {
        self.feed = feed;
        self
    }

    /// Checks the modules and builds one instance of each per shard. Nothing runs yet: the caller
    /// picks how packets reach the shards with [`Shards::start_handoff`] or
    /// [`Shards::run_to_completion`].
    pub fn build(self) -> Result<Shards, PipelineError> {
        let specs = self.registry.resolve(&self.config)?;
        let count = match self.config.pipeline.shards {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let sessions = match self.feed {
            Feed::Live => SessionTable::new(&self.config.sessions),
            Feed::Offline => SessionTable::new(&self.config.sessions.for_replay()),
        };
        let merge = self.merge && !self.feed.is_live();
        let merges = if merge {
            let ctx = ModuleContext {
                shard: 0,
                shards: count,
                sessions: sessions.clone(),
                feed: self.feed,
            };
            let mut sinks = Vec::with_capacity(specs.len());
            for spec in &specs {
                let sink = spec
                    .factory
                    .sink(&ctx)
                    .map_err(|source| PipelineError::Module {
                        kind: spec.kind.clone(),
                        shard: 0,
                        source,
                    })?;
                sinks.push(sink);
            }
            // The modules writing to stdout share one merge (and the first one's sink), so that
            // how their records interleave is fixed too.
            let on_stdout = sinks.iter().filter(|s| s.is_stdout()).count();
            let mut stdout: Option<Arc<Merge>> = None;
            let merges = sinks.into_iter().map(|sink| {
                if !sink.is_stdout() {
                    return Merge::new(sink, count);
                }
                stdout
                    .get_or_insert_with(|| Merge::new(sink, count * on_stdout))
                    .clone()
            });
            Some(merges.collect::<Vec<_>>())
        } else {
            None
        };
        let mut shards = Vec::with_capacity(count);
        let mut controls = Vec::with_capacity(count);
        for index in 0..count {
            let ctx = ModuleContext {
                shard: index,
                shards: count,
                sessions: sessions.clone(),
                feed: self.feed,
            };
            let (control_tx, control) = crossbeam_channel::unbounded();
            let shard = Shard::new(
                ctx,
                &specs,
                self.config.pipeline.tick_ms,
                &self.config.flow,
                control,
                merges.as_deref(),
            )
            .map_err(|e| PipelineError::Module {
                kind: e.kind,
                shard: index,
                source: e.source,
            })?;
            shards.push(shard);
            controls.push(control_tx);
        }
        let shared = Shared {
            snaplen: Arc::new(AtomicU32::new(self.config.truncation.snaplen)),
            shard_counters: shards.iter().map(|s| s.counters().clone()).collect(),
            config: self.config,
            specs,
            sessions,
            accounting: Arc::new(Accounting::default()),
            controls,
            next_plain_id: Arc::new(AtomicU32::new(u32::MAX)),
            feed: self.feed,
            ordered: merge,
        };
        Ok(Shards { shared, shards })
    }
}

/// Shards built with their module instances, none running yet.
#[derive(Debug)]
pub struct Shards {
    shared: Shared,
    shards: Vec<Shard>,
}

impl Shards {
    /// How many shards there are.
    pub fn count(&self) -> usize {
        self.shards.len()
    }

    /// Whether the shards keep a flow table (some module wants flow events): their work per packet
    /// is then several times what reading a capture costs.
    pub fn track_flows(&self) -> bool {
        self.shards.iter().any(Shard::tracks_flows)
    }

    /// The configuration they were built from.
    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// Whether the configuration lets receive workers run the shards themselves: a live feed, UDP
    /// listeners only (interface capture hands off), and `dispatch`
    /// asks for it (`auto` only with `shards` at its default). Whether every listener then gets its
    /// kernel steering program is for ingest to find out.
    pub fn may_run_to_completion(&self) -> bool {
        let config = &self.shared.config;
        let wanted = match config.pipeline.dispatch {
            Dispatch::Inline => true,
            Dispatch::Auto => config.pipeline.shards == 0,
            Dispatch::Handoff => false,
        };
        self.shared.feed.is_live()
            && wanted
            && config.ingest.interfaces.is_empty()
            && !config.ingest.vxlan.is_empty()
    }

    /// Hand-off dispatch: starts one thread per shard. Ingest threads then get their handles from
    /// [`Pipeline::ingress`] and steer every packet to its shard themselves.
    pub fn start_handoff(self) -> Result<Pipeline<Handoff>, PipelineError> {
        self.start_threads(None)
    }

    /// Hand-off dispatch where the shard threads also read the input, taking turns at `turn`
    /// whenever one has little queued, instead of a reader thread of its own. With at least as
    /// many shards as cores, a reader thread is one runnable thread more than there are cores:
    /// it and the shards then wait for each other's turn on a core, and cores sit idle while a
    /// shard that could run waits for input (an L7 replay on two cores: a quarter of their time).
    /// Here the reading is done by a thread that would otherwise wait. Offline only (the input
    /// must be able to wait); take no [`Pipeline::ingress`] besides the one `turn` uses.
    pub fn start_handoff_reading(self, turn: ReadTurn) -> Result<Pipeline<Handoff>, PipelineError> {
        self.start_threads(Some(turn))
    }

    fn start_threads(self, turn: Option<ReadTurn>) -> Result<Pipeline<Handoff>, PipelineError> {
        let Shards { shared, shards } = self;
        let mut handoff = Handoff::default();
        for shard in shards {
            // Every worker keeps at most `queue_batches` batches in flight per shard, so this bound
            // is never the one that drops; it only keeps a stalled shard from growing without limit.
            let (tx, rx) = crossbeam_channel::bounded(shared.config.pipeline.queue_batches * 64);
            let gone = Arc::new(AtomicBool::new(false));
            let flag = ShardGone(gone.clone());
            let turn = turn.clone();
            let thread = std::thread::Builder::new()
                .name(format!("vxtap-shard-{}", shard.index()))
                .spawn(move || {
                    let _flag = flag;
                    shard.run_thread(rx, turn)
                })
                .map_err(PipelineError::Spawn)?;
            handoff.senders.push(tx);
            handoff.gone.push(gone);
            handoff.threads.push(thread);
        }
        Ok(Pipeline::new(shared, handoff))
    }

    /// Run-to-completion dispatch: one ingest handle per shard, each running its shard's modules on
    /// the calling thread for every packet it is given: no queue, no shard thread. The caller must
    /// make sure both directions of a flow reach the same handle (the kernel does, with the program
    /// of [`reuseport`](super::reuseport)), and must call [`Ingress::beat`] and [`Ingress::idle`] as
    /// a shard thread would wake up: that keeps heartbeats, wall-clock ticks and reloads going.
    pub fn run_to_completion(self) -> (Pipeline<RunToCompletion>, Vec<Ingress>) {
        let Shards { shared, shards } = self;
        let ingresses = shards
            .into_iter()
            .map(|shard| {
                Ingress::new(
                    SessionResolver::new(shared.sessions.clone()),
                    vec![Lane::inline(shard)],
                    shared.accounting.register(),
                    shared.snaplen.clone(),
                )
            })
            .collect();
        (Pipeline::new(shared, RunToCompletion(())), ingresses)
    }
}

/// Sets its flag when dropped: at the end of a shard thread, however it ends.
struct ShardGone(Arc<AtomicBool>);

impl Drop for ShardGone {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Release);
    }
}
