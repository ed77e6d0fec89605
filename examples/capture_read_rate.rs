//! Reads a capture with vxtap's reader and does nothing else: the baseline that `vxtap replay`'s
//! throughput is compared with (how much the pipeline and modules add to reading the file).
//!
//! ```text
//! cargo run --release --example capture_read_rate -- FILE...
//! ```

use std::path::Path;
use std::time::Instant;

use vxtap::ingest::pcap::{CaptureReader, Item};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files: Vec<String> = std::env::args().skip(1).collect();
    if files.is_empty() {
        return Err("usage: capture_read_rate FILE...".into());
    }
    let start = Instant::now();
    let (mut records, mut bytes, mut bad) = (0u64, 0u64, 0u64);
    for file in &files {
        let mut reader = CaptureReader::open(Path::new(file))?;
        while let Some(item) = reader.next_item()? {
            records += 1;
            match item {
                Item::Frame(r) => bytes += r.data.len() as u64,
                Item::Bad { .. } => bad += 1,
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{records} records ({bytes} bytes, {bad} unusable) in {secs:.3} s: {:.0} records/s, {:.0} MB/s",
        records as f64 / secs,
        bytes as f64 / secs / 1e6
    );
    Ok(())
}
