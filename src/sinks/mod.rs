//! Where module records go: one layer shared by every module that writes (flow records, pcap files,
//! JSON lines), so that rotation, compression, directory layout, size caps, flush policy and error
//! handling exist once.
//!
//! Two ways in:
//! - A module that emits self-contained records (text lines) writes through its
//!   [`Emitter`](crate::modules::Emitter) into a [`Sink`]: [`StdoutSink`], or [`FileSink`] over a
//!   [`RotatingFile`].
//! - A module whose files carry state of their own (pcapng interface blocks, one classic pcap per
//!   session) holds [`RotatingFile`]s itself and asks [`RotatingFile::prepare`] whether a record starts
//!   a new file, so it can repeat what each file needs.
//!
//! Time is packet time: files rotate when the packets (or ticks) say the interval is over, so a replay
//! writes the same files as the live run it came from.

mod clock;
mod file;
mod ring;

use std::io::{self, Write};

pub use self::clock::UtcTime;
pub use self::file::{FileOutputConfig, FileSink, Layout, Prepared, RotatingFile, SeriesName};
pub use self::ring::SizeCap;
use crate::pipeline::Timestamp;

/// A destination for records. Each `write` receives one complete record (a text line with its newline,
/// or a binary block) so that a sink can keep files valid at record boundaries.
pub trait Sink: Send {
    /// Writes one record; `now` is the packet time it belongs to (rotation and file names use it).
    fn write(&mut self, now: Timestamp, record: &[u8]) -> io::Result<()>;
    /// Pushes buffered records out and applies time-based rotation (called after every tick, at drain
    /// and at shutdown).
    fn flush(&mut self, now: Timestamp) -> io::Result<()>;
    /// Records accepted earlier (buffered) that a failed write has since lost, counted once.
    fn take_lost(&mut self) -> u64 {
        0
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

/// Standard output. Every shard has its own; stdout's lock is taken once per record, so lines from
/// different shards never interleave.
#[derive(Debug, Default)]
pub struct StdoutSink;

impl Sink for StdoutSink {
    fn write(&mut self, _now: Timestamp, record: &[u8]) -> io::Result<()> {
        io::stdout().lock().write_all(record)
    }
    fn flush(&mut self, _now: Timestamp) -> io::Result<()> {
        io::stdout().lock().flush()
    }
}
