//! Where module records go: one layer shared by every module that writes (flow records, pcap files,
//! JSON lines), so that rotation, compression, directory layout, size caps, flush policy and error
//! handling exist once.
//!
//! Two ways in:
//! - A module that emits self-contained records (text lines) writes through its
//!   `Emitter` (in `modules`, the layer above) into a [`Sink`]: [`StdoutSink`], or [`FileSink`] over a
//!   [`RotatingFile`].
//! - A module whose records go to Kafka writes through its `Emitter` into a [`KafkaSink`], which
//!   hands them to the output's producer thread (see `kafka.rs`).
//! - A module whose files carry state of their own (pcapng interface blocks, one classic pcap per
//!   session) holds [`RotatingFile`]s itself and asks [`RotatingFile::prepare`] whether a record starts
//!   a new file, so it can repeat what each file needs.
//!
//! Replay merges: every shard writes a module's records into a [`Collector`], and the module's one
//! [`Merge`] writes them to the real sink in the order of the input, so the output does not depend
//! on the number of shards.
//!
//! Time is packet time: files rotate when the packets (or ticks) say the interval is over, so a replay
//! writes the same files as the live run it came from.

mod clock;
mod file;
mod kafka;
mod merge;
mod output;
mod ring;
mod s3;

use std::io::{self, Write};

pub use self::clock::UtcTime;
pub use self::file::{FileOutputConfig, FileSink, Layout, Prepared, RotatingFile, SeriesName};
pub use self::kafka::{
    finish_kafka, murmur2, partition_of, KafkaCompression, KafkaConfig, KafkaCounts, KafkaSink,
    KafkaSummary, Producer,
};
pub use self::merge::{Collector, Merge, Published};
pub use self::output::OutputConfig;
pub use self::ring::SizeCap;
pub use self::s3::{finish_uploads, spools, S3Config, Spool, UploadCounts, Uploader};
use crate::base::Timestamp;

/// A destination for records. Each `write` receives one complete record (a text line with its newline,
/// or a binary block) so that a sink can keep files valid at record boundaries.
pub trait Sink: Send {
    /// Writes one record; `now` is the packet time it belongs to (rotation and file names use it).
    fn write(&mut self, now: Timestamp, record: &[u8]) -> io::Result<()>;
    /// Writes one record that belongs to `key` (its mirror session's name). A sink that spreads
    /// records over partitions (Kafka) keeps one key's records together and in order; the others
    /// have no use for it.
    fn write_keyed(&mut self, now: Timestamp, _key: &[u8], record: &[u8]) -> io::Result<()> {
        self.write(now, record)
    }
    /// The order key of the records written next at a tick or at the end (`Emitter::order`). Only
    /// a replay's merge ([`Collector`]) has a use for it: every other sink writes in the order it
    /// is given.
    fn order(&mut self, _key: u128) {}
    /// Pushes buffered records out and applies time-based rotation (called after every tick, at drain
    /// and at shutdown).
    fn flush(&mut self, now: Timestamp) -> io::Result<()>;
    /// Records accepted earlier (buffered) that a failed write has since lost, counted once.
    fn take_lost(&mut self) -> u64 {
        0
    }
    /// What the output's S3 uploader did since the last call (an output without S3 has nothing):
    /// the uploader is not a module, so a module's sink reports it as the module's counters.
    fn take_uploads(&mut self) -> UploadCounts {
        UploadCounts::default()
    }
    /// What the output's Kafka producer did since the last call (an output without Kafka has
    /// nothing), reported as the module's counters for the same reason as uploads.
    fn take_kafka(&mut self) -> KafkaCounts {
        KafkaCounts::default()
    }
    /// Whether this is the process's standard output, which several modules share: a replay then
    /// merges their records into one order rather than letting them interleave as threads run.
    fn is_stdout(&self) -> bool {
        false
    }
}

/// Discards records: for modules that only count.
#[derive(Debug, Default)]
pub struct NullSink;

impl Sink for NullSink {
    fn write(&mut self, _now: Timestamp, _record: &[u8]) -> io::Result<()> {
        Ok(())
    }
    fn flush(&mut self, _now: Timestamp) -> io::Result<()> {
        Ok(())
    }
}

/// Standard output. Every shard has its own, which gathers records and writes them in whole-record
/// chunks under stdout's lock, so lines from different shards never interleave. Rust's stdout is
/// line-buffered, which would cost a `write` system call per record: at a flow log's rate of
/// records that was a tenth of a shard's time. Buffered records go out when the buffer is full and
/// at every sink flush (after each tick, at drain and at shutdown), and when the sink is dropped.
#[derive(Debug, Default)]
pub struct StdoutSink {
    buf: Vec<u8>,
    /// Records in `buf`.
    buffered: u64,
    /// Records a failed write has lost since `take_lost` last asked.
    lost: u64,
}

/// How much a [`StdoutSink`] gathers before it writes.
const STDOUT_BUFFER: usize = 64 * 1024;

impl StdoutSink {
    fn push_out(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let written = io::stdout().lock().write_all(&self.buf);
        if written.is_err() {
            self.lost += self.buffered;
        }
        self.buf.clear();
        self.buffered = 0;
        written
    }
}

impl Sink for StdoutSink {
    fn write(&mut self, _now: Timestamp, record: &[u8]) -> io::Result<()> {
        if self.buf.len() + record.len() > STDOUT_BUFFER {
            // On failure the records gathered before are counted as lost, and this one is the
            // error the caller counts.
            self.push_out()?;
        }
        self.buf.extend_from_slice(record);
        self.buffered += 1;
        Ok(())
    }
    fn flush(&mut self, _now: Timestamp) -> io::Result<()> {
        self.push_out()?;
        io::stdout().lock().flush()
    }
    fn take_lost(&mut self) -> u64 {
        std::mem::take(&mut self.lost)
    }
    fn is_stdout(&self) -> bool {
        true
    }
}

impl Drop for StdoutSink {
    fn drop(&mut self) {
        // Best effort: whoever drops a sink without flushing it has no one to report an error to.
        let _ = self.push_out();
    }
}
