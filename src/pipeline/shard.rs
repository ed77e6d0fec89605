//! A shard: one thread owning one instance of every module, fed batches of packets by the workers.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrayvec::ArrayVec;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use rustc_hash::FxHashMap;

use super::packet::{Packet, Timestamp};
use crate::modules::{Emitter, Module, ModuleContext, ModuleCounters, ModuleSpec};
use crate::session::{Session, SessionKey};
use crate::sinks::Sink;
use crate::wire::inner::Layers;

/// Packets per batch: enough to amortise a channel hand-off, few enough to keep latency low.
pub(crate) const BATCH_PACKETS: usize = 64;
/// Initial frame bytes per batch: seven jumbo frames.
pub(crate) const BATCH_BYTES: usize = 64 * 1024;

/// One packet in a batch: where its bytes are, and what ingest already learned about it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Entry {
    pub(crate) start: u32,
    pub(crate) len: u32,
    pub(crate) orig_len: u32,
    pub(crate) session: u16,
    pub(crate) ts: Timestamp,
    pub(crate) layers: Layers,
}

/// Packets travelling from one worker to one shard. Batches are allocated once and cycle between the
/// worker's free pool and the shard, so steady-state ingest allocates nothing.
#[derive(Debug)]
pub(crate) struct Batch {
    pub(crate) data: Vec<u8>,
    pub(crate) entries: Vec<Entry>,
    /// The sessions the entries refer to, by index: one reference count per session per batch rather
    /// than per packet.
    pub(crate) sessions: Vec<Arc<Session>>,
    home: Sender<Box<Batch>>,
}

impl Batch {
    pub(crate) fn new(home: Sender<Box<Batch>>) -> Box<Batch> {
        Box::new(Batch {
            data: Vec::with_capacity(BATCH_BYTES),
            entries: Vec::with_capacity(BATCH_PACKETS),
            sessions: Vec::with_capacity(4),
            home,
        })
    }

    pub(crate) fn clear(&mut self) {
        self.data.clear();
        self.entries.clear();
        self.sessions.clear();
    }

    /// Index of `session` in this batch, adding it if new. A batch holds the few sessions whose traffic
    /// arrived together, so a scan from the newest (pointer compares) beats hashing.
    #[inline]
    pub(crate) fn session_index(&mut self, session: &Arc<Session>) -> u16 {
        if let Some(i) = self.sessions.iter().rposition(|s| Arc::ptr_eq(s, session)) {
            return i as u16;
        }
        self.sessions.push(session.clone());
        (self.sessions.len() - 1) as u16
    }

    /// Charges every packet of a batch that could not be sent to its session (drop path only).
    pub(crate) fn count_dropped(&self) {
        for e in &self.entries {
            if let Some(s) = self.sessions.get(usize::from(e.session)) {
                s.count_dropped(1);
            }
        }
    }

    pub(crate) fn is_full_for(&self, frame_len: usize) -> bool {
        self.entries.len() >= BATCH_PACKETS
            || self.sessions.len() >= usize::from(u16::MAX)
            || (!self.entries.is_empty() && self.data.len() + frame_len > self.data.capacity())
    }
}

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
}

/// What one shard processed for one session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionTally {
    /// Packets.
    pub packets: u64,
    /// Inner frame bytes as they were on the wire (before truncation).
    pub bytes: u64,
    /// The shard tick at which this session last had a packet; only used to bound the map.
    touched: u64,
}

/// Sessions a shard keeps tallies for before it forgets the longest idle ones: learned sessions come
/// and go, and a tally must not outlive them forever.
const MAX_TALLIED_SESSIONS: usize = 16_384;

/// A shard's private per-session counts.
#[derive(Debug, Default)]
pub(crate) struct SessionTallies {
    map: FxHashMap<SessionKey, SessionTally>,
    /// Counts for the batch being processed, indexed like `Batch::sessions`, so the map is touched once
    /// per session per batch rather than per packet.
    batch: Vec<(u64, u64)>,
    ticks: u64,
    dirty: bool,
}

impl SessionTallies {
    fn begin(&mut self, sessions: usize) {
        self.batch.clear();
        self.batch.resize(sessions, (0, 0));
    }

    #[inline]
    fn count(&mut self, session: u16, orig_len: u32) {
        if let Some(t) = self.batch.get_mut(usize::from(session)) {
            t.0 += 1;
            t.1 += u64::from(orig_len);
        }
    }

    fn end(&mut self, sessions: &[Arc<Session>]) {
        for (s, (packets, bytes)) in sessions.iter().zip(&self.batch) {
            if *packets > 0 {
                let t = self.map.entry(s.key).or_default();
                t.packets += packets;
                t.bytes += bytes;
                t.touched = self.ticks;
                self.dirty = true;
            }
        }
    }

    fn publish(&mut self, to: &Mutex<FxHashMap<SessionKey, SessionTally>>) {
        self.ticks += 1;
        if !self.dirty {
            return;
        }
        self.dirty = false;
        if self.map.len() > MAX_TALLIED_SESSIONS {
            let mut touched: Vec<u64> = self.map.values().map(|t| t.touched).collect();
            touched.sort_unstable();
            let cut = touched[self.map.len() - MAX_TALLIED_SESSIONS];
            self.map.retain(|_, t| t.touched >= cut);
        }
        let mut published = to.lock().unwrap_or_else(|e| e.into_inner());
        published.clone_from(&self.map);
    }
}

pub(crate) struct ModuleSlot {
    pub(crate) kind: String,
    pub(crate) module: Box<dyn Module>,
    pub(crate) sink: Box<dyn Sink>,
    pub(crate) counters: Arc<ModuleCounters>,
    pub(crate) failed: bool,
}

/// New module settings for a shard; see [`Pipeline::reconfigure_modules`](super::Pipeline::reconfigure_modules).
pub(crate) struct Reconfigure(pub(crate) Vec<ModuleSpec>);

pub(crate) struct Shard {
    pub(crate) index: usize,
    pub(crate) rx: Receiver<Box<Batch>>,
    pub(crate) control: Receiver<Reconfigure>,
    /// What this shard's module instances were built from, to build them again on reload.
    pub(crate) ctx: ModuleContext,
    pub(crate) modules: Vec<ModuleSlot>,
    pub(crate) counters: Arc<ShardCounters>,
    pub(crate) tick_ns: u64,
    /// Live runs tick on the wall clock while idle; replays only on packet time.
    pub(crate) idle_ticks: bool,
    pub(crate) next_tick: Option<Timestamp>,
    pub(crate) last_ts: Timestamp,
    pub(crate) scratch: String,
    pub(crate) tallies: SessionTallies,
}

impl std::fmt::Debug for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shard").field("index", &self.index).finish()
    }
}

impl Shard {
    pub(crate) fn run(mut self) {
        let idle = Duration::from_nanos(self.tick_ns);
        loop {
            self.counters
                .heartbeat
                .store(Timestamp::now().nanos(), Ordering::Relaxed);
            self.apply_control();
            match self.rx.recv_timeout(idle) {
                Ok(mut batch) => {
                    // Settings that arrived while this shard waited apply from this batch on.
                    self.apply_control();
                    self.process(&batch);
                    batch.clear();
                    let home = batch.home.clone();
                    // The worker may be gone (shutdown); the batch is then simply freed.
                    let _ = home.send(batch);
                }
                Err(RecvTimeoutError::Timeout) => {
                    if self.idle_ticks {
                        let now = Timestamp::now().max(self.last_ts);
                        self.tick(now);
                    }
                }
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        self.flush();
    }

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
            for slot in self.modules.iter_mut().filter(|s| !s.failed) {
                let module = &mut slot.module;
                if catch_unwind(AssertUnwindSafe(|| module.prepare(&packets))).is_err() {
                    disable(slot, self.index, "prepare");
                }
            }
            for (e, pkt) in entries.iter().zip(&packets) {
                self.tallies.count(e.session, e.orig_len);
                if self.next_tick.is_some_and(|t| pkt.ts >= t) || self.next_tick.is_none() {
                    self.tick(pkt.ts);
                }
                self.last_ts = self.last_ts.max(pkt.ts);
                for slot in self.modules.iter_mut().filter(|s| !s.failed) {
                    slot.counters.packet();
                    let mut out = Emitter::new(
                        slot.sink.as_mut(),
                        &slot.counters,
                        &mut self.scratch,
                        pkt.ts,
                    );
                    let module = &mut slot.module;
                    if catch_unwind(AssertUnwindSafe(|| module.on_packet(pkt, &mut out))).is_err() {
                        disable(slot, self.index, "on_packet");
                    }
                }
            }
        }
        self.tallies.end(&batch.sessions);
        let n = batch.entries.len() as u64;
        let p = &self.counters.packets;
        p.store(p.load(Ordering::Relaxed) + n, Ordering::Relaxed);
    }

    /// Run-to-completion: a sign of life from the worker that runs this shard.
    pub(crate) fn beat(&self, now: Timestamp) {
        self.counters
            .heartbeat
            .store(now.nanos(), Ordering::Relaxed);
    }

    /// Run-to-completion: what a shard thread does when no batch came for a while. Reloads apply, and
    /// a live shard ticks on the wall clock once a tick is due (a thread would tick after `tick_ms`
    /// without batches; a worker wakes at least every receive timeout, so it checks the due time).
    pub(crate) fn idle(&mut self, now: Timestamp) {
        self.apply_control();
        if self.idle_ticks && self.next_tick.is_none_or(|t| now >= t) {
            self.tick(now.max(self.last_ts));
        }
    }

    fn tick(&mut self, now: Timestamp) {
        self.next_tick = Some(Timestamp::from_nanos(
            (now.nanos() / self.tick_ns + 1) * self.tick_ns,
        ));
        for slot in self.modules.iter_mut().filter(|s| !s.failed) {
            let mut out = Emitter::new(slot.sink.as_mut(), &slot.counters, &mut self.scratch, now);
            let module = &mut slot.module;
            if catch_unwind(AssertUnwindSafe(|| {
                module.on_tick(now, &mut out);
                out.flush_sink();
            }))
            .is_err()
            {
                disable(slot, self.index, "on_tick");
            }
        }
        self.tallies.publish(&self.counters.sessions);
    }

    /// Emits what the modules hold (end of input, or before a reload swaps them).
    pub(crate) fn flush(&mut self) {
        self.tallies.publish(&self.counters.sessions);
        let now = self.last_ts;
        for slot in self.modules.iter_mut().filter(|s| !s.failed) {
            let mut out = Emitter::new(slot.sink.as_mut(), &slot.counters, &mut self.scratch, now);
            let module = &mut slot.module;
            if catch_unwind(AssertUnwindSafe(|| {
                module.flush(&mut out);
                out.flush_sink();
            }))
            .is_err()
            {
                disable(slot, self.index, "flush");
            }
        }
    }
}

impl Shard {
    pub(crate) fn apply_control(&mut self) {
        while let Ok(Reconfigure(specs)) = self.control.try_recv() {
            self.reconfigure(&specs);
        }
    }

    fn reconfigure(&mut self, specs: &[ModuleSpec]) {
        let mut fresh = Vec::with_capacity(specs.len());
        for (spec, slot) in specs.iter().zip(&self.modules) {
            let built = spec
                .factory
                .build(&self.ctx)
                .and_then(|m| Ok((m, spec.factory.sink(&self.ctx)?)));
            match built {
                Ok(pair) => fresh.push(pair),
                Err(error) => {
                    let e = &slot.counters.errors;
                    e.store(e.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
                    tracing::error!(message = "Cannot apply new module settings; keeping the old ones on this shard.", kind = %spec.kind, shard = self.index, %error);
                    return;
                }
            }
        }
        // The old instances emit what they hold before they go: a reload loses no record.
        self.flush();
        for (slot, (module, sink)) in self.modules.iter_mut().zip(fresh) {
            slot.module = module;
            slot.sink = sink;
            slot.failed = false;
        }
        tracing::info!(message = "New module settings applied.", shard = self.index);
    }
}

/// A module that panicked is switched off on its shard rather than taking the shard (and with it every
/// other module's packets) down.
fn disable(slot: &mut ModuleSlot, shard: usize, during: &str) {
    slot.failed = true;
    let e = &slot.counters.errors;
    e.store(e.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    tracing::error!(message = "Module panicked; disabled on this shard.", kind = %slot.kind, shard, during);
}
