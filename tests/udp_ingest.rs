//! The live path end to end: crafted VXLAN/GENEVE datagrams sent over real loopback sockets (IPv4 and
//! IPv6) to the UDP workers, and what modules and the drop accounting show afterwards.

mod common;

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use common::*;
use vxtap::base::{DropReason, FlowKey};
use vxtap::pipeline::Encap;
use vxtap::wire::inner::{ether_type, Layer};

fn config(tap: &str, extra: &str) -> String {
    format!(
        "[ingest]\nvxlan = [\"127.0.0.1:0\", \"[::1]:0\"]\ngeneve = [\"127.0.0.1:0\"]\nworkers = 2\n\
         receive_buffer_bytes = 0\n[pipeline]\nshards = 2\n{extra}\n[[module]]\nkind = \"recorder\"\ntap = \"{tap}\"\n"
    )
}

fn packets(tap_name: &str) -> Vec<Seen> {
    let t = tap(tap_name);
    let t = t.lock().unwrap();
    assert_eq!(t.flushes, 2, "every shard's instance is flushed once");
    t.packets.clone()
}

/// A frame with an 802.1Q tag (or two, QinQ) in front of an IPv4/UDP packet.
fn vlan_tagged(tags: &[u16]) -> Vec<u8> {
    let plain = udp4([10, 0, 0, 1], 5000, [10, 0, 0, 2], 53, b"query");
    let mut f = plain[..12].to_vec();
    for (i, tag) in tags.iter().enumerate() {
        let tpid: u16 = if i == 0 && tags.len() == 2 {
            0x88a8
        } else {
            0x8100
        };
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&tag.to_be_bytes());
    }
    f.extend_from_slice(&plain[12..]);
    f
}

/// Two IPv4 fragments of one UDP datagram: the first with the UDP header (MF set), the second without.
fn ipv4_fragments() -> (Vec<u8>, Vec<u8>) {
    let whole = udp4([10, 0, 0, 5], 7000, [10, 0, 0, 6], 8000, &[0xab; 64]);
    let (eth, ip) = whole.split_at(14);
    let (header, data) = ip.split_at(20);
    let mk = |body: &[u8], flags_off: u16| {
        let mut f = eth.to_vec();
        let mut h = header.to_vec();
        h[2..4].copy_from_slice(&((20 + body.len()) as u16).to_be_bytes());
        h[6..8].copy_from_slice(&flags_off.to_be_bytes());
        f.extend_from_slice(&h);
        f.extend_from_slice(body);
        f
    };
    (mk(&data[..40], 0x2000), mk(&data[40..], 40 / 8))
}

/// An IPv6 packet with a hop-by-hop extension header, then UDP.
fn ipv6_with_extension() -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x86, 0xdd];
    let udp_len: u16 = 8 + 4;
    let mut ip = vec![0x60, 0, 0, 0];
    ip.extend_from_slice(&(8 + udp_len).to_be_bytes());
    ip.extend_from_slice(&[0, 64]); // next header: hop-by-hop
    ip.extend_from_slice(&"fd00::1".parse::<std::net::Ipv6Addr>().unwrap().octets());
    ip.extend_from_slice(&"fd00::2".parse::<std::net::Ipv6Addr>().unwrap().octets());
    ip.extend_from_slice(&[17, 0, 1, 4, 0, 0, 0, 0]); // hop-by-hop: next UDP, PadN
    ip.extend_from_slice(&[0x13, 0x88, 0x00, 0x35]); // ports 5000 -> 53
    ip.extend_from_slice(&udp_len.to_be_bytes());
    ip.extend_from_slice(&[0, 0, b'a', b'b', b'c', b'd']);
    f.extend_from_slice(&ip);
    f
}

#[test]
fn mixed_stream_over_ipv4_is_fully_accounted() {
    let name = unique("mixed");
    let live = Live::start(&config(&name, ""));
    let to = live.addr(Encap::Vxlan, false);
    let tx = sender(to);
    let send = |payload: &[u8]| {
        tx.send_to(payload, to).unwrap();
    };

    let good = tcp4([10, 0, 0, 1], 40000, [10, 0, 0, 2], 443, b"hello");
    send(&vxlan(100, &good)); // 1 good
    let mut reserved = vxlan(100, &good);
    reserved[1..4].copy_from_slice(&[0xff, 0xff, 0xff]);
    reserved[7] = 0xff;
    send(&reserved); // 2 good: reserved bits are ignored
    let mut no_i_flag = vxlan(100, &good);
    no_i_flag[0] = 0x00;
    send(&no_i_flag); // bad flags
    send(&[0x08, 0, 0]); // too short
    send(&vxlan(100, &[])); // empty frame
    send(&vxlan(100, &good[..40])); // 3: cut inside the TCP header
    send(&vxlan(100, &good[..10])); // 4: cut inside Ethernet
    let jumbo = tcp4(
        [10, 0, 0, 1],
        40001,
        [10, 0, 0, 2],
        443,
        &vec![0x5a; 9001 - 54],
    );
    assert_eq!(jumbo.len(), 9001);
    send(&vxlan(100, &jumbo)); // 5: a 9,001-byte inner frame, whole
    send(&vec![0x08; 10_000]); // oversize: more than a 9,216-byte buffer
    send(&vxlan(100, &vlan_tagged(&[42]))); // 6
    send(&vxlan(100, &vlan_tagged(&[100, 200]))); // 7
    let (frag1, frag2) = ipv4_fragments();
    send(&vxlan(100, &frag1)); // 8
    send(&vxlan(100, &frag2)); // 9
    let mut arp = vec![0xff; 6];
    arp.extend_from_slice(&[2, 0, 0, 0, 0, 1, 0x08, 0x06]);
    arp.extend_from_slice(&[0u8; 28]);
    send(&vxlan(100, &arp)); // 10: non-IP frames reach modules too

    let report = live.finish_after(14);
    let c = &report.counts;
    assert_eq!(c.received, 14, "{}", counts_line(c));
    assert_eq!(c.dispatched, 10, "{}", counts_line(c));
    assert_eq!(c.dropped(DropReason::BadVxlanFlags), 1);
    assert_eq!(c.dropped(DropReason::TooShort), 1);
    assert_eq!(c.dropped(DropReason::EmptyFrame), 1);
    assert_eq!(c.dropped(DropReason::Oversize), 1);
    assert!(c.balanced(), "{}", counts_line(c));

    let seen = packets(&name);
    assert_eq!(seen.len(), 10);
    assert!(seen
        .iter()
        .all(|s| s.source == IpAddr::from([127, 0, 0, 1]) && s.vni == 100));
    let by_len = |len: usize| seen.iter().filter(move |s| s.len == len);
    assert_eq!(by_len(good.len()).count(), 2);
    let cut_tcp = by_len(40).next().unwrap();
    assert_eq!(cut_tcp.cut, Some(Layer::Tcp));
    assert_eq!(
        cut_tcp.flow.unwrap().dst_port,
        443,
        "ports survive a cut inside the TCP header"
    );
    assert_eq!(
        cut_tcp.ip_len,
        Some(45),
        "the IP length is the sender's, not the captured one"
    );
    assert_eq!(by_len(10).next().unwrap().cut, Some(Layer::Ethernet));
    let j = by_len(9001).next().expect("the jumbo frame arrived whole");
    assert_eq!(
        (j.orig_len, j.cut, j.payload.len()),
        (9001, None, 9001 - 54)
    );
    assert!(seen
        .iter()
        .any(|s| s.vlans == [42] && s.flow.is_some_and(|f| f.dst_port == 53)));
    assert!(seen
        .iter()
        .any(|s| s.vlans == [100, 200] && s.flow.is_some_and(|f| f.dst_port == 53)));
    let frags: Vec<_> = seen
        .iter()
        .filter(|s| s.flow.is_some_and(|f| f.dst == IpAddr::from([10, 0, 0, 6])))
        .collect();
    assert_eq!(frags.len(), 2);
    assert_eq!(
        frags
            .iter()
            .filter(|s| s.flow.unwrap().dst_port == 8000)
            .count(),
        1,
        "only the first fragment has ports"
    );
    assert_eq!(
        frags[0].shard, frags[1].shard,
        "fragments of one datagram meet on one shard"
    );
    assert!(seen
        .iter()
        .any(|s| s.ether_type == ether_type::ARP && s.flow.is_none()));
}

#[test]
fn ipv6_listener_and_ipv6_inner_packets() {
    let name = unique("v6");
    let live = Live::start(&config(&name, ""));
    let to = live.addr(Encap::Vxlan, true);
    let tx = sender(to);
    tx.send_to(&vxlan(6, &ipv6_with_extension()), to).unwrap();
    tx.send_to(&vxlan(6, &ipv6_with_extension()[..60]), to)
        .unwrap(); // cut inside the extension header
    tx.send_to(&[0u8; 4], to).unwrap();
    let report = live.finish_after(3);
    assert_eq!(
        (
            report.counts.dispatched,
            report.counts.dropped(DropReason::TooShort)
        ),
        (2, 1)
    );
    let seen = packets(&name);
    assert!(seen
        .iter()
        .all(|s| s.source == "::1".parse::<IpAddr>().unwrap() && s.vni == 6));
    let whole = seen
        .iter()
        .find(|s| s.cut.is_none())
        .expect("the whole packet");
    assert_eq!(whole.flow.unwrap().src_port, 5000);
    assert_eq!(whole.payload, b"abcd");
    assert_eq!(whole.ip_len, Some(40 + 8 + 12));
    assert_eq!(
        seen.iter().find(|s| s.cut.is_some()).unwrap().cut,
        Some(Layer::IpExtension)
    );
}

#[test]
fn refused_sources_and_static_sessions() {
    let name = unique("refused");
    // Loopback is outside this allowlist, but one session from it is configured explicitly.
    let extra = "[sessions]\nallow = [\"10.0.0.0/8\"]\n[[sessions.static]]\nsource = \"127.0.0.1\"\nvni = 7\n\
                 eni = \"eni-0123456789abcdef0\"\ntruncate = 60\nlabels = { env = \"test\" }\n";
    let live = Live::start(&config(&name, extra));
    let to = live.addr(Encap::Vxlan, false);
    let tx = sender(to);
    let frame = tcp4([10, 0, 0, 1], 1234, [10, 0, 0, 2], 80, &[0u8; 100]);
    for vni in [7, 8, 8, 9] {
        tx.send_to(&vxlan(vni, &frame), to).unwrap();
    }
    let report = live.finish_after(4);
    assert_eq!(report.counts.dispatched, 1);
    assert_eq!(report.counts.dropped(DropReason::SourceRefused), 3);
    let seen = packets(&name);
    assert_eq!(seen[0].eni.as_deref(), Some("eni-0123456789abcdef0"));
    assert_eq!(seen[0].session, "eni-0123456789abcdef0");
    assert_eq!(
        (seen[0].len, seen[0].orig_len),
        (60, frame.len() as u32),
        "session truncation keeps the original length"
    );
    assert_eq!(seen[0].cut, Some(Layer::Payload));
}

#[test]
fn learned_session_cap_and_global_truncation() {
    let name = unique("cap");
    let extra = "[sessions]\nmax_learned = 2\n[truncation]\nsnaplen = 64\n";
    let live = Live::start(&config(&name, extra));
    let to = live.addr(Encap::Vxlan, false);
    let tx = sender(to);
    let frame = tcp4([10, 0, 0, 1], 1234, [10, 0, 0, 2], 80, &[0u8; 500]);
    for vni in [1, 2, 3, 1] {
        tx.send_to(&vxlan(vni, &frame), to).unwrap();
    }
    let report = live.finish_after(4);
    assert_eq!(report.counts.dispatched, 3);
    assert_eq!(report.counts.dropped(DropReason::SessionTableFull), 1);
    assert_eq!(report.sessions.len(), 2);
    for s in packets(&name) {
        assert_eq!(
            (s.len, s.orig_len, s.ip_len),
            (64, frame.len() as u32, Some(540))
        );
    }
}

#[test]
fn geneve_from_a_gateway_load_balancer() {
    let name = unique("geneve");
    let live = Live::start(&config(&name, ""));
    let to = live.addr(Encap::Geneve, false);
    let tx = sender(to);
    let inner = udp4([172, 16, 11, 201], 36872, [1, 1, 1, 1], 53, b"dns?");
    // The mirror's own packet: IPv4/UDP to 4789/VXLAN from the source ENI 10.1.2.3.
    let mut mirror = Vec::new();
    etherparse::PacketBuilder::ipv4([10, 1, 2, 3], [10, 9, 9, 9], 64)
        .udp(40000, 4789)
        .write(&mut mirror, &vxlan(4242, &inner))
        .unwrap();
    // GENEVE with one 8-byte option (as GWLB sends its flow cookie), protocol IPv4.
    let mut geneve = vec![
        0x02, 0x00, 0x08, 0x00, 0, 0, 0, 0, 0x01, 0x08, 0x01, 0x01, 1, 2, 3, 4,
    ];
    geneve.extend_from_slice(&mirror);
    tx.send_to(&geneve, to).unwrap();
    tx.send_to(&geneve[..12], to).unwrap(); // options cut
    let report = live.finish_after(2);
    assert_eq!(report.counts.dispatched, 1);
    assert_eq!(report.counts.dropped(DropReason::BadGeneve), 1);
    let seen = packets(&name);
    assert_eq!(
        (seen[0].source, seen[0].vni),
        (IpAddr::from([10, 1, 2, 3]), 4242),
        "the session is the mirror source's, not the GWLB's"
    );
    assert_eq!(seen[0].payload, b"dns?");
}

#[test]
fn both_directions_of_a_connection_reach_one_module_instance() {
    let name = unique("symmetric");
    let live = Live::start(
        &config(&name, "")
            .replace("shards = 2", "shards = 4")
            .replace("workers = 2", "workers = 4"),
    );
    let to = live.addr(Encap::Vxlan, false);
    // Two senders, as if the outer source ports of the two directions differed: the kernel's reuseport
    // hash may put them on different workers.
    let (a, b) = (sender(to), sender(to));
    const CONNECTIONS: u16 = 200;
    for i in 0..CONNECTIONS {
        let fwd = tcp4([10, 0, 0, 1], 20000 + i, [10, 0, 0, 2], 443, b"request");
        let rev = tcp4([10, 0, 0, 2], 443, [10, 0, 0, 1], 20000 + i, b"response");
        a.send_to(&vxlan(1, &fwd), to).unwrap();
        b.send_to(&vxlan(1, &rev), to).unwrap();
        // Paced in bursts, so that the kernel's default socket buffers never overflow on a loaded
        // machine: what this test checks is steering, and a kernel drop would only make it flaky.
        if i % 25 == 24 {
            live.wait_received(u64::from(i + 1) * 2);
        }
    }
    let report = live.finish_after(u64::from(CONNECTIONS) * 2);
    assert_eq!(
        report.counts.dispatched,
        u64::from(CONNECTIONS) * 2,
        "{}",
        counts_line(&report.counts)
    );
    assert_connections_meet(&name, 4, CONNECTIONS, "shards");
}

/// Both directions of each of `connections` connections reached one and the same module instance,
/// and the connections were spread over all `shards` instances (`place` names them in messages).
fn assert_connections_meet(tap_name: &str, shards: usize, connections: u16, place: &str) {
    let mut shard_of: HashMap<FlowKey, HashSet<usize>> = HashMap::new();
    for s in packets_n(tap_name, shards) {
        shard_of
            .entry(s.flow.unwrap().canonical().0)
            .or_default()
            .insert(s.shard);
    }
    assert_eq!(shard_of.len(), usize::from(connections));
    assert!(
        shard_of.values().all(|shards| shards.len() == 1),
        "a connection was split across {place}"
    );
    let used: HashSet<usize> = shard_of.values().flatten().copied().collect();
    assert_eq!(used.len(), shards, "connections spread over all {place}");
}

fn packets_n(tap_name: &str, shards: usize) -> Vec<Seen> {
    let t = tap(tap_name);
    let t = t.lock().unwrap();
    assert_eq!(t.flushes, shards);
    t.packets.clone()
}

/// Run-to-completion: the kernel steers by the program attached to each SO_REUSEPORT group, and each
/// worker runs its own shard.
fn inline_config(tap: &str, workers: usize) -> String {
    format!(
        "[ingest]\nvxlan = [\"127.0.0.1:0\", \"[::1]:0\"]\nworkers = {workers}\nreceive_buffer_bytes = 0\n\
         [pipeline]\nshards = {workers}\ndispatch = \"inline\"\n[[module]]\nkind = \"recorder\"\ntap = \"{tap}\"\n"
    )
}

#[test]
fn inline_both_directions_from_many_outer_ports_meet_in_one_worker_over_ipv4_and_ipv6() {
    let name = unique("inline");
    let live = Live::start(&inline_config(&name, 4));
    assert!(
        live.ingest.is_inline(),
        "the kernel took the steering program"
    );
    // Eight senders per outer family: the two directions of a connection always leave from
    // different outer source ports, so the kernel's own reuseport hash would split them.
    let v4 = live.addr(Encap::Vxlan, false);
    let v6 = live.addr(Encap::Vxlan, true);
    let senders4: Vec<_> = (0..8).map(|_| sender(v4)).collect();
    let senders6: Vec<_> = (0..8).map(|_| sender(v6)).collect();
    const CONNECTIONS: u16 = 240;
    for i in 0..CONNECTIONS {
        let host = [10, 0, (i >> 8) as u8, i as u8];
        let (fwd, rev) = match i % 3 {
            0 => (
                tcp4(host, 20000 + i, [10, 9, 0, 2], 443, b"request"),
                tcp4([10, 9, 0, 2], 443, host, 20000 + i, b"response"),
            ),
            1 => (
                udp4(host, 5353, [10, 9, 0, 53], 53, b"query"),
                udp4([10, 9, 0, 53], 53, host, 5353, b"answer"),
            ),
            _ => {
                let mut a = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
                a[14..].copy_from_slice(&i.to_be_bytes());
                let b = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
                (
                    udp6(a, 40000 + i, b, 53, b"query"),
                    udp6(b, 53, a, 40000 + i, b"answer"),
                )
            }
        };
        let (senders, to) = if i % 2 == 0 {
            (&senders4, v4)
        } else {
            (&senders6, v6)
        };
        let k = usize::from(i) % 8;
        senders[k].send_to(&vxlan(1, &fwd), to).unwrap();
        senders[(k + 1 + usize::from(i / 8) % 7) % 8]
            .send_to(&vxlan(1, &rev), to)
            .unwrap();
        if i % 25 == 24 {
            live.wait_received(u64::from(i + 1) * 2);
        }
    }
    let report = live.finish_after(u64::from(CONNECTIONS) * 2);
    let c = &report.counts;
    assert_eq!(c.received, u64::from(CONNECTIONS) * 2, "{}", counts_line(c));
    assert_eq!(c.dispatched, c.received, "{}", counts_line(c));
    assert_eq!(c.dropped_total(), 0, "{}", counts_line(c));
    assert_eq!(report.shard_packets.iter().sum::<u64>(), c.dispatched);
    assert_connections_meet(&name, 4, CONNECTIONS, "workers");
    let threads = tap(&name).lock().unwrap().threads.clone();
    assert!(
        threads.iter().all(|t| t.starts_with("vxtap-rx-")),
        "modules ran on the receive workers, not on shard threads: {threads:?}"
    );
}

#[test]
fn auto_dispatch_runs_inline_by_default_and_hands_off_with_geneve() {
    // Twenty datagrams of one session, every one dispatched.
    let twenty = |live: Live| {
        let to = live.addr(Encap::Vxlan, false);
        let s = sender(to);
        for i in 0..20u16 {
            s.send_to(
                &vxlan(3, &udp4([10, 0, 0, 1], i, [10, 0, 0, 2], 53, b"q")),
                to,
            )
            .unwrap();
        }
        let report = live.finish_after(20);
        assert_eq!(
            report.counts.dispatched,
            20,
            "{}",
            counts_line(&report.counts)
        );
    };
    let name = unique("auto");
    let plain = format!(
        "[ingest]\nvxlan = [\"127.0.0.1:0\"]\nreceive_buffer_bytes = 0\n[[module]]\nkind = \"recorder\"\ntap = \"{name}\"\n"
    );
    let live = Live::start(&plain);
    assert!(
        live.ingest.is_inline(),
        "shards and workers at their defaults"
    );
    twenty(live);

    let name = unique("auto-geneve");
    let geneve = format!(
        "[ingest]\nvxlan = [\"127.0.0.1:0\"]\ngeneve = [\"127.0.0.1:0\"]\nreceive_buffer_bytes = 0\n\
         [[module]]\nkind = \"recorder\"\ntap = \"{name}\"\n"
    );
    let live = Live::start(&geneve);
    assert!(!live.ingest.is_inline(), "GENEVE listeners hand off");
    twenty(live);
    let threads = tap(&name).lock().unwrap().threads.clone();
    assert!(
        threads.iter().all(|t| t.starts_with("vxtap-shard-")),
        "{threads:?}"
    );
}
