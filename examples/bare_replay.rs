//! The offline benchmark's in-repo baseline: a bare single-threaded loop that reads a classic pcap
//! of mirror traffic, decapsulates each frame (outer Ethernet/IP/UDP 4789/VXLAN, with etherparse)
//! and counts flows in a hash map keyed by (outer source, VNI, inner 5-tuple in both directions).
//! No sessions, no shards, no modules, no records: the floor `vxtap replay` is measured against.
//!
//! `bare_replay FILE.pcap` prints `packets=N flows=F secs=S pps=P`.

use std::collections::HashMap;
use std::io::{self, BufReader, Read};
use std::time::Instant;

use etherparse::{NetSlice, SlicedPacket, TransportSlice};
use rustc_hash::FxBuildHasher;

type Addr = [u8; 16];

#[derive(Hash, PartialEq, Eq)]
struct FlowKey {
    outer: Addr,
    vni: u32,
    lo: (Addr, u16),
    hi: (Addr, u16),
    proto: u8,
}

fn addr(ip: std::net::IpAddr) -> Addr {
    match ip {
        std::net::IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        std::net::IpAddr::V6(a) => a.octets(),
    }
}

fn net_src_dst(net: &NetSlice<'_>) -> Option<(std::net::IpAddr, std::net::IpAddr, u8)> {
    match net {
        NetSlice::Ipv4(ip) => Some((
            ip.header().source_addr().into(),
            ip.header().destination_addr().into(),
            ip.payload().ip_number.0,
        )),
        NetSlice::Ipv6(ip) => Some((
            ip.header().source_addr().into(),
            ip.header().destination_addr().into(),
            ip.payload().ip_number.0,
        )),
        _ => None,
    }
}

fn ports(t: &Option<TransportSlice<'_>>) -> (u16, u16) {
    match t {
        Some(TransportSlice::Tcp(t)) => (t.source_port(), t.destination_port()),
        Some(TransportSlice::Udp(u)) => (u.source_port(), u.destination_port()),
        _ => (0, 0),
    }
}

fn main() -> io::Result<()> {
    let path = std::env::args()
        .nth(1)
        .ok_or_else(|| io::Error::other("usage: bare_replay FILE.pcap"))?;
    let start = Instant::now();
    let mut r = BufReader::with_capacity(1 << 20, std::fs::File::open(&path)?);
    let mut header = [0u8; 24];
    r.read_exact(&mut header)?;
    if header[..4] != 0xa1b2_c3d4u32.to_le_bytes() {
        return Err(io::Error::other(
            "only little-endian microsecond pcap is read",
        ));
    }
    let mut flows: HashMap<FlowKey, u64, FxBuildHasher> = HashMap::default();
    let mut buf = vec![0u8; 65536];
    let (mut packets, mut skipped) = (0u64, 0u64);
    let mut rec = [0u8; 16];
    loop {
        match r.read_exact(&mut rec) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e),
        }
        let len = u32::from_le_bytes([rec[8], rec[9], rec[10], rec[11]]) as usize;
        if len > buf.len() {
            return Err(io::Error::other("record larger than 64 KiB"));
        }
        r.read_exact(&mut buf[..len])?;
        packets += 1;
        let Some(key) = flow_of(&buf[..len]) else {
            skipped += 1;
            continue;
        };
        *flows.entry(key).or_insert(0) += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "packets={packets} flows={} skipped={skipped} secs={secs:.3} pps={:.0}",
        flows.len(),
        packets as f64 / secs
    );
    Ok(())
}

fn flow_of(frame: &[u8]) -> Option<FlowKey> {
    let outer = SlicedPacket::from_ethernet(frame).ok()?;
    let (outer_src, _, _) = net_src_dst(outer.net.as_ref()?)?;
    let Some(TransportSlice::Udp(udp)) = &outer.transport else {
        return None;
    };
    if udp.destination_port() != 4789 {
        return None;
    }
    let vxlan = udp.payload();
    if vxlan.len() < 8 || vxlan[0] & 0x08 == 0 {
        return None;
    }
    let vni = u32::from_be_bytes([0, vxlan[4], vxlan[5], vxlan[6]]);
    let inner = SlicedPacket::from_ethernet(&vxlan[8..]).ok()?;
    let (src, dst, proto) = net_src_dst(inner.net.as_ref()?)?;
    let (sp, dp) = ports(&inner.transport);
    let (a, b) = ((addr(src), sp), (addr(dst), dp));
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    Some(FlowKey {
        outer: addr(outer_src),
        vni,
        lo,
        hi,
        proto,
    })
}
