//! Deterministic mirror traffic that looks like a real ENI's (issue 14, goal 1): flows that open,
//! talk and close in time order with bounded concurrency, carrying real application payloads.
//! Included with `#[path]` (not part of the library) together with its sibling `payloads.rs`:
//!
//! ```ignore
//! #[path = "../benches/common/payloads.rs"]
//! mod payloads;
//! #[path = "../benches/common/eni.rs"]
//! mod eni;
//! ```
//!
//! The model, per mirror session (one source ENI, one VNI, its own outer source address):
//! - **Arrivals**: flows arrive as a Poisson process. While the capture fills up (until
//!   `concurrent` flows are live for the first time) they arrive at `concurrent` per 3 s of packet
//!   time, mostly connections: they stand in for the flows already open when a capture starts,
//!   which are the long-lived ones. After that they arrive at 1.25 × `concurrent` / (mean lifetime
//!   so far), and an arrival that finds `concurrent` flows live waits for one to end. A flow is
//!   live from its first packet to its last, so at most `concurrent` flows are ever live, and
//!   after the fill about that many are (45.6 k of 50 k on average in the default run).
//! - **Each flow** is scripted when it arrives (its lifetime, its packets and their times), and the
//!   packets of all live flows are interleaved by time through a binary heap of next-packet times.
//! - **Addresses**: the ENI's own address is one side of every flow. Inbound flows come from
//!   peers in two private /16s (its VPC and a peered one); outbound flows go to the VPC resolver
//!   (the VPC base + 2, or fd00:ec2::253), peers, or a few public /16s (/32s for IPv6). About 20 %
//!   of flows are IPv6, 2 % carry an 802.1Q tag.
//! - **Mix** (share of arrivals after the fill; lifetimes in brackets): TLS on 443 (40 %, 50 ms–
//!   120 s, inbound to the ENI's service and outbound), DNS over UDP (28 %, ~1–40 ms; A/AAAA often
//!   as a pair from one socket as glibc sends them, CNAME chains, HTTPS records, 5 % NXDOMAIN, 2 %
//!   unanswered), HTTP/1.1 on 80/8080 (9 %, load-balancer health checks and API calls, keep-alive,
//!   some pipelined, Content-Length or chunked responses), database connections (6 %, 5432/6379/
//!   3306, pooled: most go idle and never close), NTP (3 %), ICMP echo (3 %), SYNs never answered
//!   (3 %, with the 1 s and 3 s retries), SYNs refused by RST (2 %), SSH on 22 (2 %, banners, key
//!   exchange, keystrokes), DNS over TCP (1 %), UDP to closed ports answered by ICMP port
//!   unreachable quoting the datagram (1 %), and 2,400-byte UDP datagrams in two IPv4 fragments
//!   (0.5 %). The fill draws the short kinds a fifth as often, so over a whole default capture
//!   TLS is about half of the flows and DNS a fifth. Realistic in shape, not a measured census: an
//!   ENI in front of a web service that also calls AWS APIs and the internet.
//! - **TCP**: a client SYN with options, SYN-ACK, ACK; data both ways with sequence and
//!   acknowledgement numbers that advance by payload length (segments of at most the MSS: 1,460
//!   bytes, 1,440 over IPv6), delayed ACKs every second segment; 0.5 % of data segments sent again
//!   after a retransmission timeout with the same bytes, 1 % of segment pairs delivered in swapped
//!   order; closed by FIN both ways (most), RST (some) or never (idle). 5 % of ClientHellos span
//!   two or three segments.
//! - **Damage**: 0.2 % of datagrams are followed by a malformed copy: VXLAN I flag clear, VXLAN
//!   header cut short, or inner frame cut to a few bytes.
//!
//! Integer arithmetic and IEEE-754 basic operations only (logarithms are computed here, not by the
//! platform's libm), and no clock or OS randomness: the same configuration gives the same bytes on
//! every machine.
#![allow(dead_code, unreachable_pub)]

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use etherparse::{
    IpNumber, Ipv4Header, PacketBuilder, PacketBuilderStep, TcpOptionElement, VlanId,
};

use super::payloads::{self, DnsAnswer};

/// 2023-11-14 22:13:20 UTC, the capture's first arrival.
pub const START_US: u64 = 1_700_000_000_000_000;
/// The mirror target's address (outer destination).
pub const TARGET: [u8; 4] = [10, 99, 0, 10];
/// The VXLAN port AWS sends to.
pub const VXLAN_PORT: u16 = 4789;

/// What to generate.
#[derive(Debug, Clone, Copy)]
pub struct EniConfig {
    pub flows: u64,
    pub concurrent: u64,
    pub sessions: u32,
    pub seed: u64,
}

impl Default for EniConfig {
    fn default() -> EniConfig {
        EniConfig {
            flows: 170_000,
            concurrent: 50_000,
            sessions: 3,
            seed: 14,
        }
    }
}

/// splitmix64, as in traffic.rs.
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

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `per_mille` / 1000.
    pub fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }

    pub fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        for chunk in out.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
        out
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    /// An exponentially distributed value with the given mean.
    pub fn exponential(&mut self, mean: f64) -> f64 {
        let u = ((self.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64;
        -ln(u) * mean
    }
}

/// Natural logarithm of a positive normal `x` from IEEE-754 basic operations only (the platform's
/// `ln` may differ in the last bit between libms, and the capture must not): x = m·2^e with m in
/// [1, 2), ln m = 2·atanh((m−1)/(m+1)) by its series, |s| ≤ 1/3, 12 terms (error < 1e-12).
pub fn ln(x: f64) -> f64 {
    let bits = x.to_bits();
    let e = ((bits >> 52) & 0x7ff) as i64 - 1023;
    let m = f64::from_bits((bits & 0x000f_ffff_ffff_ffff) | 0x3ff0_0000_0000_0000);
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let mut term = s;
    let mut sum = 0.0;
    for k in 0..12 {
        sum += term / f64::from(2 * k + 1);
        term *= s2;
    }
    2.0 * sum + e as f64 * std::f64::consts::LN_2
}

/// Kinds of flow, in the order the summary prints them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Tls,
    Dns,
    Http,
    Database,
    Ntp,
    IcmpEcho,
    SynUnanswered,
    SynRefused,
    Ssh,
    DnsTcp,
    UdpUnreachable,
    UdpFragmented,
}

impl Kind {
    pub const ALL: [Kind; 12] = [
        Kind::Tls,
        Kind::Dns,
        Kind::Http,
        Kind::Database,
        Kind::Ntp,
        Kind::IcmpEcho,
        Kind::SynUnanswered,
        Kind::SynRefused,
        Kind::Ssh,
        Kind::DnsTcp,
        Kind::UdpUnreachable,
        Kind::UdpFragmented,
    ];

    /// Relative weights of the kinds (out of 955: the shares in the file header).
    const WEIGHTS: [u64; 12] = [380, 270, 90, 60, 30, 30, 30, 20, 20, 10, 10, 5];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Tls => "tls",
            Kind::Dns => "dns",
            Kind::Http => "http",
            Kind::Database => "db",
            Kind::Ntp => "ntp",
            Kind::IcmpEcho => "icmp_echo",
            Kind::SynUnanswered => "syn_unanswered",
            Kind::SynRefused => "syn_refused",
            Kind::Ssh => "ssh",
            Kind::DnsTcp => "dns_tcp",
            Kind::UdpUnreachable => "udp_unreachable",
            Kind::UdpFragmented => "udp_fragmented",
        }
    }

    /// Flows of a few packets within seconds, not connections.
    pub fn is_short(self) -> bool {
        !matches!(self, Kind::Tls | Kind::Http | Kind::Database | Kind::Ssh)
    }

    fn index(self) -> usize {
        Kind::ALL
            .iter()
            .position(|&k| k == self)
            .expect("ALL lists every kind")
    }
}

/// How the damaged copy of a datagram is damaged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Damage {
    VxlanFlagClear,
    VxlanTruncated,
    InnerCut,
}

/// TCP flag bits as on the wire.
pub mod tcp_flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
}
use tcp_flags::{ACK, FIN, PSH, RST, SYN};

/// A mirror session: one source ENI.
#[derive(Debug, Clone)]
pub struct Session {
    pub outer_source: [u8; 4],
    pub vni: u32,
    pub eni_v4: [u8; 4],
    pub eni_v6: [u8; 16],
    eni_mac: [u8; 6],
    router_mac: [u8; 6],
    /// First two octets of the peers' private /16s.
    private16: [[u8; 2]; 2],
    v6_vpc: [u8; 8],
    vlan: u16,
}

const PUBLIC16: [[u8; 2]; 5] = [[52, 94], [54, 239], [151, 101], [142, 250], [104, 18]];
const PUBLIC_V6: [[u8; 4]; 3] = [
    [0x26, 0x06, 0x47, 0x00],
    [0x2a, 0x00, 0x14, 0x50],
    [0x26, 0x00, 0x90, 0x00],
];
/// The Amazon-provided DNS server's IPv6 address.
const AMAZON_DNS_V6: [u8; 16] = [0xfd, 0, 0x0e, 0xc2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x53];

impl Session {
    fn new(s: u32, seed: u64) -> Session {
        let s8 = s as u8;
        let vpc = 16u8.wrapping_add(s8.wrapping_mul(16));
        let eni_v4 = [10, vpc, 1 + s8 % 4, 20 + s8];
        let mut eni_v6 = [0u8; 16];
        eni_v6[..8].copy_from_slice(&[0x26, 0x00, 0x1f, 0x18, 0x40, s8, 0x12, 0x01]);
        eni_v6[15] = 0x20 + s8;
        Session {
            outer_source: eni_v4,
            vni: (payloads::mix64(seed ^ u64::from(s) << 32) & 0xff_ffff) as u32 | 1,
            eni_v4,
            eni_v6,
            eni_mac: [0x0e, 0x5c, 0x1a, s8, 0x77, 0x01],
            router_mac: [0x0e, 0x5c, 0x1a, s8, 0x00, 0x01],
            private16: [[10, vpc], [10, vpc.wrapping_add(1)]],
            v6_vpc: [0x26, 0x00, 0x1f, 0x18, 0x40, s8, 0x12, 0x00],
            vlan: 100 + s as u16,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Addr {
    V4([u8; 4]),
    V6([u8; 16]),
}

impl Addr {
    fn octets16(self) -> [u8; 16] {
        match self {
            Addr::V4(a) => std::net::Ipv4Addr::from(a).to_ipv6_mapped().octets(),
            Addr::V6(a) => a,
        }
    }
}

/// A run of a TCP stream: literal bytes, or opaque bytes (ciphertext, bodies) made on demand.
#[derive(Debug)]
enum Piece {
    Bytes(Vec<u8>),
    Opaque { len: u32, seed: u32 },
}

impl Piece {
    fn len(&self) -> u32 {
        match self {
            Piece::Bytes(b) => b.len() as u32,
            Piece::Opaque { len, .. } => *len,
        }
    }
}

/// Bytes `from..from + len` of a stream of pieces.
fn stream_bytes(pieces: &[Piece], from: u32, len: u32, out: &mut Vec<u8>) {
    let mut base = 0u32;
    let end = from + len;
    for p in pieces {
        let plen = p.len();
        if base + plen > from && base < end {
            let a = from.max(base) - base;
            let b = end.min(base + plen) - base;
            match p {
                Piece::Bytes(bytes) => out.extend_from_slice(&bytes[a as usize..b as usize]),
                Piece::Opaque { seed, .. } => out.extend((a..b).map(|i| opaque_byte(*seed, i))),
            }
        }
        base += plen;
        if base >= end {
            break;
        }
    }
}

fn opaque_byte(seed: u32, i: u32) -> u8 {
    (seed.wrapping_add(i).wrapping_mul(0x9e37_79b1) >> 24) as u8
}

/// One scripted packet of a flow.
#[derive(Debug, Clone, Copy)]
struct Step {
    /// Microseconds after the flow's first packet.
    at: u32,
    /// 0: client to server, 1: server to client.
    dir: u8,
    what: What,
}

#[derive(Debug, Clone, Copy)]
enum What {
    Tcp {
        flags: u8,
        seq: u32,
        ack: u32,
        off: u32,
        len: u16,
    },
    Datagram(u16),
    Echo {
        reply: bool,
        seq: u16,
    },
    /// ICMP port unreachable quoting datagram n (sent the other way).
    Unreachable(u16),
    /// IPv4 fragment `part` (0 or 1) of datagram n.
    Fragment(u16, u8),
}

/// A live flow.
#[derive(Debug)]
struct Flow {
    serial: u64,
    kind: Kind,
    session: u32,
    start: u64,
    client: (Addr, u16),
    server: (Addr, u16),
    /// Which side is the ENI (0 client, 1 server).
    eni_side: u8,
    vlan: Option<u16>,
    proto: u8,
    streams: [Vec<Piece>; 2],
    datagrams: Vec<Vec<u8>>,
    steps: Vec<Step>,
    next: usize,
    outer_port: u16,
}

/// One datagram of the capture: the whole frame the mirror target's interface records.
#[derive(Debug)]
pub struct Datagram<'a> {
    pub ts_us: u64,
    pub session: u32,
    /// The flow's serial number (arrival order), the same for its damaged copies.
    pub flow: u64,
    pub kind: Kind,
    pub damage: Option<Damage>,
    /// Ethernet / IPv4 / UDP 4789 / VXLAN / inner frame.
    pub frame: &'a [u8],
}

/// Byte offset of the VXLAN header in [`Datagram::frame`].
pub const VXLAN_OFFSET: usize = 14 + 20 + 8;

/// Counters for the summary.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub flows: u64,
    pub packets: u64,
    pub bytes: u64,
    pub peak_live: u64,
    pub first_us: u64,
    pub last_us: u64,
    pub by_kind: [u64; 12],
    pub packets_by_kind: [u64; 12],
    pub ipv6_flows: u64,
    pub vlan_flows: u64,
    pub damaged: u64,
    pub retransmissions: u64,
    pub swapped_pairs: u64,
    pub closed_fin: u64,
    pub closed_rst: u64,
    pub left_idle: u64,
    pub inbound_flows: u64,
    /// When `concurrent` flows were first live (the fill's end).
    pub fill_end_us: u64,
    /// The last flow's arrival.
    pub last_arrival_us: u64,
    /// Live flows × µs between the fill's end and the last arrival (for the mean concurrency).
    pub live_us: u128,
}

impl Stats {
    /// Mean live flows between the fill's end and the last arrival.
    pub fn steady_concurrency(&self) -> f64 {
        let span = self.last_arrival_us.saturating_sub(self.fill_end_us);
        if span == 0 {
            0.0
        } else {
            self.live_us as f64 / span as f64
        }
    }
}

/// The generator: an iterator over datagrams in time order.
#[derive(Debug)]
pub struct EniTraffic {
    cfg: EniConfig,
    rng: Rng,
    pub sessions: Vec<Session>,
    slots: Vec<Option<Flow>>,
    free: Vec<u32>,
    heap: BinaryHeap<Reverse<(u64, u64, u32)>>,
    live: u64,
    filling: bool,
    next_arrival: u64,
    last_ts: u64,
    lifetime_sum: u64,
    /// The next ephemeral port per (session, server address, server port).
    ephemeral: std::collections::HashMap<(u32, [u8; 16], u16), u16>,
    frame: Vec<u8>,
    inner: Vec<u8>,
    payload: Vec<u8>,
    pending_damage: Option<(Damage, u64, u32, u64, Kind)>,
    pub stats: Stats,
}

impl EniTraffic {
    pub fn new(cfg: EniConfig) -> EniTraffic {
        let cfg = EniConfig {
            flows: cfg.flows,
            concurrent: cfg.concurrent.max(1),
            sessions: cfg.sessions.clamp(1, 200),
            seed: cfg.seed,
        };
        EniTraffic {
            rng: Rng::new(cfg.seed),
            sessions: (0..cfg.sessions)
                .map(|s| Session::new(s, cfg.seed))
                .collect(),
            slots: Vec::new(),
            free: Vec::new(),
            heap: BinaryHeap::new(),
            live: 0,
            filling: true,
            next_arrival: START_US,
            last_ts: START_US,
            lifetime_sum: 0,
            ephemeral: std::collections::HashMap::new(),
            frame: Vec::with_capacity(2048),
            inner: Vec::with_capacity(2048),
            payload: Vec::with_capacity(2048),
            pending_damage: None,
            stats: Stats {
                first_us: START_US,
                last_us: START_US,
                ..Stats::default()
            },
            cfg,
        }
    }

    /// Flows live right now (first packet sent, last packet not yet).
    pub fn live(&self) -> u64 {
        self.live
    }

    /// The next datagram, or `None` after the last flow's last packet.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Option<Datagram<'_>> {
        if let Some((damage, ts, session, flow, kind)) = self.pending_damage.take() {
            self.damage(damage);
            return Some(self.account(ts, session, flow, kind, Some(damage)));
        }
        loop {
            let head = self.heap.peek().map(|r| r.0 .0);
            let arrival_due =
                self.stats.flows < self.cfg.flows && head.is_none_or(|h| self.next_arrival <= h);
            if arrival_due && self.live < self.cfg.concurrent {
                self.admit();
                continue;
            }
            // Otherwise the arrival, if due, waits for a live flow to end.
            let Reverse((ts, _, slot)) = self.heap.pop()?;
            return Some(self.emit(ts, slot));
        }
    }

    fn admit(&mut self) {
        let start = self.next_arrival.max(self.last_ts + 1);
        let serial = self.stats.flows;
        let flow = self.script(serial, start);
        let lifetime = u64::from(flow.steps.last().map_or(0, |s| s.at));
        self.lifetime_sum += lifetime;
        self.stats.flows += 1;
        self.live += 1;
        self.stats.peak_live = self.stats.peak_live.max(self.live);
        if self.live >= self.cfg.concurrent && self.filling {
            self.filling = false;
            self.stats.fill_end_us = start;
        }
        self.stats.last_arrival_us = start;
        let mean_gap = if self.filling {
            3e6 / self.cfg.concurrent as f64
        } else {
            let mean_life = self.lifetime_sum as f64 / self.stats.flows as f64;
            mean_life / (1.25 * self.cfg.concurrent as f64)
        };
        self.next_arrival = start + self.rng.exponential(mean_gap) as u64;
        let first = start + u64::from(flow.steps[0].at);
        let slot = match self.free.pop() {
            Some(s) => {
                self.slots[s as usize] = Some(flow);
                s
            }
            None => {
                self.slots.push(Some(flow));
                (self.slots.len() - 1) as u32
            }
        };
        self.heap.push(Reverse((first, serial, slot)));
    }

    fn emit(&mut self, ts: u64, slot: u32) -> Datagram<'_> {
        let flow = self.slots[slot as usize]
            .as_mut()
            .expect("a heap entry points at a live flow");
        let step = flow.steps[flow.next];
        flow.next += 1;
        let (serial, kind, session) = (flow.serial, flow.kind, flow.session);
        let sess = &self.sessions[session as usize];
        build_inner(flow, &step, sess, &mut self.inner, &mut self.payload);
        let outer_port = flow.outer_port;
        if flow.next < flow.steps.len() {
            let next_ts = flow.start + u64::from(flow.steps[flow.next].at);
            self.heap.push(Reverse((next_ts, serial, slot)));
        } else {
            self.slots[slot as usize] = None;
            self.free.push(slot);
            self.live -= 1;
        }
        write_outer(&mut self.frame, sess, outer_port, &self.inner);
        if self.rng.chance(2) {
            let damage = *self.rng.pick(&[
                Damage::VxlanFlagClear,
                Damage::VxlanTruncated,
                Damage::InnerCut,
            ]);
            self.pending_damage = Some((damage, ts, session, serial, kind));
        }
        self.account(ts, session, serial, kind, None)
    }

    /// Turns the frame just emitted into its damaged copy.
    fn damage(&mut self, damage: Damage) {
        let keep = match damage {
            Damage::VxlanFlagClear => {
                self.frame[VXLAN_OFFSET] = 0;
                self.frame.len()
            }
            Damage::VxlanTruncated => VXLAN_OFFSET + 5,
            Damage::InnerCut => VXLAN_OFFSET + 8 + 14 + self.rng.range(0, 24) as usize,
        };
        self.frame.truncate(keep.min(self.frame.len()));
        fix_outer_lengths(&mut self.frame);
    }

    fn account(
        &mut self,
        ts: u64,
        session: u32,
        flow: u64,
        kind: Kind,
        damage: Option<Damage>,
    ) -> Datagram<'_> {
        if !self.filling && self.stats.flows < self.cfg.flows {
            self.stats.live_us += u128::from(self.live) * u128::from(ts - self.last_ts);
        }
        self.last_ts = ts;
        self.stats.last_us = ts;
        self.stats.packets += 1;
        self.stats.packets_by_kind[kind.index()] += 1;
        self.stats.bytes += self.frame.len() as u64;
        if damage.is_some() {
            self.stats.damaged += 1;
        }
        Datagram {
            ts_us: ts,
            session,
            flow,
            kind,
            damage,
            frame: &self.frame,
        }
    }

    /// A client port as Linux picks one (RFC 6056's algorithm 3, roughly): a counter per
    /// destination from an offset hashed from it, over 32768–60999. So one client's successive
    /// flows to the resolver do not reuse a 5-tuple until 28,232 of them have passed.
    fn next_port(&mut self, session: u32, server: (Addr, u16)) -> u16 {
        let key = (session, server.0.octets16(), server.1);
        let offset = |k: &(u32, [u8; 16], u16)| {
            let h = payloads::mix64(
                u64::from(k.0) << 16
                    ^ u64::from(k.2)
                    ^ u64::from_le_bytes(k.1[8..].try_into().expect("8 bytes")),
            );
            (h % 28_232) as u16
        };
        let next = self.ephemeral.entry(key).or_insert_with_key(offset);
        let port = 32768 + *next;
        *next = (*next + 1) % 28_232;
        port
    }

    /// Draws a flow and writes its script.
    fn script(&mut self, serial: u64, start: u64) -> Flow {
        let kind = {
            // The fill stands in for the flows already open when a capture starts, which are
            // mostly the long ones: short kinds are a fifth as likely then.
            let mut weights = Kind::WEIGHTS;
            if self.filling {
                for (w, k) in weights.iter_mut().zip(Kind::ALL) {
                    if k.is_short() {
                        *w /= 5;
                    }
                }
            }
            let mut pick = self.rng.below(weights.iter().sum());
            let mut kind = Kind::Tls;
            for (k, &w) in Kind::ALL.iter().zip(&weights) {
                if pick < w {
                    kind = *k;
                    break;
                }
                pick -= w;
            }
            kind
        };
        let session = self.rng.below(u64::from(self.cfg.sessions)) as u32;
        let v6 = kind != Kind::UdpFragmented && self.rng.chance(200);
        let vlan = self
            .rng
            .chance(20)
            .then(|| self.sessions[session as usize].vlan);
        let rng = &mut self.rng;
        let sess = &self.sessions[session as usize];
        // Who talks to whom: (ENI side, server port, server is the resolver, server is public).
        let (eni_side, port, resolver, public) = match kind {
            Kind::Tls => {
                let inbound = rng.chance(450);
                (u8::from(inbound), 443, false, !inbound && rng.chance(800))
            }
            Kind::Http => {
                let inbound = rng.chance(700);
                (
                    u8::from(inbound),
                    *rng.pick(&[80, 80, 8080]),
                    false,
                    !inbound && rng.chance(500),
                )
            }
            Kind::Dns | Kind::DnsTcp => (0, 53, true, false),
            Kind::Database => (0, *rng.pick(&[5432, 6379, 3306]), false, false),
            Kind::Ntp => (0, 123, false, true),
            Kind::Ssh => {
                let inbound = rng.chance(600);
                (u8::from(inbound), 22, false, !inbound)
            }
            Kind::IcmpEcho => (u8::from(rng.chance(500)), 0, false, rng.chance(500)),
            Kind::SynUnanswered => (0, *rng.pick(&[443, 25, 8443, 9200]), false, rng.chance(600)),
            Kind::SynRefused => (
                u8::from(rng.chance(700)),
                *rng.pick(&[23, 3389, 8081, 9000]),
                false,
                false,
            ),
            Kind::UdpUnreachable => (0, *rng.pick(&[33434, 33435, 1900, 10001]), false, false),
            Kind::UdpFragmented => (0, *rng.pick(&[514, 2055, 4739]), false, false),
        };
        let eni = if v6 {
            Addr::V6(sess.eni_v6)
        } else {
            Addr::V4(sess.eni_v4)
        };
        let peer = if resolver {
            if v6 {
                Addr::V6(AMAZON_DNS_V6)
            } else {
                Addr::V4([sess.private16[0][0], sess.private16[0][1], 0, 2])
            }
        } else if v6 {
            let mut a = [0u8; 16];
            if public {
                a[..4].copy_from_slice(&PUBLIC_V6[rng.below(3) as usize]);
                a[4..].copy_from_slice(&rng.bytes::<12>());
            } else {
                a[..8].copy_from_slice(&sess.v6_vpc);
                a[7] = rng.below(4) as u8;
                a[8..].copy_from_slice(&rng.bytes::<8>());
            }
            Addr::V6(a)
        } else {
            let net = if public {
                *rng.pick(&PUBLIC16)
            } else {
                *rng.pick(&sess.private16)
            };
            Addr::V4([
                net[0],
                net[1],
                rng.below(64) as u8,
                1 + rng.below(254) as u8,
            ])
        };
        let (client_addr, server_addr) = if eni_side == 0 {
            (eni, peer)
        } else {
            (peer, eni)
        };
        let client_port = self.next_port(session, (server_addr, port));
        let rng = &mut self.rng;
        let mut flow = Flow {
            serial,
            kind,
            session,
            start,
            client: (client_addr, client_port),
            server: (server_addr, port),
            eni_side,
            vlan,
            proto: match kind {
                Kind::Dns | Kind::Ntp | Kind::UdpUnreachable | Kind::UdpFragmented => 17,
                Kind::IcmpEcho => {
                    if v6 {
                        58
                    } else {
                        1
                    }
                }
                _ => 6,
            },
            streams: [Vec::new(), Vec::new()],
            datagrams: Vec::new(),
            steps: Vec::new(),
            next: 0,
            outer_port: 0,
        };
        flow.outer_port = symmetric_port(&flow);
        let rtt = if public {
            rng.range(4_000, 90_000)
        } else {
            rng.range(150, 1_500)
        };
        match kind {
            Kind::Tls => script_tls(&mut flow, rng, rtt, &mut self.stats),
            Kind::Http => script_http(&mut flow, rng, rtt, &mut self.stats),
            Kind::Database => script_database(&mut flow, rng, rtt, &mut self.stats),
            Kind::Ssh => script_ssh(&mut flow, rng, rtt, &mut self.stats),
            Kind::DnsTcp => script_dns_tcp(&mut flow, rng, rtt, &mut self.stats),
            Kind::SynUnanswered => {
                let isn = rng.next_u64() as u32;
                // Linux retries an unanswered SYN after 1 s, then 2 s more.
                for at in [0u32, 1_000_000, 3_000_000] {
                    flow.steps.push(tcp_step(at, 0, SYN, isn, 0, 0, 0));
                }
            }
            Kind::SynRefused => {
                let isn = rng.next_u64() as u32;
                flow.steps.push(tcp_step(0, 0, SYN, isn, 0, 0, 0));
                flow.steps.push(tcp_step(
                    rtt as u32,
                    1,
                    RST | ACK,
                    0,
                    isn.wrapping_add(1),
                    0,
                    0,
                ));
            }
            Kind::Dns => script_dns(&mut flow, rng, rtt),
            Kind::Ntp => {
                let mut q = vec![0u8; 48];
                q[0] = 0x23;
                q[40..48].copy_from_slice(&rng.bytes::<8>());
                let mut r = vec![0u8; 48];
                r[0] = 0x24;
                r[1] = 3;
                r[12..16].copy_from_slice(&[169, 254, 169, 123]);
                r[16..].copy_from_slice(&rng.bytes::<32>());
                flow.datagrams = vec![q, r];
                flow.steps.push(Step {
                    at: 0,
                    dir: 0,
                    what: What::Datagram(0),
                });
                flow.steps.push(Step {
                    at: rtt as u32,
                    dir: 1,
                    what: What::Datagram(1),
                });
            }
            Kind::IcmpEcho => {
                let pings = rng.range(1, 5) as u16;
                let lost = rng.chance(100);
                for n in 0..pings {
                    let at = u32::from(n) * 1_000_000;
                    flow.steps.push(Step {
                        at,
                        dir: 0,
                        what: What::Echo {
                            reply: false,
                            seq: n + 1,
                        },
                    });
                    if !(lost && n + 1 == pings) {
                        let what = What::Echo {
                            reply: true,
                            seq: n + 1,
                        };
                        flow.steps.push(Step {
                            at: at + rtt as u32,
                            dir: 1,
                            what,
                        });
                    }
                }
            }
            Kind::UdpUnreachable => {
                let len = rng.range(20, 120) as usize;
                flow.datagrams
                    .push((0..len).map(|i| (i as u8).wrapping_mul(31)).collect());
                flow.steps.push(Step {
                    at: 0,
                    dir: 0,
                    what: What::Datagram(0),
                });
                flow.steps.push(Step {
                    at: rtt as u32,
                    dir: 1,
                    what: What::Unreachable(0),
                });
            }
            Kind::UdpFragmented => {
                let mut msg =
                    format!("<134>1 2023-11-14T22:13:20Z app-{serial} batch - - - ").into_bytes();
                msg.extend((0..2400 - msg.len()).map(|i| b'a' + (i % 26) as u8));
                flow.datagrams.push(msg);
                flow.steps.push(Step {
                    at: 0,
                    dir: 0,
                    what: What::Fragment(0, 0),
                });
                flow.steps.push(Step {
                    at: 12,
                    dir: 0,
                    what: What::Fragment(0, 1),
                });
            }
        }
        let st = &mut self.stats;
        st.by_kind[kind.index()] += 1;
        st.ipv6_flows += u64::from(v6);
        st.vlan_flows += u64::from(vlan.is_some());
        st.inbound_flows += u64::from(eni_side == 1);
        flow
    }
}

/// AWS sets the outer UDP source port from a hash of the inner flow, the same both ways, so one
/// flow's datagrams follow one path. Any symmetric hash shows that shape.
fn symmetric_port(flow: &Flow) -> u16 {
    let a = (flow.client.0.octets16(), flow.client.1);
    let b = (flow.server.0.octets16(), flow.server.1);
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    let mut h = u64::from(flow.proto);
    for part in [lo.0, hi.0] {
        h = payloads::mix64(h ^ u64::from_be_bytes(part[..8].try_into().expect("8 bytes")));
        h = payloads::mix64(h ^ u64::from_be_bytes(part[8..].try_into().expect("8 bytes")));
    }
    h = payloads::mix64(h ^ (u64::from(lo.1) << 16 | u64::from(hi.1)));
    1024 + (h % (65536 - 1024)) as u16
}

fn tcp_step(at: u32, dir: u8, flags: u8, seq: u32, ack: u32, off: u32, len: u16) -> Step {
    Step {
        at,
        dir,
        what: What::Tcp {
            flags,
            seq,
            ack,
            off,
            len,
        },
    }
}

/// Piecewise log-uniform lifetimes of a connection, in µs.
fn connection_lifetime(rng: &mut Rng) -> u64 {
    let buckets: [(u64, u64, u64); 4] = [
        (50_000, 1_000_000, 20),
        (1_000_000, 10_000_000, 25),
        (10_000_000, 60_000_000, 35),
        (60_000_000, 120_000_000, 20),
    ];
    let mut pick = rng.below(100);
    for (lo, hi, w) in buckets {
        if pick < w {
            return rng.range(lo, hi);
        }
        pick -= w;
    }
    unreachable!("weights sum to 100")
}

/// Writes a TCP connection's script in time order, keeping both sequence spaces.
struct Tcp<'a> {
    flow: &'a mut Flow,
    t: u64,
    isn: [u32; 2],
    sent: [u32; 2],
    fin: [bool; 2],
    rtt: u64,
    mss: u32,
    stats: &'a mut Stats,
}

impl<'a> Tcp<'a> {
    fn new(flow: &'a mut Flow, rng: &mut Rng, rtt: u64, stats: &'a mut Stats) -> Tcp<'a> {
        let mss = if matches!(flow.client.0, Addr::V6(_)) {
            1440
        } else {
            1460
        };
        Tcp {
            flow,
            t: 0,
            isn: [rng.next_u64() as u32, rng.next_u64() as u32],
            sent: [0, 0],
            fin: [false, false],
            rtt,
            mss,
            stats,
        }
    }

    fn seq(&self, d: usize) -> u32 {
        self.isn[d]
            .wrapping_add(1)
            .wrapping_add(self.sent[d])
            .wrapping_add(u32::from(self.fin[d]))
    }

    fn push(&mut self, d: usize, flags: u8, seq: u32, off: u32, len: u32) {
        let ack = if flags & ACK != 0 { self.seq(1 - d) } else { 0 };
        let at = u32::try_from(self.t).unwrap_or(u32::MAX);
        self.flow
            .steps
            .push(tcp_step(at, d as u8, flags, seq, ack, off, len as u16));
    }

    /// Time passes before side `d` sends, after the other side sent: the mirror sits at the ENI, so
    /// the ENI answers at once and the peer a round trip later.
    fn turn(&mut self, d: usize, rng: &mut Rng) {
        self.t += if d as u8 == self.flow.eni_side {
            rng.range(30, 400)
        } else {
            self.rtt
        };
    }

    fn handshake(&mut self, rng: &mut Rng) {
        self.push(0, SYN, self.isn[0], 0, 0);
        self.turn(1, rng);
        self.push(1, SYN | ACK, self.isn[1], 0, 0);
        self.turn(0, rng);
        self.push(0, ACK, self.seq(0), 0, 0);
    }

    /// Side `d` sends `piece`, cut at `splits` (lengths) or else at the MSS; the other side ACKs
    /// every second segment.
    fn send(&mut self, d: usize, piece: Piece, splits: &[u32], rng: &mut Rng) {
        self.send_message(d, vec![piece], splits, rng);
    }

    /// [`Tcp::send`] for a message made of several pieces (records, head and body).
    fn send_message(&mut self, d: usize, message: Vec<Piece>, splits: &[u32], rng: &mut Rng) {
        let total: u32 = message.iter().map(Piece::len).sum();
        let base = self.sent[d];
        self.flow.streams[d].extend(message);
        let mut cuts = Vec::with_capacity(8);
        let mut at = 0;
        for &s in splits {
            if at + s < total {
                cuts.push((at, s));
                at += s;
            }
        }
        while at < total {
            let len = self.mss.min(total - at);
            cuts.push((at, len));
            at += len;
        }
        let mut i = 0;
        while i < cuts.len() {
            // A swapped pair: the second segment reaches the mirror first.
            let swap = i + 1 < cuts.len() && i % 2 == 0 && rng.chance(10);
            let order: &[usize] = if swap { &[1, 0] } else { &[0] };
            if swap {
                self.stats.swapped_pairs += 1;
            }
            let group = if swap { 2 } else { 1 };
            for &k in order {
                let (off, len) = cuts[i + k];
                let last = i + k + 1 == cuts.len();
                let flags = ACK | if last { PSH } else { 0 };
                let seq = self.isn[d].wrapping_add(1).wrapping_add(base + off);
                self.push(d, flags, seq, base + off, len);
                if rng.chance(5) {
                    self.stats.retransmissions += 1;
                    self.t += (2 * self.rtt).max(200_000);
                    self.push(d, flags, seq, base + off, len);
                }
                self.t += 12 + u64::from(len) / 125;
            }
            self.sent[d] = base + cuts[i + group - 1].0 + cuts[i + group - 1].1;
            i += group;
            // Delayed ACKs (RFC 1122 §4.2.3.2): every second full segment; an odd last segment
            // is acknowledged by the next packet the other side sends.
            if i % 2 == 0 && i < cuts.len() || i == cuts.len() && cuts.len() % 2 == 0 {
                self.t += if (1 - d) as u8 == self.flow.eni_side {
                    40
                } else {
                    self.rtt / 2
                };
                self.push(1 - d, ACK, self.seq(1 - d), 0, 0);
            }
        }
        self.sent[d] = base + total;
    }

    fn close(&mut self, d: usize, rng: &mut Rng) {
        self.push(d, FIN | ACK, self.seq(d), 0, 0);
        self.fin[d] = true;
        self.turn(1 - d, rng);
        self.push(1 - d, FIN | ACK, self.seq(1 - d), 0, 0);
        self.fin[1 - d] = true;
        self.turn(d, rng);
        self.push(d, ACK, self.seq(d), 0, 0);
        self.stats.closed_fin += 1;
    }

    fn reset(&mut self, d: usize) {
        self.push(d, RST | ACK, self.seq(d), 0, 0);
        self.stats.closed_rst += 1;
    }

    /// Ends the connection: FIN both ways (75 %), a RST (12 %) or nothing (left idle).
    fn end(&mut self, rng: &mut Rng, lifetime: u64) {
        self.t = self.t.max(lifetime);
        let who = rng.below(2) as usize;
        match rng.below(100) {
            0..75 => self.close(who, rng),
            75..87 => self.reset(who),
            _ => self.stats.left_idle += 1,
        }
    }

    /// A pause before the next exchange, spreading `n` exchanges over the lifetime.
    fn think(&mut self, rng: &mut Rng, lifetime: u64, n: u64) {
        let slice = lifetime.saturating_sub(self.t) / (n + 1);
        self.t += rng.range(slice / 2, slice + slice / 2);
    }
}

/// Response sizes: mostly small, some medium, a few large (near-MTU segments).
fn response_size(rng: &mut Rng) -> u32 {
    match rng.below(100) {
        0..80 => rng.range(80, 1400) as u32,
        80..97 => rng.range(1400, 8_000) as u32,
        _ => rng.range(8_000, 60_000) as u32,
    }
}

const SERVICE_NAMES: [&str; 2] = ["api.shop.example", "www.example.net"];
const OUTBOUND_NAMES: [&str; 20] = [
    "s3.us-east-1.amazonaws.com",
    "sts.us-east-1.amazonaws.com",
    "dynamodb.us-east-1.amazonaws.com",
    "sqs.us-east-1.amazonaws.com",
    "logs.us-east-1.amazonaws.com",
    "monitoring.us-east-1.amazonaws.com",
    "secretsmanager.us-east-1.amazonaws.com",
    "api.github.com",
    "registry.npmjs.org",
    "pypi.org",
    "files.pythonhosted.org",
    "www.google.com",
    "api.stripe.com",
    "hooks.slack.com",
    "ocsp.digicert.com",
    "deb.debian.org",
    "security.ubuntu.com",
    "o4504.ingest.sentry.io",
    "api.segment.io",
    "collector.newrelic.com",
];

fn script_tls(flow: &mut Flow, rng: &mut Rng, rtt: u64, stats: &mut Stats) {
    let lifetime = connection_lifetime(rng);
    let inbound = flow.eni_side == 1;
    let sni = if inbound {
        *rng.pick(&SERVICE_NAMES)
    } else {
        *rng.pick(&OUTBOUND_NAMES)
    };
    let browser = inbound && rng.chance(600) || rng.chance(300);
    let alpn: &[&str] = match rng.below(10) {
        0..6 => &["h2", "http/1.1"],
        6..9 => &["http/1.1"],
        _ => &[],
    };
    let hello = payloads::ClientHello {
        sni: if rng.chance(20) { None } else { Some(sni) },
        alpn,
        random: rng.bytes(),
        session_id: rng.bytes(),
        key_share: rng.bytes(),
        browser_seed: browser.then(|| rng.next_u64()),
    };
    let tls13 = rng.chance(750);
    let client_hello = payloads::tls_client_hello(&hello);
    let mut tcp = Tcp::new(flow, rng, rtt, stats);
    tcp.handshake(rng);
    tcp.t += rng.range(20, 300);
    let splits: Vec<u32> = if rng.chance(50) {
        let n = client_hello.len() as u32;
        if rng.chance(500) {
            vec![n / 3, n / 3]
        } else {
            vec![rng.range(40, u64::from(n) - 20) as u32]
        }
    } else {
        Vec::new()
    };
    tcp.send(0, Piece::Bytes(client_hello), &splits, rng);
    tcp.turn(1, rng);
    let server_random = rng.bytes();
    let chosen = alpn.first().copied();
    if tls13 {
        let mut flight = payloads::tls_server_hello(
            server_random,
            &hello.session_id,
            true,
            0x1301,
            None,
            &rng.bytes(),
        );
        flight.extend_from_slice(&payloads::tls_change_cipher_spec());
        // EncryptedExtensions, Certificate, CertificateVerify, Finished: one opaque record.
        let sealed = rng.range(1800, 4800) as u16;
        flight.extend_from_slice(&payloads::tls_app_data_header(sealed));
        let sealed = Piece::Opaque {
            len: u32::from(sealed),
            seed: rng.next_u64() as u32,
        };
        tcp.send_message(1, vec![Piece::Bytes(flight), sealed], &[], rng);
        tcp.turn(0, rng);
        let mut fin = payloads::tls_change_cipher_spec();
        fin.extend_from_slice(&payloads::tls_app_data_header(53));
        let sealed = Piece::Opaque {
            len: 53,
            seed: rng.next_u64() as u32,
        };
        tcp.send_message(0, vec![Piece::Bytes(fin), sealed], &[], rng);
    } else {
        let rsa = rng.chance(500);
        let cert = if rsa {
            payloads::CERT_RSA_2048
        } else {
            payloads::CERT_EC_P256
        };
        let cipher = if rsa { 0xc02f } else { 0xc02b };
        let mut flight = payloads::tls_server_hello(
            server_random,
            &hello.session_id,
            false,
            cipher,
            chosen,
            &[0; 32],
        );
        let sig: Vec<u8> = (0..if rsa { 256 } else { 72 })
            .map(|_| rng.next_u64() as u8)
            .collect();
        flight.extend_from_slice(&payloads::tls12_certificate_flight(
            &[cert],
            &rng.bytes(),
            &sig,
        ));
        tcp.send(1, Piece::Bytes(flight), &[], rng);
        tcp.turn(0, rng);
        let finished: [u8; 40] = rng.bytes();
        tcp.send(
            0,
            Piece::Bytes(payloads::tls12_client_finish(&rng.bytes(), &finished)),
            &[],
            rng,
        );
        tcp.turn(1, rng);
        let mut fin = payloads::tls_change_cipher_spec();
        fin.extend_from_slice(&payloads::tls_record(
            payloads::content::HANDSHAKE,
            0x0303,
            &rng.bytes::<40>(),
        ));
        tcp.send(1, Piece::Bytes(fin), &[], rng);
    }
    let exchanges =
        1 + u64::from(rng.chance(300)) + u64::from(lifetime > 60_000_000 && rng.chance(500));
    for _ in 0..exchanges {
        tcp.think(rng, lifetime, exchanges);
        let request = rng.range(90, 900) as u16;
        app_data(&mut tcp, 0, u32::from(request), rng);
        tcp.turn(1, rng);
        app_data(&mut tcp, 1, response_size(rng), rng);
    }
    tcp.end(rng, lifetime);
}

/// `len` bytes of application data from `d` in records of at most 16 KiB.
fn app_data(tcp: &mut Tcp<'_>, d: usize, len: u32, rng: &mut Rng) {
    let mut left = len;
    let mut message = Vec::new();
    while left > 0 {
        let rec = left.min(16_384);
        // 17 bytes of AEAD expansion: the inner content type and a 16-byte tag.
        message.push(Piece::Bytes(
            payloads::tls_app_data_header(rec as u16 + 17).to_vec(),
        ));
        message.push(Piece::Opaque {
            len: rec + 17,
            seed: rng.next_u64() as u32,
        });
        left -= rec;
    }
    tcp.send_message(d, message, &[], rng);
}

fn script_http(flow: &mut Flow, rng: &mut Rng, rtt: u64, stats: &mut Stats) {
    let inbound = flow.eni_side == 1;
    let health = inbound && rng.chance(400);
    let lifetime = if health {
        rng.range(5_000, 60_000)
    } else {
        connection_lifetime(rng)
    };
    let host = if inbound {
        *rng.pick(&SERVICE_NAMES)
    } else {
        *rng.pick(&[
            "deb.debian.org",
            "169.254.169.254",
            "security.ubuntu.com",
            "registry.internal.example",
        ])
    };
    let agent = if health {
        "ELB-HealthChecker/2.0"
    } else {
        *rng.pick(&[
            "curl/8.5.0",
            "python-requests/2.31.0",
            "Go-http-client/1.1",
            "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0",
            "okhttp/4.12.0",
        ])
    };
    let mut tcp = Tcp::new(flow, rng, rtt, stats);
    tcp.handshake(rng);
    let requests = if health { 1 } else { rng.range(1, 3) };
    let mut sent = 0;
    while sent < requests {
        tcp.t += rng.range(20, 200);
        let pipelined = !health && sent + 1 < requests && rng.chance(150);
        let batch = if pipelined { 2 } else { 1 };
        let mut req = Vec::new();
        for _ in 0..batch {
            let id = rng.below(100_000);
            if health {
                req.extend(payloads::http_request("GET", host, "/healthz", agent, b""));
            } else if rng.chance(200) {
                let body = format!(
                    "{{\"order\":{id},\"items\":[{}],\"note\":\"deterministic\"}}",
                    rng.below(50)
                );
                req.extend(payloads::http_request(
                    "POST",
                    host,
                    "/api/v1/orders",
                    agent,
                    body.as_bytes(),
                ));
            } else {
                let path = format!("/api/v1/items/{id}?page={}", rng.below(9));
                req.extend(payloads::http_request("GET", host, &path, agent, b""));
            }
        }
        tcp.send(0, Piece::Bytes(req), &[], rng);
        for _ in 0..batch {
            tcp.turn(1, rng);
            if health {
                let body = b"{\"status\":\"ok\"}";
                let mut r = payloads::http_response_head(200, "OK", "application/json", body.len());
                r.extend_from_slice(body);
                tcp.send(1, Piece::Bytes(r), &[], rng);
            } else if rng.chance(300) {
                let chunks: Vec<Vec<u8>> = (0..rng.range(1, 4))
                    .map(|i| format!("{{\"chunk\":{i},\"v\":{}}}", rng.below(1 << 20)).into_bytes())
                    .collect();
                let refs: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
                tcp.send(
                    1,
                    Piece::Bytes(payloads::http_response_chunked(200, "OK", &refs)),
                    &[],
                    rng,
                );
            } else {
                let (status, reason) = *rng.pick(&[
                    (200, "OK"),
                    (200, "OK"),
                    (200, "OK"),
                    (304, "Not Modified"),
                    (404, "Not Found"),
                ]);
                let len = if status == 304 { 0 } else { response_size(rng) };
                let head = payloads::http_response_head(
                    status,
                    reason,
                    "application/octet-stream",
                    len as usize,
                );
                let body = Piece::Opaque {
                    len,
                    seed: rng.next_u64() as u32,
                };
                if len == 0 {
                    tcp.send(1, Piece::Bytes(head), &[], rng);
                } else {
                    tcp.send_message(1, vec![Piece::Bytes(head), body], &[], rng);
                }
            }
        }
        sent += batch;
        if sent < requests {
            tcp.think(rng, lifetime, requests);
        }
    }
    tcp.end(rng, lifetime);
}

fn script_database(flow: &mut Flow, rng: &mut Rng, rtt: u64, stats: &mut Stats) {
    let lifetime = connection_lifetime(rng);
    let mut tcp = Tcp::new(flow, rng, rtt, stats);
    tcp.handshake(rng);
    let queries = rng.range(1, 3);
    for _ in 0..queries {
        tcp.think(rng, lifetime / 2, queries);
        let q = rng.range(40, 400) as u32;
        tcp.send(
            0,
            Piece::Opaque {
                len: q,
                seed: rng.next_u64() as u32,
            },
            &[],
            rng,
        );
        tcp.turn(1, rng);
        let r = rng.range(20, 3000) as u32;
        tcp.send(
            1,
            Piece::Opaque {
                len: r,
                seed: rng.next_u64() as u32,
            },
            &[],
            rng,
        );
    }
    // A pool keeps most connections open: they go idle and are never closed in the capture.
    if rng.chance(300) {
        tcp.end(rng, lifetime);
    } else {
        tcp.stats.left_idle += 1;
    }
}

fn script_ssh(flow: &mut Flow, rng: &mut Rng, rtt: u64, stats: &mut Stats) {
    let lifetime = connection_lifetime(rng);
    let mut tcp = Tcp::new(flow, rng, rtt, stats);
    tcp.handshake(rng);
    tcp.send(
        1,
        Piece::Bytes(payloads::ssh_banner("OpenSSH_9.6p1 Ubuntu-3ubuntu13.5")),
        &[],
        rng,
    );
    tcp.turn(0, rng);
    tcp.send(
        0,
        Piece::Bytes(payloads::ssh_banner("OpenSSH_9.2p1 Debian-2+deb12u3")),
        &[],
        rng,
    );
    for (d, len) in [
        (0, 1520u32),
        (1, 1100),
        (0, 48),
        (1, 564),
        (0, 16),
        (0, 52),
        (1, 52),
    ] {
        tcp.turn(d, rng);
        tcp.send(
            d,
            Piece::Opaque {
                len,
                seed: rng.next_u64() as u32,
            },
            &[],
            rng,
        );
    }
    let keys = rng.range(2, 12);
    for _ in 0..keys {
        tcp.think(rng, lifetime, keys);
        tcp.send(
            0,
            Piece::Opaque {
                len: 36,
                seed: rng.next_u64() as u32,
            },
            &[],
            rng,
        );
        tcp.turn(1, rng);
        tcp.send(
            1,
            Piece::Opaque {
                len: rng.range(36, 300) as u32,
                seed: rng.next_u64() as u32,
            },
            &[],
            rng,
        );
    }
    tcp.end(rng, lifetime);
}

fn script_dns_tcp(flow: &mut Flow, rng: &mut Rng, rtt: u64, stats: &mut Stats) {
    let name = *rng.pick(&OUTBOUND_NAMES);
    let query = payloads::dns_query(rng.next_u64() as u16, name, payloads::qtype::A, true);
    let answers: Vec<DnsAnswer> = (0..rng.range(8, 40))
        .map(|_| DnsAnswer::A(rng.bytes()))
        .collect();
    let response = payloads::dns_response(&query, &answers, 0, "amazonaws.com", 60);
    let mut tcp = Tcp::new(flow, rng, rtt, stats);
    tcp.handshake(rng);
    tcp.send(0, Piece::Bytes(payloads::dns_over_tcp(&query)), &[], rng);
    tcp.turn(1, rng);
    tcp.send(1, Piece::Bytes(payloads::dns_over_tcp(&response)), &[], rng);
    tcp.turn(0, rng);
    tcp.close(0, rng);
}

fn script_dns(flow: &mut Flow, rng: &mut Rng, rtt: u64) {
    let (name, zone, nx) = if rng.chance(50) {
        // A search-domain miss, as resolvers see for short names.
        ("db-primary.ec2.internal".to_string(), "ec2.internal", true)
    } else if rng.chance(200) {
        (
            format!("edge-{}.cdn.example.net", rng.below(4000)),
            "example.net",
            false,
        )
    } else {
        (
            rng.pick(&OUTBOUND_NAMES).to_string(),
            "amazonaws.com",
            false,
        )
    };
    let pair = rng.chance(400);
    let qtypes: &[u16] = if pair {
        &[payloads::qtype::A, payloads::qtype::AAAA]
    } else {
        const SINGLE: [[u16; 1]; 3] = [
            [payloads::qtype::A],
            [payloads::qtype::AAAA],
            [payloads::qtype::HTTPS],
        ];
        &SINGLE[rng.below(3) as usize]
    };
    let unanswered = rng.chance(20);
    let edns = rng.chance(700);
    let cname = rng.chance(300);
    let ttl = rng.range(5, 300) as u32;
    let mut t = 0u32;
    for (i, &qt) in qtypes.iter().enumerate() {
        let q = payloads::dns_query(rng.next_u64() as u16, &name, qt, edns);
        let mut answers = Vec::new();
        if cname {
            answers.push(DnsAnswer::Cname(format!(
                "{}.edge.awsglobalaccelerator.com",
                rng.below(900)
            )));
        }
        for _ in 0..rng.range(1, 4) {
            answers.push(match qt {
                payloads::qtype::A => {
                    DnsAnswer::A([52, 94, rng.below(256) as u8, rng.below(256) as u8])
                }
                payloads::qtype::AAAA => {
                    let mut a = [0u8; 16];
                    a[..4].copy_from_slice(&PUBLIC_V6[0]);
                    a[4..].copy_from_slice(&rng.bytes::<12>());
                    DnsAnswer::Aaaa(a)
                }
                _ => DnsAnswer::Https {
                    alpn: vec!["h2", "h3"],
                    ipv4_hint: [104, 18, rng.below(256) as u8, rng.below(256) as u8],
                },
            });
            if qt == payloads::qtype::HTTPS {
                break;
            }
        }
        let r = payloads::dns_response(&q, &answers, if nx { 3 } else { 0 }, zone, ttl);
        let qi = flow.datagrams.len() as u16;
        flow.datagrams.push(q);
        flow.datagrams.push(r);
        flow.steps.push(Step {
            at: t + i as u32 * 40,
            dir: 0,
            what: What::Datagram(qi),
        });
        if !unanswered {
            t += rtt as u32 + if rng.chance(100) { 30_000 } else { 0 };
            flow.steps.push(Step {
                at: t,
                dir: 1,
                what: What::Datagram(qi + 1),
            });
        }
    }
    if unanswered {
        // The stub resolver's retry after 5 s (resolv.conf's default timeout), also unanswered.
        let first = flow.steps[0];
        flow.steps.push(Step {
            at: 5_000_000,
            ..first
        });
    }
}

/// Writes the inner frame of `step` into `out`.
fn build_inner(flow: &Flow, step: &Step, sess: &Session, out: &mut Vec<u8>, payload: &mut Vec<u8>) {
    out.clear();
    payload.clear();
    let d = usize::from(step.dir);
    let ((src, sport), (dst, dport)) = if d == 0 {
        (flow.client, flow.server)
    } else {
        (flow.server, flow.client)
    };
    let from_eni = step.dir == flow.eni_side;
    let (smac, dmac) = if from_eni {
        (sess.eni_mac, sess.router_mac)
    } else {
        (sess.router_mac, sess.eni_mac)
    };
    let ttl = if from_eni {
        64
    } else {
        63 - (flow.serial % 8) as u8 * 4
    };
    if let What::Fragment(n, part) = step.what {
        return fragment(flow, n, part, (smac, dmac), ttl, out);
    }
    let ip = ip_step(smac, dmac, flow.vlan, src, dst, ttl);
    let written = match step.what {
        What::Tcp {
            flags,
            seq,
            ack,
            off,
            len,
        } => {
            stream_bytes(&flow.streams[d], off, u32::from(len), payload);
            let mut b = ip.tcp(
                sport,
                dport,
                seq,
                if flags & SYN != 0 { 64240 } else { 502 },
            );
            if flags & SYN != 0 {
                b = b.syn();
            }
            if flags & ACK != 0 {
                b = b.ack(ack);
            }
            if flags & FIN != 0 {
                b = b.fin();
            }
            if flags & RST != 0 {
                b = b.rst();
            }
            if flags & PSH != 0 {
                b = b.psh();
            }
            if flags & SYN != 0 {
                let mss = if matches!(src, Addr::V6(_)) {
                    1440
                } else {
                    1460
                };
                b = b
                    .options(&[
                        TcpOptionElement::MaximumSegmentSize(mss),
                        TcpOptionElement::SelectiveAcknowledgementPermitted,
                        TcpOptionElement::Noop,
                        TcpOptionElement::WindowScale(7),
                    ])
                    .expect("four options fit in a TCP header");
            }
            b.write(out, payload)
        }
        What::Datagram(n) => ip
            .udp(sport, dport)
            .write(out, &flow.datagrams[usize::from(n)]),
        What::Echo { reply, seq } => {
            let id = (flow.serial as u16) ^ 0x5a5a;
            payload.extend_from_slice(&(u64::from(seq) * 1_000_003).to_be_bytes());
            payload.extend(8u8..56);
            match (src, reply) {
                (Addr::V4(_), false) => ip.icmpv4_echo_request(id, seq).write(out, payload),
                (Addr::V4(_), true) => ip.icmpv4_echo_reply(id, seq).write(out, payload),
                (Addr::V6(_), false) => ip.icmpv6_echo_request(id, seq).write(out, payload),
                (Addr::V6(_), true) => ip.icmpv6_echo_reply(id, seq).write(out, payload),
            }
        }
        What::Unreachable(n) => {
            // The quote: the offending datagram as it left the client, IP header onwards.
            let quoted = &flow.datagrams[usize::from(n)];
            let q = match (dst, src) {
                (Addr::V4(c), Addr::V4(s)) => PacketBuilder::ipv4(c, s, 64)
                    .udp(dport, sport)
                    .write(payload, quoted),
                (Addr::V6(c), Addr::V6(s)) => PacketBuilder::ipv6(c, s, 64)
                    .udp(dport, sport)
                    .write(payload, quoted),
                _ => unreachable!("both ends of a flow are one family"),
            };
            q.expect("a Vec never fails to grow");
            match src {
                Addr::V4(_) => ip
                    .icmpv4(etherparse::Icmpv4Type::DestinationUnreachable(
                        etherparse::icmpv4::DestUnreachableHeader::Port,
                    ))
                    .write(out, payload),
                Addr::V6(_) => ip
                    .icmpv6(etherparse::Icmpv6Type::DestinationUnreachable(
                        etherparse::icmpv6::DestUnreachableCode::Port,
                    ))
                    .write(out, payload),
            }
        }
        What::Fragment(..) => unreachable!("handled above"),
    };
    written.expect("a Vec never fails to grow");
}

fn ip_step(
    smac: [u8; 6],
    dmac: [u8; 6],
    vlan: Option<u16>,
    src: Addr,
    dst: Addr,
    ttl: u8,
) -> PacketBuilderStep<etherparse::IpHeaders> {
    let eth = PacketBuilder::ethernet2(smac, dmac);
    match (vlan, src, dst) {
        (None, Addr::V4(s), Addr::V4(d)) => eth.ipv4(s, d, ttl),
        (None, Addr::V6(s), Addr::V6(d)) => eth.ipv6(s, d, ttl),
        (Some(v), Addr::V4(s), Addr::V4(d)) => eth
            .single_vlan(VlanId::try_new(v).expect("VLAN ids here are below 4095"))
            .ipv4(s, d, ttl),
        (Some(v), Addr::V6(s), Addr::V6(d)) => eth
            .single_vlan(VlanId::try_new(v).expect("VLAN ids here are below 4095"))
            .ipv6(s, d, ttl),
        _ => unreachable!("both ends of a flow are one family"),
    }
}

/// Fragment `part` of datagram `n` as IPv4 fragments of a 1,500-byte MTU path.
fn fragment(flow: &Flow, n: u16, part: u8, macs: ([u8; 6], [u8; 6]), ttl: u8, out: &mut Vec<u8>) {
    let (Addr::V4(src), Addr::V4(dst)) = (flow.client.0, flow.server.0) else {
        unreachable!("fragmented flows are IPv4")
    };
    let mut whole = Vec::with_capacity(2500);
    PacketBuilder::ipv4(src, dst, ttl)
        .udp(flow.client.1, flow.server.1)
        .write(&mut whole, &flow.datagrams[usize::from(n)])
        .expect("a Vec never fails to grow");
    let l4 = &whole[20..];
    let first = 1480;
    let piece = if part == 0 {
        &l4[..first]
    } else {
        &l4[first..]
    };
    let mut h =
        Ipv4Header::new(piece.len() as u16, ttl, IpNumber::UDP, src, dst).expect("a fragment fits");
    // Both fragments carry the datagram's identification (RFC 791).
    h.identification = (flow.serial as u16) ^ 0x1d1d;
    h.more_fragments = part == 0;
    h.fragment_offset =
        etherparse::IpFragOffset::try_new(if part == 0 { 0 } else { (first / 8) as u16 })
            .expect("offset in range");
    h.header_checksum = h.calc_header_checksum();
    out.extend_from_slice(&macs.1);
    out.extend_from_slice(&macs.0);
    if let Some(v) = flow.vlan {
        out.extend_from_slice(&[0x81, 0x00]);
        out.extend_from_slice(&v.to_be_bytes());
    }
    out.extend_from_slice(&[0x08, 0x00]);
    out.extend_from_slice(&h.to_bytes());
    out.extend_from_slice(piece);
}

/// Ethernet / IPv4 / UDP / VXLAN around `inner`, as the mirror target's interface records it.
fn write_outer(frame: &mut Vec<u8>, sess: &Session, outer_port: u16, inner: &[u8]) {
    frame.clear();
    frame.extend_from_slice(&[0x0e, 0x99, 0, 0, 0, 0x10]);
    frame.extend_from_slice(&[0x0e, 0x5c, 0x1a, 0xff, 0, 0x01]);
    frame.extend_from_slice(&[0x08, 0x00]);
    frame.extend_from_slice(&[0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0]);
    frame.extend_from_slice(&sess.outer_source);
    frame.extend_from_slice(&TARGET);
    frame.extend_from_slice(&outer_port.to_be_bytes());
    frame.extend_from_slice(&VXLAN_PORT.to_be_bytes());
    frame.extend_from_slice(&[0, 0, 0, 0]);
    let vni = sess.vni.to_be_bytes();
    frame.extend_from_slice(&[0x08, 0, 0, 0, vni[1], vni[2], vni[3], 0]);
    frame.extend_from_slice(inner);
    fix_outer_lengths(frame);
}

/// Sets the outer IPv4 total length and checksum and the UDP length (UDP checksum 0, as RFC 7348
/// allows and AWS sends).
fn fix_outer_lengths(frame: &mut [u8]) {
    let ip_len = (frame.len() - 14) as u16;
    frame[16..18].copy_from_slice(&ip_len.to_be_bytes());
    frame[24..26].copy_from_slice(&[0, 0]);
    let mut sum = 0u32;
    for w in frame[14..34].chunks(2) {
        sum += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    frame[24..26].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    frame[38..40].copy_from_slice(&(ip_len - 20).to_be_bytes());
}

/// Writes a classic pcap file header (microsecond timestamps, Ethernet).
pub fn pcap_header(out: &mut impl std::io::Write) -> std::io::Result<()> {
    let mut h = [0u8; 24];
    h[0..4].copy_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    h[4..6].copy_from_slice(&2u16.to_le_bytes());
    h[6..8].copy_from_slice(&4u16.to_le_bytes());
    h[16..20].copy_from_slice(&65535u32.to_le_bytes());
    h[20..24].copy_from_slice(&1u32.to_le_bytes());
    out.write_all(&h)
}

/// Writes one datagram as a pcap record.
pub fn pcap_record(out: &mut impl std::io::Write, d: &Datagram<'_>) -> std::io::Result<()> {
    let mut h = [0u8; 16];
    h[0..4].copy_from_slice(&((d.ts_us / 1_000_000) as u32).to_le_bytes());
    h[4..8].copy_from_slice(&((d.ts_us % 1_000_000) as u32).to_le_bytes());
    h[8..12].copy_from_slice(&(d.frame.len() as u32).to_le_bytes());
    h[12..16].copy_from_slice(&(d.frame.len() as u32).to_le_bytes());
    out.write_all(&h)?;
    out.write_all(d.frame)
}

/// Generates the whole capture into `out`; returns the counters.
pub fn write_pcap(cfg: EniConfig, out: &mut impl std::io::Write) -> std::io::Result<Stats> {
    pcap_header(out)?;
    let mut traffic = EniTraffic::new(cfg);
    while let Some(d) = traffic.next() {
        pcap_record(out, &d)?;
    }
    Ok(traffic.stats)
}
