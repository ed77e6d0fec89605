//! One output for all shards, in a defined order: what makes a replay's records the same bytes
//! whatever the number of shards.
//!
//! Each shard writes a module's records into its own [`Collector`], which tags every record with an
//! order key: the position in the input of the packet whose processing emitted it and the emission's
//! index within that packet (only one shard processes a given packet, so the pair is unique and does
//! not depend on which shard that is), or, for records emitted at a tick or at the end (every shard at
//! once, each for its own flows), the position of the tick and the record's bytes, which is the only
//! order among them that no shard's private state decides. At every tick a collector hands what it
//! gathered since the previous tick to the module's one [`Merge`]; once every shard has handed over
//! the same segment, the records are sorted by key and written to the real sink, which is then
//! flushed on the tick's time. Memory is bounded by what the shards gather between ticks and by how
//! far the fastest shard may run ahead of the slowest (the reader's allowance of batches per shard).
//!
//! The hot path takes no lock: a collector appends to buffers of its own, and the merge's lock is
//! taken once per tick per shard.

use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Mutex};

use super::{KafkaCounts, Sink, UploadCounts};
use crate::base::Timestamp;

/// Where one record sits in the merged output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    /// Position in the input of the packet (or tick) that emitted it; `u64::MAX` at the end.
    seq: u64,
    /// The emitting module's position in the config, when modules share an output (stdout).
    module: u32,
    /// 1, 2, … in emission order for a packet's records; 0 for a tick's or the end's, which are then
    /// ordered by their bytes.
    idx: u32,
}

/// A record in a collector's buffer.
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

/// One shard's records of one segment (between two ticks).
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
}

/// What handing a segment over caused: the segments it completed were written and flushed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// Records the real sink accepted.
    pub written: u64,
    /// Records it refused or lost (I/O errors), to count as the module's errors.
    pub failed: u64,
    /// What the output's S3 uploader did since the last flush.
    pub uploads: UploadCounts,
    /// What the output's Kafka producer did since the last flush.
    pub kafka: KafkaCounts,
}

/// One real sink and the segments waiting for a shard: one per module kind's output, or one for all
/// the modules that write to standard output (their records are then ordered by module within each
/// packet, so even the interleaving of modules is fixed).
pub struct Merge {
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for Merge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Merge").finish_non_exhaustive()
    }
}

struct Inner {
    sink: Box<dyn Sink>,
    /// Collectors that hand over each segment: shards × modules sharing the output.
    parts: usize,
    /// Number of the segment at the front of `pending`.
    first: u64,
    pending: VecDeque<Segment>,
    /// Reused for sorting a segment's records.
    order: Vec<(usize, usize)>,
}

#[derive(Default)]
struct Segment {
    parts: Vec<Part>,
    /// The time of the tick that closed it, for the sink's flush.
    now: Timestamp,
}

impl Merge {
    /// One merge writing to `sink` for `parts` collectors (one per shard and module sharing it),
    /// each of which must hand over every segment.
    pub fn new(sink: Box<dyn Sink>, parts: usize) -> Arc<Merge> {
        Arc::new(Merge {
            inner: Mutex::new(Inner {
                sink,
                parts: parts.max(1),
                first: 0,
                pending: VecDeque::new(),
                order: Vec::new(),
            }),
        })
    }

    /// A collector for one shard's instance of the module at `module` in the config.
    pub fn collector(self: &Arc<Merge>, module: usize) -> Collector {
        let module = u32::try_from(module).unwrap_or(u32::MAX);
        Collector {
            merge: self.clone(),
            segment: 0,
            key: Key {
                seq: 0,
                module,
                idx: 1,
            },
            part: Part::default(),
        }
    }

    fn publish(&self, segment: u64, part: Part, now: Timestamp) -> Published {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let Some(at) = segment.checked_sub(inner.first) else {
            // Cannot happen (a segment is released only once every shard handed it over); written
            // rather than lost should it ever.
            let mut out = Published::default();
            inner.write(
                Segment {
                    parts: vec![part],
                    now,
                },
                &mut out,
            );
            return out;
        };
        let at = at as usize;
        if inner.pending.len() <= at {
            inner.pending.resize_with(at + 1, Segment::default);
        }
        let s = &mut inner.pending[at];
        s.parts.push(part);
        s.now = s.now.max(now);
        let mut out = Published::default();
        while inner
            .pending
            .front()
            .is_some_and(|s| s.parts.len() >= inner.parts)
        {
            let Some(done) = inner.pending.pop_front() else {
                break;
            };
            inner.first += 1;
            inner.write(done, &mut out);
        }
        out
    }
}

impl Inner {
    /// Writes one segment's records in key order, then flushes the sink on the segment's time.
    fn write(&mut self, segment: Segment, out: &mut Published) {
        let mut order = std::mem::take(&mut self.order);
        order.clear();
        for (p, part) in segment.parts.iter().enumerate() {
            order.extend((0..part.recs.len()).map(|r| (p, r)));
        }
        let parts = &segment.parts;
        // Stable and run-aware: each part is already in key order but for the byte-ordered groups,
        // so one shard's segment costs little more than a pass.
        order.sort_by(|&(pa, ra), &(pb, rb)| {
            let (a, b) = (&parts[pa].recs[ra], &parts[pb].recs[rb]);
            a.key.cmp(&b.key).then_with(|| {
                if a.key.idx == 0 {
                    parts[pa].record(a).cmp(parts[pb].record(b))
                } else {
                    std::cmp::Ordering::Equal
                }
            })
        });
        for &(p, r) in &order {
            let rec = &parts[p].recs[r];
            let written = match parts[p].key(rec) {
                Some(key) => self.sink.write_keyed(rec.now, key, parts[p].record(rec)),
                None => self.sink.write(rec.now, parts[p].record(rec)),
            };
            match written {
                Ok(()) => out.written += 1,
                Err(_) => out.failed += 1 + self.sink.take_lost(),
            }
        }
        if self.sink.flush(segment.now).is_err() {
            out.failed += self.sink.take_lost().max(1);
        }
        let up = self.sink.take_uploads();
        out.uploads.uploaded += up.uploaded;
        out.uploads.uploaded_bytes += up.uploaded_bytes;
        out.uploads.failed += up.failed;
        out.uploads.dropped += up.dropped;
        out.kafka.add(self.sink.take_kafka());
        self.order = order;
    }
}

impl Drop for Inner {
    /// A shard that ended early (its thread died) never hands its segments over: what the others
    /// handed over is written anyway, in order, rather than lost.
    fn drop(&mut self) {
        let mut out = Published::default();
        while let Some(segment) = self.pending.pop_front() {
            self.write(segment, &mut out);
        }
        if out.failed > 0 {
            tracing::error!(
                message = "Records lost writing the last merged output.",
                records = out.failed
            );
        }
    }
}

/// One shard's way into a [`Merge`]: a [`Sink`] that keeps records, each with its order key, until
/// the next tick. The shard tells it where in the input it is before every packet and tick.
#[derive(Debug)]
pub struct Collector {
    merge: Arc<Merge>,
    segment: u64,
    key: Key,
    part: Part,
}

impl Collector {
    /// Records from now on were emitted processing the packet at input position `seq`.
    #[inline]
    pub fn at_packet(&mut self, seq: u64) {
        self.key.seq = seq;
        self.key.idx = 1;
    }

    /// Records from now on were emitted at a tick (or, with `u64::MAX`, at the end) placed before the
    /// packet at input position `seq`; every shard emits such records at once, and they are ordered
    /// by their bytes.
    pub fn at_tick(&mut self, seq: u64) {
        self.key.seq = seq;
        self.key.idx = 0;
    }

    /// Hands what was gathered since the last call over to the merge as the next segment, closed by
    /// a tick at `now`. Every shard must hand over the same segments (one per tick and one at the
    /// end), whether it gathered anything or not.
    pub fn publish(&mut self, now: Timestamp) -> Published {
        // The next part starts about as large as this one was, so buffers grow once, not per tick.
        let next = Part {
            bytes: Vec::with_capacity(self.part.bytes.len()),
            recs: Vec::with_capacity(self.part.recs.len()),
        };
        let part = std::mem::replace(&mut self.part, next);
        let segment = self.segment;
        self.segment += 1;
        self.merge.publish(segment, part, now)
    }
}

impl Sink for Collector {
    fn write(&mut self, now: Timestamp, record: &[u8]) -> io::Result<()> {
        self.write_keyed(now, &[], record)
    }

    /// The key travels with the record to the real sink (Kafka partitions by it).
    fn write_keyed(&mut self, now: Timestamp, key: &[u8], record: &[u8]) -> io::Result<()> {
        self.part.push(self.key, now, key, record);
        if self.key.idx != 0 {
            self.key.idx = self.key.idx.saturating_add(1);
        }
        Ok(())
    }

    /// The merge flushes the real sink when a segment is complete.
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
            Ok(())
        }
    }

    fn text(s: &Shared) -> String {
        String::from_utf8(s.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn records_come_out_in_input_order_once_every_shard_has_handed_over() {
        let out = Shared::default();
        let merge = Merge::new(Box::new(out.clone()), 2);
        let (mut a, mut b) = (merge.collector(0), merge.collector(0));
        let t = Timestamp::default();
        a.at_packet(1);
        a.write(t, b"p1 first\n").unwrap();
        a.write(t, b"p1 second\n").unwrap();
        b.at_packet(2);
        b.write(t, b"p2\n").unwrap();
        a.at_packet(3);
        a.write(t, b"p3\n").unwrap();
        // A tick before packet 4: each shard's tick records, ordered by bytes.
        assert_eq!(a.publish(t).written, 0, "shard b has not handed over yet");
        a.at_tick(4);
        a.write(t, b"tick z\n").unwrap();
        assert_eq!(b.publish(t).written, 4);
        b.at_tick(4);
        b.write(t, b"tick a\n").unwrap();
        b.at_packet(4);
        b.write(t, b"p4\n").unwrap();
        a.at_tick(u64::MAX);
        a.write(t, b"end\n").unwrap();
        a.publish(t);
        assert_eq!(b.publish(t).written, 4);
        assert_eq!(
            text(&out),
            "p1 first\np1 second\np2\np3\ntick a\ntick z\np4\nend\n"
        );
    }

    #[test]
    fn what_a_dead_shard_never_handed_over_does_not_hold_the_others_back_at_the_end() {
        let out = Shared::default();
        let merge = Merge::new(Box::new(out.clone()), 2);
        let mut a = merge.collector(0);
        let b = merge.collector(0);
        a.at_packet(1);
        a.write(Timestamp::default(), b"kept\n").unwrap();
        a.publish(Timestamp::default());
        assert_eq!(text(&out), "");
        drop((a, b, merge));
        assert_eq!(text(&out), "kept\n");
    }
}
