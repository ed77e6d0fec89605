//! Keeps the ENI-like benchmark capture (`benches/common/eni.rs`, written by
//! `examples/gen_eni_capture.rs`) honest: a small generated stream is taken apart again and checked
//! for what the benchmark relies on (time order, the concurrency bound, consistent TCP sequence
//! spaces, parseable application payloads, the outer encapsulation) and for determinism.

use std::collections::HashMap;

use etherparse::{NetSlice, SlicedPacket, TransportSlice};

#[path = "../benches/common/payloads.rs"]
mod payloads;

#[path = "../benches/common/eni.rs"]
mod eni;

use eni::{Damage, EniConfig, EniTraffic, Kind, VXLAN_OFFSET};

const SMALL: EniConfig = EniConfig {
    flows: 1200,
    concurrent: 300,
    sessions: 3,
    seed: 7,
};

fn capture(cfg: EniConfig) -> Vec<u8> {
    let mut out = Vec::new();
    eni::write_pcap(cfg, &mut out).expect("writing to a Vec cannot fail");
    out
}

#[test]
fn same_arguments_same_bytes() {
    let a = capture(SMALL);
    assert_eq!(a, capture(SMALL));
    assert_ne!(a, capture(EniConfig { seed: 8, ..SMALL }));
    // A classic pcap: microsecond magic, Ethernet link type.
    assert_eq!(a[..4], 0xa1b2_c3d4u32.to_le_bytes());
    assert_eq!(a[20..24], 1u32.to_le_bytes());
}

/// One direction of a TCP connection as the capture shows it.
#[derive(Default)]
struct Direction {
    isn: Option<u32>,
    bytes: Vec<u8>,
    have: Vec<bool>,
    fin_at: Option<u32>,
    last_ack: Option<u32>,
}

impl Direction {
    /// Highest stream offset sent so far (FIN counted as one more).
    fn end(&self) -> u32 {
        self.fin_at.map_or(self.bytes.len() as u32, |f| f + 1)
    }
}

#[derive(Default)]
struct Connection {
    client: Option<([u8; 16], u16)>,
    dirs: [Direction; 2],
    retransmitted: usize,
}

fn addr16(net: &NetSlice<'_>) -> ([u8; 16], [u8; 16]) {
    match net {
        NetSlice::Ipv4(ip) => (
            ip.header().source_addr().to_ipv6_mapped().octets(),
            ip.header().destination_addr().to_ipv6_mapped().octets(),
        ),
        NetSlice::Ipv6(ip) => (
            ip.header().source_addr().octets(),
            ip.header().destination_addr().octets(),
        ),
        NetSlice::Arp(_) => unreachable!("no ARP in the capture"),
    }
}

impl Connection {
    fn packet(&mut self, src: ([u8; 16], u16), tcp: &etherparse::TcpSlice<'_>, flow: u64) {
        if tcp.syn() && !tcp.ack() {
            self.client.get_or_insert(src);
            let isn = *self.dirs[0].isn.get_or_insert(tcp.sequence_number());
            assert_eq!(
                isn,
                tcp.sequence_number(),
                "flow {flow}: a SYN retry keeps its ISN"
            );
            return;
        }
        let client = self
            .client
            .expect("every TCP flow starts with the client's SYN");
        let d = usize::from(src != client);
        let (mine, theirs) = if d == 0 {
            let [a, b] = &mut self.dirs;
            (a, &*b)
        } else {
            let [a, b] = &mut self.dirs;
            (b, &*a)
        };
        if tcp.syn() {
            assert_eq!(d, 1, "flow {flow}: SYN-ACK from the server");
            let client_isn = theirs.isn.expect("SYN before SYN-ACK");
            assert_eq!(
                tcp.acknowledgment_number(),
                client_isn.wrapping_add(1),
                "flow {flow}"
            );
            mine.isn = Some(tcp.sequence_number());
            return;
        }
        let Some(isn) = mine.isn else {
            // A refused SYN: RST+ACK acknowledging the SYN.
            assert!(
                tcp.rst() && d == 1,
                "flow {flow}: only a RST answers an unaccepted SYN"
            );
            let client_isn = theirs.isn.expect("SYN before RST");
            assert_eq!(
                tcp.acknowledgment_number(),
                client_isn.wrapping_add(1),
                "flow {flow}"
            );
            return;
        };
        let rel = tcp.sequence_number().wrapping_sub(isn).wrapping_sub(1);
        assert!(
            rel < 1 << 24,
            "flow {flow}: sequence number {rel} bytes past the ISN"
        );
        if tcp.ack() {
            let their_isn = theirs.isn.expect("both ISNs known after the handshake");
            let ack = tcp
                .acknowledgment_number()
                .wrapping_sub(their_isn)
                .wrapping_sub(1);
            assert!(
                ack <= theirs.end(),
                "flow {flow}: ACK of {ack} bytes, only {} sent",
                theirs.end()
            );
            if let Some(last) = mine.last_ack {
                assert!(
                    ack >= last,
                    "flow {flow}: ACK went back from {last} to {ack}"
                );
            }
            mine.last_ack = Some(ack);
        }
        let payload = tcp.payload();
        if !payload.is_empty() {
            let (from, to) = (rel as usize, rel as usize + payload.len());
            if mine.bytes.len() < to {
                mine.bytes.resize(to, 0);
                mine.have.resize(to, false);
            }
            let mut resent = false;
            for (i, &b) in payload.iter().enumerate() {
                if mine.have[from + i] {
                    assert_eq!(
                        mine.bytes[from + i],
                        b,
                        "flow {flow}: a resent byte differs"
                    );
                    resent = true;
                }
                mine.bytes[from + i] = b;
                mine.have[from + i] = true;
            }
            self.retransmitted += usize::from(resent);
        }
        if tcp.fin() {
            assert_eq!(
                rel as usize,
                mine.bytes.len(),
                "flow {flow}: FIN after the last byte"
            );
            mine.fin_at = Some(rel);
        }
    }
}

/// Walks a DNS message: header, questions, then every record (names with compression pointers
/// that point backwards), ending exactly at the message's end. Returns (id, is response, rcode).
fn check_dns(m: &[u8]) -> (u16, bool, u8) {
    assert!(m.len() >= 12, "DNS header");
    let count = |i: usize| usize::from(u16::from_be_bytes([m[4 + 2 * i], m[5 + 2 * i]]));
    let name = |mut at: usize| -> usize {
        loop {
            let len = m[at];
            if len & 0xc0 == 0xc0 {
                let target = usize::from(u16::from_be_bytes([len & 0x3f, m[at + 1]]));
                assert!(target < at, "compression points backwards");
                return at + 2;
            }
            assert!(len < 64, "label length");
            at += 1 + usize::from(len);
            if len == 0 {
                return at;
            }
        }
    };
    let mut at = 12;
    assert_eq!(count(0), 1, "one question");
    at = name(at) + 4;
    for _ in 0..count(1) + count(2) + count(3) {
        at = name(at) + 8;
        let rdlen = usize::from(u16::from_be_bytes([m[at], m[at + 1]]));
        at += 2 + rdlen;
    }
    assert_eq!(at, m.len(), "records end at the message's end");
    (
        u16::from_be_bytes([m[0], m[1]]),
        m[2] & 0x80 != 0,
        m[3] & 0x0f,
    )
}

/// Takes a ClientHello record apart: record and handshake lengths, the extension block summing to
/// its length; returns the extension types in order.
fn check_client_hello(r: &[u8]) -> Vec<u16> {
    assert_eq!(r[0], 22, "handshake record");
    let rec_len = usize::from(u16::from_be_bytes([r[3], r[4]]));
    assert!(r.len() >= 5 + rec_len);
    let h = &r[5..5 + rec_len];
    assert_eq!(h[0], 1, "ClientHello");
    assert_eq!(
        u32::from_be_bytes([0, h[1], h[2], h[3]]) as usize,
        h.len() - 4
    );
    let mut at = 4 + 2 + 32;
    at += 1 + usize::from(h[at]);
    at += 2 + usize::from(u16::from_be_bytes([h[at], h[at + 1]]));
    at += 1 + usize::from(h[at]);
    let ext_len = usize::from(u16::from_be_bytes([h[at], h[at + 1]]));
    at += 2;
    assert_eq!(at + ext_len, h.len(), "extensions fill the rest");
    let mut types = Vec::new();
    while at < h.len() {
        types.push(u16::from_be_bytes([h[at], h[at + 1]]));
        at += 4 + usize::from(u16::from_be_bytes([h[at + 2], h[at + 3]]));
    }
    assert_eq!(at, h.len(), "extension lengths add up");
    types
}

/// A DER TLV at `at`: (tag, content start, end).
fn der(b: &[u8], at: usize) -> (u8, usize, usize) {
    let tag = b[at];
    let first = b[at + 1];
    if first < 0x80 {
        return (tag, at + 2, at + 2 + usize::from(first));
    }
    let n = usize::from(first & 0x7f);
    let len = b[at + 2..at + 2 + n]
        .iter()
        .fold(0usize, |l, &x| l << 8 | usize::from(x));
    (tag, at + 2 + n, at + 2 + n + len)
}

#[test]
fn certificates_are_x509_shaped_der() {
    for cert in [payloads::CERT_EC_P256, payloads::CERT_RSA_2048] {
        // Certificate ::= SEQUENCE { tbsCertificate SEQUENCE, signatureAlgorithm SEQUENCE,
        // signatureValue BIT STRING } (RFC 5280 §4.1), covering the whole file.
        let (tag, body, end) = der(cert, 0);
        assert_eq!((tag, end), (0x30, cert.len()));
        let (t1, _, e1) = der(cert, body);
        let (t2, _, e2) = der(cert, e1);
        let (t3, _, e3) = der(cert, e2);
        assert_eq!((t1, t2, t3, e3), (0x30, 0x30, 0x03, end));
    }
}

#[test]
fn small_stream_keeps_the_model() {
    let mut traffic = EniTraffic::new(SMALL);
    let sessions = traffic.sessions.clone();
    let mut last_ts = 0;
    let mut span: HashMap<u64, (u64, u64)> = HashMap::new();
    let mut outer_port: HashMap<u64, u16> = HashMap::new();
    let mut tcp: HashMap<u64, Connection> = HashMap::new();
    let mut kinds: HashMap<u64, Kind> = HashMap::new();
    let mut dns_queries: HashMap<(u64, u16), bool> = HashMap::new();
    let (mut dns_responses, mut nxdomain, mut v6_flows, mut vlan, mut fragments, mut unreachable) =
        (0, 0, 0, 0, 0, 0);
    let mut damaged = 0;
    let mut packets = 0u64;
    let mut v6_seen = std::collections::HashSet::new();
    type Tuple = (u32, ([u8; 16], u16), ([u8; 16], u16), bool);
    let mut tuples: HashMap<Tuple, u64> = HashMap::new();
    while let Some(d) = traffic.next() {
        packets += 1;
        assert!(d.ts_us >= last_ts, "time order");
        last_ts = d.ts_us;
        let e = span.entry(d.flow).or_insert((d.ts_us, d.ts_us));
        e.1 = d.ts_us;
        kinds.insert(d.flow, d.kind);

        // Outer: Ethernet / IPv4 from the session's source / UDP to 4789, one source port per flow.
        let s = &sessions[d.session as usize];
        let outer = SlicedPacket::from_ethernet(d.frame).expect("the outer headers are whole");
        let Some(NetSlice::Ipv4(ip)) = &outer.net else {
            panic!("outer IPv4")
        };
        assert_eq!(ip.header().source(), s.outer_source);
        let Some(TransportSlice::Udp(udp)) = &outer.transport else {
            panic!("outer UDP")
        };
        assert_eq!(udp.destination_port(), 4789);
        assert_eq!(
            *outer_port.entry(d.flow).or_insert(udp.source_port()),
            udp.source_port()
        );
        if let Some(damage) = d.damage {
            damaged += 1;
            match damage {
                Damage::VxlanFlagClear => assert_eq!(d.frame[VXLAN_OFFSET] & 0x08, 0),
                Damage::VxlanTruncated => assert!(d.frame.len() < VXLAN_OFFSET + 8),
                Damage::InnerCut => assert!(d.frame.len() < VXLAN_OFFSET + 8 + 14 + 40),
            }
            continue;
        }
        let vx = &d.frame[VXLAN_OFFSET..];
        assert_eq!(vx[0], 0x08, "VXLAN I flag");
        assert_eq!(u32::from_be_bytes([0, vx[4], vx[5], vx[6]]), s.vni);

        let inner = SlicedPacket::from_ethernet(&vx[8..]).expect("inner frames parse");
        vlan += usize::from(inner.link_exts.iter().next().is_some());
        let net = inner.net.as_ref().expect("an IP layer");
        let (src, dst) = addr16(net);
        let eni_v4 = std::net::Ipv4Addr::from(s.eni_v4).to_ipv6_mapped().octets();
        assert!(
            [src, dst].iter().any(|a| *a == eni_v4 || *a == s.eni_v6),
            "the session's ENI is one side of every flow"
        );
        if matches!(net, NetSlice::Ipv6(_)) && v6_seen.insert(d.flow) {
            v6_flows += 1;
        }
        if let NetSlice::Ipv4(ip) = net {
            if ip.is_payload_fragmented() {
                fragments += 1;
                continue;
            }
        }
        let ports = match &inner.transport {
            Some(TransportSlice::Tcp(t)) => Some((t.source_port(), t.destination_port(), true)),
            Some(TransportSlice::Udp(u)) => Some((u.source_port(), u.destination_port(), false)),
            _ => None,
        };
        if let Some((sport, dport, is_tcp)) = ports {
            let (a, b) = ((src, sport), (dst, dport));
            let key = (d.session, a.min(b), a.max(b), is_tcp);
            let owner = *tuples.entry(key).or_insert(d.flow);
            assert_eq!(owner, d.flow, "two flows share a 5-tuple");
        }
        match &inner.transport {
            Some(TransportSlice::Tcp(t)) => {
                tcp.entry(d.flow)
                    .or_default()
                    .packet((src, t.source_port()), t, d.flow);
            }
            Some(TransportSlice::Udp(u)) if u.source_port() == 53 || u.destination_port() == 53 => {
                let (id, response, rcode) = check_dns(u.payload());
                assert_eq!(
                    response,
                    u.source_port() == 53,
                    "queries go to 53, answers come from it"
                );
                if response {
                    assert!(
                        dns_queries.contains_key(&(d.flow, id)),
                        "an answer matches a query's id"
                    );
                    dns_responses += 1;
                    nxdomain += usize::from(rcode == 3);
                } else {
                    dns_queries.insert((d.flow, id), true);
                }
            }
            Some(TransportSlice::Icmpv4(i)) => {
                unreachable += usize::from(i.type_u8() == 3);
            }
            Some(TransportSlice::Icmpv6(i)) => {
                unreachable += usize::from(i.type_u8() == 1);
            }
            _ => {}
        }
    }

    // Concurrency: a flow is live from its first packet to its last; sweep over those intervals.
    let mut events: Vec<(u64, i8)> = span.values().flat_map(|&(a, b)| [(a, 1), (b, 2)]).collect();
    events.sort_unstable();
    let (mut live, mut peak) = (0i64, 0i64);
    for (_, e) in events {
        live += if e == 1 { 1 } else { -1 };
        peak = peak.max(live);
    }
    assert!(
        peak <= SMALL.concurrent as i64,
        "peak {peak} over the bound"
    );
    assert!(
        peak >= SMALL.concurrent as i64 * 9 / 10,
        "the bound is reached: peak {peak}"
    );
    assert_eq!(span.len() as u64, SMALL.flows);
    assert_eq!(traffic.stats.packets, packets);

    // TCP: every connection that completed its handshake has whole streams in both directions,
    // and its payloads start the way their protocol does.
    let mut established = 0;
    let mut resent = 0;
    let mut hellos = 0;
    for (flow, c) in &tcp {
        let [client, server] = &c.dirs;
        if client.isn.is_none() || server.isn.is_none() {
            continue;
        }
        established += 1;
        resent += c.retransmitted;
        for dir in &c.dirs {
            assert!(
                dir.have.iter().all(|&h| h),
                "flow {flow}: a hole in the stream"
            );
        }
        match kinds[flow] {
            Kind::Tls => {
                let ext = check_client_hello(&client.bytes);
                assert!(ext.contains(&0x002b), "supported_versions");
                assert_eq!(
                    server.bytes[..6],
                    [22, 3, 3, server.bytes[3], server.bytes[4], 2]
                );
                hellos += 1;
            }
            Kind::Http => {
                assert!(client.bytes.starts_with(b"GET ") || client.bytes.starts_with(b"POST "));
                assert!(server.bytes.starts_with(b"HTTP/1.1 "));
            }
            Kind::Ssh => assert!(
                server.bytes.starts_with(b"SSH-2.0-") && client.bytes.starts_with(b"SSH-2.0-")
            ),
            Kind::DnsTcp => {
                for stream in [&client.bytes, &server.bytes] {
                    let len = usize::from(u16::from_be_bytes([stream[0], stream[1]]));
                    assert_eq!(len + 2, stream.len(), "one length-prefixed message");
                    check_dns(&stream[2..]);
                }
            }
            _ => {}
        }
    }
    assert!(established > 300, "{established} connections");
    assert!(hellos > 150, "{hellos} TLS handshakes");
    assert!(
        resent > 0,
        "retransmissions present and equal to their originals"
    );
    assert!(dns_responses > 100 && nxdomain > 0);
    assert!(fragments > 0 && unreachable > 0 && vlan > 0);
    let v6_share = v6_flows as f64 / SMALL.flows as f64;
    assert!((0.1..0.3).contains(&v6_share), "IPv6 share {v6_share}");
    let damaged_share = damaged as f64 / packets as f64;
    assert!(
        damaged > 0 && damaged_share < 0.01,
        "damaged share {damaged_share}"
    );
}

#[test]
fn own_logarithm_matches_the_platform_within_rounding() {
    // eni::ln exists so the arrival times do not depend on the platform's libm; it must still be
    // a logarithm.
    for x in [
        1e-16, 1e-6, 0.001, 0.3, 0.5, 0.999_999, 1.0, 2.0, 10.0, 12345.678,
    ] {
        let (ours, theirs) = (eni::ln(x), f64::ln(x));
        assert!(
            (ours - theirs).abs() <= 1e-12 * theirs.abs().max(1.0),
            "ln({x}): {ours} vs {theirs}"
        );
    }
}
