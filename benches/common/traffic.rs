//! Deterministic synthetic mirror traffic, shared by the micro benchmarks and the bench/ helpers
//! (included with `#[path]`, so it is not part of the library).
//!
//! Flows are spread over a number of mirror sessions (outer source 10.200.x.y, VNI from 1); each
//! flow's packets alternate direction at random, its first packet is a SYN, and inner sizes follow
//! a mix of small (ACK-sized), medium and near-MTU frames, roughly what a web-facing ENI mirrors.
//! Same seed, same bytes, on every machine.
#![allow(dead_code, unreachable_pub)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use etherparse::PacketBuilder;

/// splitmix64: tiny, fast and good enough to spread flows and sizes.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

/// The inner payload sizes (bytes after the transport header) and their weights out of 100.
const SIZES: &[(usize, u64)] = &[(0, 40), (120, 20), (560, 15), (1200, 10), (1400, 15)];

/// A generator of mirror datagrams.
#[derive(Debug)]
pub struct Traffic {
    rng: Rng,
    flows: u32,
    sessions: u32,
    seen: Vec<u16>,
    /// Every `ipv6_every`-th flow is IPv6 (0 = none).
    pub ipv6_every: u32,
    /// Every `udp_every`-th flow is UDP (0 = none).
    pub udp_every: u32,
    /// Scales inner payload sizes down (1 = as in SIZES), to make loopback datagrams smaller.
    pub size_divisor: usize,
    frame: Vec<u8>,
}

/// One generated datagram.
#[derive(Debug)]
pub struct Datagram<'a> {
    /// The outer source address (the mirror session's source ENI).
    pub source: IpAddr,
    /// The VXLAN payload: header plus inner frame.
    pub vxlan: &'a [u8],
    /// A stable hash of the flow, for the outer UDP source port as AWS sets it.
    pub flow_hash: u16,
}

impl Traffic {
    /// `flows` flows over `sessions` sessions.
    pub fn new(seed: u64, flows: u32, sessions: u32) -> Traffic {
        Traffic {
            rng: Rng::new(seed),
            flows: flows.max(1),
            sessions: sessions.max(1),
            seen: vec![0; flows.max(1) as usize],
            ipv6_every: 10,
            udp_every: 5,
            size_divisor: 1,
            frame: Vec::with_capacity(9216),
        }
    }

    pub fn session_source(&self, flow: u32) -> IpAddr {
        let s = flow % self.sessions;
        IpAddr::V4(Ipv4Addr::new(10, 200, (s >> 8) as u8, s as u8))
    }

    /// The next datagram of a random flow.
    pub fn next(&mut self) -> Datagram<'_> {
        let flow = self.rng.below(u64::from(self.flows)) as u32;
        self.flow_packet(flow)
    }

    /// The next datagram of `flow`.
    pub fn flow_packet(&mut self, flow: u32) -> Datagram<'_> {
        let reply = self.rng.next_u64() & 1 == 1;
        let nth = &mut self.seen[flow as usize];
        let first = *nth == 0;
        *nth = nth.saturating_add(1);
        let size = {
            let mut pick = self.rng.below(100);
            let mut size = 0;
            for &(s, w) in SIZES {
                if pick < w {
                    size = s;
                    break;
                }
                pick -= w;
            }
            size / self.size_divisor.max(1)
        };
        let session = flow % self.sessions;
        let vni = session + 1;
        // (client address, client port) is unique per flow: 16 flows per client address.
        let client_port = 1024 + (flow % 16) as u16 * 4000 + (flow / 16 % 4000) as u16;
        let server_port = [443u16, 80, 53, 8080][(flow / 7 % 4) as usize];
        let udp = self.udp_every != 0 && flow % self.udp_every == 1;
        let v6 = self.ipv6_every != 0 && flow % self.ipv6_every == 3;
        let c = 1 + flow / 16;
        let (mut src, mut dst, mut sport, mut dport) = if v6 {
            let mut a = [0xfdu8; 16];
            a[12..].copy_from_slice(&c.to_be_bytes());
            let mut b = [0x20u8; 16];
            b[15] = (session & 0xff) as u8;
            (
                IpAddr::V6(Ipv6Addr::from(a)),
                IpAddr::V6(Ipv6Addr::from(b)),
                client_port,
                server_port,
            )
        } else {
            (
                IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | (c & 0x00ff_ffff))),
                IpAddr::V4(Ipv4Addr::new(172, 16, (session >> 8) as u8, session as u8)),
                client_port,
                server_port,
            )
        };
        if reply && !first {
            std::mem::swap(&mut src, &mut dst);
            std::mem::swap(&mut sport, &mut dport);
        }
        self.frame.clear();
        self.frame.extend_from_slice(&[
            0x08,
            0,
            0,
            0,
            (vni >> 16) as u8,
            (vni >> 8) as u8,
            vni as u8,
            0,
        ]);
        let eth = PacketBuilder::ethernet2([0x02, 0, 0, 0, 0, 1], [0x02, 0, 0, 0, 0, 2]);
        let payload = &PAYLOAD[..size];
        let written = match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                let ip = eth.ipv4(s.octets(), d.octets(), 64);
                if udp {
                    ip.udp(sport, dport).write(&mut self.frame, payload)
                } else if first {
                    ip.tcp(sport, dport, 1, 64000)
                        .syn()
                        .write(&mut self.frame, payload)
                } else {
                    ip.tcp(sport, dport, 1000, 64000)
                        .ack(1000)
                        .psh()
                        .write(&mut self.frame, payload)
                }
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                let ip = eth.ipv6(s.octets(), d.octets(), 64);
                if udp {
                    ip.udp(sport, dport).write(&mut self.frame, payload)
                } else {
                    ip.tcp(sport, dport, 1000, 64000)
                        .ack(1000)
                        .write(&mut self.frame, payload)
                }
            }
            _ => unreachable!("both addresses of a flow are of one family"),
        };
        written.expect("a Vec never fails to grow");
        Datagram {
            source: self.session_source(flow),
            vxlan: &self.frame,
            flow_hash: (flow.wrapping_mul(0x9e37_79b9) >> 16) as u16 | 0x8000,
        }
    }
}

static PAYLOAD: [u8; 1400] = [0x42; 1400];

/// Writes a classic pcap (microsecond, Ethernet) file header.
pub fn pcap_header(out: &mut impl std::io::Write) -> std::io::Result<()> {
    let mut h = Vec::with_capacity(24);
    h.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    h.extend_from_slice(&2u16.to_le_bytes());
    h.extend_from_slice(&4u16.to_le_bytes());
    h.extend_from_slice(&0i32.to_le_bytes());
    h.extend_from_slice(&0u32.to_le_bytes());
    h.extend_from_slice(&65535u32.to_le_bytes());
    h.extend_from_slice(&1u32.to_le_bytes());
    out.write_all(&h)
}

/// Wraps a VXLAN payload in Ethernet/IPv4/UDP 4789 as it arrives at the mirror target, and writes
/// it as one pcap record.
pub fn pcap_record(
    out: &mut impl std::io::Write,
    scratch: &mut Vec<u8>,
    ts_us: u64,
    d: &Datagram<'_>,
) -> std::io::Result<()> {
    let IpAddr::V4(src) = d.source else {
        unreachable!("session sources are IPv4")
    };
    scratch.clear();
    PacketBuilder::ethernet2([0x02, 0, 0, 0, 1, 1], [0x02, 0, 0, 0, 1, 2])
        .ipv4(src.octets(), [10, 99, 0, 1], 254)
        .udp(d.flow_hash, 4789)
        .write(scratch, d.vxlan)
        .map_err(std::io::Error::other)?;
    let mut h = [0u8; 16];
    h[0..4].copy_from_slice(&((ts_us / 1_000_000) as u32).to_le_bytes());
    h[4..8].copy_from_slice(&((ts_us % 1_000_000) as u32).to_le_bytes());
    h[8..12].copy_from_slice(&(scratch.len() as u32).to_le_bytes());
    h[12..16].copy_from_slice(&(scratch.len() as u32).to_le_bytes());
    out.write_all(&h)?;
    out.write_all(scratch)
}
