//! Writes a deterministic VXLAN mirror capture for the offline benchmark: what a mirror target's
//! interface would record (Ethernet / IPv4 / UDP 4789 / VXLAN / inner frame), as classic pcap.
//!
//! `gen_capture OUT.pcap PACKETS FLOWS [SESSIONS]`: packets of FLOWS flows over SESSIONS mirror
//! sessions (default 8), 10 µs apart from 2023-11-14 22:13:20 UTC. Same arguments, same bytes.

use std::io::{self, BufWriter, Write};

#[path = "../benches/common/traffic.rs"]
mod traffic;

fn main() -> io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = || io::Error::other("usage: gen_capture OUT.pcap PACKETS FLOWS [SESSIONS]");
    let out = args.first().ok_or_else(usage)?;
    let num = |i: usize, default: Option<u64>| -> io::Result<u64> {
        match args.get(i) {
            Some(v) => v.parse().map_err(|_| usage()),
            None => default.ok_or_else(usage),
        }
    };
    let packets = num(1, None)?;
    let flows = num(2, None)? as u32;
    let sessions = num(3, Some(8))? as u32;
    let mut w = BufWriter::with_capacity(1 << 20, std::fs::File::create(out)?);
    traffic::pcap_header(&mut w)?;
    let mut t = traffic::Traffic::new(2024, flows, sessions);
    let mut scratch = Vec::with_capacity(9216);
    let start_us = 1_700_000_000_000_000u64;
    for i in 0..packets {
        let d = t.next();
        traffic::pcap_record(&mut w, &mut scratch, start_us + i * 10, &d)?;
    }
    w.flush()?;
    eprintln!("gen_capture: wrote {packets} packets of {flows} flows to {out}");
    Ok(())
}
