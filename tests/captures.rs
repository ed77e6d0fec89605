//! Real third-party captures (pcaps/third-party, from Zeek's test suite) decoded through the same
//! pipeline core the sockets feed: sessions, inner addresses and lengths, checked against what the
//! captures are documented to hold and against Zeek's own conn.log baselines.

mod common;

use std::net::IpAddr;

use common::*;
use vxtap::base::DropReason;
use vxtap::wire::inner::{ether_type, Layer};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/pcaps/third-party/");

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Per direction (src → dst): packets and IP bytes as the IP headers state them — what Zeek's conn.log
/// calls orig_pkts/orig_ip_bytes.
fn ip_totals(seen: &[Seen], src: &str, dst: &str) -> (u64, u64) {
    seen.iter()
        .filter(|s| s.flow.is_some_and(|f| f.src == ip(src) && f.dst == ip(dst)))
        .fold((0, 0), |(p, b), s| {
            (p + 1, b + u64::from(s.ip_len.unwrap()))
        })
}

#[test]
fn aws_mirrored_http_with_a_jumbo_frame() {
    let (report, seen) = run_capture(&format!("{DIR}vxlan-encapsulated-http.pcap"), "");
    assert_eq!(report.counts.received, 12);
    assert_eq!(report.counts.dispatched, 12);
    assert_eq!(report.sessions.len(), 1);
    assert_eq!(
        (report.sessions[0].key.source, report.sessions[0].key.vni),
        (ip("10.1.200.131"), 1)
    );
    let flows: std::collections::HashSet<_> =
        seen.iter().map(|s| s.flow.unwrap().canonical().0).collect();
    assert_eq!(flows.len(), 1, "one HTTP connection");
    let f = flows.into_iter().next().unwrap();
    assert_eq!(
        (f.protocol, f.src, f.src_port, f.dst, f.dst_port),
        (6, ip("54.86.237.188"), 80, ip("172.16.11.201"), 40354)
    );
    assert!(
        seen.iter().all(|s| s.cut.is_none()),
        "nothing in this capture is truncated"
    );
    // Frame 8 is a 9,100-byte jumbo frame on the wire: 50 bytes of outer Ethernet/IPv4/UDP/VXLAN around a
    // 9,050-byte inner frame, delivered whole.
    let jumbo = seen.iter().max_by_key(|s| s.len).unwrap();
    assert_eq!(
        (jumbo.len, jumbo.orig_len, jumbo.ip_len),
        (9050, 9050, Some(9050 - 14))
    );
    assert!(
        seen.iter().any(|s| s.payload.starts_with(b"GET /")),
        "the HTTP request payload is reachable"
    );
}

#[test]
fn vxlan_icmp_and_arp_between_two_endpoints() {
    let (report, seen) = run_capture(&format!("{DIR}vxlan.pcap"), "");
    assert_eq!((report.counts.received, report.counts.dispatched), (10, 10));
    // Both hosts are VXLAN endpoints, so each direction is its own (source, VNI) session.
    let keys: Vec<_> = report
        .sessions
        .iter()
        .map(|s| (s.key.source, s.key.vni))
        .collect();
    assert_eq!(
        keys,
        [(ip("192.168.56.11"), 123), (ip("192.168.56.12"), 123)]
    );
    assert_eq!(
        seen.iter()
            .filter(|s| s.ether_type == ether_type::ARP)
            .count(),
        2
    );
    // Zeek: ICMP 10.0.0.1 -> 10.0.0.2, 4 packets / 336 IP bytes each way.
    assert_eq!(ip_totals(&seen, "10.0.0.1", "10.0.0.2"), (4, 336));
    assert_eq!(ip_totals(&seen, "10.0.0.2", "10.0.0.1"), (4, 336));
    let baseline = std::fs::read_to_string(format!("{DIR}vxlan.zeek-conn.log")).unwrap();
    assert!(baseline
        .lines()
        .any(|l| l.contains("10.0.0.1\t8\t10.0.0.2\t0\ticmp") && l.contains("\t4\t336\t4\t336\t")));
}

#[test]
fn gwlb_geneve_around_vxlan_cut_by_the_snap_length() {
    let (report, seen) = run_capture(&format!("{DIR}geneve-vxlan-dns-truncated.pcap"), "");
    assert_eq!((report.counts.received, report.counts.dispatched), (2, 2));
    assert_eq!(report.counts.dropped(DropReason::GeneveInnerNotVxlan), 0);
    // The session is named by the mirror's own IPv4 header inside GENEVE, and the VXLAN VNI.
    let keys: Vec<_> = report
        .sessions
        .iter()
        .map(|s| (s.key.source, s.key.vni))
        .collect();
    assert_eq!(keys, [(ip("127.0.0.1"), 4242)]);
    // Zeek: DNS 172.16.11.201:36872 -> 1.1.1.1:53, 1 packet / 82 IP bytes out, 1 / 102 back, although the
    // capture's 176-byte snap length cut the answer: IP bytes come from the IP header.
    assert_eq!(ip_totals(&seen, "172.16.11.201", "1.1.1.1"), (1, 82));
    assert_eq!(ip_totals(&seen, "1.1.1.1", "172.16.11.201"), (1, 102));
    let answer = seen
        .iter()
        .find(|s| s.flow.unwrap().src_port == 53)
        .unwrap();
    assert_eq!(answer.cut, Some(Layer::Payload));
    assert_eq!(answer.flow.unwrap().dst_port, 36872);
}
