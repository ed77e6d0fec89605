//! `stats`: per-session packet and byte counters, with a one-line summary logged every interval.
//!
//! Each shard counts on its own; at every interval (packet time) it publishes a snapshot to a board
//! shared by the kind's instances, and shard 0 logs the merged view. The board is touched once per
//! interval per shard, never per packet. The JSON records are merged too, through an interval board
//! (`interval_board.rs`): one record per session and interval, summed over shards and written by the
//! shard that completes the interval, so they do not depend on the number of shards.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde::Deserialize;

use super::interval_board::{IntervalBoard, Merge};
use super::{BuildError, Emitter, Module, ModuleConfig, ModuleContext, PerSession};
use crate::base::{Packet, Timestamp};
use crate::sinks::{NullSink, OutputConfig, SeriesName, Sink};

/// `[[module]] kind = "stats"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatsConfig {
    /// Seconds between summaries.
    #[serde(default = "default_interval")]
    pub interval_secs: u64,
    /// Also write one JSON record per session per interval, to standard output (`"stdout"`) or files
    /// (`[module.output]` with a `dir`); omit for none.
    #[serde(default)]
    pub output: Option<OutputConfig>,
    #[serde(skip)]
    board: Arc<Board>,
    #[serde(skip)]
    records: Arc<IntervalBoard<Snapshot>>,
}

/// Every shard's cumulative counts at one interval's end, summed by session, and the latest tick
/// time among them (the records' `time`).
#[derive(Debug, Default)]
struct Snapshot {
    now: u64,
    counts: BTreeMap<u32, SessionCounts>,
}

impl Merge for Snapshot {
    fn merge(&mut self, other: Snapshot) {
        self.now = self.now.max(other.now);
        for (id, c) in other.counts {
            let into = self.counts.entry(id).or_insert_with(|| SessionCounts {
                name: c.name.clone(),
                ..SessionCounts::default()
            });
            into.packets += c.packets;
            into.bytes += c.bytes;
        }
    }
}

fn default_interval() -> u64 {
    10
}

/// Counts for one session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionCounts {
    /// Session name.
    pub name: String,
    /// Packets.
    pub packets: u64,
    /// Inner frame bytes as received (before vxtap's truncation).
    pub bytes: u64,
}

#[derive(Debug, Default)]
struct Board {
    inner: Mutex<BoardInner>,
}

#[derive(Debug, Default)]
struct BoardInner {
    shards: BTreeMap<usize, BTreeMap<u32, SessionCounts>>,
    flushed: usize,
    last_total: u64,
    last_time: Option<Timestamp>,
}

impl ModuleConfig for StatsConfig {
    fn validate(&self) -> Result<(), String> {
        if self.interval_secs == 0 {
            return Err("interval_secs: must be at least 1".into());
        }
        self.output.as_ref().map_or(Ok(()), OutputConfig::validate)
    }

    fn build(&self, ctx: &ModuleContext) -> Result<Box<dyn Module>, BuildError> {
        Ok(Box::new(Stats {
            shard: ctx.shard,
            shards: ctx.shards,
            interval_ns: self.interval_secs * 1_000_000_000,
            write_records: self.output.is_some(),
            next: None,
            counts: PerSession::new(),
            board: self.board.clone(),
            records: self.records.clone(),
            released: Vec::new(),
        }))
    }

    fn sink(&self, ctx: &ModuleContext) -> Result<Box<dyn Sink>, BuildError> {
        let Some(output) = &self.output else {
            return Ok(Box::new(NullSink));
        };
        let name = SeriesName {
            stem: format!("stats-shard{}", ctx.shard),
            ext: "json".into(),
            aws_prefix: None,
        };
        Ok(output.record_sink(name, Vec::new())?)
    }
}

struct Stats {
    shard: usize,
    shards: usize,
    interval_ns: u64,
    write_records: bool,
    next: Option<Timestamp>,
    counts: PerSession<SessionCounts>,
    board: Arc<Board>,
    records: Arc<IntervalBoard<Snapshot>>,
    released: Vec<(u64, Snapshot)>,
}

impl Stats {
    /// Publishes the counts at `now`, the end of the interval ending at `end` (ns); `last` at the
    /// end of input.
    fn publish(&mut self, now: Timestamp, end: u64, out: &mut Emitter<'_>, last: bool) {
        let snapshot: BTreeMap<u32, SessionCounts> =
            self.counts.iter().map(|(k, v)| (k, v.clone())).collect();
        if self.write_records {
            let data = Snapshot {
                now: now.secs(),
                counts: snapshot.clone(),
            };
            let through = if last { u64::MAX } else { end };
            self.records.publish(
                self.shard,
                self.shards,
                end,
                Some(data),
                through,
                &mut self.released,
            );
            for (_, merged) in self.released.drain(..) {
                for c in merged.counts.values() {
                    out.keyed(&c.name).line(format_args!(
                        "{{\"time\":{},\"session\":{},\"packets\":{},\"bytes\":{}}}",
                        merged.now,
                        serde_json::Value::from(c.name.as_str()),
                        c.packets,
                        c.bytes
                    ));
                }
            }
        }
        let mut board = self.board.inner.lock().unwrap_or_else(|e| e.into_inner());
        board.shards.insert(self.shard, snapshot);
        if last {
            board.flushed += 1;
        }
        let log_now = if last {
            board.flushed == self.shards
        } else {
            self.shard == 0
        };
        if log_now {
            log_summary(&mut board, now, last);
        }
    }
}

fn log_summary(board: &mut BoardInner, now: Timestamp, last: bool) {
    let mut merged: BTreeMap<u32, SessionCounts> = BTreeMap::new();
    for shard in board.shards.values() {
        for (id, c) in shard {
            let m = merged.entry(*id).or_insert_with(|| SessionCounts {
                name: c.name.clone(),
                ..Default::default()
            });
            m.packets += c.packets;
            m.bytes += c.bytes;
        }
    }
    let packets: u64 = merged.values().map(|c| c.packets).sum();
    let bytes: u64 = merged.values().map(|c| c.bytes).sum();
    let pps = match board.last_time {
        Some(t) if now > t => {
            (packets.saturating_sub(board.last_total)) as f64
                / ((now.nanos() - t.nanos()) as f64 / 1e9)
        }
        _ => 0.0,
    };
    board.last_total = packets;
    board.last_time = Some(now);
    let mut top: Vec<_> = merged.values().collect();
    top.sort_by(|a, b| b.packets.cmp(&a.packets).then(a.name.cmp(&b.name)));
    let per_session = top
        .iter()
        .take(8)
        .map(|c| format!("{}={}", c.name, c.packets))
        .collect::<Vec<_>>()
        .join(",");
    tracing::info!(
        message = if last { "Final traffic summary." } else { "Traffic summary." },
        sessions = merged.len(),
        packets,
        bytes,
        pps = pps.round() as u64,
        per_session = %per_session,
    );
}

impl Module for Stats {
    fn on_packet(&mut self, pkt: &Packet<'_>, _out: &mut Emitter<'_>) {
        let c = self
            .counts
            .get_or_insert_with(pkt.session.id, || SessionCounts {
                name: pkt.session.name.clone(),
                ..Default::default()
            });
        c.packets += 1;
        c.bytes += u64::from(pkt.orig_len);
    }

    fn on_tick(&mut self, now: Timestamp, out: &mut Emitter<'_>) {
        // Intervals are aligned to the epoch so that all shards publish for the same boundaries.
        let next = *self
            .next
            .get_or_insert_with(|| now.next_boundary(self.interval_ns));
        if now >= next {
            self.next = Some(now.next_boundary(self.interval_ns));
            self.publish(now, next.nanos(), out, false);
        }
    }

    fn finish(&mut self, out: &mut Emitter<'_>) {
        let now = self
            .board
            .inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .last_time
            .unwrap_or_default();
        let end = self.next.map_or(u64::MAX, Timestamp::nanos);
        self.publish(now, end, out, true);
    }
}
