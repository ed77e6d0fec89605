//! A shard: one instance of every module, and the packets steered to it. A shard runs either on a
//! thread of its own, fed batches over a channel ([`Shard::run_thread`]), or inside a receive worker
//! that hands it each batch in place ([`Shard::process`] with [`Shard::idle`] and [`Shard::beat`]);
//! the shard itself does not know which, so both dispatch modes run the very same code.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrayvec::ArrayVec;
use crossbeam_channel::{Receiver, RecvTimeoutError, TryRecvError};
use rustc_hash::FxHashMap;

use super::batch::{Batch, Mark, BATCH_PACKETS};
use super::tallies::{SessionTallies, SessionTally};
use super::ReadTurn;
use crate::base::counter::bump;
use crate::base::{Packet, SessionKey, Timestamp};
use crate::config::FlowConfig;
use crate::flow::table::{FlowEvents, FlowTable, MAX_FLOW_MODULES};
use crate::flow::{Chunk, Dir, DirInterval, EndReason, Flow, FlowCounters, IntervalSpec};
use crate::modules::{BuildError, Emitter, Module, ModuleContext, ModuleCounters, ModuleSpec};
use crate::sinks::{Collector, Merge, Published, Sink};

/// How long a shard thread that reads in turns waits for a batch before it tries for a turn
/// again: while another thread reads, or while a shard that is behind has no room. Short, as a
/// turn (1,024 records) takes about a fifth of a millisecond; the wait ends at once when a batch
/// comes.
const TURN_POLL: Duration = Duration::from_micros(100);

/// A shard thread reading in turns tries for one before its next batch while it has fewer than
/// this many queued, not only once it has none: reading is the one part of a replay that cannot
/// run on two threads at once, so it should not stop while every thread works through a queue
/// (the L7 replay: 0.56 against 0.62 s, and 0.705 against 0.75 s in busier rounds, with turns
/// only when idle). The price is a look at the queue's length per batch, about 1 % of samples.
const TURN_BELOW: usize = 2;

/// Counters of one shard, read by the control plane.
#[derive(Debug, Default)]
pub struct ShardCounters {
    /// Packets processed by this shard.
    pub packets: AtomicU64,
    /// Wall-clock nanoseconds at the shard's last sign of life (a batch or an idle wake-up).
    pub heartbeat: AtomicU64,
    /// One entry per configured module, in config order.
    pub modules: Vec<Arc<ModuleCounters>>,
    /// Packets and bytes per session processed here, as of the shard's last tick. The shard counts in
    /// a private map and copies it here once per tick, so the admin endpoint sums shards on scrape and
    /// the packet path shares nothing.
    pub sessions: Mutex<FxHashMap<SessionKey, SessionTally>>,
    /// The flow layer's counters, when a module of this shard wants flows.
    pub flows: Option<Arc<FlowCounters>>,
}

/// One module instance on a shard, with what it writes to and what it has counted.
struct ModuleSlot {
    kind: String,
    module: Box<dyn Module>,
    sink: SlotSink,
    counters: Arc<ModuleCounters>,
    /// Set when the instance panicked: it gets no more calls on this shard.
    failed: bool,
    /// [`Module::wants_packets`], asked when the instance was built.
    on_packet: bool,
}

/// Where a module instance's records go.
enum SlotSink {
    /// Its own sink (live: each shard writes its own file series, or its own chunks of stdout).
    Own(Box<dyn Sink>),
    /// The kind's one merged output (replay): see [`Merge`].
    Merged(Box<Collector>),
}

impl SlotSink {
    #[inline]
    fn get(&mut self) -> &mut dyn Sink {
        match self {
            SlotSink::Own(sink) => sink.as_mut(),
            SlotSink::Merged(c) => c.as_mut(),
        }
    }
}

/// New module settings for a shard; see
/// [`Pipeline::reconfigure_modules`](super::Pipeline::reconfigure_modules).
pub(crate) struct Reconfigure(pub(crate) Vec<ModuleSpec>);

/// Why a shard could not be built: which module refused, and why.
#[derive(Debug)]
pub(crate) struct ModuleRefused {
    pub(crate) kind: String,
    pub(crate) source: BuildError,
}

pub(crate) struct Shard {
    index: usize,
    /// Settings from a config reload, applied between batches.
    control: Receiver<Reconfigure>,
    /// What this shard's module instances were built from, to build them again on reload.
    ctx: ModuleContext,
    modules: Vec<ModuleSlot>,
    /// The flow table and which modules (by position) want flow events; only when some do.
    flows: Option<Flows>,
    counters: Arc<ShardCounters>,
    tick_ns: u64,
    next_tick: Option<Timestamp>,
    last_ts: Timestamp,
    scratch: String,
    tallies: SessionTallies,
    /// Replay with merged outputs: ticks come from the ingest ([`Mark`]), records go to collectors.
    ordered: bool,
}

impl std::fmt::Debug for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shard").field("index", &self.index).finish()
    }
}

impl Shard {
    /// Builds one instance of every module in `specs` for the shard `ctx` describes. Modules tick
    /// every `tick_ms` of packet time (and, on a live feed, of wall time while idle). With `merges`
    /// (one per spec), records go to those merged outputs and the shard ticks where the ingest's
    /// marks say, not on its own packets.
    pub(crate) fn new(
        ctx: ModuleContext,
        specs: &[ModuleSpec],
        tick_ms: u64,
        flow: &FlowConfig,
        control: Receiver<Reconfigure>,
        merges: Option<&[Arc<Merge>]>,
    ) -> Result<Shard, ModuleRefused> {
        let mut modules = Vec::with_capacity(specs.len());
        for (i, spec) in specs.iter().enumerate() {
            let refused = |source| ModuleRefused {
                kind: spec.kind.clone(),
                source,
            };
            let (module, sink) = match merges.and_then(|m| m.get(i)) {
                Some(merge) => (
                    spec.factory.build(&ctx).map_err(refused)?,
                    SlotSink::Merged(Box::new(merge.collector(ctx.shard, i))),
                ),
                None => {
                    let (module, sink) = build(spec, &ctx).map_err(refused)?;
                    (module, SlotSink::Own(sink))
                }
            };
            modules.push(ModuleSlot {
                kind: spec.kind.clone(),
                on_packet: module.wants_packets(),
                module,
                sink,
                counters: Arc::new(ModuleCounters::default()),
                failed: false,
            });
        }
        let which = flow_modules(&modules);
        if let Some(&first_over) = which.get(MAX_FLOW_MODULES) {
            return Err(ModuleRefused {
                kind: modules[first_over].kind.clone(),
                source: BuildError::new(format!(
                    "{} modules want flow events; a shard takes at most {MAX_FLOW_MODULES}",
                    which.len()
                )),
            });
        }
        let flows = (!which.is_empty()).then(|| {
            let (spec, riders) = take_up_intervals(&mut modules);
            let mut table = FlowTable::new(flow, which.len());
            table.set_packet_modules(packet_modules(&modules, &which));
            table.set_intervals(spec);
            Flows {
                table,
                modules: which,
                riders,
            }
        });
        let counters = Arc::new(ShardCounters {
            modules: modules.iter().map(|m| m.counters.clone()).collect(),
            flows: flows.as_ref().map(|f| f.table.counters().clone()),
            ..ShardCounters::default()
        });
        Ok(Shard {
            index: ctx.shard,
            control,
            ctx,
            modules,
            flows,
            counters,
            tick_ns: tick_ms.max(1) * 1_000_000,
            next_tick: None,
            last_ts: Timestamp::default(),
            scratch: String::new(),
            tallies: SessionTallies::default(),
            ordered: merges.is_some(),
        })
    }

    pub(crate) fn counters(&self) -> &Arc<ShardCounters> {
        &self.counters
    }

    /// Whether this shard keeps a flow table.
    pub(crate) fn tracks_flows(&self) -> bool {
        self.flows.is_some()
    }

    pub(crate) fn index(&self) -> usize {
        self.index
    }

    /// Hand-off: the shard's own thread. Processes batches as they come and sends each back to its
    /// worker; while none come, it still beats and, on a live feed, ticks on the wall clock. Ends,
    /// after finishing its modules, when every sender is gone.
    /// With a `turn`, the thread also reads the input, a turn at a time, whenever fewer than
    /// [`TURN_BELOW`] batches are queued for it and no other thread is reading; with nothing
    /// queued and no turn to take, it looks again every [`TURN_POLL`].
    pub(crate) fn run_thread(mut self, rx: Receiver<Box<Batch>>, turn: Option<ReadTurn>) {
        let idle = Duration::from_nanos(self.tick_ns);
        loop {
            self.beat(Timestamp::now());
            self.apply_control();
            let next = match &turn {
                None => rx.recv_timeout(idle),
                Some(turn) => {
                    if rx.len() < TURN_BELOW && turn(self.index) {
                        continue;
                    }
                    match rx.try_recv() {
                        Ok(batch) => Ok(batch),
                        Err(TryRecvError::Disconnected) => Err(RecvTimeoutError::Disconnected),
                        Err(TryRecvError::Empty) => rx.recv_timeout(TURN_POLL),
                    }
                }
            };
            match next {
                Ok(mut batch) => {
                    // Settings that arrived while this shard waited apply from this batch on.
                    self.apply_control();
                    self.process(&batch);
                    batch.clear();
                    if let Some(home) = batch.home.clone() {
                        // The worker may be gone (shutdown); the batch is then simply freed.
                        let _ = home.send(batch);
                    }
                }
                Err(RecvTimeoutError::Timeout) => self.tick_if_live(Timestamp::now()),
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        self.finish();
    }

    /// Gives every packet of `batch` to every module, in config order, ticking first whenever a
    /// packet's time reaches the next tick.
    pub(crate) fn process(&mut self, batch: &Batch) {
        self.tallies.begin(batch.sessions.len());
        for entries in batch.entries.chunks(BATCH_PACKETS) {
            let packets: ArrayVec<Packet<'_>, BATCH_PACKETS> = entries
                .iter()
                .map(|e| {
                    let start = e.start as usize;
                    Packet {
                        session: &batch.sessions[usize::from(e.session)],
                        ts: e.ts,
                        frame: &batch.data[start..start + e.len as usize],
                        orig_len: e.orig_len,
                        layers: &e.layers,
                    }
                })
                .collect();
            if let Some(flows) = &mut self.flows {
                flows.table.prepare(&packets);
            }
            for slot in self.modules.iter_mut().filter(|s| !s.failed) {
                let module = &mut slot.module;
                if catch_unwind(AssertUnwindSafe(|| module.prepare(&packets))).is_err() {
                    disable(slot, self.index, "prepare");
                } else if !slot.on_packet {
                    // Not called per packet, but every packet was given to it all the same.
                    slot.counters.packets(packets.len() as u64);
                }
            }
            for (e, pkt) in entries.iter().zip(&packets) {
                self.tallies.count(e.session, e.orig_len);
                if self.ordered {
                    for slot in &mut self.modules {
                        if let SlotSink::Merged(c) = &mut slot.sink {
                            c.at_packet(e.seq);
                        }
                    }
                } else if self.next_tick.is_none_or(|t| pkt.ts >= t) {
                    self.tick(pkt.ts);
                }
                self.last_ts = self.last_ts.max(pkt.ts);
                self.with_flows(pkt.ts, |table, events| table.packet(pkt, events));
                for slot in self.modules.iter_mut().filter(|s| s.on_packet && !s.failed) {
                    slot.counters.packet();
                    let mut out =
                        Emitter::new(slot.sink.get(), &slot.counters, &mut self.scratch, pkt.ts);
                    let module = &mut slot.module;
                    if catch_unwind(AssertUnwindSafe(|| module.on_packet(pkt, &mut out))).is_err() {
                        disable(slot, self.index, "on_packet");
                    }
                }
            }
        }
        self.tallies.end(&batch.sessions);
        bump(&self.counters.packets, batch.entries.len() as u64);
        if self.ordered && !matches!(batch.mark, Some(Mark::Tick { .. })) {
            self.advance();
        }
        match batch.mark {
            Some(Mark::Tick { now, seq }) if self.ordered => {
                self.last_ts = self.last_ts.max(now);
                self.publish(now, Some(seq));
                self.tick(now);
            }
            Some(Mark::End { last }) => self.last_ts = self.last_ts.max(last),
            _ => {}
        }
    }

    /// Ordered: hands every collector's records over to its merge (a disabled module's too, so the
    /// other shards' records are not held back), where a tick at input position `next` follows
    /// (`u64::MAX`: the end), or, with `None`, for the last time.
    fn publish(&mut self, now: Timestamp, next: Option<u64>) {
        self.each_collector(now, |c| match next {
            Some(seq) => c.publish(now, seq),
            None => c.close(now),
        });
    }

    /// Ordered, between batches: tells every merge how far this shard has come (see
    /// `Collector::advance`).
    fn advance(&mut self) {
        self.each_collector(self.last_ts, Collector::advance);
    }

    /// Calls `f` on every collector and counts what the merge's writes did as this shard's
    /// instance's.
    fn each_collector(&mut self, now: Timestamp, mut f: impl FnMut(&mut Collector) -> Published) {
        for slot in &mut self.modules {
            collector_call(slot, &mut self.scratch, now, &mut f);
        }
    }

    /// A sign of life at `now` (wall clock), for the health check and the watchdog.
    pub(crate) fn beat(&self, now: Timestamp) {
        self.counters
            .heartbeat
            .store(now.nanos(), Ordering::Relaxed);
    }

    /// Run-to-completion: what a shard thread does when no batch came for a while. Reloads apply,
    /// and a live shard ticks on the wall clock once a tick is due (a thread would tick after
    /// `tick_ms` without batches; a worker wakes at least every receive timeout, so it checks the
    /// due time).
    pub(crate) fn idle(&mut self, now: Timestamp) {
        self.apply_control();
        if self.next_tick.is_none_or(|t| now >= t) {
            self.tick_if_live(now);
        }
    }

    /// Offline, time is packet time only: an idle replay must not tick on the wall clock, or its
    /// output would depend on how fast the file was read.
    fn tick_if_live(&mut self, now: Timestamp) {
        if self.ctx.feed.is_live() {
            self.tick(now.max(self.last_ts));
        }
    }

    fn tick(&mut self, now: Timestamp) {
        self.next_tick = Some(now.next_boundary(self.tick_ns));
        self.end_flows(now, None);
        let on_tick = |m: &mut dyn Module, out: &mut Emitter<'_>| m.on_tick(now, out);
        match self.flows.as_ref().and_then(|f| f.riders.first().copied()) {
            // An interval that ends here is handed over in the first rider's own turn, once the
            // modules before it have passed the tick: an ordered replay's merge may then hold that
            // shard back while the others catch up (its bound), which it must not do while earlier
            // modules are still open.
            Some(first) => {
                self.each_module_in(0..first, now, "on_tick", on_tick);
                if let SlotSink::Merged(c) = &mut self.modules[first].sink {
                    c.tick_call();
                }
                self.close_interval(now);
                self.each_module_in(first..self.modules.len(), now, "on_tick", on_tick);
            }
            None => self.each_module_at(now, "on_tick", on_tick),
        }
        self.tallies.publish(&self.counters.sessions);
    }

    /// Hands the flow table's interval counters over to the riders, if an interval ended by `now`.
    fn close_interval(&mut self, now: Timestamp) {
        self.with_flows(now, |table, events| {
            table.close_interval_if_due(now, events)
        });
    }

    /// Runs `f` on the flow table, if the shard keeps one, with the modules as its events at `now`.
    #[inline]
    fn with_flows(
        &mut self,
        now: Timestamp,
        f: impl FnOnce(&mut FlowTable, &mut ModuleEvents<'_>),
    ) {
        let Some(flows) = &mut self.flows else { return };
        let mut events = ModuleEvents {
            modules: &mut self.modules,
            which: &flows.modules,
            riders: &flows.riders,
            scratch: &mut self.scratch,
            shard: self.index,
            now,
        };
        f(&mut flows.table, &mut events);
    }

    /// A tick's or the end's call of every working module, in config order: its sink flushed
    /// after, and, ordered, its collector settled, so that the modules after it on the same output
    /// need not wait for it.
    fn each_module_at(
        &mut self,
        now: Timestamp,
        during: &str,
        call: impl FnMut(&mut dyn Module, &mut Emitter<'_>),
    ) {
        self.each_module_in(0..self.modules.len(), now, during, call);
    }

    /// `each_module_at` for the modules at positions `range`.
    fn each_module_in(
        &mut self,
        range: std::ops::Range<usize>,
        now: Timestamp,
        during: &str,
        mut call: impl FnMut(&mut dyn Module, &mut Emitter<'_>),
    ) {
        for slot in &mut self.modules[range] {
            if !slot.failed {
                if let SlotSink::Merged(c) = &mut slot.sink {
                    c.tick_call();
                }
                let mut out = Emitter::new(slot.sink.get(), &slot.counters, &mut self.scratch, now);
                let module = slot.module.as_mut();
                if catch_unwind(AssertUnwindSafe(|| {
                    call(module, &mut out);
                    out.flush_sink();
                }))
                .is_err()
                {
                    disable(slot, self.index, during);
                }
            }
            // A disabled module's collector too: other shards' collectors may wait at this tick
            // for it to pass (`Merge`'s bound), and only the next batch would move it otherwise.
            collector_call(slot, &mut self.scratch, now, Collector::settle);
        }
    }

    /// The modules' last call: they emit everything they hold (the input has ended, or a reload is
    /// about to replace them) and their sinks are flushed.
    pub(crate) fn finish(&mut self) {
        let end = if self.ctx.feed.is_live() {
            EndReason::Shutdown
        } else {
            EndReason::EndOfReplay
        };
        self.finish_with(end);
    }

    /// Ends every flow (so flow-aware modules emit what they hold for each), then finishes the
    /// modules.
    fn finish_with(&mut self, flows_end: EndReason) {
        if self.ordered {
            // What the end emits comes after everything before it.
            self.publish(self.last_ts, Some(u64::MAX));
        }
        self.end_flows(self.last_ts, Some(flows_end));
        self.tallies.publish(&self.counters.sessions);
        self.each_module_at(self.last_ts, "finish", |m, out| m.finish(out));
        if self.ordered {
            self.publish(self.last_ts, None);
        }
    }

    /// Ends the flows that timed out by `now` or, with `all`, every flow for that reason.
    fn end_flows(&mut self, now: Timestamp, all: Option<EndReason>) {
        self.with_flows(now, |table, events| match all {
            Some(reason) => table.end_all(reason, now, events),
            None => table.expire(now, events),
        });
    }

    /// Applies settings from config reloads that arrived since the last call.
    pub(crate) fn apply_control(&mut self) {
        while let Ok(Reconfigure(specs)) = self.control.try_recv() {
            self.reconfigure(&specs);
        }
    }

    fn reconfigure(&mut self, specs: &[ModuleSpec]) {
        if self.ordered {
            // Every shard of an ordered replay must end its segments at the same places in the
            // input; a reload, which each shard applies between its own batches, cannot.
            tracing::error!(
                message = "Module settings cannot change during an ordered replay; keeping them.",
                shard = self.index
            );
            return;
        }
        let mut fresh = Vec::with_capacity(specs.len());
        for (spec, slot) in specs.iter().zip(&self.modules) {
            match build(spec, &self.ctx) {
                Ok(pair) => fresh.push(pair),
                Err(error) => {
                    bump(&slot.counters.errors, 1);
                    tracing::error!(message = "Cannot apply new module settings; keeping the old ones on this shard.", kind = %spec.kind, shard = self.index, %error);
                    return;
                }
            }
        }
        // The old instances emit what they hold before they go: a reload loses no record. Their
        // flows end with them; the new instances start tracking from the next packet.
        self.finish_with(EndReason::Reload);
        for (slot, (module, sink)) in self.modules.iter_mut().zip(fresh) {
            slot.on_packet = module.wants_packets();
            slot.module = module;
            slot.sink = SlotSink::Own(sink);
            slot.failed = false;
        }
        if let Some(flows) = &mut self.flows {
            flows.modules = flow_modules(&self.modules);
            let (spec, riders) = if flows.modules.is_empty() {
                (None, Vec::new())
            } else {
                take_up_intervals(&mut self.modules)
            };
            flows.riders = riders;
            // The old instances' flows ended with them: the table is empty.
            flows.table.set_intervals(spec);
            flows
                .table
                .set_packet_modules(packet_modules(&self.modules, &flows.modules));
        }
        tracing::info!(message = "New module settings applied.", shard = self.index);
    }
}

/// A module instance and the sink it writes to.
type Instance = (Box<dyn Module>, Box<dyn Sink>);

fn build(spec: &ModuleSpec, ctx: &ModuleContext) -> Result<Instance, BuildError> {
    Ok((spec.factory.build(ctx)?, spec.factory.sink(ctx)?))
}

/// Calls `f` on the slot's collector, if it writes to a merge, and counts what the merge's writes
/// did as this instance's.
fn collector_call(
    slot: &mut ModuleSlot,
    scratch: &mut String,
    now: Timestamp,
    f: impl FnOnce(&mut Collector) -> Published,
) {
    if let SlotSink::Merged(c) = &mut slot.sink {
        let Published {
            written: _,
            failed,
            uploads,
            kafka,
        } = f(c);
        if failed > 0 {
            bump(&slot.counters.errors, failed);
        }
        let mut out = Emitter::new(c.as_mut(), &slot.counters, scratch, now);
        out.uploads(uploads);
        out.kafka(kafka);
    }
}

/// A module that panicked is switched off on its shard rather than taking the shard (and with it every
/// other module's packets) down.
fn disable(slot: &mut ModuleSlot, shard: usize, during: &str) {
    slot.failed = true;
    bump(&slot.counters.errors, 1);
    tracing::error!(message = "Module panicked; disabled on this shard.", kind = %slot.kind, shard, during);
}

/// A shard's flow table and the modules that want its events.
struct Flows {
    table: FlowTable,
    /// Positions of the flow-aware modules in the shard's module list, in config order.
    modules: Vec<usize>,
    /// Positions of the modules that take the table's interval counters, in config order.
    riders: Vec<usize>,
}

/// Gives the table's interval counters to the modules that offer to ride them
/// ([`Module::flow_intervals`]), on a shard that keeps a flow table anyway: the first such
/// module's interval, and every later one asking for the same. Returns the interval and the
/// riders' positions; a module asking for another interval keeps counting itself.
fn take_up_intervals(modules: &mut [ModuleSlot]) -> (Option<IntervalSpec>, Vec<usize>) {
    let mut spec: Option<IntervalSpec> = None;
    let mut riders = Vec::new();
    for (i, slot) in modules.iter_mut().enumerate() {
        let Some(asked) = slot.module.flow_intervals() else {
            continue;
        };
        if spec.is_some_and(|s| s != asked) {
            continue;
        }
        spec = Some(asked);
        slot.module.use_flow_intervals();
        slot.on_packet = slot.module.wants_packets();
        riders.push(i);
    }
    (spec, riders)
}

/// The flow-aware modules, by position (more than [`MAX_FLOW_MODULES`] is refused at build).
fn flow_modules(modules: &[ModuleSlot]) -> Vec<usize> {
    modules
        .iter()
        .enumerate()
        .filter(|(_, m)| m.module.wants_flows())
        .map(|(i, _)| i)
        .collect()
}

/// The flow-aware modules that want `on_flow_packet` ([`Module::wants_flow_packets`]), one bit per
/// place in `which` (below [`MAX_FLOW_MODULES`]): every new flow starts with these bits, and a
/// module clears its own for one flow with `Flow::stop_packets`.
fn packet_modules(modules: &[ModuleSlot], which: &[usize]) -> u16 {
    (0..which.len())
        .filter(|&k| modules[which[k]].module.wants_flow_packets())
        .fold(0, |m, k| m | 1 << k)
}

/// The shard's side of the flow table's events: each flow-aware module in config order, with its
/// own sink and counters, and the same panic isolation as packets get.
struct ModuleEvents<'a> {
    modules: &'a mut [ModuleSlot],
    which: &'a [usize],
    riders: &'a [usize],
    scratch: &'a mut String,
    shard: usize,
    now: Timestamp,
}

impl ModuleEvents<'_> {
    fn each(
        &mut self,
        flow: &mut Flow<'_>,
        during: &str,
        only_wanting: Option<Dir>,
        call: impl FnMut(&mut dyn Module, &mut Flow<'_>, &mut Emitter<'_>),
    ) {
        self.each_of(0..self.which.len(), flow, during, only_wanting, call);
    }

    /// `each`, for the flow-aware modules at places `ks` of `which`.
    fn each_of(
        &mut self,
        ks: impl Iterator<Item = usize>,
        flow: &mut Flow<'_>,
        during: &str,
        only_wanting: Option<Dir>,
        mut call: impl FnMut(&mut dyn Module, &mut Flow<'_>, &mut Emitter<'_>),
    ) {
        for k in ks {
            let slot = &mut self.modules[self.which[k]];
            if slot.failed {
                continue;
            }
            flow.set_module(k);
            if only_wanting.is_some_and(|d| !flow.wants_stream(d)) {
                continue;
            }
            let mut out = Emitter::new(slot.sink.get(), &slot.counters, self.scratch, self.now);
            let module = slot.module.as_mut();
            if catch_unwind(AssertUnwindSafe(|| call(module, flow, &mut out))).is_err() {
                disable(slot, self.shard, during);
            }
        }
    }

    /// Calls every working module that rides the table's interval counters, with the same panic
    /// isolation.
    fn each_rider(
        &mut self,
        now: Timestamp,
        during: &str,
        mut call: impl FnMut(usize, &mut dyn Module, &mut Emitter<'_>),
    ) {
        for &i in self.riders {
            let slot = &mut self.modules[i];
            if slot.failed {
                continue;
            }
            let mut out = Emitter::new(slot.sink.get(), &slot.counters, self.scratch, now);
            let module = slot.module.as_mut();
            if catch_unwind(AssertUnwindSafe(|| call(i, module, &mut out))).is_err() {
                disable(slot, self.shard, during);
            }
        }
    }
}

impl FlowEvents for ModuleEvents<'_> {
    fn start(&mut self, flow: &mut Flow<'_>, pkt: &Packet<'_>) {
        self.each(flow, "on_flow_start", None, |m, f, out| {
            m.on_flow_start(f, pkt, out)
        });
    }

    fn packet(&mut self, flow: &mut Flow<'_>, pkt: &Packet<'_>, dir: Dir) {
        // Only the modules that want packets and have not stopped this flow's.
        let still = flow.packet_modules();
        self.each_of(
            (0..self.which.len()).filter(|&k| still & 1 << k != 0),
            flow,
            "on_flow_packet",
            None,
            |m, f, out| m.on_flow_packet(f, pkt, dir, out),
        );
    }

    fn stream(&mut self, flow: &mut Flow<'_>, dir: Dir, chunk: &Chunk<'_>) {
        self.each(flow, "on_stream", Some(dir), |m, f, out| {
            m.on_stream(f, dir, chunk, out)
        });
    }

    fn end(&mut self, flow: &mut Flow<'_>, reason: EndReason) {
        self.each(flow, "on_flow_end", None, |m, f, out| {
            m.on_flow_end(f, reason, out)
        });
    }

    fn interval(&mut self, interval: &DirInterval<'_>) {
        let now = self.now;
        let which = self.which;
        let mut d = *interval;
        self.each_rider(now, "on_flow_interval", |i, m, out| {
            // A flow-aware rider is shown its own tag.
            d.set_module(which.iter().position(|&w| w == i));
            m.on_flow_interval(&d, out)
        });
    }

    fn interval_end(&mut self, now: Timestamp) {
        self.each_rider(now, "on_flow_interval_end", |_, m, out| {
            m.on_flow_interval_end(now, out)
        });
    }
}
