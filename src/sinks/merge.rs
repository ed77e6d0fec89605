//! One output for all shards, in a defined order: what makes a replay's records the same bytes
//! whatever the number of shards.
//!
//! Each shard writes a module's records into its own [`Collector`], which tags every record with an
//! order key that no shard decides:
//! - a record emitted processing a packet: the packet's position in the input and the emission's
//!   index within that packet (one shard processes a given packet, so the pair is unique);
//! - a record emitted at a tick or at the end (every shard at once, each for its own flows): the
//!   tick's position, the module's position in the config, the key the module gave with
//!   `Emitter::order` (0 if none), and last the record's bytes, which only break ties. A tick comes
//!   before the packet at its position, for every module: all modules' tick records, then all
//!   modules' records for that packet.
//!
//! A collector hands its records over in chunks of about a thousand, each with a frontier: a key below
//! which it will hand over nothing more. The merge writes, smallest key first across the collectors
//! (a k-way merge, each collector's records already in order), every record below the lowest
//! frontier of the collectors with nothing waiting; with one collector that is everything it handed
//! over, so a one-shard replay holds no more than a chunk. A tick's records stream the same way as
//! long as the module gives them in key order. The collector checks that as they arrive (one
//! comparison with the previous record): it keeps the current run of records with equal keys, and
//! sorts it by bytes if they came out of order; a tick's records whose keys decrease are held until
//! the tick's last and sorted whole. So a module that gives no key is still merged correctly, at the
//! cost of its tick records being held and sorted; one that gives its keys in order streams.
//!
//! Memory is bounded by a chunk per collector and by what the merge holds: what a fast shard
//! handed over until the slow ones pass it. At a tick, a flowlog interval's close, one shard may
//! hand over its whole share (100–150 k records, ~25 MiB) before the other has begun its own; so a
//! collector that hands over inside its module's own call of a tick or the end
//! ([`Collector::tick_call`] to [`Collector::settle`]), or at its close, while the merge holds more
//! than [`HOLD_BYTES`] of its records, waits until the others have caught up enough to write them.
//! That wait cannot deadlock. A shard waits only at (tick, module) with every module before that
//! one settled (all its collectors, of every merge, past that point), and only for collectors of
//! other shards that are behind that point: those reach it on their own, since the ingest put the
//! tick in every shard's queue before any packet after it and every collector, a disabled
//! module's too, settles at each tick; and they wait, if at all, only for shards further behind.
//! A collector never waits for one of its own shard (the same thread must move it), nor once a
//! collector was dropped without closing (its shard's thread ended). Between ticks a collector never waits
//! (the shard it would wait for may need a batch the reader cannot send while this shard's lane is
//! full); how far it runs ahead there is bounded upstream, by the reader's allowance of batches per
//! shard (`queue_batches`) and by the tick, which every lane's batch ends at.
//!
//! The hot path takes no lock: a collector appends to buffers of its own, and the merge's lock is
//! taken once per chunk and twice per tick per collector (its hand-over, and its settle once its
//! module is done with the tick). The real sink is flushed on a tick's time once every record
//! before that tick is written, as it would be by a single shard.

use std::cmp::Ordering;
use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use super::{KafkaCounts, Sink, UploadCounts};
use crate::base::Timestamp;

/// A collector hands its records over once it holds this many (or [`CHUNK_BYTES`]): small enough
/// that a one-shard replay holds next to nothing (a chunk's buffers, and the few reused ones, per
/// collector), large enough that the lock is rare (about 400 times for a flowlog interval's close
/// of 300 k records).
const CHUNK_RECORDS: usize = 1024;
const CHUNK_BYTES: usize = 64 << 10;
/// Emptied chunks the merge keeps for reuse per collector, so handing over allocates nothing once
/// the buffers have grown.
const SPARE_PER_COLLECTOR: usize = 2;
/// Bytes of one collector's records (text and index) the merge may hold before the collector, at
/// a tick or at the end, waits for the others: about ten chunks, 6 k flowlog records. Small against
/// what it replaced (one shard's whole interval close, up to ~25 MiB, in chunks that glibc keeps
/// once freed), large enough that a shard waits once per several chunks, not per chunk. 4 MiB
/// measured 5 MiB more peak RSS and no faster (docs/performance.md, "Bounding what two shards
/// hold").
const HOLD_BYTES: usize = 1 << 20;

/// Where one record sits in the merged output: by input position, then every module's tick records
/// (idx 0) before any module's records for the packet at that position, then by module, emission
/// index and the module's own order. Records of a tick with equal keys are ordered by their bytes.
///
/// Ticks first at a position, for all modules, is what lets a tick's records stream across modules
/// sharing an output: once a module has had its tick (`Collector::settle`), the next module's tick
/// records are below anything the first can still write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Key {
    /// Position in the input of the packet (or tick) that emitted it; `u64::MAX` at the end.
    seq: u64,
    /// The emitting module's position in the config, when modules share an output (stdout).
    module: u32,
    /// 1, 2, … in emission order for a packet's records; 0 for a tick's or the end's.
    idx: u32,
    /// The module's own order for a tick's records (`Emitter::order`), high word first; kept as
    /// two words so a record's entry stays 8-byte aligned.
    order: [u64; 2],
}

impl Ord for Key {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.seq, self.idx != 0, self.module, self.idx, self.order).cmp(&(
            other.seq,
            other.idx != 0,
            other.module,
            other.idx,
            other.order,
        ))
    }
}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Key {
    const MAX: Key = Key {
        seq: u64::MAX,
        module: u32::MAX,
        idx: u32::MAX,
        order: [u64::MAX; 2],
    };

    /// The first key of the tick at input position `seq` (or, with `u64::MAX`, of the end): every
    /// record emitted before it is below, every record it emits at or above.
    fn tick(seq: u64) -> Key {
        Key {
            seq,
            module: 0,
            idx: 0,
            order: [0; 2],
        }
    }
}

/// A record in a chunk.
#[derive(Debug, Clone, Copy)]
struct Rec {
    key: Key,
    start: usize,
    len: usize,
    /// Length of the record's key (its session's name, for Kafka), kept just before the record's
    /// bytes; 0 for a record written without one.
    key_len: u32,
    now: Timestamp,
}

/// Records of one collector, in key order once handed over.
#[derive(Debug, Default)]
struct Part {
    bytes: Vec<u8>,
    recs: Vec<Rec>,
}

impl Part {
    fn record(&self, r: &Rec) -> &[u8] {
        &self.bytes[r.start..r.start + r.len]
    }

    fn key(&self, r: &Rec) -> Option<&[u8]> {
        (r.key_len > 0).then(|| &self.bytes[r.start - r.key_len as usize..r.start])
    }

    fn push(&mut self, key: Key, now: Timestamp, record_key: &[u8], record: &[u8]) {
        self.bytes.extend_from_slice(record_key);
        let start = self.bytes.len();
        self.bytes.extend_from_slice(record);
        self.recs.push(Rec {
            key,
            start,
            len: record.len(),
            // A session name longer than 4 GiB cannot come from a config.
            key_len: u32::try_from(record_key.len()).unwrap_or(0),
            now,
        });
    }

    fn clear(&mut self) {
        self.bytes.clear();
        self.recs.clear();
    }

    /// What the chunk's records take in the merge, for its bound.
    fn size(&self) -> usize {
        self.bytes.len() + self.recs.len() * std::mem::size_of::<Rec>()
    }

    /// Moves the records from `from` on to the end of `to`.
    fn move_tail(&mut self, from: usize, to: &mut Part) {
        let Some(first) = self.recs.get(from) else {
            return;
        };
        let cut = first.start - first.key_len as usize;
        let base = to.bytes.len();
        to.bytes.extend_from_slice(&self.bytes[cut..]);
        to.recs.extend(self.recs[from..].iter().map(|r| Rec {
            start: r.start - cut + base,
            ..*r
        }));
        self.bytes.truncate(cut);
        self.recs.truncate(from);
    }

    /// Sorts the records from `from` on into merge order (stable, so a near-sorted run costs
    /// little more than a pass).
    fn sort_from(&mut self, from: usize) {
        let (bytes, recs) = (&self.bytes, &mut self.recs[from..]);
        recs.sort_by(|a, b| {
            a.key
                .cmp(&b.key)
                .then_with(|| bytes[a.start..a.start + a.len].cmp(&bytes[b.start..b.start + b.len]))
        });
    }
}

/// The merge order of two records, each in its chunk.
fn cmp(pa: &Part, a: &Rec, pb: &Part, b: &Rec) -> Ordering {
    a.key.cmp(&b.key).then_with(|| {
        if a.key.idx == 0 {
            pa.record(a).cmp(pb.record(b))
        } else {
            Ordering::Equal
        }
    })
}

/// What handing records over caused: what the merge wrote and flushed meanwhile (any collector's
/// records), counted for the collector that handed over.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// Records the real sink accepted.
    pub written: u64,
    /// Records it refused or lost (I/O errors), and records a module gave below a key it had
    /// already handed over (written, but where they fell): to count as the module's errors.
    pub failed: u64,
    /// What the output's S3 uploader did since the last flush.
    pub uploads: UploadCounts,
    /// What the output's Kafka producer did since the last flush.
    pub kafka: KafkaCounts,
}

impl Published {
    fn add(&mut self, other: Published) {
        self.written += other.written;
        self.failed += other.failed;
        self.uploads.add(other.uploads);
        self.kafka.add(other.kafka);
    }
}

/// One real sink and what the collectors handed over to it: one per module kind's output, or one
/// for all the modules that write to standard output (their records are then ordered by module
/// within each packet, so even the interleaving of modules is fixed).
pub struct Merge {
    inner: Mutex<Inner>,
    /// Signalled when records were written (or a collector went away): a collector waiting for
    /// its held records to go below the bound checks again.
    written: Condvar,
}

impl std::fmt::Debug for Merge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Merge").finish_non_exhaustive()
    }
}

/// What one collector handed over and has yet to be written.
struct Queue {
    chunks: VecDeque<Part>,
    /// The next record of the front chunk.
    pos: usize,
    /// Nothing this collector hands over later has a key below this.
    frontier: Key,
    /// Ticks (and the end) it has passed.
    boundaries: u64,
    /// `Part::size` of the chunks waiting.
    held: usize,
    /// The shard whose collector this is: it never waits for its own shard's collectors.
    shard: usize,
    /// The most `held` ever was.
    #[cfg(test)]
    peak: usize,
}

/// A tick (or the end) that the sink is flushed at once every record before it is written.
struct Boundary {
    key: Key,
    now: Timestamp,
    /// Collectors that have passed it.
    passed: usize,
}

struct Inner {
    sink: Box<dyn Sink>,
    /// One per collector (shards × modules sharing the output).
    queues: Vec<Queue>,
    /// Collectors handed out so far.
    collectors: usize,
    /// Boundaries not yet flushed, oldest first; the front one is number `first`.
    boundaries: VecDeque<Boundary>,
    first: u64,
    spare: Vec<Part>,
    /// Bytes a collector may have waiting before it waits at a tick ([`HOLD_BYTES`]).
    hold: usize,
    /// A collector was dropped without closing (its shard ended early): it will never catch up,
    /// so nobody waits for it any more.
    gone: bool,
    /// Collectors waiting on `Merge::written` now. A hand-over that wrote records wakes them only
    /// when there are some: the wake is a system call even with nobody waiting, and hand-overs
    /// come every chunk (about 1 % of a replay's samples, measured with accessscope's records).
    waiting: usize,
}

impl Merge {
    /// One merge writing to `sink` for `parts` collectors (one per shard and module sharing it),
    /// each of which must hand everything over and close.
    pub fn new(sink: Box<dyn Sink>, parts: usize) -> Arc<Merge> {
        let queues = (0..parts.max(1))
            .map(|_| Queue {
                chunks: VecDeque::new(),
                pos: 0,
                frontier: Key::tick(0),
                boundaries: 0,
                held: 0,
                shard: usize::MAX,
                #[cfg(test)]
                peak: 0,
            })
            .collect();
        Arc::new(Merge {
            inner: Mutex::new(Inner {
                sink,
                queues,
                collectors: 0,
                boundaries: VecDeque::new(),
                first: 0,
                spare: Vec::new(),
                hold: HOLD_BYTES,
                gone: false,
                waiting: 0,
            }),
            written: Condvar::new(),
        })
    }

    /// [`Merge::new`] with another bound on what a collector may have waiting at a tick.
    #[cfg(test)]
    fn with_hold(sink: Box<dyn Sink>, parts: usize, hold: usize) -> Arc<Merge> {
        let merge = Merge::new(sink, parts);
        merge.lock().hold = hold;
        merge
    }

    /// A collector for shard `shard`'s instance of the module at `module` in the config.
    pub fn collector(self: &Arc<Merge>, shard: usize, module: usize) -> Collector {
        let id = {
            let mut inner = self.lock();
            let id = inner.collectors;
            inner.collectors += 1;
            if id >= inner.queues.len() {
                // More collectors than announced: the new one must be waited for too.
                inner.queues.push(Queue {
                    chunks: VecDeque::new(),
                    pos: 0,
                    frontier: Key::tick(0),
                    boundaries: 0,
                    held: 0,
                    shard,
                    #[cfg(test)]
                    peak: 0,
                });
            }
            inner.queues[id].shard = shard;
            id
        };
        Collector {
            merge: self.clone(),
            id,
            key: Key {
                seq: 0,
                module: u32::try_from(module).unwrap_or(u32::MAX),
                idx: 1,
                order: [0; 2],
            },
            part: Part::default(),
            carry: Part::default(),
            group: 0,
            run: 0,
            run_sorted: true,
            group_sorted: true,
            group_streamed: false,
            pending: Published::default(),
            advanced: 0,
            in_call: false,
            closed: false,
            warned: false,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits while collector `id` has more than the bound waiting to be written, for other shards
    /// to catch up.
    fn wait_below_hold<'a>(
        &self,
        mut inner: MutexGuard<'a, Inner>,
        id: usize,
    ) -> MutexGuard<'a, Inner> {
        while inner.must_wait(id) {
            inner.waiting += 1;
            inner = self.written.wait(inner).unwrap_or_else(|e| e.into_inner());
            inner.waiting -= 1;
        }
        inner
    }
}

impl Inner {
    /// Whether collector `id` holds more than the bound and only other shards keep its records
    /// back. When a collector of its own shard does (one whose module has not passed the tick:
    /// with flow events, a later module's records can come before an earlier module's tick), the
    /// shard must go on to move it, so it holds instead of waiting.
    fn must_wait(&self, id: usize) -> bool {
        let q = &self.queues[id];
        if self.gone || q.held <= self.hold {
            return false;
        }
        let Some(c) = q.chunks.front() else {
            return false;
        };
        let head = c.recs[q.pos].key;
        !self
            .queues
            .iter()
            .any(|o| o.shard == q.shard && o.chunks.is_empty() && o.frontier < head)
    }

    /// Takes collector `id`'s chunk (in key order, nothing below `frontier` to follow), and the
    /// boundary it passed, if any; writes what that makes writable and returns an empty chunk to
    /// fill next.
    fn hand_over(
        &mut self,
        id: usize,
        chunk: Part,
        frontier: Key,
        boundary: Option<(Key, Timestamp)>,
        out: &mut Published,
    ) -> Part {
        let q = &mut self.queues[id];
        q.frontier = q.frontier.max(frontier);
        if let Some((key, now)) = boundary {
            let n = (q.boundaries - self.first) as usize;
            q.boundaries += 1;
            if self.boundaries.len() <= n {
                self.boundaries.resize_with(n + 1, || Boundary {
                    key,
                    now,
                    passed: 0,
                });
            }
            let b = &mut self.boundaries[n];
            b.now = b.now.max(now);
            b.passed += 1;
        }
        let next = if chunk.recs.is_empty() {
            chunk
        } else {
            q.held += chunk.size();
            #[cfg(test)]
            {
                q.peak = q.peak.max(q.held);
            }
            q.chunks.push_back(chunk);
            self.spare.pop().unwrap_or_default()
        };
        self.drain(out, false);
        next
    }

    /// Writes records smallest first while no collector can still hand over a smaller one, and
    /// flushes the sink at each boundary every collector has passed once everything before it is
    /// written. With `all`, writes everything regardless (the end, with collectors gone).
    fn drain(&mut self, out: &mut Published, all: bool) {
        loop {
            // The collector whose next record comes first, and the one whose next record comes
            // after it: the head's records can be written up to that one without looking again.
            let mut head: Option<usize> = None;
            let mut next: Option<usize> = None;
            let mut limit = Key::MAX;
            for (i, q) in self.queues.iter().enumerate() {
                if q.chunks.is_empty() {
                    limit = limit.min(q.frontier);
                } else if head.is_none_or(|h| self.before(i, h)) {
                    next = head;
                    head = Some(i);
                } else if next.is_none_or(|n| self.before(i, n)) {
                    next = Some(i);
                }
            }
            let head_key = head.map(|h| {
                let q = &self.queues[h];
                q.chunks[0].recs[q.pos].key
            });
            if let Some(b) = self.due(all) {
                if head_key.is_none_or(|k| k >= b.key) {
                    let now = b.now;
                    self.boundaries.pop_front();
                    self.first += 1;
                    self.flush(now, out);
                    continue;
                }
            }
            match (head, head_key) {
                (Some(h), Some(k)) if all || k < limit => self.write_run(h, next, limit, all, out),
                _ => break,
            }
        }
    }

    /// The oldest boundary not yet flushed, once every collector has passed it (or, with `all`,
    /// regardless): the sink is flushed there as soon as every record below it is written.
    fn due(&self, all: bool) -> Option<&Boundary> {
        let parts = self.queues.len();
        self.boundaries.front().filter(|b| all || b.passed >= parts)
    }

    /// Whether collector `a`'s next record is written before collector `b`'s (both have one):
    /// in merge order, and of two equal ones, the lower collector's first.
    fn before(&self, a: usize, b: usize) -> bool {
        let (qa, qb) = (&self.queues[a], &self.queues[b]);
        let (ca, cb) = (&qa.chunks[0], &qb.chunks[0]);
        match cmp(ca, &ca.recs[qa.pos], cb, &cb.recs[qb.pos]) {
            Ordering::Less => true,
            Ordering::Equal => a < b,
            Ordering::Greater => false,
        }
    }

    /// Writes collector `h`'s next record, and the ones after it for as long as each would still
    /// be the one [`drain`](Inner::drain) picks: before collector `next`'s next record, below
    /// `limit`, and below the oldest boundary due for a flush. Modules write in runs (a tick's
    /// records of one module, a packet's of one), so most records are written without comparing
    /// every collector's head again; the order is the same as one record per pick.
    fn write_run(
        &mut self,
        h: usize,
        next: Option<usize>,
        limit: Key,
        all: bool,
        out: &mut Published,
    ) {
        let due = self.due(all).map(|b| b.key);
        self.write_head(h, out);
        loop {
            let q = &self.queues[h];
            let Some(c) = q.chunks.front() else {
                break;
            };
            let key = c.recs[q.pos].key;
            if !(all || key < limit)
                || due.is_some_and(|d| key >= d)
                || next.is_some_and(|n| !self.before(h, n))
            {
                break;
            }
            self.write_head(h, out);
        }
    }

    fn write_head(&mut self, h: usize, out: &mut Published) {
        let q = &mut self.queues[h];
        let chunk = &q.chunks[0];
        let rec = &chunk.recs[q.pos];
        let written = match chunk.key(rec) {
            Some(key) => self.sink.write_keyed(rec.now, key, chunk.record(rec)),
            None => self.sink.write(rec.now, chunk.record(rec)),
        };
        match written {
            Ok(()) => out.written += 1,
            Err(_) => out.failed += 1 + self.sink.take_lost(),
        }
        q.pos += 1;
        if q.pos == chunk.recs.len() {
            q.pos = 0;
            if let Some(mut done) = q.chunks.pop_front() {
                q.held -= done.size();
                if self.spare.len() < SPARE_PER_COLLECTOR * self.queues.len() {
                    done.clear();
                    self.spare.push(done);
                }
            }
        }
    }

    fn flush(&mut self, now: Timestamp, out: &mut Published) {
        if self.sink.flush(now).is_err() {
            out.failed += self.sink.take_lost().max(1);
        }
        out.add(Published {
            uploads: self.sink.take_uploads(),
            kafka: self.sink.take_kafka(),
            ..Published::default()
        });
    }
}

impl Drop for Inner {
    /// A shard that ended early (its thread died) never closes its collectors: what the others
    /// handed over is written anyway, in order, rather than lost.
    fn drop(&mut self) {
        let mut out = Published::default();
        self.drain(&mut out, true);
        if out.failed > 0 {
            tracing::error!(
                message = "Records lost writing the last merged output.",
                records = out.failed
            );
        }
    }
}

/// One shard's way into a [`Merge`]: a [`Sink`] that keeps records, each with its order key, and
/// hands them over in chunks. The shard tells it where in the input it is before every packet
/// ([`Collector::at_packet`]) and at every tick ([`Collector::publish`]), and closes it at the end.
#[derive(Debug)]
pub struct Collector {
    merge: Arc<Merge>,
    id: usize,
    key: Key,
    part: Part,
    /// Reused to carry records still held over to the next chunk.
    carry: Part,
    /// Where in `part` the current tick's records begin (while `key.idx` is 0).
    group: usize,
    /// Where in `part` the current run of tick records with one key begins.
    run: usize,
    /// The current run came in byte order so far.
    run_sorted: bool,
    /// The current tick's keys came in order so far.
    group_sorted: bool,
    /// Some of the current tick's records were handed over already.
    group_streamed: bool,
    /// What chunks handed over from inside `write` caused, reported at the next tick.
    pending: Published,
    /// The input position the last `advance` reported.
    advanced: u64,
    /// The module is in its own call of the tick or the end (`Collector::tick_call`): its tick
    /// records may wait for the other shards when the merge holds too many of them.
    in_call: bool,
    closed: bool,
    /// Misordered tick records were logged once.
    warned: bool,
}

impl Collector {
    /// Records from now on were emitted processing the packet at input position `seq`.
    #[inline]
    pub fn at_packet(&mut self, seq: u64) {
        if self.key.idx == 0 {
            self.end_group();
        }
        self.key.seq = seq;
        self.key.idx = 1;
        self.key.order = [0; 2];
    }

    /// Hands everything gathered over to the merge, closed by a tick at input position `next` and
    /// packet time `now` (`u64::MAX`: the end of the input); records from now on are that tick's.
    /// Every shard must pass the same ticks, whether it gathered anything or not.
    pub fn publish(&mut self, now: Timestamp, next: u64) -> Published {
        self.end_group();
        let frontier = Key {
            module: self.key.module,
            ..Key::tick(next)
        };
        self.hand_over(
            self.part.recs.len(),
            frontier,
            Some((Key::tick(next), now)),
            // Not here: the shard's later modules have not passed the tick yet, and what this
            // collector holds may wait on them. Its records wait at the tick's settle instead.
            false,
        );
        self.key = frontier;
        self.group = 0;
        self.run = 0;
        std::mem::take(&mut self.pending)
    }

    /// Between batches: tells the merge how far the shard has come, handing over what was
    /// gathered. Without it a module that writes nothing between ticks would hold back, until the
    /// next tick, the records of every collector its output shares (the modules on stdout) and of
    /// the other shards. Does nothing inside a tick's records, whose frontier only the records
    /// themselves move.
    pub fn advance(&mut self) -> Published {
        if self.key.idx != 0 && self.advanced < self.key.seq {
            self.advanced = self.key.seq;
            let frontier = Key {
                order: [0; 2],
                ..self.key
            };
            self.hand_over(self.part.recs.len(), frontier, None, false);
        }
        std::mem::take(&mut self.pending)
    }

    /// The shard is about to call the module at the current tick (or the end), every module before
    /// it in the config having settled: from now until [`Collector::settle`] its records may wait
    /// for the other shards (see the module's doc). Records emitted at a tick outside such a call
    /// (flow events, before any module's own call) never wait: the earlier modules, of this merge
    /// or another, have not passed the tick, and a shard waited for could be waiting on them.
    pub fn tick_call(&mut self) {
        self.in_call = self.key.idx == 0;
    }

    /// The module has emitted everything it will at the current tick (or at the end): hands the
    /// tick's records over with the promise that nothing follows below the next packet's. Without
    /// it, the modules after this one in the config that share its output (stdout) would have their
    /// tick records held until this collector's next hand-over, a batch later: a flowlog before an
    /// accessscope held the whole of accessscope's interval close, ~70 k records, that way.
    pub fn settle(&mut self) -> Published {
        let waits = std::mem::replace(&mut self.in_call, false);
        if self.key.idx == 0 && !self.closed {
            self.end_group();
            let frontier = Key {
                idx: 1,
                order: [0; 2],
                ..self.key
            };
            self.hand_over(self.part.recs.len(), frontier, None, waits);
        }
        std::mem::take(&mut self.pending)
    }

    /// The collector's last hand-over: it writes nothing more (the end's records were given, and
    /// published at `now`'s tick).
    pub fn close(&mut self, now: Timestamp) -> Published {
        if !self.closed {
            self.end_group();
            self.hand_over(self.part.recs.len(), Key::MAX, Some((Key::MAX, now)), true);
            self.closed = true;
        }
        std::mem::take(&mut self.pending)
    }

    /// Hands `part`'s records before `cut` over, with the promise that nothing below `frontier`
    /// follows, and keeps the rest. With `may_wait` (inside the module's own call of a tick or the
    /// end, or at the end itself; see the module's doc), waits while the merge holds more than the
    /// bound of this collector's records.
    fn hand_over(
        &mut self,
        cut: usize,
        frontier: Key,
        boundary: Option<(Key, Timestamp)>,
        may_wait: bool,
    ) {
        self.carry.clear();
        self.part.move_tail(cut, &mut self.carry);
        let chunk = std::mem::take(&mut self.part);
        let mut out = Published::default();
        let mut inner = self.merge.lock();
        self.part = inner.hand_over(self.id, chunk, frontier, boundary, &mut out);
        if out.written + out.failed > 0 && inner.waiting > 0 {
            self.merge.written.notify_all();
        }
        if may_wait {
            inner = self.merge.wait_below_hold(inner, self.id);
        }
        drop(inner);
        self.pending.add(out);
        if !self.carry.recs.is_empty() {
            self.carry.move_tail(0, &mut self.part);
        }
    }

    /// A chunk is full: hands over what is settled. Within a tick that is everything before the
    /// current run of equal keys (a record with that key may still come and belong before it), or,
    /// once the tick's keys came out of order, only what preceded the tick.
    fn stream(&mut self) {
        let n = self.part.recs.len();
        let cut = if self.key.idx != 0 {
            n
        } else if self.group_sorted {
            self.run
        } else {
            self.group
        };
        if cut == 0 {
            return;
        }
        // Nothing below the first record kept follows; once a tick's keys came out of order,
        // nothing below the tick's first key; between packets, nothing below the next index.
        let frontier = match self.part.recs.get(cut) {
            Some(r) if self.group_sorted => r.key,
            _ => Key {
                order: [0; 2],
                ..self.key
            },
        };
        if self.key.idx == 0 {
            self.group_streamed |= cut > self.group;
            self.group = self.group.saturating_sub(cut);
            self.run -= cut;
        }
        self.hand_over(cut, frontier, None, self.in_call);
    }

    /// Checks a tick record about to be added against the previous one of the same tick.
    fn check_order(&mut self, record: &[u8]) {
        let n = self.part.recs.len();
        if n <= self.group {
            self.run = n;
            return;
        }
        let last = self.part.recs[n - 1];
        match self.key.cmp(&last.key) {
            Ordering::Greater => {
                self.end_run();
                self.run = n;
            }
            Ordering::Equal => {
                if record < self.part.record(&last) {
                    self.run_sorted = false;
                }
            }
            Ordering::Less => {
                if self.group_streamed {
                    // Records above this one are written already: it goes where it falls.
                    self.pending.failed += 1;
                    if !std::mem::replace(&mut self.warned, true) {
                        tracing::warn!(
                            message =
                                "A module gave a tick's records out of the order of its keys; \
                                   the merged output may depend on the number of shards.",
                            module = self.key.module
                        );
                    }
                }
                self.group_sorted = false;
            }
        }
    }

    fn end_run(&mut self) {
        if !self.run_sorted && self.group_sorted {
            self.part.sort_from(self.run);
        }
        self.run_sorted = true;
    }

    fn end_group(&mut self) {
        if !self.group_sorted {
            self.part.sort_from(self.group);
        } else {
            self.end_run();
        }
        self.group_sorted = true;
        self.run_sorted = true;
        self.group_streamed = false;
        self.group = self.part.recs.len();
        self.run = self.group;
    }
}

impl Drop for Collector {
    /// A collector that never closed (its shard's thread ended early) will not move its frontier
    /// again: the others stop waiting for it, and hold what they must instead.
    fn drop(&mut self) {
        if !self.closed {
            self.merge.lock().gone = true;
            self.merge.written.notify_all();
        }
    }
}

impl Sink for Collector {
    fn write(&mut self, now: Timestamp, record: &[u8]) -> io::Result<()> {
        self.write_keyed(now, &[], record)
    }

    /// The key travels with the record to the real sink (Kafka partitions by it).
    fn write_keyed(&mut self, now: Timestamp, key: &[u8], record: &[u8]) -> io::Result<()> {
        if self.key.idx == 0 {
            self.check_order(record);
        }
        self.part.push(self.key, now, key, record);
        if self.key.idx != 0 {
            self.key.idx = self.key.idx.saturating_add(1);
        }
        if self.part.recs.len() >= CHUNK_RECORDS || self.part.bytes.len() >= CHUNK_BYTES {
            self.stream();
        }
        Ok(())
    }

    /// The key of the tick records written next; see `Emitter::order`.
    fn order(&mut self, key: u128) {
        self.key.order = [(key >> 64) as u64, key as u64];
    }

    /// The merge flushes the real sink at each tick, once every shard has passed it.
    fn flush(&mut self, _now: Timestamp) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Sink for Shared {
        fn write(&mut self, _now: Timestamp, record: &[u8]) -> io::Result<()> {
            self.0.lock().unwrap().extend_from_slice(record);
            Ok(())
        }
        fn flush(&mut self, _now: Timestamp) -> io::Result<()> {
            self.0.lock().unwrap().extend_from_slice(b"|\n");
            Ok(())
        }
    }

    /// A merge of `parts` collectors writing into a buffer the test reads.
    fn merged(parts: usize) -> (Shared, Arc<Merge>) {
        let out = Shared::default();
        let merge = Merge::new(Box::new(out.clone()), parts);
        (out, merge)
    }

    fn text(s: &Shared) -> String {
        String::from_utf8(s.0.lock().unwrap().clone()).unwrap()
    }

    fn lines(s: &Shared) -> usize {
        s.0.lock().unwrap().iter().filter(|&&b| b == b'\n').count()
    }

    #[test]
    fn records_come_out_in_input_order_once_every_shard_has_handed_over() {
        let (out, merge) = merged(2);
        let (mut a, mut b) = (merge.collector(0, 0), merge.collector(1, 0));
        let t = Timestamp::default();
        a.at_packet(1);
        a.write(t, b"p1 first\n").unwrap();
        a.write(t, b"p1 second\n").unwrap();
        b.at_packet(2);
        b.write(t, b"p2\n").unwrap();
        a.at_packet(3);
        a.write(t, b"p3\n").unwrap();
        // A tick before packet 4: each shard's tick records, ordered by bytes (no keys given).
        assert_eq!(
            a.publish(t, 4).written,
            0,
            "shard b has not handed over yet"
        );
        a.write(t, b"tick z\n").unwrap();
        assert_eq!(b.publish(t, 4).written, 4);
        assert_eq!(
            text(&out),
            "p1 first\np1 second\np2\np3\n|\n",
            "flushed at the tick"
        );
        b.write(t, b"tick a\n").unwrap();
        b.at_packet(4);
        b.write(t, b"p4\n").unwrap();
        a.publish(t, u64::MAX);
        a.write(t, b"end\n").unwrap();
        a.close(t);
        assert_eq!(b.publish(t, u64::MAX).written, 3);
        assert_eq!(b.close(t).written, 1);
        assert_eq!(
            text(&out),
            "p1 first\np1 second\np2\np3\n|\ntick a\ntick z\np4\n|\nend\n|\n"
        );
    }

    #[test]
    fn what_a_dead_shard_never_handed_over_does_not_hold_the_others_back_at_the_end() {
        let (out, merge) = merged(2);
        let mut a = merge.collector(0, 0);
        let b = merge.collector(1, 0);
        a.at_packet(1);
        a.write(Timestamp::default(), b"kept\n").unwrap();
        a.publish(Timestamp::default(), 2);
        assert_eq!(text(&out), "");
        drop((a, b, merge));
        assert_eq!(text(&out), "kept\n|\n");
    }

    /// One collector: a tick's records in key order go out a chunk at a time, not at the next tick.
    #[test]
    fn one_collector_streams_a_ticks_records_in_key_order() {
        let (out, merge) = merged(1);
        let mut a = merge.collector(0, 0);
        let t = Timestamp::default();
        a.publish(t, 1);
        let n = 3 * CHUNK_RECORDS as u128;
        for k in 0..n {
            a.order(k);
            // Bytes in the opposite order of the keys: the keys decide.
            a.write(t, format!("{:08}\n", n - k).as_bytes()).unwrap();
        }
        assert!(
            lines(&out) >= 2 * CHUNK_RECORDS,
            "{} records written before the tick ended",
            lines(&out)
        );
        a.publish(t, u64::MAX);
        a.close(t);
        let got = text(&out);
        let want: String = (0..n).map(|k| format!("{:08}\n", n - k)).collect();
        assert_eq!(got, format!("|\n{want}|\n|\n"));
    }

    /// Two modules of one shard sharing an output: once the first has had its tick (`settle`), the
    /// second's tick records stream, and they come before the first's records for the next packet.
    #[test]
    fn a_settled_module_does_not_hold_the_next_modules_tick_records() {
        let (out, merge) = merged(2);
        let (mut first, mut second) = (merge.collector(0, 0), merge.collector(0, 1));
        let t = Timestamp::default();
        for c in [&mut first, &mut second] {
            c.at_packet(1);
            c.publish(t, 2);
        }
        first.write(t, b"first tick\n").unwrap();
        first.settle();
        let n = 3 * CHUNK_RECORDS as u128;
        for k in 0..n {
            second.order(k);
            second.write(t, format!("{k:08}\n").as_bytes()).unwrap();
        }
        assert!(
            lines(&out) >= 2 * CHUNK_RECORDS,
            "{} records written while the second module's tick went on",
            lines(&out)
        );
        second.settle();
        for c in [&mut first, &mut second] {
            c.at_packet(2);
            c.write(t, b"packet 2\n").unwrap();
            c.publish(t, u64::MAX);
            c.close(t);
        }
        let ticks: String = (0..n).map(|k| format!("{k:08}\n")).collect();
        assert_eq!(
            text(&out),
            format!("|\nfirst tick\n{ticks}packet 2\npacket 2\n|\n|\n")
        );
    }

    /// Two collectors: a k-way merge by key, each streaming, the lower frontier deciding what is
    /// written; equal keys are ordered by bytes across collectors.
    #[test]
    fn two_collectors_merge_a_ticks_records_by_key_then_bytes() {
        let (out, merge) = merged(2);
        let (mut a, mut b) = (merge.collector(0, 0), merge.collector(1, 0));
        let t = Timestamp::default();
        a.publish(t, 1);
        b.publish(t, 1);
        let n = 2 * CHUNK_RECORDS as u128;
        for k in 0..n {
            a.order(2 * k);
            a.write(t, format!("a{k}\n").as_bytes()).unwrap();
        }
        // a's records wait for b, whose frontier is still the tick's start.
        assert_eq!(lines(&out), 1);
        for k in 0..n {
            b.order(2 * k + 1);
            b.write(t, format!("b{k}\n").as_bytes()).unwrap();
            if k == n / 2 {
                b.order(2 * k);
                b.write(t, b"a tie\n").unwrap();
                b.order(2 * k + 1);
            }
        }
        assert!(lines(&out) > CHUNK_RECORDS, "merged while b streamed");
        a.publish(t, u64::MAX);
        b.publish(t, u64::MAX);
        a.close(t);
        b.close(t);
        let mut want = String::from("|\n");
        for k in 0..n {
            if k == n / 2 {
                // Key 2k from both: bytes decide ("a tie" < "a{k}").
                want.push_str("a tie\n");
            }
            want.push_str(&format!("a{k}\nb{k}\n"));
        }
        want.push_str("|\n|\n");
        assert_eq!(text(&out), want);
    }

    /// A collector that writes nothing between ticks (a module sharing stdout, or an idle shard)
    /// holds the others back only until the shard's next batch ends, not until the next tick.
    #[test]
    fn advancing_between_batches_lets_the_others_records_out() {
        let (out, merge) = merged(2);
        let (mut a, mut quiet) = (merge.collector(0, 0), merge.collector(0, 1));
        let t = Timestamp::default();
        for seq in 1..=3 {
            a.at_packet(seq);
            quiet.at_packet(seq);
            a.write(t, format!("p{seq}\n").as_bytes()).unwrap();
        }
        a.advance();
        assert_eq!(
            text(&out),
            "",
            "the quiet collector may still write for packet 1"
        );
        quiet.advance();
        assert_eq!(text(&out), "p1\np2\np3\n");
        // At the same place again: nothing to hand over, no lock taken.
        assert_eq!(quiet.advance(), Published::default());
    }

    /// The fallback: a tick's records without keys, with keys out of order, or with equal keys out
    /// of byte order are sorted by the collector before they go out, even past a chunk.
    #[test]
    fn records_out_of_order_are_held_and_sorted() {
        let (out, merge) = merged(1);
        let mut a = merge.collector(0, 0);
        let t = Timestamp::default();
        a.publish(t, 1);
        // No keys: bytes order, for more records than a chunk.
        let n = CHUNK_RECORDS + 10;
        for i in (0..n).rev() {
            a.write(t, format!("{i:06}\n").as_bytes()).unwrap();
        }
        assert_eq!(lines(&out), 1, "held: a smaller one may still come");
        a.at_packet(1);
        a.write(t, b"packet\n").unwrap();
        let mut want: String = "|\n".into();
        want.extend((0..n).map(|i| format!("{i:06}\n")));
        want.push_str("packet\n");
        a.publish(t, 2);
        // Keys out of order within a tick.
        for k in [5u128, 3, 9, 1] {
            a.order(k);
            a.write(t, format!("k{k}\n").as_bytes()).unwrap();
        }
        a.publish(t, u64::MAX);
        a.close(t);
        want.push_str("|\nk1\nk3\nk5\nk9\n|\n|\n");
        assert_eq!(text(&out), want);
    }

    /// A key below one already handed over cannot be put back in place: it is counted.
    #[test]
    fn a_key_below_what_was_already_written_is_counted() {
        let merge = Merge::new(Box::new(Shared::default()), 1);
        let mut a = merge.collector(0, 0);
        let t = Timestamp::default();
        a.publish(t, 1);
        for k in 0..2 * CHUNK_RECORDS as u128 {
            a.order(k + 10);
            a.write(t, b"r\n").unwrap();
        }
        a.order(0);
        a.write(t, b"late\n").unwrap();
        assert_eq!(a.publish(t, u64::MAX).failed, 1);
    }

    /// What the merge is for: the same bytes whatever the number of collectors the records are
    /// spread over, with packet records, keyed tick records with ties, unkeyed end records, and
    /// shards running ahead of each other.
    #[test]
    fn the_same_bytes_whatever_the_number_of_shards() {
        let run = |shards: usize| -> String {
            let (out, merge) = merged(shards);
            let mut cs: Vec<Collector> = (0..shards).map(|s| merge.collector(s, 0)).collect();
            let t = Timestamp::default();
            let flows = 9_000u64;
            // Each flow's last packet position, per shard (flow % shards).
            let mut last = vec![0u64; flows as usize];
            let mut next = crate::base::xorshift(0x9e37_79b9_7f4a_7c15);
            let packets = 40_000u64;
            let tick_every = 10_000u64;
            let tick = |cs: &mut Vec<Collector>, last: &mut Vec<u64>, seq: u64, end: bool| {
                // Shards in a rotating order, so each runs ahead of the others in turn.
                for i in 0..shards {
                    let s = (i + seq as usize / tick_every as usize) % shards;
                    let c = &mut cs[s];
                    c.publish(t, seq);
                    let mut mine: Vec<(u64, u64)> = (0..flows)
                        .filter(|f| (*f as usize) % shards == s && last[*f as usize] > 0)
                        .map(|f| (last[f as usize] / 4, f))
                        .collect();
                    // Keys in order, ties in flow order (not bytes order).
                    mine.sort_unstable();
                    for (k, f) in mine {
                        if end {
                            c.write(t, format!("end {f}\n").as_bytes()).unwrap();
                        } else {
                            c.order(u128::from(k));
                            c.write(t, format!("tick {seq} flow {f} last {k}\n").as_bytes())
                                .unwrap();
                        }
                        last[f as usize] = 0;
                    }
                }
            };
            for seq in 1..=packets {
                if seq % tick_every == 0 {
                    tick(&mut cs, &mut last, seq, false);
                }
                let f = next() % flows;
                let c = &mut cs[(f as usize) % shards];
                c.at_packet(seq);
                last[f as usize] = seq;
                for i in 0..next() % 3 {
                    c.write(t, format!("packet {seq} {i}\n").as_bytes())
                        .unwrap();
                }
            }
            // What the end emits has no keys at all.
            for f in 0..flows {
                if last[f as usize] == 0 && f % 7 == 0 {
                    last[f as usize] = 1;
                }
            }
            tick(&mut cs, &mut last, u64::MAX, true);
            for c in &mut cs {
                c.close(t);
            }
            text(&out)
        };
        let one = run(1);
        assert!(one.lines().count() > 50_000, "{}", one.lines().count());
        for shards in 2..=4 {
            assert!(run(shards) == one, "{shards} shards differ from one");
        }
    }

    /// The bound: a shard that runs through a tick's records while the other has not begun its
    /// own waits once the merge holds more than the bound of its records, instead of handing
    /// them all over; and the bytes written are the same either way.
    #[test]
    fn a_shard_ahead_at_a_tick_waits_once_the_merge_holds_the_bound() {
        let records = 20_000u64;
        let run = |hold: usize| -> (String, usize) {
            let out = Shared::default();
            let merge = Merge::with_hold(Box::new(out.clone()), 2, hold);
            let (mut fast, mut slow) = (merge.collector(0, 0), merge.collector(1, 0));
            let (done_tx, done_rx) = std::sync::mpsc::channel();
            let emit = move |c: &mut Collector, parity: u64| {
                let t = Timestamp::default();
                c.publish(t, 1);
                c.tick_call();
                for k in (parity..2 * records).step_by(2) {
                    c.order(u128::from(k));
                    c.write(t, format!("tick record {k}\n").as_bytes()).unwrap();
                }
                c.settle();
                c.close(t);
            };
            std::thread::scope(|s| {
                let fast = &mut fast;
                s.spawn(move || {
                    emit(fast, 0);
                    let _ = done_tx.send(());
                });
                // The slow shard begins its tick once the fast one is done or, if that one waits,
                // a while after.
                let slow = &mut slow;
                s.spawn(move || {
                    let _ = done_rx.recv_timeout(std::time::Duration::from_millis(200));
                    emit(slow, 1);
                });
            });
            let peak = merge.lock().queues[0].peak;
            drop((fast, slow, merge));
            (text(&out), peak)
        };
        let (unbounded, held_all) = run(usize::MAX);
        let hold = 128 << 10;
        let (bounded, held) = run(hold);
        let chunk = CHUNK_BYTES + CHUNK_RECORDS * std::mem::size_of::<Rec>();
        assert!(held <= hold + chunk, "held {held} with a bound of {hold}");
        assert!(
            held_all > 4 * (hold + chunk),
            "without a bound the fast shard's records are all held ({held_all} bytes)"
        );
        assert_eq!(bounded, unbounded);
        // Flushed at the tick, before its records, and at the end.
        let records: String = (0..2 * records)
            .map(|k| format!("tick record {k}\n"))
            .collect();
        let want = format!("|\n{records}|\n");
        assert_eq!(bounded, want);
    }

    /// Waiting cannot outlast the shard waited for: a collector dropped without closing (its
    /// shard's thread ended) lets the waiting one go, and what both handed over is written.
    #[test]
    fn a_shard_that_ended_early_is_not_waited_for() {
        let out = Shared::default();
        let merge = Merge::with_hold(Box::new(out.clone()), 2, 4 << 10);
        let (mut fast, gone) = (merge.collector(0, 0), merge.collector(1, 0));
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let shard = std::thread::spawn(move || {
            let t = Timestamp::default();
            fast.publish(t, 1);
            fast.tick_call();
            for k in 0..10_000u64 {
                fast.order(u128::from(k));
                fast.write(t, b"r\n").unwrap();
            }
            fast.settle();
            fast.close(t);
            let _ = done_tx.send(());
        });
        let wait = std::time::Duration::from_millis(200);
        assert!(
            done_rx.recv_timeout(wait).is_err(),
            "waits while the other shard has not passed the tick"
        );
        drop(gone);
        done_rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("let go once the other shard's collector is gone");
        shard.join().unwrap();
        drop(merge);
        assert_eq!(lines(&out), 10_000 + 2);
    }

    /// A collector never waits for one of its own shard (the same thread would have to move it):
    /// a later module's tick records that come before an earlier module has settled, as flow
    /// events can make them, are held beyond the bound instead.
    #[test]
    fn a_collector_does_not_wait_for_its_own_shard() {
        let out = Shared::default();
        let merge = Merge::with_hold(Box::new(out.clone()), 2, 4 << 10);
        let (mut first, mut second) = (merge.collector(0, 0), merge.collector(0, 1));
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let shard = std::thread::spawn(move || {
            let t = Timestamp::default();
            first.publish(t, 1);
            second.publish(t, 1);
            // As if the shard called the second module first (it calls them in config order).
            second.tick_call();
            for k in 0..10_000u64 {
                second.order(u128::from(k));
                second.write(t, b"second\n").unwrap();
            }
            first.write(t, b"first\n").unwrap();
            first.settle();
            second.settle();
            first.close(t);
            second.close(t);
            let _ = done_tx.send(());
        });
        done_rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the shard went on");
        shard.join().unwrap();
        drop(merge);
        let text = text(&out);
        assert!(text.starts_with("|\nfirst\nsecond\n"), "{}", &text[..40]);
        assert_eq!(lines(&out), 10_000 + 3);
    }

    /// Tick records written outside the module's own call (flow events, before the modules' calls
    /// in config order) never wait, whatever the merge holds: the modules before this one have not
    /// passed the tick, and a shard waited for may be waiting on them.
    #[test]
    fn tick_records_outside_the_modules_call_do_not_wait() {
        let out = Shared::default();
        let merge = Merge::with_hold(Box::new(out.clone()), 2, 4 << 10);
        let (mut early, mut late) = (merge.collector(0, 0), merge.collector(1, 0));
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let t = Timestamp::default();
        let shard = std::thread::spawn(move || {
            early.publish(t, 1);
            for k in 0..10_000u64 {
                early.order(u128::from(k));
                early.write(t, b"r\n").unwrap();
            }
            let _ = done_tx.send(());
            early
        });
        done_rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("no wait outside the module's call");
        let mut early = shard.join().unwrap();
        assert!(merge.lock().queues[0].held > 4 << 10);
        late.publish(t, 1);
        late.settle();
        late.close(t);
        early.close(t);
        drop((early, late, merge));
        assert_eq!(lines(&out), 10_000 + 2);
    }
}
