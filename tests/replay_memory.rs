//! `vxtap replay` streams: replaying a capture much larger than its peak memory works, and the
//! counts come out right.

mod common;

use std::io::{BufWriter, Write};
use std::process::Command;

/// One VXLAN mirror datagram in an Ethernet/IPv4/UDP frame, 1,400 bytes of inner payload.
fn record(flow: u16) -> Vec<u8> {
    let mut inner = Vec::new();
    etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4([172, 31, 0, 1], [172, 31, 0, 2], 64)
        .tcp(10_000 + flow, 443, 1, 1000)
        .write(&mut inner, &[0x5a; 1400])
        .unwrap();
    let mut vxlan = vec![0x08, 0, 0, 0, 0, 0, 7, 0];
    vxlan.extend_from_slice(&inner);
    let mut outer = Vec::new();
    etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 3], [2, 0, 0, 0, 0, 4])
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .udp(50000, 4789)
        .write(&mut outer, &vxlan)
        .unwrap();
    outer
}

#[test]
fn memory_stays_flat_while_replaying_a_large_capture() {
    const RECORDS: u32 = 80_000;
    let pcap = common::temp_file("vxtap-large-", ".pcap");
    let path = pcap.path();
    let mut out = BufWriter::new(std::fs::File::create(path).unwrap());
    out.write_all(&[0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0])
        .unwrap();
    out.write_all(&65535u32.to_le_bytes()).unwrap();
    out.write_all(&1u32.to_le_bytes()).unwrap();
    let records: Vec<Vec<u8>> = (0..16).map(record).collect();
    for i in 0..RECORDS {
        let r = &records[(i % 16) as usize];
        for v in [
            1_709_294_400 + i / 1000,
            (i % 1000) * 1000,
            r.len() as u32,
            r.len() as u32,
        ] {
            out.write_all(&v.to_le_bytes()).unwrap();
        }
        out.write_all(r).unwrap();
    }
    out.into_inner().unwrap().sync_all().unwrap();
    let size = std::fs::metadata(path).unwrap().len();
    assert!(size > 110 << 20, "{size}");

    // Reaped below with wait4(2), which also gives its peak RSS.
    #[allow(clippy::zombie_processes)]
    let child = Command::new(env!("CARGO_BIN_EXE_vxtap"))
        .args(["replay", "--log-level", "error"])
        .arg(path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as libc::pid_t;
    let mut stderr = child.stderr.unwrap();
    let mut summary = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut summary).unwrap();
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid; wait4 on our own child fills it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our child, not yet waited for; the pointers are to live locals.
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(rc, pid);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{summary}"
    );
    assert!(
        summary.contains(&format!(
            "packets: {RECORDS} received, {RECORDS} dispatched, 0 dropped"
        )),
        "{summary}"
    );
    // ru_maxrss is in KiB on Linux. The file is 115 MiB; what replay holds is its read buffer, the
    // shard batches and the modules.
    let peak_mib = usage.ru_maxrss / 1024;
    eprintln!("peak RSS {peak_mib} MiB");
    assert!(
        peak_mib < 48,
        "peak RSS {peak_mib} MiB for a {} MiB file",
        size >> 20
    );
}
