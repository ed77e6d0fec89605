//! One ingest thread's door into the pipeline.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use super::accounting::WorkerCounters;
use super::batch::Mark;
use super::decap::{self, Encap};
use super::lane::Lane;
use super::shard::Shard;
use super::steer;
use crate::base::{DropReason, Session, SessionKey, Timestamp};
use crate::session::SessionResolver;
use crate::wire::inner;

/// One ingest thread's door into the pipeline: its session cache, its counters, and its lanes to the
/// shards (one per shard for hand-off, or the one shard it runs itself).
pub struct Ingress {
    resolver: SessionResolver,
    router: Router,
}

impl std::fmt::Debug for Ingress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ingress")
            .field("lanes", &self.router.lanes.len())
            .field("inline", &self.is_inline())
            .finish()
    }
}

impl Ingress {
    pub(crate) fn new(
        resolver: SessionResolver,
        lanes: Vec<Lane>,
        counters: Arc<WorkerCounters>,
        snaplen: Arc<AtomicU32>,
    ) -> Ingress {
        Ingress {
            resolver,
            router: Router {
                lanes,
                counters,
                snaplen,
                seq: 0,
                clock: None,
            },
        }
    }

    /// Makes this the one ingest of an ordered (replay) pipeline: it decides when every shard ticks,
    /// on the packet time of its input, and tells them all at the same place in the input.
    pub(crate) fn ordered(mut self, tick_ns: u64) -> Ingress {
        self.router.clock = Some(TickClock {
            tick_ns,
            next: None,
            last: Timestamp::default(),
        });
        self
    }

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

    /// Sends every partly filled batch on (to its shard's thread, or through the shard this handle
    /// runs) and revalidates the session cache. Call whenever the source has nothing more at hand (a
    /// short receive batch, an empty socket, the end of a file), so packets never wait for more
    /// traffic; under load, calling it every few full receive batches gives shards fuller batches
    /// and fewer wake-ups.
    pub fn send_pending(&mut self) {
        for shard in 0..self.router.lanes.len() {
            self.router.send(shard);
        }
        self.resolver.refresh();
    }

    /// Sends the batch being filled for `shard` on, full or not.
    pub(crate) fn send_to(&mut self, shard: usize) {
        if shard < self.router.lanes.len() {
            self.router.send(shard);
        }
    }

    /// Whether every lane can take `batches` more batches without waiting for its shard: what a
    /// shard thread reading in turns checks before each record, as the thread that would have to
    /// free a batch may be its own. One record takes at most two (a tick ends every lane's batch,
    /// then the packet starts one); the end of the input one.
    pub(crate) fn has_room(&self, batches: usize) -> bool {
        self.router.lanes.iter().all(|l| l.room() >= batches)
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
    /// applies new module settings and, on a live feed, ticks on the wall clock when a tick is due,
    /// as an idle shard thread does. Call after [`Ingress::send_pending`]. Nothing to do for hand-off
    /// handles.
    pub fn idle(&mut self, now: Timestamp) {
        for shard in self.router.inline_shards() {
            shard.idle(now);
        }
    }

    /// Whether this handle runs its shard's modules itself (run-to-completion).
    pub fn is_inline(&self) -> bool {
        self.router
            .lanes
            .iter()
            .any(|l| matches!(l, Lane::Inline { .. }))
    }
}

impl Drop for Ingress {
    fn drop(&mut self) {
        if let Some(clock) = &self.router.clock {
            let last = clock.last;
            self.router.broadcast(Mark::End { last });
        }
        self.send_pending();
        // A shard run here ends with this handle: its modules finish as a stopped shard thread's do.
        for shard in self.router.inline_shards() {
            shard.finish();
        }
    }
}

/// The part of an [`Ingress`] past session lookup: truncation, dissection, steering and batching.
struct Router {
    lanes: Vec<Lane>,
    counters: Arc<WorkerCounters>,
    snaplen: Arc<AtomicU32>,
    /// Frames handed to a lane so far: each one's position in this thread's input.
    seq: u64,
    /// Ordered ingest only: when the shards tick next.
    clock: Option<TickClock>,
}

/// An ordered ingest's view of packet time: the rule a shard applies to its own packets (tick at
/// the first packet, then at the first packet at or past each boundary), applied to the whole input
/// instead, so that every shard ticks at the same place and time whatever the number of shards.
struct TickClock {
    tick_ns: u64,
    next: Option<Timestamp>,
    /// The latest packet time so far.
    last: Timestamp,
}

impl Router {
    /// The shards this handle runs itself (run-to-completion); none for hand-off handles.
    fn inline_shards(&mut self) -> impl Iterator<Item = &mut Shard> {
        self.lanes.iter_mut().filter_map(Lane::inline_shard)
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
            // One shard, or run-to-completion where the kernel has steered already: nothing to pick.
            1 => 0,
            n => steer::shard_of(steer::symmetric_hash(session.id, &layers), n),
        };
        self.seq += 1;
        if let Some(clock) = &mut self.clock {
            clock.last = clock.last.max(ts);
            if clock.next.is_none_or(|t| ts >= t) {
                clock.next = Some(ts.next_boundary(clock.tick_ns));
                let seq = self.seq;
                self.broadcast(Mark::Tick { now: ts, seq });
            }
        }
        self.push(shard, ts, session, frame, orig_len, layers);
    }

    /// Ends every lane's batch with `mark` and sends it: once per tick, so each shard's queue
    /// holds at most its allowance of ticks, which bounds how far shards drift apart.
    #[cold]
    fn broadcast(&mut self, mark: Mark) {
        for shard in 0..self.lanes.len() {
            if let Some(batch) = self.lanes[shard].batch() {
                batch.mark = Some(mark);
                self.send(shard);
            }
        }
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
            None => return self.queue_full(session),
        };
        if full {
            self.send(shard);
        }
        match self.lanes[shard].batch() {
            Some(batch) => batch.push(ts, self.seq, session, frame, orig_len, layers),
            None => self.queue_full(session),
        }
    }

    #[cold]
    fn queue_full(&mut self, session: &Session) {
        session.count_dropped(1);
        self.counters.dropped(DropReason::ShardQueueFull, 1);
    }

    fn send(&mut self, shard: usize) {
        let (sent, dropped) = self.lanes[shard].send();
        self.counters.dispatched(sent);
        if let Some((reason, n)) = dropped {
            self.counters.dropped(reason, n);
        }
    }
}
