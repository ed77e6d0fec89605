//! The pipeline core: from a datagram payload (or a plain frame) to module instances on shards.
//!
//! In quinn's spirit the core never touches a socket: [`Ingress::datagram`] takes the receive time, the
//! outer source and the UDP payload, and is driven alike by the UDP workers, the capture reader and the
//! tests. Each ingest thread owns one `Ingress` (its session cache, counters and outgoing batches), so the
//! hot path shares no lock with other workers.

pub mod accounting;
pub mod decap;
mod packet;
pub mod reuseport;
pub(crate) mod shard;
pub mod steer;

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use thiserror::Error;

pub use self::accounting::{Accounting, Counts, DropReason, WorkerCounters};
pub use self::decap::Encap;
pub use self::packet::{FlowKey, Packet, Timestamp};
use self::shard::{Batch, Entry, ModuleSlot, Reconfigure, Shard};
pub use self::shard::{SessionTally, ShardCounters};
pub use crate::config::Dispatch;
use crate::config::{Config, ConfigError};
use crate::modules::{BuildError, ModuleContext, ModuleCounters, ModuleSpec, Registry};
use crate::session::{Session, SessionKey, SessionResolver, SessionTable};
use crate::wire::inner;

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
    /// A thread could not be started.
    #[error("cannot start shard thread: {0}")]
    Spawn(#[source] std::io::Error),
    /// Shard threads were asked for after shards had gone to receive workers.
    #[error("shards already run on the receive workers")]
    Inline,
}

/// Locks a mutex that is only used while starting and stopping; a panic elsewhere does not poison
/// what it guards (shards that are either parked or not).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The module list itself changed (kinds added, removed or reordered): that needs a restart.
#[derive(Debug, Error)]
#[error("the list of modules changed; that takes effect after a restart")]
pub struct ModulesChanged;

/// Builds a [`Pipeline`].
#[derive(Debug)]
pub struct PipelineBuilder {
    config: Config,
    registry: Registry,
    live: bool,
}

impl PipelineBuilder {
    /// Uses `registry` for module kinds instead of the built-in one.
    pub fn registry(mut self, registry: Registry) -> Self {
        self.registry = registry;
        self
    }

    /// Live (the default) ticks modules on the wall clock while no packets arrive; offline replay
    /// ticks on packet time only, so output does not depend on how fast the file was read. Offline,
    /// ingest also waits for a shard that is behind instead of dropping (`shard_queue_full`): a file
    /// can be read again, a network cannot be asked to wait.
    pub fn live(mut self, live: bool) -> Self {
        self.live = live;
        self
    }

    /// Checks the modules, builds one instance of each per shard and starts the shard threads; or, when
    /// the configuration may run modules on the receive workers (see [`Dispatch`]), builds the shards
    /// but parks them, for [`Pipeline::inline_ingress`] to hand to workers or for
    /// [`Pipeline::start_handoff`] to start as threads after all.
    pub fn build(self) -> Result<Pipeline, PipelineError> {
        let specs = self.registry.resolve(&self.config)?;
        let shards = match self.config.pipeline.shards {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let park = self.live && inline_candidate(&self.config);
        if self.live && !park && self.config.pipeline.dispatch == Dispatch::Inline {
            tracing::warn!(message = "dispatch = \"inline\" needs UDP VXLAN listeners only (no interface capture); handing off to shard threads.");
        }
        let sessions = SessionTable::new(&self.config.sessions);
        let mut senders = Vec::with_capacity(shards);
        let mut controls = Vec::with_capacity(shards);
        let mut built = Vec::with_capacity(shards);
        let mut counters = Vec::with_capacity(shards);
        let mut gone = Vec::with_capacity(shards);
        for index in 0..shards {
            let ctx = ModuleContext {
                shard: index,
                shards,
                sessions: sessions.clone(),
                live: self.live,
            };
            let mut modules = Vec::with_capacity(specs.len());
            for spec in &specs {
                let err = |source| PipelineError::Module {
                    kind: spec.kind.clone(),
                    shard: index,
                    source,
                };
                modules.push(ModuleSlot {
                    kind: spec.kind.clone(),
                    module: spec.factory.build(&ctx).map_err(err)?,
                    sink: spec.factory.sink(&ctx).map_err(err)?,
                    counters: Arc::new(ModuleCounters::default()),
                    failed: false,
                });
            }
            let shard_counters = Arc::new(ShardCounters {
                modules: modules.iter().map(|m| m.counters.clone()).collect(),
                ..ShardCounters::default()
            });
            // Every worker keeps at most `queue_batches` batches in flight per shard, so this bound is
            // never the one that drops; it only keeps a stalled shard from growing without limit.
            let (tx, rx) = crossbeam_channel::bounded(self.config.pipeline.queue_batches * 64);
            let (control_tx, control) = crossbeam_channel::unbounded();
            built.push(Some(Shard {
                index,
                rx,
                control,
                ctx,
                modules,
                counters: shard_counters.clone(),
                tick_ns: self.config.pipeline.tick_ms * 1_000_000,
                idle_ticks: self.live,
                next_tick: None,
                last_ts: Timestamp::default(),
                scratch: String::new(),
                tallies: Default::default(),
            }));
            gone.push(Arc::new(AtomicBool::new(false)));
            senders.push(tx);
            controls.push(control_tx);
            counters.push(shard_counters);
        }
        let pipeline = Pipeline {
            snaplen: Arc::new(AtomicU32::new(self.config.truncation.snaplen)),
            queue_batches: self.config.pipeline.queue_batches,
            config: self.config,
            specs,
            sessions,
            accounting: Arc::new(Accounting::default()),
            senders,
            controls,
            handles: Mutex::new(Vec::with_capacity(shards)),
            parked: Mutex::new(built),
            inline_taken: AtomicBool::new(false),
            shard_counters: counters,
            next_plain_id: AtomicU32::new(u32::MAX),
            lossless: !self.live,
            shard_gone: gone,
        };
        if !park {
            pipeline.start_handoff()?;
        }
        Ok(pipeline)
    }
}

/// Whether the configuration may run modules on the receive workers: live, UDP listeners only (an
/// interface capture hands off), and `dispatch` asks for it (`auto` only with `shards` at its default).
/// Whether every listener then gets its BPF program is for ingest to find out.
fn inline_candidate(config: &Config) -> bool {
    let wanted = match config.pipeline.dispatch {
        Dispatch::Inline => true,
        Dispatch::Auto => config.pipeline.shards == 0,
        Dispatch::Handoff => false,
    };
    wanted && config.ingest.interfaces.is_empty() && !config.ingest.vxlan.is_empty()
}

/// The running shards and what ingest needs to reach them.
#[derive(Debug)]
pub struct Pipeline {
    config: Config,
    specs: Vec<ModuleSpec>,
    sessions: Arc<SessionTable>,
    accounting: Arc<Accounting>,
    senders: Vec<Sender<Box<Batch>>>,
    /// New module settings for each shard (config reload), applied between batches.
    controls: Vec<Sender<Reconfigure>>,
    handles: Mutex<Vec<JoinHandle<()>>>,
    /// Shards built but not yet running: taken by [`Pipeline::inline_ingress`] or started as threads by
    /// [`Pipeline::start_handoff`]. Only touched while starting and stopping.
    parked: Mutex<Vec<Option<Shard>>>,
    /// Set once a shard runs on a receive worker: hand-off ingresses can no longer be had.
    inline_taken: AtomicBool,
    shard_counters: Vec<Arc<ShardCounters>>,
    snaplen: Arc<AtomicU32>,
    queue_batches: usize,
    next_plain_id: AtomicU32,
    /// Offline: wait for shards rather than drop.
    lossless: bool,
    /// Set when a shard thread has ended, so a lossless ingress never waits on a dead shard.
    shard_gone: Vec<Arc<AtomicBool>>,
}

/// Sets its flag when dropped: at the end of a shard thread, however it ends.
struct ShardGone(Arc<AtomicBool>);

impl Drop for ShardGone {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// What a finished pipeline reports.
#[derive(Debug, Clone)]
pub struct PipelineReport {
    /// Datagram accounting, summed over workers.
    pub counts: Counts,
    /// Packets each shard processed.
    pub shard_packets: Vec<u64>,
    /// Sessions seen.
    pub sessions: Vec<Arc<Session>>,
}

impl Pipeline {
    /// Starts building a pipeline for `config`.
    pub fn builder(config: Config) -> PipelineBuilder {
        PipelineBuilder {
            config,
            registry: Registry::with_builtins(),
            live: true,
        }
    }

    /// A new ingest handle for one thread, handing packets to shard threads (started now if they were
    /// parked). Not available once shards run on receive workers ([`Pipeline::inline_ingress`]): such a
    /// pipeline has no shard threads; the handle returned then drops every packet as `shard_stopped`.
    pub fn ingress(&self) -> Ingress {
        if let Err(error) = self.start_handoff() {
            tracing::error!(message = "Cannot start a shard thread.", %error);
        }
        Ingress {
            resolver: SessionResolver::new(self.sessions.clone()),
            router: Router {
                lanes: self
                    .senders
                    .iter()
                    .zip(&self.shard_gone)
                    .map(|(tx, gone)| {
                        let tx = if self.inline_taken.load(Ordering::Relaxed) {
                            // No shard thread will ever read: a channel without a receiver, so
                            // every batch counts as `shard_stopped` instead of waiting forever.
                            crossbeam_channel::bounded(1).0
                        } else {
                            tx.clone()
                        };
                        let mut lane = Lane::new(tx, self.queue_batches + 1);
                        if self.lossless {
                            lane.wait_on = Some(gone.clone());
                        }
                        lane
                    })
                    .collect(),
                counters: self.accounting.register(),
                snaplen: self.snaplen.clone(),
            },
        }
    }

    /// Starts every parked shard on its own thread (hand-off dispatch). Does nothing when they already
    /// run; an error when shards already run on receive workers.
    pub fn start_handoff(&self) -> Result<(), PipelineError> {
        let mut parked = lock(&self.parked);
        if self.inline_taken.load(Ordering::Relaxed) {
            return Err(PipelineError::Inline);
        }
        let mut handles = lock(&self.handles);
        for (slot, gone) in parked.iter_mut().zip(&self.shard_gone) {
            let Some(shard) = slot.take() else { continue };
            let flag = ShardGone(gone.clone());
            let handle = std::thread::Builder::new()
                .name(format!("vxtap-shard-{}", shard.index))
                .spawn(move || {
                    let _flag = flag;
                    shard.run()
                })
                .map_err(PipelineError::Spawn)?;
            handles.push(handle);
        }
        Ok(())
    }

    /// Whether the shards are still parked, so that receive workers may take them
    /// ([`Pipeline::inline_ingress`]).
    pub fn inline_available(&self) -> bool {
        lock(&self.parked).iter().all(Option::is_some)
    }

    /// How many shards (module instance sets) there are.
    pub fn shard_count(&self) -> usize {
        self.shard_counters.len()
    }

    /// An ingest handle that runs shard `shard`'s modules itself, on the calling thread, on every packet
    /// it is given (run-to-completion dispatch): no queue, no shard thread. The caller must make sure
    /// that both directions of a flow reach the same handle (the kernel does, with the program of
    /// [`reuseport`]), and must call [`Ingress::beat`] and [`Ingress::idle`] as a shard thread would
    /// wake up: that is what keeps heartbeats, wall-clock ticks and reloads going. `None` when the
    /// shard is not parked (already taken, or running as a thread).
    pub fn inline_ingress(&self, shard: usize) -> Option<Ingress> {
        let taken = lock(&self.parked).get_mut(shard)?.take()?;
        self.inline_taken.store(true, Ordering::Relaxed);
        let mut lane = Lane::new(self.senders[shard].clone(), 1);
        lane.inline = Some(Box::new(taken));
        Some(Ingress {
            resolver: SessionResolver::new(self.sessions.clone()),
            router: Router {
                lanes: vec![lane],
                counters: self.accounting.register(),
                snaplen: self.snaplen.clone(),
            },
        })
    }

    /// The configuration the pipeline was built from.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The configured modules, in order.
    pub fn modules(&self) -> &[ModuleSpec] {
        &self.specs
    }

    /// The session registry.
    pub fn sessions(&self) -> &Arc<SessionTable> {
        &self.sessions
    }

    /// Datagram accounting.
    pub fn accounting(&self) -> &Arc<Accounting> {
        &self.accounting
    }

    /// Per-shard counters, module counters included.
    pub fn shard_counters(&self) -> &[Arc<ShardCounters>] {
        &self.shard_counters
    }

    /// Packets the shards have processed so far, all shards together. Compared with
    /// `accounting().snapshot().dispatched`, it tells whether the shards have caught up with
    /// what ingest handed them (benchmarks and tests wait on it).
    pub fn processed_packets(&self) -> u64 {
        self.shard_counters
            .iter()
            .map(|c| c.packets.load(Ordering::Relaxed))
            .sum()
    }

    /// Changes the global snap length (0 = off) for packets ingested from now on.
    pub fn set_snaplen(&self, snaplen: u32) {
        self.snaplen.store(snaplen, Ordering::Relaxed);
    }

    /// Gives every shard new settings for its modules (config reload). The kinds must be those the
    /// pipeline was built with, in the same order; adding, removing or reordering modules needs a
    /// restart. Each shard builds fresh instances between two batches, flushes the old ones (so what
    /// they held is emitted, not lost) and swaps them in; counters carry on. A shard that cannot build
    /// the new instances keeps the old ones and logs why.
    pub fn reconfigure_modules(&self, specs: &[ModuleSpec]) -> Result<(), ModulesChanged> {
        let kinds = |s: &[ModuleSpec]| s.iter().map(|m| m.kind.clone()).collect::<Vec<_>>();
        if kinds(specs) != kinds(&self.specs) {
            return Err(ModulesChanged);
        }
        for tx in &self.controls {
            // A shard that has stopped needs no new settings.
            let _ = tx.send(Reconfigure(specs.to_vec()));
        }
        Ok(())
    }

    /// A session for plain (unencapsulated) frames, named after their source, e.g. a capture file.
    pub fn plain_session(&self, name: &str) -> Arc<Session> {
        Arc::new(Session::plain(
            name,
            self.next_plain_id.fetch_sub(1, Ordering::Relaxed),
        ))
    }

    /// Waits for every shard to process what it was sent and flush its modules. Every [`Ingress`] must
    /// have been dropped first (that is what tells the shards no more is coming).
    pub fn finish(self) -> PipelineReport {
        let Pipeline {
            senders,
            handles,
            parked,
            accounting,
            shard_counters,
            sessions,
            ..
        } = self;
        drop(senders);
        for h in handles.into_inner().unwrap_or_else(|e| e.into_inner()) {
            if h.join().is_err() {
                tracing::error!(message = "A shard thread panicked outside a module.");
            }
        }
        // Shards that never ran (no ingest was started) still flush, as a stopped shard thread would.
        for mut shard in parked
            .into_inner()
            .unwrap_or_else(|e| e.into_inner())
            .into_iter()
            .flatten()
        {
            shard.flush();
        }
        PipelineReport {
            counts: accounting.snapshot(),
            shard_packets: shard_counters
                .iter()
                .map(|c| c.packets.load(Ordering::Relaxed))
                .collect(),
            sessions: sessions.sessions(),
        }
    }
}

/// One worker → one shard: the batch being filled and the pool of batches coming back.
struct Lane {
    tx: Sender<Box<Batch>>,
    free_tx: Sender<Box<Batch>>,
    free_rx: Receiver<Box<Batch>>,
    current: Option<Box<Batch>>,
    allocated: usize,
    max_batches: usize,
    /// Offline: when the allowance is used up, wait for a batch to come back (until this shard's
    /// thread is gone) instead of dropping.
    wait_on: Option<Arc<AtomicBool>>,
    /// Run-to-completion: the shard itself, which processes each batch in place instead of receiving
    /// it over the channel.
    inline: Option<Box<Shard>>,
}

impl Lane {
    fn new(tx: Sender<Box<Batch>>, max_batches: usize) -> Lane {
        // Bounded, not unbounded: crossbeam's unbounded channel allocates a block every 31 sends, which
        // would be a steady allocation on the shard's return path. No more than `max_batches` batches
        // ever exist for this lane, so the returning send never waits.
        let (free_tx, free_rx) = crossbeam_channel::bounded(max_batches);
        Lane {
            tx,
            free_tx,
            free_rx,
            current: None,
            allocated: 0,
            max_batches,
            wait_on: None,
            inline: None,
        }
    }

    /// The batch to append to, or `None` when this worker already has its whole allowance in flight
    /// (the shard is behind).
    #[inline]
    fn batch(&mut self) -> Option<&mut Box<Batch>> {
        if self.current.is_none() {
            self.current = match self.free_rx.try_recv() {
                Ok(b) => Some(b),
                Err(_) if self.allocated < self.max_batches => {
                    self.allocated += 1;
                    Some(Batch::new(self.free_tx.clone()))
                }
                Err(_) => self.wait_for_batch(),
            };
        }
        self.current.as_mut()
    }

    #[cold]
    fn wait_for_batch(&self) -> Option<Box<Batch>> {
        let gone = self.wait_on.as_ref()?;
        loop {
            match self
                .free_rx
                .recv_timeout(std::time::Duration::from_millis(20))
            {
                Ok(b) => return Some(b),
                Err(_) if gone.load(Ordering::Acquire) => return None,
                Err(_) => {}
            }
        }
    }

    /// Sends the current batch; returns how many packets went and how many were dropped and why.
    fn send(&mut self) -> (u64, Option<(DropReason, u64)>) {
        let Some(batch) = self.current.take() else {
            return (0, None);
        };
        let n = batch.entries.len() as u64;
        if n == 0 {
            self.current = Some(batch);
            return (0, None);
        }
        if let Some(shard) = self.inline.as_mut() {
            // Settings from a reload apply between batches, as on a shard thread.
            shard.apply_control();
            shard.process(&batch);
            let mut batch = batch;
            batch.clear();
            self.current = Some(batch);
            return (n, None);
        }
        let sent = if self.wait_on.is_some() {
            // The channel holds every batch this lane may have in flight, so this wait is brief
            // unless the shard is stuck; a stopped shard disconnects it.
            self.tx
                .send(batch)
                .map_err(|e| TrySendError::Disconnected(e.into_inner()))
        } else {
            self.tx.try_send(batch)
        };
        match sent {
            Ok(()) => (n, None),
            Err(TrySendError::Full(mut b)) => {
                b.count_dropped();
                b.clear();
                self.current = Some(b);
                (0, Some((DropReason::ShardQueueFull, n)))
            }
            Err(TrySendError::Disconnected(mut b)) => {
                b.count_dropped();
                b.clear();
                self.current = Some(b);
                (0, Some((DropReason::ShardStopped, n)))
            }
        }
    }
}

/// One ingest thread's door into the pipeline.
pub struct Ingress {
    resolver: SessionResolver,
    router: Router,
}

impl std::fmt::Debug for Ingress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ingress")
            .field("shards", &self.router.lanes.len())
            .finish()
    }
}

impl Ingress {
    /// Handles one UDP payload that arrived from `source` on a listener of kind `encap`.
    #[inline]
    pub fn datagram(&mut self, ts: Timestamp, source: IpAddr, encap: Encap, payload: &[u8]) {
        self.router.counters.received(payload.len());
        let d = match decap::decapsulate(encap, payload) {
            Ok(d) => d,
            Err(reason) => return self.router.counters.dropped(reason, 1),
        };
        let key = SessionKey {
            source: d.source.unwrap_or(source).to_canonical(),
            vni: d.vni,
        };
        // Disjoint borrows: the session stays borrowed from the worker's cache, so the hot path takes
        // no reference count (an atomic on a cache line shared by every worker receiving that session).
        match self.resolver.resolve(key, ts) {
            Ok(session) => self
                .router
                .frame_in(ts, session, d.frame, d.frame.len() as u32),
            Err(reason) => self.router.counters.dropped(reason, 1),
        }
    }

    /// Counts a datagram that was received but is unusable before decapsulation (e.g. cut by the
    /// kernel because it exceeded the buffer).
    pub fn refuse(&mut self, bytes: usize, reason: DropReason) {
        self.router.counters.received(bytes);
        self.router.counters.dropped(reason, 1);
    }

    /// Handles a frame that arrived without encapsulation, in a session the caller chose (replay of a
    /// plain capture, interface capture). `orig_len` is its length on the wire when the capture cut it.
    pub fn plain_frame(
        &mut self,
        ts: Timestamp,
        session: &Arc<Session>,
        frame: &[u8],
        orig_len: u32,
    ) {
        self.router.counters.received(frame.len());
        if frame.is_empty() {
            return self.router.counters.dropped(DropReason::EmptyFrame, 1);
        }
        self.router
            .frame_in(ts, session, frame, orig_len.max(frame.len() as u32));
    }

    /// Hands every partly filled batch to its shard and revalidates the session cache. Call whenever
    /// the source has nothing more at hand (a short receive batch, an empty socket, the end of a file),
    /// so packets never wait for more traffic; under load, calling it every few full receive batches
    /// gives shards fuller batches and fewer wake-ups.
    pub fn flush(&mut self) {
        for shard in 0..self.router.lanes.len() {
            self.router.send(shard);
        }
        self.resolver.refresh();
    }

    /// This worker's counters.
    pub fn counters(&self) -> &Arc<WorkerCounters> {
        &self.router.counters
    }

    /// Records a sign of life at `now` (wall clock): the worker's heartbeat, and that of a shard this
    /// handle runs itself. Call after every receive call, as the UDP workers do.
    pub fn beat(&mut self, now: Timestamp) {
        self.router.counters.beat(now.nanos());
        for shard in self.router.inline_shards() {
            shard.beat(now);
        }
    }

    /// The source had nothing at hand until `now` (wall clock): a shard this handle runs itself
    /// applies new module settings and ticks on the wall clock when a tick is due, as an idle shard
    /// thread does. Call after [`Ingress::flush`]. Nothing to do for hand-off handles.
    pub fn idle(&mut self, now: Timestamp) {
        for shard in self.router.inline_shards() {
            shard.idle(now);
        }
    }

    /// Whether this handle runs its shard's modules itself (run-to-completion).
    pub fn is_inline(&self) -> bool {
        self.router.lanes.iter().any(|l| l.inline.is_some())
    }
}

/// The part of an [`Ingress`] past session lookup: truncation, dissection, steering and batching.
struct Router {
    lanes: Vec<Lane>,
    counters: Arc<WorkerCounters>,
    snaplen: Arc<AtomicU32>,
}

impl Router {
    /// The shards this handle runs itself (run-to-completion); none for hand-off handles.
    fn inline_shards(&mut self) -> impl Iterator<Item = &mut Shard> {
        self.lanes
            .iter_mut()
            .filter_map(|l| l.inline.as_deref_mut())
    }

    #[inline]
    fn frame_in(&mut self, ts: Timestamp, session: &Arc<Session>, frame: &[u8], orig_len: u32) {
        let snap = match (session.truncate, self.snaplen.load(Ordering::Relaxed)) {
            (Some(s), _) => s,
            (None, s) => s,
        };
        let frame = if snap > 0 && frame.len() > snap as usize {
            &frame[..snap as usize]
        } else {
            frame
        };
        let layers = inner::dissect(frame);
        let shard = match self.lanes.len() {
            // One shard (or run-to-completion, where the kernel has steered already): nothing to pick.
            1 => 0,
            n => steer::shard_of(steer::symmetric_hash(session.id, &layers), n),
        };
        self.push(shard, ts, session, frame, orig_len, layers);
    }

    #[inline]
    fn push(
        &mut self,
        shard: usize,
        ts: Timestamp,
        session: &Arc<Session>,
        frame: &[u8],
        orig_len: u32,
        layers: inner::Layers,
    ) {
        let full = match self.lanes[shard].batch() {
            Some(b) => b.is_full_for(frame.len()),
            None => {
                session.count_dropped(1);
                return self.counters.dropped(DropReason::ShardQueueFull, 1);
            }
        };
        if full {
            self.send(shard);
        }
        let Some(batch) = self.lanes[shard].batch() else {
            session.count_dropped(1);
            return self.counters.dropped(DropReason::ShardQueueFull, 1);
        };
        let session = batch.session_index(session);
        let start = batch.data.len() as u32;
        batch.data.extend_from_slice(frame);
        batch.entries.push(Entry {
            start,
            len: frame.len() as u32,
            orig_len,
            session,
            ts,
            layers,
        });
    }

    fn send(&mut self, shard: usize) {
        let (sent, dropped) = self.lanes[shard].send();
        self.counters.dispatched(sent);
        if let Some((reason, n)) = dropped {
            self.counters.dropped(reason, n);
        }
    }
}

impl Drop for Ingress {
    fn drop(&mut self) {
        self.flush();
        // A shard run here ends with this handle: its modules flush as a stopped shard thread's do.
        for shard in self.router.inline_shards() {
            shard.flush();
        }
    }
}
