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
    write_accessscope(&dir)?;
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
