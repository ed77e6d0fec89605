//! Where module records go. A module writes whole records through its [`Emitter`](crate::modules::Emitter)
//! into one [`Sink`]; the sink decides framing, buffering, files and rotation.

use std::io::{self, Write};

/// A destination for records. Each `write` receives one complete record (a text line with its newline,
/// or a binary block) so that a sink can keep files valid at record boundaries.
pub trait Sink: Send {
    /// Writes one record.
    fn write(&mut self, record: &[u8]) -> io::Result<()>;
    /// Pushes buffered records out (called on ticks, drain and shutdown).
    fn flush(&mut self) -> io::Result<()>;
}

/// Discards records: for modules that only count.
#[derive(Debug, Default)]
pub struct NullSink;

impl Sink for NullSink {
    fn write(&mut self, _record: &[u8]) -> io::Result<()> {
        Ok(())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Standard output. Every shard has its own; stdout's lock is taken once per record, so lines from
/// different shards never interleave.
#[derive(Debug, Default)]
pub struct StdoutSink;

impl Sink for StdoutSink {
    fn write(&mut self, record: &[u8]) -> io::Result<()> {
        io::stdout().lock().write_all(record)
    }
    fn flush(&mut self) -> io::Result<()> {
        io::stdout().lock().flush()
    }
}
