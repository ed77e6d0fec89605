//! Writes the project's own sample captures into `pcaps/` (see pcaps/README.md):
//!
//! ```text
//! cargo run --example make_pcaps            # writes pcaps/*.pcap and pcaps/*.pcapng
//! cargo run --example make_pcaps -- DIR     # writes them into DIR instead
//! ```
//!
//! Everything is deterministic: fixed addresses, fixed times, no randomness, so rebuilding gives
//! byte-identical files (a test checks that).

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use etherparse::{IpFragOffset, IpNumber, Ipv4Header, PacketBuilder, VlanId};

/// 2024-03-01T12:00:00Z.
const T0: u64 = 1_709_294_400_000_000_000;
/// The appliance (the mirror target) and the GWLB's addresses.
const TARGET_V4: [u8; 4] = [10, 0, 0, 100];
const TARGET_V6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0];
const GWLB_NODE: [u8; 4] = [10, 0, 9, 9];
const GWLB_ENDPOINT: [u8; 4] = [10, 0, 0, 200];
const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];

/// A mirror session as AWS would send it.
#[derive(Clone, Copy)]
struct Session {
    source: Outer,
    vni: u32,
    /// The session's PacketLength: inner frames are cut to this many bytes.
    packet_length: Option<usize>,
}

#[derive(Clone, Copy)]
enum Outer {
    V4([u8; 4]),
    V6([u8; 16]),
}

const WEB: Session = Session {
    source: Outer::V4([10, 0, 1, 10]),
    vni: 1001,
    packet_length: None,
};
const APP: Session = Session {
    source: Outer::V4([10, 0, 2, 20]),
    vni: 1002,
    packet_length: None,
};
const DB: Session = Session {
    source: Outer::V6([0xfd, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x30]),
    vni: 1003,
    packet_length: Some(128),
};
/// Outside the default allowlist: replay and live both refuse it (`source_refused`).
const STRANGER: Session = Session {
    source: Outer::V4([203, 0, 113, 9]),
    vni: 666,
    packet_length: None,
};

/// What goes into a capture record.
enum Event {
    /// A mirrored inner frame (before the session's PacketLength cut).
    Frame { session: Session, frame: Vec<u8> },
    /// A datagram to 4789 whose UDP payload is given as is (malformed on purpose).
    RawVxlan { session: Session, payload: Vec<u8> },
    /// A capture record that is not a usable frame.
    BadRecord,
}

struct Timeline {
    now: u64,
    events: Vec<(u64, Event)>,
}

impl Timeline {
    fn at(&mut self, step_us: u64, e: Event) {
        self.now += step_us * 1000;
        self.events.push((self.now, e));
    }
    fn frame(&mut self, step_us: u64, session: Session, frame: Vec<u8>) {
        self.at(step_us, Event::Frame { session, frame });
    }
}

/// One TCP connection's packets, with sequence numbers kept right.
struct Tcp {
    a: ([u8; 4], u16),
    b: ([u8; 4], u16),
    seq_a: u32,
    seq_b: u32,
}

#[derive(Clone, Copy)]
enum Flags {
    Syn,
    SynAck,
    Ack,
    PshAck,
    FinAck,
    Rst,
}

impl Tcp {
    fn new(a: ([u8; 4], u16), b: ([u8; 4], u16)) -> Tcp {
        Tcp {
            a,
            b,
            seq_a: 1_000_000,
            seq_b: 5_000_000,
        }
    }

    /// A segment from a (`from_a`) or b.
    fn seg(&mut self, from_a: bool, flags: Flags, payload: &[u8]) -> Vec<u8> {
        let (src, dst, seq, ack) = if from_a {
            (self.a, self.b, self.seq_a, self.seq_b)
        } else {
            (self.b, self.a, self.seq_b, self.seq_a)
        };
        let step = eth_dir(!from_a)
            .ipv4(src.0, dst.0, 64)
            .tcp(src.1, dst.1, seq, 64240);
        let step = match flags {
            Flags::Syn => step.syn(),
            Flags::SynAck => step.syn().ack(ack),
            Flags::Ack => step.ack(ack),
            Flags::PshAck => step.psh().ack(ack),
            Flags::FinAck => step.fin().ack(ack),
            Flags::Rst => step.rst().ack(ack),
        };
        let mut out = Vec::new();
        step.write(&mut out, payload).expect("a valid segment");
        let used = payload.len() as u32
            + u32::from(matches!(flags, Flags::Syn | Flags::SynAck | Flags::FinAck));
        if from_a {
            self.seq_a = self.seq_a.wrapping_add(used);
        } else {
            self.seq_b = self.seq_b.wrapping_add(used);
        }
        out
    }
}

/// An Ethernet header from a to b, or (`rev`) from b to a.
fn eth_dir(rev: bool) -> etherparse::PacketBuilderStep<etherparse::Ethernet2Header> {
    if rev {
        PacketBuilder::ethernet2(MAC_B, MAC_A)
    } else {
        PacketBuilder::ethernet2(MAC_A, MAC_B)
    }
}

fn udp4(rev: bool, src: ([u8; 4], u16), dst: ([u8; 4], u16), payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    eth_dir(rev)
        .ipv4(src.0, dst.0, 64)
        .udp(src.1, dst.1)
        .write(&mut out, payload)
        .expect("a valid datagram");
    out
}

fn dns_name(name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for label in name.split('.') {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out
}

fn dns_query(id: u16, name: &str) -> Vec<u8> {
    let mut m = id.to_be_bytes().to_vec();
    m.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    m.extend(dns_name(name));
    m.extend_from_slice(&[0, 1, 0, 1]);
    m
}

fn dns_answer(id: u16, name: &str, addr: [u8; 4]) -> Vec<u8> {
    let mut m = id.to_be_bytes().to_vec();
    m.extend_from_slice(&[0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0]);
    m.extend(dns_name(name));
    m.extend_from_slice(&[0, 1, 0, 1]);
    m.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0x0e, 0x10, 0, 4]);
    m.extend_from_slice(&addr);
    m
}

/// A TLS 1.2-framed ClientHello offering TLS 1.3 with the server name `sni`.
fn client_hello(sni: &str) -> Vec<u8> {
    let mut ext = Vec::new();
    // server_name (RFC 6066 §3).
    let name = sni.as_bytes();
    ext.extend_from_slice(&[0x00, 0x00]);
    ext.extend_from_slice(&((name.len() + 5) as u16).to_be_bytes());
    ext.extend_from_slice(&((name.len() + 3) as u16).to_be_bytes());
    ext.push(0);
    ext.extend_from_slice(&(name.len() as u16).to_be_bytes());
    ext.extend_from_slice(name);
    // supported_versions: TLS 1.3, TLS 1.2.
    ext.extend_from_slice(&[0x00, 0x2b, 0x00, 0x05, 0x04, 0x03, 0x04, 0x03, 0x03]);
    // ALPN: h2, http/1.1.
    ext.extend_from_slice(&[0x00, 0x10, 0x00, 0x0e, 0x00, 0x0c, 0x02, b'h', b'2', 0x08]);
    ext.extend_from_slice(b"http/1.1");
    let mut hello = vec![0x03, 0x03];
    hello.extend((0u8..32).map(|i| i.wrapping_mul(37)));
    hello.push(0); // no session id
    hello.extend_from_slice(&[0x00, 0x06, 0x13, 0x01, 0x13, 0x02, 0xc0, 0x2f]);
    hello.extend_from_slice(&[0x01, 0x00]);
    hello.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    hello.extend(ext);
    let mut hs = vec![0x01];
    hs.extend_from_slice(&(hello.len() as u32).to_be_bytes()[1..]);
    hs.extend(hello);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    record.extend(hs);
    record
}

/// A UDP datagram of `len` payload bytes from a to b, as IPv4 fragments of at most `mtu` bytes.
fn fragments(src: ([u8; 4], u16), dst: ([u8; 4], u16), len: usize, mtu: usize) -> Vec<Vec<u8>> {
    let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    let whole = udp4(false, src, dst, &payload);
    let l4 = &whole[14 + 20..];
    let chunk = (mtu - 20) / 8 * 8;
    let mut out = Vec::new();
    for (i, piece) in l4.chunks(chunk).enumerate() {
        let mut h = Ipv4Header::new(piece.len() as u16, 64, IpNumber::UDP, src.0, dst.0)
            .expect("a fragment fits");
        h.identification = 0x4242;
        h.more_fragments = (i + 1) * chunk < l4.len();
        h.fragment_offset = IpFragOffset::try_new((i * chunk / 8) as u16).expect("in range");
        h.header_checksum = h.calc_header_checksum();
        let mut frame = Vec::new();
        frame.extend_from_slice(&MAC_B);
        frame.extend_from_slice(&MAC_A);
        frame.extend_from_slice(&[0x08, 0x00]);
        h.write(&mut frame).expect("writes to a Vec");
        frame.extend_from_slice(piece);
        out.push(frame);
    }
    out
}

/// The traffic of the three sessions, in time order.
fn timeline() -> Vec<(u64, Event)> {
    let mut t = Timeline {
        now: T0,
        events: Vec::new(),
    };
    let client = [172, 31, 5, 10];

    // web: DNS, then HTTP/1.1 with handshake, data and FIN.
    let resolver = ([172, 31, 0, 2], 53);
    t.frame(
        0,
        WEB,
        udp4(
            false,
            (client, 53001),
            resolver,
            &dns_query(0x1234, "example.com"),
        ),
    );
    t.frame(
        900,
        WEB,
        udp4(
            true,
            resolver,
            (client, 53001),
            &dns_answer(0x1234, "example.com", [93, 184, 215, 14]),
        ),
    );
    let mut http = Tcp::new((client, 40100), ([93, 184, 215, 14], 80));
    t.frame(2000, WEB, http.seg(true, Flags::Syn, &[]));
    t.frame(11000, WEB, http.seg(false, Flags::SynAck, &[]));
    t.frame(60, WEB, http.seg(true, Flags::Ack, &[]));
    let get = b"GET /index.html HTTP/1.1\r\nHost: example.com\r\nUser-Agent: vxtap-make-pcaps\r\nAccept: */*\r\n\r\n";
    t.frame(100, WEB, http.seg(true, Flags::PshAck, get));
    t.frame(11000, WEB, http.seg(false, Flags::Ack, &[]));
    let body = "<html><body>hello from vxtap's sample capture</body></html>\n";
    let resp = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    t.frame(300, WEB, http.seg(false, Flags::PshAck, resp.as_bytes()));
    t.frame(80, WEB, http.seg(true, Flags::Ack, &[]));
    t.frame(40, WEB, http.seg(false, Flags::FinAck, &[]));
    t.frame(70, WEB, http.seg(true, Flags::FinAck, &[]));
    t.frame(11000, WEB, http.seg(false, Flags::Ack, &[]));

    // web: TLS ClientHello with SNI, then a reset.
    let mut tls = Tcp::new((client, 40200), ([151, 101, 1, 69], 443));
    t.frame(250_000, WEB, tls.seg(true, Flags::Syn, &[]));
    t.frame(9000, WEB, tls.seg(false, Flags::SynAck, &[]));
    t.frame(50, WEB, tls.seg(true, Flags::Ack, &[]));
    t.frame(
        120,
        WEB,
        tls.seg(true, Flags::PshAck, &client_hello("www.example.org")),
    );
    t.frame(9000, WEB, tls.seg(false, Flags::Ack, &[]));
    t.frame(500, WEB, tls.seg(true, Flags::Rst, &[]));

    // web: a jumbo frame, 9,001 bytes of inner frame (the largest an EC2 MTU allows).
    let mut bulk = Tcp::new((client, 40300), ([172, 31, 9, 9], 8080));
    t.frame(400_000, WEB, bulk.seg(true, Flags::Syn, &[]));
    t.frame(200, WEB, bulk.seg(false, Flags::SynAck, &[]));
    t.frame(50, WEB, bulk.seg(true, Flags::Ack, &[]));
    let jumbo: Vec<u8> = (0..9001 - 54).map(|i| b'a' + (i % 26) as u8).collect();
    t.frame(100, WEB, bulk.seg(true, Flags::PshAck, &jumbo));
    t.frame(300, WEB, bulk.seg(false, Flags::Ack, &[]));

    // app: ICMP echo to a public resolver, twice.
    let app = [172, 31, 6, 20];
    for seq in 1..=2u16 {
        let mut req = Vec::new();
        eth_dir(false)
            .ipv4(app, [8, 8, 8, 8], 64)
            .icmpv4_echo_request(0x77, seq)
            .write(&mut req, b"vxtap ping payload 0123456789abcdef")
            .expect("valid");
        let mut rep = Vec::new();
        eth_dir(true)
            .ipv4([8, 8, 8, 8], app, 118)
            .icmpv4_echo_reply(0x77, seq)
            .write(&mut rep, b"vxtap ping payload 0123456789abcdef")
            .expect("valid");
        t.frame(700_000, APP, req);
        t.frame(1500, APP, rep);
    }

    // app: IPv6, a TCP handshake and an ICMPv6 echo.
    let (a6, b6) = (
        [0x26, 0, 0x1f, 0x18, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x20],
        [
            0x26, 0x06, 0x47, 0, 0x47, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x11, 0x11,
        ],
    );
    for (rev, flags_syn) in [(false, true), (true, true), (false, false)] {
        let (s, d, sp, dp) = if rev {
            (b6, a6, 443, 50500)
        } else {
            (a6, b6, 50500, 443)
        };
        let seq = match (rev, flags_syn) {
            (true, _) => 7000,
            (false, true) => 3000,
            (false, false) => 3001,
        };
        let step = eth_dir(rev).ipv6(s, d, 64).tcp(sp, dp, seq, 64800);
        let step = match (rev, flags_syn) {
            (false, true) => step.syn(),
            (true, _) => step.syn().ack(3001),
            (false, false) => step.ack(7001),
        };
        let mut f = Vec::new();
        step.write(&mut f, &[]).expect("valid");
        t.frame(30_000, APP, f);
    }
    let mut echo6 = Vec::new();
    eth_dir(false)
        .ipv6(a6, b6, 64)
        .icmpv6_echo_request(9, 1)
        .write(&mut echo6, b"v6 ping")
        .expect("valid");
    t.frame(40_000, APP, echo6);

    // app: a VLAN-tagged (802.1Q, VLAN 42) syslog datagram.
    let mut tagged = Vec::new();
    PacketBuilder::ethernet2(MAC_A, MAC_B)
        .single_vlan(VlanId::try_new(42).expect("valid VLAN id"))
        .ipv4(app, [172, 31, 0, 50], 64)
        .udp(51514, 514)
        .write(
            &mut tagged,
            b"<13>Mar  1 12:00:03 app vxtap sample syslog line",
        )
        .expect("valid");
    t.frame(300_000, APP, tagged);

    // app: a 3,000-byte UDP datagram in three IPv4 fragments.
    for f in fragments((app, 5000), ([172, 31, 0, 60], 6000), 3000, 1500) {
        t.frame(200, APP, f);
    }

    // db: bulk TCP cut to the session's PacketLength of 128 bytes.
    let mut db = Tcp::new(([172, 31, 7, 30], 5432), ([172, 31, 5, 10], 41000));
    t.frame(500_000, DB, db.seg(false, Flags::Syn, &[]));
    t.frame(300, DB, db.seg(true, Flags::SynAck, &[]));
    t.frame(60, DB, db.seg(false, Flags::Ack, &[]));
    t.frame(
        100,
        DB,
        db.seg(false, Flags::PshAck, b"SELECT * FROM flows;"),
    );
    for i in 0..4u8 {
        let rows: Vec<u8> = (0..1400)
            .map(|j| b'0' + ((j + usize::from(i)) % 10) as u8)
            .collect();
        t.frame(150, DB, db.seg(true, Flags::Ack, &rows));
    }
    t.frame(100, DB, db.seg(false, Flags::Ack, &[]));
    t.frame(100, DB, db.seg(false, Flags::FinAck, &[]));
    t.frame(100, DB, db.seg(true, Flags::FinAck, &[]));
    t.frame(100, DB, db.seg(false, Flags::Ack, &[]));

    // Malformed and edge-case datagrams from the web session's source.
    let probe = udp4(
        false,
        (client, 53002),
        resolver,
        &dns_query(0x9999, "bad.example"),
    );
    let mut no_i_flag = vec![0u8; 8];
    no_i_flag[6] = 0x10;
    no_i_flag.extend_from_slice(&probe);
    t.at(
        1_000_000,
        Event::RawVxlan {
            session: WEB,
            payload: no_i_flag,
        },
    );
    t.at(
        10,
        Event::RawVxlan {
            session: WEB,
            payload: vec![0x08, 0, 0, 0],
        },
    );
    t.at(
        10,
        Event::RawVxlan {
            session: WEB,
            payload: vec![0x08, 0, 0, 0, 0, 0x03, 0xe9, 0],
        },
    );
    // Reserved bits set: valid (RFC 7348 says ignore them), and accepted.
    let mut reserved = vec![0x08 | 0x40, 0xff, 0xff, 0xff, 0, 0x03, 0xe9, 0xff];
    reserved.extend_from_slice(&probe);
    t.at(
        10,
        Event::RawVxlan {
            session: WEB,
            payload: reserved,
        },
    );
    t.frame(10, STRANGER, probe.clone());
    t.at(10, Event::BadRecord);
    t.events
}

/// The symmetric "5-tuple hash" source port: both directions of a flow get the same port, as in
/// recent real AWS mirror captures.
fn source_port(frame: &[u8]) -> u16 {
    use std::hash::{Hash, Hasher};
    // A frozen copy of vxtap's steering hash as it was when the sample captures were made, so that
    // they stay the same byte for byte when vxtap's steering changes (it did, for speed).
    let l = vxtap::wire::inner::dissect(frame);
    let mut h = rustc_hash::FxHasher::default();
    0u32.hash(&mut h);
    if let Some(ip) = l.ip {
        let ports = match ip.fragment {
            vxtap::wire::inner::Fragment::None => l.transport.ports().unwrap_or((0, 0)),
            _ => (0, 0),
        };
        let a = (ip.src, ports.0);
        let b = (ip.dst, ports.1);
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        lo.hash(&mut h);
        hi.hash(&mut h);
        ip.protocol.hash(&mut h);
    }
    49152 + (h.finish() % 16384) as u16
}

fn vxlan(vni: u32, frame: &[u8]) -> Vec<u8> {
    let mut p = vec![0x08, 0, 0, 0, 0, 0, 0, 0];
    p[4..7].copy_from_slice(&vni.to_be_bytes()[1..]);
    p.extend_from_slice(frame);
    p
}

/// The mirror's own IP/UDP packet to `dst` carrying `payload` to port 4789.
fn mirror_ip(
    source: Outer,
    dst_v4: [u8; 4],
    dst_v6: [u8; 16],
    sport: u16,
    payload: &[u8],
) -> (u16, Vec<u8>) {
    let mut out = Vec::new();
    let ty = match source {
        Outer::V4(s) => {
            PacketBuilder::ipv4(s, dst_v4, 64)
                .udp(sport, 4789)
                .write(&mut out, payload)
                .expect("valid");
            0x0800
        }
        Outer::V6(s) => {
            PacketBuilder::ipv6(s, dst_v6, 64)
                .udp(sport, 4789)
                .write(&mut out, payload)
                .expect("valid");
            0x86dd
        }
    };
    (ty, out)
}

fn ethernet(ty: u16, l3: &[u8]) -> Vec<u8> {
    let mut f = [0x02, 0, 0, 0, 0, 0x64, 0x02, 0, 0, 0, 0, 0x01].to_vec();
    f.extend_from_slice(&ty.to_be_bytes());
    f.extend_from_slice(l3);
    f
}

/// The VXLAN UDP payload a session sends for an event, with the session's cut applied.
fn vxlan_payload(e: &Event) -> Option<(Session, Vec<u8>, u16)> {
    match e {
        Event::Frame { session, frame } => {
            let cut = session.packet_length.unwrap_or(usize::MAX).min(frame.len());
            Some((
                *session,
                vxlan(session.vni, &frame[..cut]),
                source_port(frame),
            ))
        }
        Event::RawVxlan { session, payload } => {
            let port = payload.get(8..).map_or(50000, source_port);
            Some((*session, payload.clone(), port))
        }
        Event::BadRecord => None,
    }
}

/// A record: time, captured bytes, original length, interface.
type Rec = (u64, Vec<u8>, u32, u32);

fn aws_mirror(events: &[(u64, Event)]) -> Vec<Rec> {
    events
        .iter()
        .map(|(ts, e)| match vxlan_payload(e) {
            Some((s, payload, sport)) => {
                let (ty, ip) = mirror_ip(s.source, TARGET_V4, TARGET_V6, sport, &payload);
                let f = ethernet(ty, &ip);
                (*ts, f.clone(), f.len() as u32, 0)
            }
            None => (*ts, ethernet(0x0800, &[0x45, 0])[..10].to_vec(), 60, 0),
        })
        .collect()
}

fn gwlb(events: &[(u64, Event)]) -> Vec<Rec> {
    events
        .iter()
        .map(|(ts, e)| match vxlan_payload(e) {
            Some((s, payload, sport)) => {
                let (ty, ip) = mirror_ip(s.source, GWLB_ENDPOINT, TARGET_V6, sport, &payload);
                // GENEVE (RFC 8926) with one 8-byte option, as GWLB adds (class 0x0108 is AWS's).
                let mut g = vec![0x02, 0x00];
                g.extend_from_slice(&ty.to_be_bytes());
                g.extend_from_slice(&[0, 0, 0, 0]);
                g.extend_from_slice(&[0x01, 0x08, 0x01, 0x01, 0x12, 0x34, 0x56, 0x78]);
                g.extend_from_slice(&ip);
                let mut outer = Vec::new();
                PacketBuilder::ipv4(GWLB_NODE, TARGET_V4, 64)
                    .udp(sport, 6081)
                    .write(&mut outer, &g)
                    .expect("valid");
                let f = ethernet(0x0800, &outer);
                (*ts, f.clone(), f.len() as u32, 0)
            }
            None => (*ts, ethernet(0x0800, &[0x45, 0])[..10].to_vec(), 60, 0),
        })
        .collect()
}

/// The same traffic unencapsulated: web and app on Ethernet (interface 0); db through Linux cooked
/// capture v2 (interface 1) with a 148-byte snap length.
fn plain(events: &[(u64, Event)]) -> Vec<Rec> {
    events
        .iter()
        .filter_map(|(ts, e)| match e {
            Event::Frame { session, frame } if session.vni == DB.vni => {
                let mut f = vec![0x08, 0x00, 0, 0, 0, 0, 0, 2, 0, 1, 0, 6];
                f.extend_from_slice(&MAC_A);
                f.extend_from_slice(&[0, 0]);
                f.extend_from_slice(&frame[14..]);
                let orig = f.len() as u32;
                f.truncate(148);
                Some((*ts, f, orig, 1))
            }
            Event::Frame { session, frame } if session.vni != STRANGER.vni => {
                Some((*ts, frame.clone(), frame.len() as u32, 0))
            }
            // Shorter than the 20-byte cooked header.
            Event::BadRecord => Some((*ts, vec![0x08, 0, 0, 0, 0, 0, 0, 2, 0, 1], 60, 1)),
            _ => None,
        })
        .collect()
}

/// The app session's frames as Linux cooked capture v1, for the big-endian nanosecond pcap.
fn plain_sll(events: &[(u64, Event)]) -> Vec<Rec> {
    events
        .iter()
        .filter_map(|(ts, e)| match e {
            Event::Frame { session, frame } if session.vni == APP.vni => {
                let outgoing = frame[..6] == MAC_B;
                let mut f = vec![0, if outgoing { 4 } else { 0 }, 0, 1, 0, 6];
                f.extend_from_slice(&frame[6..12]);
                f.extend_from_slice(&[0, 0]);
                f.extend_from_slice(&frame[12..]);
                Some((*ts, f.clone(), f.len() as u32, 0))
            }
            _ => None,
        })
        .collect()
}

fn write_pcap(path: &Path, link: u32, nanos_be: bool, recs: &[Rec]) -> io::Result<()> {
    let mut out = Vec::new();
    let put = |out: &mut Vec<u8>, v: u32| {
        if nanos_be {
            out.extend_from_slice(&v.to_be_bytes())
        } else {
            out.extend_from_slice(&v.to_le_bytes())
        }
    };
    put(&mut out, if nanos_be { 0xa1b2_3c4d } else { 0xa1b2_c3d4 });
    let version = if nanos_be { [0, 2, 0, 4] } else { [2, 0, 4, 0] };
    out.extend_from_slice(&version);
    put(&mut out, 0);
    put(&mut out, 0);
    put(&mut out, 65535);
    put(&mut out, link);
    for (ts, data, orig, _) in recs {
        put(&mut out, (ts / 1_000_000_000) as u32);
        let frac = ts % 1_000_000_000;
        put(&mut out, if nanos_be { frac } else { frac / 1000 } as u32);
        put(&mut out, data.len() as u32);
        put(&mut out, *orig);
        out.extend_from_slice(data);
    }
    std::fs::write(path, out)
}

fn block(out: &mut Vec<u8>, ty: u32, body: &[u8]) {
    let pad = (4 - body.len() % 4) % 4;
    let len = (12 + body.len() + pad) as u32;
    out.extend_from_slice(&ty.to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(body);
    out.extend(std::iter::repeat_n(0u8, pad));
    out.extend_from_slice(&len.to_le_bytes());
}

fn option(out: &mut Vec<u8>, code: u16, value: &[u8]) {
    out.extend_from_slice(&code.to_le_bytes());
    out.extend_from_slice(&(value.len() as u16).to_le_bytes());
    out.extend_from_slice(value);
    out.extend(std::iter::repeat_n(0u8, (4 - value.len() % 4) % 4));
}

/// A pcapng file; `interfaces` are (link type, name, if_tsresol, snap length).
fn write_pcapng(path: &Path, interfaces: &[(u16, &str, u8, u32)], recs: &[Rec]) -> io::Result<()> {
    let mut out = Vec::new();
    let mut shb = 0x1a2b_3c4du32.to_le_bytes().to_vec();
    shb.extend_from_slice(&[1, 0, 0, 0]);
    shb.extend_from_slice(&(-1i64).to_le_bytes());
    option(&mut shb, 4, b"vxtap examples/make_pcaps.rs");
    option(&mut shb, 0, &[]);
    block(&mut out, 0x0a0d_0d0a, &shb);
    for (link, name, tsresol, snaplen) in interfaces {
        let mut idb = link.to_le_bytes().to_vec();
        idb.extend_from_slice(&[0, 0]);
        idb.extend_from_slice(&snaplen.to_le_bytes());
        option(&mut idb, 2, name.as_bytes());
        option(&mut idb, 9, &[*tsresol]);
        option(&mut idb, 0, &[]);
        block(&mut out, 1, &idb);
    }
    for (ts, data, orig, iface) in recs {
        let units = match interfaces.get(*iface as usize) {
            Some((_, _, 9, _)) => *ts,
            _ => ts / 1000,
        };
        let mut epb = iface.to_le_bytes().to_vec();
        epb.extend_from_slice(&((units >> 32) as u32).to_le_bytes());
        epb.extend_from_slice(&(units as u32).to_le_bytes());
        epb.extend_from_slice(&(data.len() as u32).to_le_bytes());
        epb.extend_from_slice(&orig.to_le_bytes());
        epb.extend_from_slice(data);
        epb.extend(std::iter::repeat_n(0u8, (4 - data.len() % 4) % 4));
        block(&mut out, 6, &epb);
    }
    std::fs::write(path, out)
}

fn main() -> io::Result<()> {
    let dir = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("pcaps"));
    std::fs::create_dir_all(&dir)?;
    let events = timeline();
    write_pcap(&dir.join("aws-mirror.pcap"), 1, false, &aws_mirror(&events))?;
    write_pcapng(
        &dir.join("gwlb-geneve.pcapng"),
        &[(1, "eth0", 9, 0)],
        &gwlb(&events),
    )?;
    write_pcapng(
        &dir.join("plain.pcapng"),
        &[(1, "eth0", 6, 0), (276, "any", 9, 148)],
        &plain(&events),
    )?;
    write_pcap(&dir.join("plain-sll.pcap"), 113, true, &plain_sll(&events))?;
    connectivity_pcap(&dir)?;
    write_pcap(&dir.join("l7.pcap"), 1, false, &aws_mirror(&l7_timeline()))?;
    write_accessscope(&dir)?;
    write_pcap(
        &dir.join("tls.pcap"),
        1,
        false,
        &aws_mirror(&tls_timeline()),
    )?;
    let mut names: Vec<_> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_file())
        .map(|e| (e.file_name(), e.metadata().map(|m| m.len()).unwrap_or(0)))
        .collect();
    names.sort();
    let mut stdout = io::stdout().lock();
    for (name, len) in names {
        writeln!(stdout, "{:>8}  {}", len, dir.join(name).display())?;
    }
    Ok(())
}

/// The ENI of `pcaps/connectivity.pcap`: its primary address is the mirror's outer source and the
/// instance's own address.
const SHOP_ENI: [u8; 4] = [172, 31, 5, 50];
const SHOP: Session = Session {
    source: Outer::V4(SHOP_ENI),
    vni: 1005,
    packet_length: None,
};

/// One TCP segment with explicit sequence numbers, flags (FIN 1, SYN 2, RST 4, PSH 8, ACK 16) and
/// window, for the connectivity scenarios, where windows and half-finished handshakes matter.
fn tcp_seg(
    src: ([u8; 4], u16),
    dst: ([u8; 4], u16),
    seq: u32,
    ack: u32,
    flags: u8,
    window: u16,
    payload: &[u8],
) -> Vec<u8> {
    let mut b = eth_dir(src.0 != SHOP_ENI)
        .ipv4(src.0, dst.0, 64)
        .tcp(src.1, dst.1, seq, window);
    if flags & 0x01 != 0 {
        b = b.fin();
    }
    if flags & 0x02 != 0 {
        b = b.syn();
    }
    if flags & 0x04 != 0 {
        b = b.rst();
    }
    if flags & 0x08 != 0 {
        b = b.psh();
    }
    if flags & 0x10 != 0 {
        b = b.ack(ack);
    }
    let mut out = Vec::new();
    b.write(&mut out, payload).expect("a valid segment");
    out
}

/// An ICMP destination unreachable (`code`) from `from` to `to` about `original` (an Ethernet
/// frame), quoting its IP header and first 8 transport bytes as RFC 792 asks.
fn unreachable(from: [u8; 4], to: [u8; 4], code: u8, original: &[u8]) -> Vec<u8> {
    let ip = &original[14..];
    let quote = &ip[..(usize::from(ip[0] & 0x0f) * 4 + 8).min(ip.len())];
    let mut out = Vec::new();
    eth_dir(true)
        .ipv4(from, to, 64)
        .icmpv4_raw(3, code, [0; 4])
        .write(&mut out, quote)
        .expect("a valid ICMP message");
    out
}

/// Writes `pcaps/connectivity.pcap`, VXLAN-wrapped as Traffic Mirroring delivers it.
fn connectivity_pcap(dir: &Path) -> io::Result<()> {
    let recs = aws_mirror(&connectivity_timeline());
    write_pcap(&dir.join("connectivity.pcap"), 1, false, &recs)
}

/// `pcaps/connectivity.pcap` (see pcaps/README.md): connections that fail in each way the
/// `connectivity` module tells apart, the scans and floods `detect` looks for, and a busy server
/// that must raise nothing, all on one ENI over 2 min 20 s (so one whole minute lies inside).
fn connectivity_timeline() -> Vec<(u64, Event)> {
    const I: [u8; 4] = SHOP_ENI;
    let mut v: Vec<(u64, Vec<u8>)> = Vec::new();
    let at = |us: u64| T0 + us * 1000;
    // An outbound SYN whose replies are never mirrored, sent twice.
    for t in [100_000, 1_100_000] {
        v.push((
            at(t),
            tcp_seg(
                (I, 40001),
                ([198, 51, 100, 7], 443),
                1000,
                0,
                0x02,
                64240,
                &[],
            ),
        ));
    }
    // An inbound SYN to a closed port, answered by RST.
    let client = ([203, 0, 113, 20], 51000);
    v.push((
        at(500_000),
        tcp_seg(client, (I, 8080), 2000, 0, 0x02, 64240, &[]),
    ));
    v.push((
        at(500_200),
        tcp_seg((I, 8080), client, 0, 2001, 0x14, 0, &[]),
    ));
    // UDP answered by ICMP port unreachable.
    let probe = udp4(false, (I, 41000), ([198, 51, 100, 9], 9999), b"ping");
    v.push((at(800_000), probe.clone()));
    v.push((at(800_400), unreachable([198, 51, 100, 9], I, 3, &probe)));
    // A SYN answered by a router's "communication administratively prohibited".
    let syn = tcp_seg((I, 40002), ([192, 0, 2, 80], 25), 3000, 0, 0x02, 64240, &[]);
    v.push((at(1_000_000), syn.clone()));
    v.push((at(1_002_000), unreachable([192, 0, 2, 1], I, 13, &syn)));
    // A SYN answered only after a retransmission, then a clean close.
    let (c, s) = ((I, 40003), ([198, 51, 100, 10], 443));
    v.push((at(1_200_000), tcp_seg(c, s, 4000, 0, 0x02, 64240, &[])));
    v.push((at(2_200_000), tcp_seg(c, s, 4000, 0, 0x02, 64240, &[])));
    v.push((at(2_230_000), tcp_seg(s, c, 9000, 4001, 0x12, 65535, &[])));
    v.push((at(2_231_000), tcp_seg(c, s, 4001, 9001, 0x10, 64240, &[])));
    v.push((at(2_300_000), tcp_seg(c, s, 4001, 9001, 0x11, 64240, &[])));
    v.push((at(2_330_000), tcp_seg(s, c, 9001, 4002, 0x11, 65535, &[])));
    v.push((at(2_331_000), tcp_seg(c, s, 4002, 9002, 0x10, 64240, &[])));
    // An inbound SYN the instance never answers.
    v.push((
        at(1_500_000),
        tcp_seg(
            ([203, 0, 113, 40], 53000),
            (I, 22),
            5000,
            0,
            0x02,
            64240,
            &[],
        ),
    ));
    // A client that stops reading (zero window), then resets the connection mid-stream.
    let (c, s) = (([203, 0, 113, 30], 52000), (I, 443));
    v.push((at(3_000_000), tcp_seg(c, s, 6000, 0, 0x02, 64240, &[])));
    v.push((at(3_000_500), tcp_seg(s, c, 7000, 6001, 0x12, 65535, &[])));
    v.push((at(3_001_000), tcp_seg(c, s, 6001, 7001, 0x10, 64240, &[])));
    v.push((
        at(3_010_000),
        tcp_seg(c, s, 6001, 7001, 0x18, 64240, &[b'q'; 100]),
    ));
    v.push((
        at(3_020_000),
        tcp_seg(s, c, 7001, 6101, 0x18, 65535, &[b'r'; 1000]),
    ));
    v.push((at(3_030_000), tcp_seg(c, s, 6101, 8001, 0x10, 0, &[])));
    v.push((at(4_030_000), tcp_seg(c, s, 6101, 8001, 0x10, 0, &[])));
    v.push((at(5_030_000), tcp_seg(c, s, 6101, 8001, 0x14, 0, &[])));
    // A vertical port scan from outside: 20 ports, each refused by RST.
    let scanner = [203, 0, 113, 66];
    let ports = [
        21, 22, 23, 25, 53, 80, 110, 111, 135, 139, 143, 443, 445, 993, 995, 1723, 3306, 3389,
        5900, 8080,
    ];
    for (k, port) in ports.into_iter().enumerate() {
        let t = 10_000_000 + k as u64 * 10_000;
        v.push((
            at(t),
            tcp_seg((scanner, 60000), (I, port), 11_000, 0, 0x02, 1024, &[]),
        ));
        v.push((
            at(t + 200),
            tcp_seg((I, port), (scanner, 60000), 0, 11_001, 0x14, 0, &[]),
        ));
    }
    // A horizontal sweep by the instance itself: port 22 on 28 hosts, each answering SYN-ACK and
    // reset by the scanner, as a SYN scan does.
    for k in 0..28u16 {
        let t = 15_000_000 + u64::from(k) * 20_000;
        let (c, s) = ((I, 45000 + k), ([10, 20, 0, 1 + k as u8], 22));
        v.push((at(t), tcp_seg(c, s, 12_000, 0, 0x02, 1024, &[])));
        v.push((at(t + 300), tcp_seg(s, c, 13_000, 12_001, 0x12, 65535, &[])));
        v.push((at(t + 400), tcp_seg(c, s, 12_001, 0, 0x04, 0, &[])));
    }
    // A SYN flood on port 80 from ten spoofed sources: SYN-ACKs that nobody acknowledges.
    for k in 0..150u16 {
        let t = 30_000_000 + u64::from(k) * 5_000;
        let (c, s) = (([100, 64, 0, 1 + (k % 10) as u8], 20000 + k), (I, 80));
        v.push((
            at(t),
            tcp_seg(c, s, 14_000 + u32::from(k), 0, 0x02, 512, &[]),
        ));
        v.push((
            at(t + 1_000),
            tcp_seg(s, c, 15_000, 14_001 + u32::from(k), 0x12, 65535, &[]),
        ));
    }
    // An ICMP flood: 120 echo requests, no replies.
    for k in 0..120u16 {
        let t = 40_000_000 + u64::from(k) * 5_000;
        let mut f = Vec::new();
        eth_dir(true)
            .ipv4([198, 51, 100, 99], I, 64)
            .icmpv4_echo_request(7, k)
            .write(&mut f, &[0; 32])
            .expect("a valid echo request");
        v.push((at(t), f));
    }
    // A busy, healthy HTTPS server: 120 clients, one a second, every handshake completes.
    for k in 0..120u16 {
        let t = 20_000_000 + u64::from(k) * 1_000_000;
        let (c, s) = (([198, 18, 0, 1 + k as u8], 50000 + k), (I, 443));
        v.push((at(t), tcp_seg(c, s, 100, 0, 0x02, 64240, &[])));
        v.push((at(t + 1_000), tcp_seg(s, c, 200, 101, 0x12, 65535, &[])));
        v.push((at(t + 2_000), tcp_seg(c, s, 101, 201, 0x10, 64240, &[])));
        v.push((at(t + 10_000), tcp_seg(c, s, 101, 201, 0x11, 64240, &[])));
        v.push((at(t + 11_000), tcp_seg(s, c, 201, 102, 0x11, 65535, &[])));
        v.push((at(t + 12_000), tcp_seg(c, s, 102, 202, 0x10, 64240, &[])));
    }
    // Stable: frames sent at the same instant keep the order they were written in.
    v.sort_by_key(|(t, _)| *t);
    v.into_iter()
        .map(|(t, frame)| {
            (
                t,
                Event::Frame {
                    session: SHOP,
                    frame,
                },
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------------
// pcaps/tls.pcap: TLS handshakes for the tls module (see pcaps/README.md).

/// A handshake message: type, 24-bit length, body.
fn tls_message(ty: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![ty];
    m.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    m.extend_from_slice(body);
    m
}

/// `data` as records of content type `ct`, cut into fragments of the given sizes (the last takes
/// what is left).
fn tls_records(ct: u8, data: &[u8], sizes: &[usize]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = data;
    let mut sizes = sizes.iter();
    while !rest.is_empty() {
        let n = sizes.next().copied().unwrap_or(rest.len()).min(rest.len());
        out.extend_from_slice(&[ct, 0x03, 0x03]);
        out.extend_from_slice(&(n as u16).to_be_bytes());
        out.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
    }
    out
}

fn tls_ext(out: &mut Vec<u8>, ty: u16, data: &[u8]) {
    out.extend_from_slice(&ty.to_be_bytes());
    out.extend_from_slice(&(data.len() as u16).to_be_bytes());
    out.extend_from_slice(data);
}

/// A list with a 16-bit (or, `short`, 8-bit) length prefix of 16-bit values.
fn tls_u16_list(values: &[u16], short: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let len = values.len() * 2;
    if short {
        out.push(len as u8);
    } else {
        out.extend_from_slice(&(len as u16).to_be_bytes());
    }
    for v in values {
        out.extend_from_slice(&v.to_be_bytes());
    }
    out
}

/// What a sample ClientHello offers.
struct HelloSpec<'a> {
    sni: Option<&'a str>,
    alpns: &'a [&'a str],
    /// Browser-style GREASE (RFC 8701) in ciphers, extensions, groups and versions.
    grease: bool,
    /// Offer TLS 1.3 (supported_versions, key_share) or only TLS 1.2.
    tls13: bool,
    /// Seeds the random and key share bytes, so that hellos differ.
    seed: u8,
}

/// A ClientHello handshake message (header included).
fn sample_client_hello(h: &HelloSpec<'_>) -> Vec<u8> {
    let mut ciphers: Vec<u16> = Vec::new();
    if h.grease {
        ciphers.push(0x3a3a);
    }
    if h.tls13 {
        ciphers.extend_from_slice(&[0x1301, 0x1302, 0x1303]);
    }
    ciphers.extend_from_slice(&[
        0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013, 0xc014, 0x009c, 0x009d, 0x002f,
        0x0035,
    ]);
    let bytes = |n: usize, k: u8| -> Vec<u8> {
        (0..n)
            .map(|i| {
                (i as u8)
                    .wrapping_mul(29)
                    .wrapping_add(h.seed.wrapping_mul(k))
            })
            .collect()
    };
    let mut ext = Vec::new();
    if h.grease {
        tls_ext(&mut ext, 0x0a0a, &[]);
    }
    if let Some(sni) = h.sni {
        let name = sni.as_bytes();
        let mut d = ((name.len() + 3) as u16).to_be_bytes().to_vec();
        d.push(0);
        d.extend_from_slice(&(name.len() as u16).to_be_bytes());
        d.extend_from_slice(name);
        tls_ext(&mut ext, 0x0000, &d);
    }
    tls_ext(&mut ext, 0x0017, &[]); // extended_master_secret
    tls_ext(&mut ext, 0xff01, &[0]); // renegotiation_info
    let groups: Vec<u16> = if h.grease {
        vec![0x2a2a, 0x001d, 0x0017, 0x0018]
    } else {
        vec![0x001d, 0x0017, 0x0018]
    };
    tls_ext(&mut ext, 0x000a, &tls_u16_list(&groups, false));
    tls_ext(&mut ext, 0x000b, &[1, 0]); // ec_point_formats: uncompressed
    tls_ext(&mut ext, 0x0023, &[]); // session_ticket
    if !h.alpns.is_empty() {
        let mut list = Vec::new();
        for p in h.alpns {
            list.push(p.len() as u8);
            list.extend_from_slice(p.as_bytes());
        }
        let mut d = (list.len() as u16).to_be_bytes().to_vec();
        d.extend(list);
        tls_ext(&mut ext, 0x0010, &d);
    }
    tls_ext(
        &mut ext,
        0x000d,
        &tls_u16_list(&[0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501], false),
    );
    if h.tls13 {
        let mut share = vec![0x00, 0x24, 0x00, 0x1d, 0x00, 0x20];
        share.extend(bytes(32, 7));
        tls_ext(&mut ext, 0x0033, &share);
        tls_ext(&mut ext, 0x002d, &[1, 1]); // psk_key_exchange_modes: psk_dhe_ke
        let versions: Vec<u16> = if h.grease {
            vec![0x5a5a, 0x0304, 0x0303]
        } else {
            vec![0x0304, 0x0303]
        };
        tls_ext(&mut ext, 0x002b, &tls_u16_list(&versions, true));
    }
    if h.grease {
        tls_ext(&mut ext, 0x1a1a, &[0]);
    }
    let mut body = vec![0x03, 0x03];
    body.extend(bytes(32, 13));
    body.push(0); // no legacy session id
    body.extend(tls_u16_list(&ciphers, false));
    body.extend_from_slice(&[1, 0]); // null compression
    body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    body.extend(ext);
    tls_message(1, &body)
}

/// The random of a HelloRetryRequest (RFC 8446 §4.1.3).
const HRR_RANDOM: [u8; 32] = [
    0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91,
    0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
];

/// A TLS 1.3 ServerHello (or, `retry`, a HelloRetryRequest asking for secp256r1) as a handshake
/// message.
fn sample_server_hello13(cipher: u16, retry: bool, seed: u8) -> Vec<u8> {
    let mut body = vec![0x03, 0x03];
    if retry {
        body.extend_from_slice(&HRR_RANDOM);
    } else {
        body.extend((0..32u8).map(|i| i.wrapping_mul(53).wrapping_add(seed)));
    }
    body.push(0);
    body.extend_from_slice(&cipher.to_be_bytes());
    body.push(0);
    let mut ext = Vec::new();
    tls_ext(&mut ext, 0x002b, &[0x03, 0x04]);
    if retry {
        tls_ext(&mut ext, 0x0033, &[0x00, 0x17]);
    } else {
        let mut share = vec![0x00, 0x1d, 0x00, 0x20];
        share.extend((0..32u8).map(|i| i.wrapping_mul(11).wrapping_add(seed)));
        tls_ext(&mut ext, 0x0033, &share);
    }
    body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    body.extend(ext);
    tls_message(2, &body)
}

/// A TLS 1.3 server's first flight as a passive observer sees it: the ServerHello, the compatibility
/// change_cipher_spec, then encrypted records (EncryptedExtensions, Certificate, ... in
/// application_data records: stand-in bytes here).
fn sample_server_flight13(cipher: u16, seed: u8) -> Vec<u8> {
    let mut out = tls_records(22, &sample_server_hello13(cipher, false, seed), &[]);
    out.extend_from_slice(&[20, 3, 3, 0, 1, 1]);
    let sealed: Vec<u8> = (0..600u32)
        .map(|i| (i * 7 + u32::from(seed)) as u8)
        .collect();
    out.extend(tls_records(23, &sealed, &[]));
    out
}

/// The client's answer after a TLS 1.3 ServerHello: change_cipher_spec and encrypted Finished.
fn sample_client_finished13() -> Vec<u8> {
    let mut out = vec![20, 3, 3, 0, 1, 1];
    out.extend(tls_records(23, &[0x5c; 53], &[]));
    out
}

/// The TLS traffic of pcaps/tls.pcap, from the web session's source, ten minutes after the other
/// captures' start.
fn tls_timeline() -> Vec<(u64, Event)> {
    // The same mirror source on another VNI, with a PacketLength of 200 bytes.
    const CUT: Session = Session {
        source: Outer::V4([10, 0, 1, 10]),
        vni: 1005,
        packet_length: Some(200),
    };
    let mut t = Timeline {
        now: T0 + 600_000_000_000,
        events: Vec::new(),
    };
    let client = [172, 31, 5, 10];
    let handshake = |t: &mut Timeline, session: Session, c: &mut Tcp| {
        t.frame(1000, session, c.seg(true, Flags::Syn, &[]));
        t.frame(8000, session, c.seg(false, Flags::SynAck, &[]));
        t.frame(60, session, c.seg(true, Flags::Ack, &[]));
    };
    let close = |t: &mut Timeline, session: Session, c: &mut Tcp| {
        t.frame(2000, session, c.seg(true, Flags::FinAck, &[]));
        t.frame(8000, session, c.seg(false, Flags::FinAck, &[]));
        t.frame(60, session, c.seg(true, Flags::Ack, &[]));
    };

    // 1. TLS 1.3, browser-style: SNI, ALPN h2 and http/1.1, GREASE.
    let mut c = Tcp::new((client, 41001), ([198, 51, 100, 10], 443));
    handshake(&mut t, WEB, &mut c);
    let hello = sample_client_hello(&HelloSpec {
        sni: Some("www.example.com"),
        alpns: &["h2", "http/1.1"],
        grease: true,
        tls13: true,
        seed: 1,
    });
    t.frame(
        100,
        WEB,
        c.seg(true, Flags::PshAck, &tls_records(22, &hello, &[])),
    );
    t.frame(
        9000,
        WEB,
        c.seg(false, Flags::PshAck, &sample_server_flight13(0x1301, 1)),
    );
    t.frame(
        300,
        WEB,
        c.seg(true, Flags::PshAck, &sample_client_finished13()),
    );
    close(&mut t, WEB, &mut c);

    // 2. TLS 1.2 with a certificate chain: the server flight is cloudflare.com's, from FoxIO's
    // tls-alpn-h2.pcap (src/modules/tls/testdata/README.md), over two segments.
    let flight = include_bytes!("../src/modules/tls/testdata/tls-alpn-h2-server-flight.bin");
    let mut c = Tcp::new((client, 41002), ([198, 51, 100, 20], 443));
    handshake(&mut t, WEB, &mut c);
    let hello = sample_client_hello(&HelloSpec {
        sni: Some("www.cloudflare.com"),
        alpns: &["h2", "http/1.1"],
        grease: false,
        tls13: false,
        seed: 2,
    });
    t.frame(
        100,
        WEB,
        c.seg(true, Flags::PshAck, &tls_records(22, &hello, &[])),
    );
    t.frame(9000, WEB, c.seg(false, Flags::Ack, &flight[..1400]));
    t.frame(20, WEB, c.seg(false, Flags::PshAck, &flight[1400..]));
    let mut finish = tls_records(22, &tls_message(16, &[0x42; 66]), &[]);
    finish.extend_from_slice(&[20, 3, 3, 0, 1, 1]);
    finish.extend(tls_records(22, &[0x6b; 40], &[]));
    t.frame(400, WEB, c.seg(true, Flags::PshAck, &finish));
    close(&mut t, WEB, &mut c);

    // 3. A ClientHello in two records, over three segments that arrive 1, 3, 2.
    let mut c = Tcp::new((client, 41003), ([198, 51, 100, 30], 443));
    handshake(&mut t, WEB, &mut c);
    let hello = sample_client_hello(&HelloSpec {
        sni: Some("split.example.net"),
        alpns: &["h2"],
        grease: true,
        tls13: true,
        seed: 3,
    });
    let stream = tls_records(22, &hello, &[120]);
    let third = stream.len() / 3;
    let segs = [
        c.seg(true, Flags::Ack, &stream[..third]),
        c.seg(true, Flags::Ack, &stream[third..2 * third]),
        c.seg(true, Flags::PshAck, &stream[2 * third..]),
    ];
    for i in [0, 2, 1] {
        t.frame(40, WEB, segs[i].clone());
    }
    t.frame(
        9000,
        WEB,
        c.seg(false, Flags::PshAck, &sample_server_flight13(0x1303, 3)),
    );
    close(&mut t, WEB, &mut c);

    // 4. A ClientHello cut by the session's PacketLength (200 bytes of frame).
    let mut c = Tcp::new((client, 41004), ([198, 51, 100, 40], 443));
    handshake(&mut t, CUT, &mut c);
    let hello = sample_client_hello(&HelloSpec {
        sni: Some("truncated.example.org"),
        alpns: &["h2", "http/1.1"],
        grease: true,
        tls13: true,
        seed: 4,
    });
    t.frame(
        100,
        CUT,
        c.seg(true, Flags::PshAck, &tls_records(22, &hello, &[])),
    );
    let sh = tls_records(22, &sample_server_hello13(0x1301, false, 4), &[]);
    t.frame(9000, CUT, c.seg(false, Flags::PshAck, &sh));
    close(&mut t, CUT, &mut c);

    // 5. TLS on a port no one would guess: 4433, an OpenSSL-style hello (no GREASE).
    let mut c = Tcp::new((client, 41005), ([198, 51, 100, 50], 4433));
    handshake(&mut t, WEB, &mut c);
    let hello = sample_client_hello(&HelloSpec {
        sni: Some("api.internal.example"),
        alpns: &["http/1.1"],
        grease: false,
        tls13: true,
        seed: 5,
    });
    t.frame(
        100,
        WEB,
        c.seg(true, Flags::PshAck, &tls_records(22, &hello, &[])),
    );
    t.frame(
        9000,
        WEB,
        c.seg(false, Flags::PshAck, &sample_server_flight13(0x1302, 5)),
    );
    close(&mut t, WEB, &mut c);

    // 6. SMTP with STARTTLS (RFC 3207): TLS starts after the server's 220 go-ahead.
    let mut c = Tcp::new((client, 41006), ([198, 51, 100, 25], 25));
    handshake(&mut t, WEB, &mut c);
    let lines: [(bool, &[u8]); 5] = [
        (false, b"220 mail.example.com ESMTP ready\r\n"),
        (true, b"EHLO client.example.com\r\n"),
        (
            false,
            b"250-mail.example.com\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250 STARTTLS\r\n",
        ),
        (true, b"STARTTLS\r\n"),
        (false, b"220 2.0.0 Ready to start TLS\r\n"),
    ];
    for (from_client, line) in lines {
        t.frame(3000, WEB, c.seg(from_client, Flags::PshAck, line));
    }
    let hello = sample_client_hello(&HelloSpec {
        sni: Some("mail.example.com"),
        alpns: &[],
        grease: false,
        tls13: true,
        seed: 6,
    });
    t.frame(
        500,
        WEB,
        c.seg(true, Flags::PshAck, &tls_records(22, &hello, &[])),
    );
    t.frame(
        9000,
        WEB,
        c.seg(false, Flags::PshAck, &sample_server_flight13(0x1301, 6)),
    );
    close(&mut t, WEB, &mut c);

    // 7. Plain HTTP sent to 443: not TLS, no record.
    let mut c = Tcp::new((client, 41007), ([198, 51, 100, 70], 443));
    handshake(&mut t, WEB, &mut c);
    t.frame(
        100,
        WEB,
        c.seg(
            true,
            Flags::PshAck,
            b"GET / HTTP/1.1\r\nHost: www.example.com\r\n\r\n",
        ),
    );
    t.frame(
        9000,
        WEB,
        c.seg(
            false,
            Flags::PshAck,
            b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        ),
    );
    close(&mut t, WEB, &mut c);

    // 8. TLS 1.3 with a HelloRetryRequest: two ClientHellos, one handshake.
    let mut c = Tcp::new((client, 41008), ([198, 51, 100, 80], 443));
    handshake(&mut t, WEB, &mut c);
    let spec = HelloSpec {
        sni: Some("retry.example.com"),
        alpns: &["h2"],
        grease: true,
        tls13: true,
        seed: 8,
    };
    let first = sample_client_hello(&spec);
    t.frame(
        100,
        WEB,
        c.seg(true, Flags::PshAck, &tls_records(22, &first, &[])),
    );
    let hrr = tls_records(22, &sample_server_hello13(0x1301, true, 8), &[]);
    t.frame(9000, WEB, c.seg(false, Flags::PshAck, &hrr));
    let mut second = vec![20, 3, 3, 0, 1, 1];
    second.extend(tls_records(
        22,
        &sample_client_hello(&HelloSpec { seed: 9, ..spec }),
        &[],
    ));
    t.frame(200, WEB, c.seg(true, Flags::PshAck, &second));
    t.frame(
        9000,
        WEB,
        c.seg(false, Flags::PshAck, &sample_server_flight13(0x1301, 8)),
    );
    close(&mut t, WEB, &mut c);
    t.events
}

// ---------------------------------------------------------------------------------------------
// pcaps/l7.pcap: DNS and HTTP payloads for the `dns` and `http` modules, mirrored by the web
// session. Apart from the other captures so that they stay byte-identical.
// ---------------------------------------------------------------------------------------------

/// A resource record for [`l7_dns`]: owner, type, TTL, data (names in it uncompressed).
type Rr<'a> = (&'a str, u16, u32, Vec<u8>);

/// A DNS message: header, one question, then answer and authority records.
fn l7_dns(
    id: u16,
    flags: u16,
    q: (&str, u16),
    answers: &[Rr<'_>],
    authority: &[Rr<'_>],
) -> Vec<u8> {
    let mut m = id.to_be_bytes().to_vec();
    m.extend_from_slice(&flags.to_be_bytes());
    for n in [1, answers.len(), authority.len(), 0] {
        m.extend_from_slice(&(n as u16).to_be_bytes());
    }
    m.extend(dns_name(q.0));
    m.extend_from_slice(&q.1.to_be_bytes());
    m.extend_from_slice(&[0, 1]);
    for (name, ty, ttl, data) in answers.iter().chain(authority) {
        m.extend(dns_name(name));
        m.extend_from_slice(&ty.to_be_bytes());
        m.extend_from_slice(&[0, 1]);
        m.extend_from_slice(&ttl.to_be_bytes());
        m.extend_from_slice(&(data.len() as u16).to_be_bytes());
        m.extend_from_slice(data);
    }
    m
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// The l7 capture's traffic, in time order.
fn l7_timeline() -> Vec<(u64, Event)> {
    let mut t = Timeline {
        now: T0 + 3_600_000_000_000,
        events: Vec::new(),
    };
    let client = [172, 31, 5, 20];
    let resolver = ([172, 31, 0, 2], 53);
    let stub = (client, 35353);
    const QUERY: u16 = 0x0100;
    const ANSWER: u16 = 0x8180;
    let udp = |t: &mut Timeline, step: u64, from_client: bool, m: Vec<u8>| {
        let frame = if from_client {
            udp4(false, stub, resolver, &m)
        } else {
            udp4(true, resolver, stub, &m)
        };
        t.frame(step, WEB, frame);
    };

    // DNS over UDP, one stub resolver flow: a query left unanswered first, then one exchange per
    // record type, the last more than 5 s after the unanswered one (its timeout).
    udp(
        &mut t,
        0,
        true,
        l7_dns(0x0a00, QUERY, ("slow.example.com", 1), &[], &[]),
    );
    let www = "www.example.com";
    udp(
        &mut t,
        1000,
        true,
        l7_dns(0x0a01, QUERY, (www, 1), &[], &[]),
    );
    udp(
        &mut t,
        1500,
        false,
        l7_dns(
            0x0a01,
            ANSWER,
            (www, 1),
            &[
                (www, 5, 300, dns_name("edge.example.net")),
                ("edge.example.net", 1, 60, vec![93, 184, 215, 14]),
            ],
            &[],
        ),
    );
    udp(
        &mut t,
        3000,
        true,
        l7_dns(0x0a02, QUERY, (www, 28), &[], &[]),
    );
    let v6 = [
        0x26, 0x06, 0x28, 0, 0x02, 0x1f, 0xcb, 0x07, 0x68, 0x20, 0x80, 0xda, 0xaf, 0x6b, 0x8b, 0x2c,
    ];
    udp(
        &mut t,
        1200,
        false,
        l7_dns(
            0x0a02,
            ANSWER,
            (www, 28),
            &[(www, 28, 60, v6.to_vec())],
            &[],
        ),
    );
    udp(
        &mut t,
        3000,
        true,
        l7_dns(0x0a03, QUERY, ("example.com", 15), &[], &[]),
    );
    let mx = cat(&[&[0, 10], &dns_name("mail.example.com")]);
    udp(
        &mut t,
        1100,
        false,
        l7_dns(
            0x0a03,
            ANSWER,
            ("example.com", 15),
            &[("example.com", 15, 3600, mx)],
            &[],
        ),
    );
    udp(
        &mut t,
        3000,
        true,
        l7_dns(0x0a04, QUERY, ("example.com", 16), &[], &[]),
    );
    let txt = cat(&[&[11], b"v=spf1 -all"]);
    udp(
        &mut t,
        1100,
        false,
        l7_dns(
            0x0a04,
            ANSWER,
            ("example.com", 16),
            &[("example.com", 16, 3600, txt)],
            &[],
        ),
    );
    let sip = "_sip._tcp.example.com";
    udp(
        &mut t,
        3000,
        true,
        l7_dns(0x0a05, QUERY, (sip, 33), &[], &[]),
    );
    let srv = cat(&[&[0, 10, 0, 60, 0x13, 0xc4], &dns_name("sip.example.com")]);
    udp(
        &mut t,
        1100,
        false,
        l7_dns(0x0a05, ANSWER, (sip, 33), &[(sip, 33, 600, srv)], &[]),
    );
    udp(
        &mut t,
        3000,
        true,
        l7_dns(0x0a06, QUERY, ("example.com", 65), &[], &[]),
    );
    // HTTPS (RFC 9460): priority 1, target ".", alpn=h2,h3, ipv4hint=93.184.215.14.
    let https = cat(&[
        &[0, 1, 0],
        &[0, 1, 0, 6, 2, b'h', b'2', 2, b'h', b'3'],
        &[0, 4, 0, 4, 93, 184, 215, 14],
    ]);
    udp(
        &mut t,
        1100,
        false,
        l7_dns(
            0x0a06,
            ANSWER,
            ("example.com", 65),
            &[("example.com", 65, 300, https)],
            &[],
        ),
    );
    // NXDOMAIN with the zone's SOA in the authority section (RFC 2308).
    let nope = "nope.example.com";
    udp(
        &mut t,
        5_000_000,
        true,
        l7_dns(0x0a07, QUERY, (nope, 1), &[], &[]),
    );
    let soa = cat(&[
        &dns_name("ns.icann.org"),
        &dns_name("noc.dns.icann.org"),
        &[
            0x78, 0x9a, 0x6d, 0x01, 0, 0, 0x1c, 0x20, 0, 0, 0x0e, 0x10, 0, 0x12, 0x75, 0, 0, 0,
            0x0e, 0x10,
        ],
    ]);
    udp(
        &mut t,
        1300,
        false,
        l7_dns(
            0x0a07,
            0x8183,
            (nope, 1),
            &[],
            &[("example.com", 6, 3600, soa)],
        ),
    );
    // A malformed response: its answer's owner is a compression pointer that points forwards.
    let bad = "bad.example.com";
    udp(
        &mut t,
        3000,
        true,
        l7_dns(0x0a08, QUERY, (bad, 1), &[], &[]),
    );
    let mut m = l7_dns(0x0a08, ANSWER, (bad, 1), &[], &[]);
    m[7] = 1;
    m.extend_from_slice(&[0xc0, 0x40, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10, 0, 0, 1]);
    udp(&mut t, 1000, false, m);

    // DNS over TCP: the query split over two segments, the answer over three.
    let mut tcp = Tcp::new((client, 41053), resolver);
    t.frame(20_000, WEB, tcp.seg(true, Flags::Syn, &[]));
    t.frame(400, WEB, tcp.seg(false, Flags::SynAck, &[]));
    t.frame(50, WEB, tcp.seg(true, Flags::Ack, &[]));
    let big = "big.example.com";
    let q = l7_dns(0x0b01, QUERY, (big, 1), &[], &[]);
    let q = cat(&[&(q.len() as u16).to_be_bytes(), &q]);
    t.frame(100, WEB, tcp.seg(true, Flags::PshAck, &q[..7]));
    t.frame(30, WEB, tcp.seg(true, Flags::PshAck, &q[7..]));
    let answers: Vec<Rr<'_>> = (1..=3u8)
        .map(|i| (big, 1, 30, vec![198, 51, 100, i]))
        .collect();
    let a = l7_dns(0x0b01, 0x8580, (big, 1), &answers, &[]);
    let a = cat(&[&(a.len() as u16).to_be_bytes(), &a]);
    t.frame(600, WEB, tcp.seg(false, Flags::PshAck, &a[..1]));
    t.frame(40, WEB, tcp.seg(false, Flags::PshAck, &a[1..30]));
    t.frame(40, WEB, tcp.seg(false, Flags::PshAck, &a[30..]));
    t.frame(60, WEB, tcp.seg(true, Flags::FinAck, &[]));
    t.frame(60, WEB, tcp.seg(false, Flags::FinAck, &[]));
    t.frame(60, WEB, tcp.seg(true, Flags::Ack, &[]));

    // HTTP/1.1 keep-alive: two pipelined GETs (a 200 and a 304), then a POST with a
    // Content-Length body answered with a chunked response.
    let server = ([93, 184, 215, 14], 80);
    let mut h = Tcp::new((client, 42080), server);
    t.frame(30_000, WEB, h.seg(true, Flags::Syn, &[]));
    t.frame(9000, WEB, h.seg(false, Flags::SynAck, &[]));
    t.frame(50, WEB, h.seg(true, Flags::Ack, &[]));
    let two = b"GET /a.html HTTP/1.1\r\nHost: www.example.com\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64)\r\nReferer: http://www.example.com/\r\nAccept: */*\r\n\r\nGET /logo.png HTTP/1.1\r\nHost: www.example.com\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64)\r\nIf-None-Match: \"abc\"\r\n\r\n";
    t.frame(100, WEB, h.seg(true, Flags::PshAck, two));
    let page = "<html>a</html>\n";
    let r1 = format!("HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\n\r\n{page}", page.len());
    t.frame(9000, WEB, h.seg(false, Flags::PshAck, r1.as_bytes()));
    t.frame(
        200,
        WEB,
        h.seg(
            false,
            Flags::PshAck,
            b"HTTP/1.1 304 Not Modified\r\nETag: \"abc\"\r\n\r\n",
        ),
    );
    t.frame(50, WEB, h.seg(true, Flags::Ack, &[]));
    let post = b"POST /api/v1/items HTTP/1.1\r\nHost: www.example.com\r\nUser-Agent: curl/8.5.0\r\nX-Forwarded-For: 203.0.113.7\r\nContent-Type: application/json\r\nContent-Length: 17\r\n\r\n{\"name\":\"widget\"}";
    t.frame(200_000, WEB, h.seg(true, Flags::PshAck, post));
    t.frame(9000, WEB, h.seg(false, Flags::PshAck, b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n9\r\n{\"id\":4"));
    t.frame(100, WEB, h.seg(false, Flags::PshAck, b"2}\r\n0\r\n\r\n"));
    t.frame(50, WEB, h.seg(true, Flags::FinAck, &[]));
    t.frame(9000, WEB, h.seg(false, Flags::FinAck, &[]));
    t.frame(50, WEB, h.seg(true, Flags::Ack, &[]));

    // A response cut by a lost mirror copy: the middle of three body segments never reaches the
    // mirror, though the client acknowledges it. The next request on the connection still counts.
    let mut g = Tcp::new((client, 42081), server);
    t.frame(30_000, WEB, g.seg(true, Flags::Syn, &[]));
    t.frame(9000, WEB, g.seg(false, Flags::SynAck, &[]));
    t.frame(50, WEB, g.seg(true, Flags::Ack, &[]));
    t.frame(
        100,
        WEB,
        g.seg(
            true,
            Flags::PshAck,
            b"GET /big.bin HTTP/1.1\r\nHost: www.example.com\r\nUser-Agent: Wget/1.21\r\n\r\n",
        ),
    );
    let body: Vec<u8> = (0..3000).map(|i| b'0' + (i % 10) as u8).collect();
    let head = b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 3000\r\n\r\n";
    t.frame(
        9000,
        WEB,
        g.seg(false, Flags::PshAck, &cat(&[head, &body[..1000]])),
    );
    let _lost = g.seg(false, Flags::PshAck, &body[1000..2000]);
    t.frame(100, WEB, g.seg(false, Flags::PshAck, &body[2000..]));
    t.frame(50, WEB, g.seg(true, Flags::Ack, &[]));
    t.frame(
        100_000,
        WEB,
        g.seg(
            true,
            Flags::PshAck,
            b"GET /after HTTP/1.1\r\nHost: www.example.com\r\nUser-Agent: Wget/1.21\r\n\r\n",
        ),
    );
    t.frame(
        9000,
        WEB,
        g.seg(
            false,
            Flags::PshAck,
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nok\n",
        ),
    );
    t.frame(50, WEB, g.seg(true, Flags::FinAck, &[]));
    t.frame(9000, WEB, g.seg(false, Flags::FinAck, &[]));
    t.frame(50, WEB, g.seg(true, Flags::Ack, &[]));

    // HTTP/1.0 on a port no one assigned to HTTP, the response read until the connection closes.
    let mut o = Tcp::new((client, 42082), ([172, 31, 9, 80], 8000));
    t.frame(30_000, WEB, o.seg(true, Flags::Syn, &[]));
    t.frame(300, WEB, o.seg(false, Flags::SynAck, &[]));
    t.frame(50, WEB, o.seg(true, Flags::Ack, &[]));
    t.frame(100, WEB, o.seg(true, Flags::PshAck, b"GET /metrics HTTP/1.0\r\nHost: 172.31.9.80:8000\r\nUser-Agent: Prometheus/2.48.0\r\n\r\n"));
    t.frame(
        700,
        WEB,
        o.seg(
            false,
            Flags::PshAck,
            b"HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n\r\nup 1\n",
        ),
    );
    t.frame(30, WEB, o.seg(false, Flags::FinAck, &[]));
    t.frame(50, WEB, o.seg(true, Flags::FinAck, &[]));
    t.frame(300, WEB, o.seg(false, Flags::Ack, &[]));
    t.events
}

/// `accessscope.pcap`: flows that must and must not be findings of the two example scopes in
/// `tests/scopes/` (docs/modules/accessscope.md walks through each), from two mirror sessions of a
/// VPC 10.0.0.0/16: a web ENI (10.0.1.10, VNI 100) and a database ENI (10.0.2.20, VNI 101). One
/// connection runs across the 12:01 boundary, so with 60-second intervals it gives two records.
fn accessscope_timeline() -> Vec<(u64, Event)> {
    const WEB_ENI: Session = Session {
        source: Outer::V4([10, 0, 1, 10]),
        vni: 100,
        packet_length: None,
    };
    const DB_ENI: Session = Session {
        source: Outer::V4([10, 0, 2, 20]),
        vni: 101,
        packet_length: None,
    };
    let web = [10, 0, 1, 10];
    let db = [10, 0, 2, 20];
    // 12:00:50, so that the first connection's last packets fall in the next minute.
    let mut t = Timeline {
        now: T0 + 50_000_000_000,
        events: Vec::new(),
    };
    // A whole connection: handshake, a request and an answer, both FINs.
    let conn = |t: &mut Timeline, s: Session, c: &mut Tcp, req: &[u8], resp: &[u8]| {
        t.frame(1000, s, c.seg(true, Flags::Syn, &[]));
        t.frame(1000, s, c.seg(false, Flags::SynAck, &[]));
        t.frame(100, s, c.seg(true, Flags::Ack, &[]));
        t.frame(100, s, c.seg(true, Flags::PshAck, req));
        t.frame(1000, s, c.seg(false, Flags::PshAck, resp));
        t.frame(100, s, c.seg(true, Flags::FinAck, &[]));
        t.frame(100, s, c.seg(false, Flags::FinAck, &[]));
        t.frame(100, s, c.seg(true, Flags::Ack, &[]));
    };
    let internet = [198, 51, 100, 10];
    let attacker = [203, 0, 113, 50];

    // Findings of eni-to-internet: the web ENI opens connections to a public address; the first
    // one lasts 15 s, across 12:01:00.
    let mut a = Tcp::new((web, 40001), (internet, 443));
    t.frame(0, WEB_ENI, a.seg(true, Flags::Syn, &[]));
    t.frame(1000, WEB_ENI, a.seg(false, Flags::SynAck, &[]));
    t.frame(100, WEB_ENI, a.seg(true, Flags::Ack, &[]));
    t.frame(100, WEB_ENI, a.seg(true, Flags::PshAck, b"hello, internet"));
    t.frame(1000, WEB_ENI, a.seg(false, Flags::Ack, &[]));
    let mut b = Tcp::new((web, 40002), (internet, 443));
    conn(&mut t, WEB_ENI, &mut b, b"second connection", b"ok");
    // The same server port over UDP is another record.
    t.frame(
        1000,
        WEB_ENI,
        udp4(false, (web, 51000), (internet, 443), b"quic?"),
    );
    // Not findings: inside the VPC; private but outside it (peering, VPN); the internet opening
    // a connection to the ENI (the path's Source is the client).
    let mut c = Tcp::new((web, 40003), ([10, 0, 3, 30], 8080));
    conn(
        &mut t,
        WEB_ENI,
        &mut c,
        b"GET / HTTP/1.0\r\n\r\n",
        b"HTTP/1.0 200 OK\r\n\r\n",
    );
    let mut d = Tcp::new((web, 40004), ([172, 16, 5, 5], 443));
    conn(&mut t, WEB_ENI, &mut d, b"to a peered network", b"ok");
    let mut e = Tcp::new((attacker, 50001), (web, 443));
    conn(&mut t, WEB_ENI, &mut e, b"inbound", b"ok");

    // Findings of no-inbound-db: PostgreSQL from the internet, a MySQL probe answered by a reset.
    let mut f = Tcp::new((attacker, 50002), (db, 5432));
    conn(
        &mut t,
        DB_ENI,
        &mut f,
        b"\x00\x00\x00\x08\x04\xd2\x16\x2f",
        b"N",
    );
    let mut g = Tcp::new(([203, 0, 113, 51], 50003), (db, 3306));
    t.frame(1000, DB_ENI, g.seg(true, Flags::Syn, &[]));
    t.frame(1000, DB_ENI, g.seg(false, Flags::Rst, &[]));
    // Not findings: from inside the VPC and from the peered VPC (prefix list); another port;
    // UDP to the database port.
    let mut h = Tcp::new((web, 40005), (db, 5432));
    conn(&mut t, DB_ENI, &mut h, b"inside", b"ok");
    let mut i = Tcp::new(([10, 1, 4, 4], 40006), (db, 3306));
    conn(&mut t, DB_ENI, &mut i, b"peered", b"ok");
    let mut j = Tcp::new((attacker, 50004), (db, 22));
    conn(
        &mut t,
        DB_ENI,
        &mut j,
        b"SSH-2.0-probe\r\n",
        b"SSH-2.0-server\r\n",
    );
    t.frame(
        1000,
        DB_ENI,
        udp4(false, (attacker, 50005), (db, 5432), b"udp"),
    );
    // And the database itself reaching the internet: a finding of eni-to-internet.
    let mut k = Tcp::new((db, 40007), ([198, 51, 100, 20], 443));
    conn(&mut t, DB_ENI, &mut k, b"update check", b"ok");

    // The first connection ends after 12:01:00.
    t.at(
        15_000_000,
        Event::Frame {
            session: WEB_ENI,
            frame: a.seg(false, Flags::PshAck, b"late answer"),
        },
    );
    t.frame(100, WEB_ENI, a.seg(true, Flags::FinAck, &[]));
    t.frame(100, WEB_ENI, a.seg(false, Flags::FinAck, &[]));
    t.frame(100, WEB_ENI, a.seg(true, Flags::Ack, &[]));
    t.events
}

fn write_accessscope(dir: &Path) -> io::Result<()> {
    let recs = aws_mirror(&accessscope_timeline());
    write_pcap(&dir.join("accessscope.pcap"), 1, false, &recs)
}
