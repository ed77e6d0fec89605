//! The `forward` module end to end, on real sockets: VXLAN re-send from one live pipeline to a second
//! one (same packets; a filter and a VNI map), and PCAP-over-IP to TCP clients on loopback (tshark
//! reads the stream back as the pcap module's packets; a client that stops reading is cut off while
//! the pipeline goes on). The TAP output, which needs a network namespace, is in tests/forward_tap.rs.
//!
//! tshark is needed for the PCAP-over-IP comparison: without it that test is skipped with a notice,
//! except under CI=true, where it fails.

mod common;

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use common::*;
use std::sync::Arc;
use vxtap::pipeline::{Encap, ShardCounters};

fn live_config(tap: &str, extra: &str) -> String {
    format!(
        "[ingest]\nvxlan = [\"127.0.0.1:0\"]\nworkers = 2\n[pipeline]\nshards = 2\n\
         [[module]]\nkind = \"recorder\"\ntap = \"{tap}\"\n{extra}"
    )
}

/// Mixed traffic over four VNIs: TCP to 443 and 80 both ways, UDP 53, several flows each.
fn traffic() -> Vec<(u32, Vec<u8>)> {
    let mut out = Vec::new();
    for i in 0..160u16 {
        let vni = 7 + u32::from(i % 4);
        let client = [10, 0, (i % 5) as u8, 1];
        let server = [10, 9, 0, 2];
        let sport = 40_000 + i % 11;
        let payload = vec![i as u8; 40 + usize::from(i % 7) * 100];
        let frame = match i % 4 {
            0 => tcp4(client, sport, server, 443, &payload),
            1 => tcp4(server, 443, client, sport, &payload),
            2 => tcp4(client, sport, server, 80, &payload),
            _ => udp4(client, sport, server, 53, &payload),
        };
        out.push((vni, frame));
    }
    out
}

/// What must be equal between the two pipelines: everything but the receive time and the shard.
fn essence(seen: &[Seen]) -> Vec<String> {
    let mut v: Vec<String> = seen
        .iter()
        .map(|s| {
            format!(
                "{} {} {:?} {} {} {:?}",
                s.session, s.vni, s.flow, s.len, s.orig_len, s.payload
            )
        })
        .collect();
    v.sort();
    v
}

fn module_totals(live: &Live, index: usize) -> (u64, u64, u64, u64) {
    totals(live.pipeline.shard_counters(), index)
}

fn totals(counters: &[Arc<ShardCounters>], index: usize) -> (u64, u64, u64, u64) {
    counters.iter().fold((0, 0, 0, 0), |a, s| {
        let c = &s.modules[index];
        (
            a.0 + c.packets.load(Relaxed),
            a.1 + c.events.load(Relaxed),
            a.2 + c.errors.load(Relaxed),
            a.3 + c.drops.load(Relaxed),
        )
    })
}

/// Sends `traffic` to `live`, paced so that loopback's receive buffers never overflow.
fn send_all(live: &Live, traffic: &[(u32, Vec<u8>)]) {
    let to = live.addr(Encap::Vxlan, false);
    let tx = sender(to);
    for (i, (vni, frame)) in traffic.iter().enumerate() {
        tx.send_to(&vxlan(*vni, frame), to).unwrap();
        if i % 32 == 31 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// Runs `traffic` through a first pipeline whose forward output (`output`, a TOML table body without
/// `to`) re-sends to a second one; returns what each pipeline's recorder saw and the forwarder's
/// module counters.
fn through_two(output: &str, expect_second: u64) -> (Vec<Seen>, Vec<Seen>, (u64, u64, u64, u64)) {
    let (first_tap, second_tap) = (unique("fwd-first"), unique("fwd-second"));
    let second = Live::start(&live_config(&second_tap, ""));
    let to = second.addr(Encap::Vxlan, false);
    let first = Live::start(&live_config(
        &first_tap,
        &format!(
            "[[module]]\nkind = \"forward\"\n[[module.output]]\ntype = \"vxlan\"\nto = [\"{to}\"]\n{output}\n"
        ),
    ));
    let traffic = traffic();
    send_all(&first, &traffic);
    first.wait_received(traffic.len() as u64);
    // Forwarded datagrams leave at the end of each batch; wait for the second pipeline, then stop.
    second.wait_received(expect_second);
    let counters = first.pipeline.shard_counters().to_vec();
    let report = first.finish_after(traffic.len() as u64);
    let totals = totals(&counters, 1);
    assert_eq!(report.counts.received, traffic.len() as u64);
    let report2 = second.finish_after(expect_second);
    assert_eq!(
        report2.counts.received,
        expect_second,
        "{}",
        counts_line(&report2.counts)
    );
    let a = tap(&first_tap).lock().unwrap().packets.clone();
    let b = tap(&second_tap).lock().unwrap().packets.clone();
    (a, b, totals)
}

#[test]
fn vxlan_resend_gives_a_second_pipeline_the_same_packets() {
    let n = traffic().len() as u64;
    let (first, second, (packets, wrote, errors, drops)) = through_two("", n);
    assert_eq!(first.len() as u64, n);
    assert_eq!(essence(&first), essence(&second));
    assert_eq!((packets, wrote, errors, drops), (n, n, 0, 0));
}

#[test]
fn a_filter_and_a_vni_map_select_and_relabel() {
    let traffic = traffic();
    let selected = traffic
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 4 < 2)
        .count() as u64;
    let (first, second, (_, wrote, errors, drops)) = through_two(
        "filter = \"tcp port 443\"\nvni = { \"127.0.0.1/7\" = 77 }",
        selected,
    );
    assert_eq!((wrote, errors, drops), (selected, 0, 0));
    let expected: Vec<Seen> = first
        .into_iter()
        .filter(|s| {
            s.flow
                .is_some_and(|f| f.protocol == 6 && (f.src_port == 443 || f.dst_port == 443))
        })
        .map(|mut s| {
            if s.vni == 7 {
                s.vni = 77;
                s.session = "127.0.0.1/77".into();
            }
            s
        })
        .collect();
    assert_eq!(expected.len() as u64, selected);
    assert_eq!(essence(&expected), essence(&second));
    assert!(second.iter().any(|s| s.vni == 77) && !second.iter().any(|s| s.vni == 7));
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn temp_dir(name: &str) -> tempfile::TempDir {
    common::temp_dir(&format!("vxtap-fwd-{name}-"))
}

/// Reads from `stream` until EOF or an error, for at most `limit`.
fn read_to_end(mut stream: TcpStream, limit: Duration) -> Vec<u8> {
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let deadline = Instant::now() + limit;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    while Instant::now() < deadline {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
    }
    out
}

/// Connects and waits for the 24-byte global header, which the server writes as it accepts.
fn connect(addr: SocketAddr) -> (TcpStream, [u8; 24]) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut header = [0u8; 24];
    s.read_exact(&mut header).unwrap();
    // The shards look at the client count, which the server publishes right after this write.
    std::thread::sleep(Duration::from_millis(50));
    (s, header)
}

/// Records of a classic pcap stream (little-endian): (seconds, microseconds, bytes), in order.
fn records(stream: &[u8]) -> Vec<(u32, u32, Vec<u8>)> {
    let mut out = Vec::new();
    let mut at = 24;
    while at + 16 <= stream.len() {
        let le = |i: usize| u32::from_le_bytes(stream[i..i + 4].try_into().unwrap());
        let (sec, frac, caplen) = (le(at), le(at + 4), le(at + 8) as usize);
        let Some(data) = stream.get(at + 16..at + 16 + caplen) else {
            break;
        };
        out.push((sec, frac, data.to_vec()));
        at += 16 + caplen;
    }
    out
}

/// Rewrites any capture tshark reads as a classic microsecond pcap, and returns its records sorted.
fn via_tshark(input: &Path, dir: &Path) -> Vec<(u32, u32, Vec<u8>)> {
    let out = dir.join(format!(
        "{}.via-tshark.pcap",
        input.file_name().unwrap().to_string_lossy()
    ));
    let status = Command::new("tshark")
        .arg("-r")
        .arg(input)
        .args(["-F", "pcap", "-w"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "tshark -r {}: {}",
        input.display(),
        String::from_utf8_lossy(&status.stderr)
    );
    let bytes = std::fs::read(&out).unwrap();
    assert_eq!(
        &bytes[..4],
        &[0xd4, 0xc3, 0xb2, 0xa1],
        "tshark writes microsecond pcap"
    );
    let mut r = records(&bytes);
    r.sort();
    r
}

#[test]
fn pcap_over_ip_streams_what_the_pcap_module_writes() {
    if !tshark::available() {
        return;
    }
    let tmp = temp_dir("poi");
    let dir = tmp.path();
    let port = free_port();
    let recorder = unique("poi");
    let live = Live::start(&live_config(
        &recorder,
        &format!(
            "[[module]]\nkind = \"pcap\"\n[module.output]\ndir = \"{}\"\n\
             [[module]]\nkind = \"forward\"\n[[module.output]]\ntype = \"pcap_over_ip\"\n\
             listen = \"127.0.0.1:{port}\"\n",
            dir.display()
        ),
    ));
    let (client, header) = connect(format!("127.0.0.1:{port}").parse().unwrap());
    assert_eq!(&header[..4], &[0xd4, 0xc3, 0xb2, 0xa1]);
    let reader = std::thread::spawn(move || read_to_end(client, Duration::from_secs(20)));
    let traffic = traffic();
    send_all(&live, &traffic);
    let report = live.finish_after(traffic.len() as u64);
    assert_eq!(report.counts.received, traffic.len() as u64);
    // The server drains its queues, flushes and closes when the modules are gone: EOF.
    let mut stream = header.to_vec();
    stream.extend(reader.join().unwrap());
    let stream_file = dir.join("stream.pcap-over-ip");
    std::fs::write(&stream_file, &stream).unwrap();
    let from_stream = via_tshark(&stream_file, dir);
    assert_eq!(from_stream.len(), traffic.len());

    let mut from_pcap = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "pcapng") {
            from_pcap.extend(via_tshark(&path, dir));
        }
    }
    from_pcap.sort();
    assert_eq!(from_pcap.len(), traffic.len());
    assert!(
        from_stream == from_pcap,
        "the stream and the pcap files differ"
    );
}

#[test]
fn a_client_that_stops_reading_is_cut_off_and_the_pipeline_goes_on() {
    let port = free_port();
    let recorder = unique("poi-slow");
    let live = Live::start(&live_config(
        &recorder,
        &format!(
            "[[module]]\nkind = \"forward\"\n[[module.output]]\ntype = \"pcap_over_ip\"\n\
             listen = \"127.0.0.1:{port}\"\nclient_buffer = 65536\n"
        ),
    ));
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    // The stuck client: a small receive window, and it never reads after the header.
    let stuck = {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.set_recv_buffer_size(4096).unwrap();
        s.connect(&addr.into()).unwrap();
        let mut s: TcpStream = s.into();
        let mut header = [0u8; 24];
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.read_exact(&mut header).unwrap();
        s
    };
    let (good, good_header) = connect(addr);
    let reader = std::thread::spawn(move || read_to_end(good, Duration::from_secs(30)));
    // About 6 MB: far more than the stuck client's socket buffers and its 64 KiB in the server.
    let frame = tcp4([10, 0, 0, 1], 1234, [10, 0, 0, 2], 80, &[0x5a; 1400]);
    let to = live.addr(Encap::Vxlan, false);
    let tx = sender(to);
    let n = 4000u64;
    for i in 0..n {
        tx.send_to(&vxlan(9, &frame), to).unwrap();
        if i % 32 == 31 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    live.wait_received(n);
    let deadline = Instant::now() + Duration::from_secs(10);
    while module_totals(&live, 1).3 == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let counters = live.pipeline.shard_counters().to_vec();
    let report = live.finish_after(n);
    let (packets, wrote, errors, drops) = totals(&counters, 1);
    let c = &report.counts;
    assert_eq!(
        c.received,
        c.dispatched + c.dropped_total(),
        "{}",
        counts_line(c)
    );
    assert_eq!(packets, c.dispatched);
    assert_eq!(errors, 0);
    assert!(
        drops >= 1,
        "the stuck client is counted as cut off: {drops}"
    );
    // The recorder saw every dispatched packet: nothing waited for the stuck client.
    assert_eq!(
        tap(&recorder).lock().unwrap().packets.len() as u64,
        c.dispatched
    );
    // The reading client got every record handed to the server.
    let mut good_stream = good_header.to_vec();
    good_stream.extend(reader.join().unwrap());
    assert_eq!(records(&good_stream).len() as u64, wrote);
    // The stuck client's connection was closed: what it holds ends in EOF (or a reset).
    let rest = read_to_end(stuck, Duration::from_secs(10));
    assert!((rest.len() as u64) < 24 + n * (16 + frame.len() as u64));
}

#[test]
fn the_pps_cap_runs_on_packet_time() {
    // Offline, 2,000 packets 1 ms apart (2 s of packet time), one shard, a cap of 100/s: 200 pass,
    // plus the 0.1 s burst the cap allows; the rest are counted drops. Packet time makes this exact
    // however fast the pipeline runs.
    let receiver = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let frame = tcp4([10, 0, 0, 1], 1234, [10, 0, 0, 2], 443, &[7; 64]);
    let datagrams: Vec<Datagram> = (0..2000u64)
        .map(|i| {
            (
                vxtap::base::Timestamp::from_nanos(1_700_000_000_000_000_000 + i * 1_000_000),
                "10.1.1.1".parse().unwrap(),
                Encap::Vxlan,
                vxlan(5, &frame),
            )
        })
        .collect();
    let config = format!(
        "[pipeline]\nshards = 1\n[[module]]\nkind = \"forward\"\n[[module.output]]\ntype = \"vxlan\"\n\
         to = [\"{}\"]\npps = 100\nsnaplen = 60\n",
        receiver.local_addr().unwrap()
    );
    let totals = run_offline(&config, &datagrams);
    let (packets, wrote, errors, drops) = totals[0];
    assert_eq!(packets, 2000);
    assert_eq!(errors, 0);
    assert_eq!(wrote + drops, 2000);
    assert!((200..=211).contains(&wrote), "{wrote} passed the cap");
    // snaplen: the datagrams carry 60 bytes of frame after the 8-byte VXLAN header.
    receiver
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut buf = [0u8; 2048];
    let n = receiver.recv(&mut buf).unwrap();
    assert_eq!(n, 8 + 60);
    assert_eq!(&buf[..8], &[0x08, 0, 0, 0, 0, 0, 5, 0]);
    assert_eq!(&buf[8..n], &frame[..60]);
}

#[test]
fn both_directions_of_a_flow_leave_from_one_source_port() {
    // What a downstream NLB needs: the outer 5-tuple of both directions of a flow is the same, and
    // flows spread over several ports.
    let receiver = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    receiver
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut datagrams: Vec<Datagram> = Vec::new();
    for flow in 0..40u16 {
        let client = [10, 0, 0, 1 + (flow % 7) as u8];
        let server = [10, 9, 0, 2];
        for i in 0..4u64 {
            let frame = if i % 2 == 0 {
                tcp4(client, 30_000 + flow, server, 443, &[1; 20])
            } else {
                tcp4(server, 443, client, 30_000 + flow, &[2; 20])
            };
            datagrams.push((
                vxtap::base::Timestamp::from_nanos(
                    1_700_000_000_000_000_000 + (u64::from(flow) * 4 + i) * 1000,
                ),
                "10.1.1.1".parse().unwrap(),
                Encap::Vxlan,
                vxlan(5, &frame),
            ));
        }
    }
    let config = format!(
        "[pipeline]\nshards = 2\n[[module]]\nkind = \"forward\"\n[[module.output]]\ntype = \"vxlan\"\n\
         to = [\"{}\"]\nsource_ports = 8\n",
        receiver.local_addr().unwrap()
    );
    let totals = run_offline(&config, &datagrams);
    assert_eq!(totals[0].1, datagrams.len() as u64);
    let mut port_of_flow: std::collections::HashMap<u16, std::collections::BTreeSet<u16>> =
        Default::default();
    let mut buf = [0u8; 2048];
    for _ in 0..datagrams.len() {
        let (n, from) = receiver.recv_from(&mut buf).unwrap();
        // The client port: whichever of the two inner TCP ports is not 443.
        let at = 8 + 14 + 20;
        let (sport, dport) = (
            u16::from_be_bytes([buf[at], buf[at + 1]]),
            u16::from_be_bytes([buf[at + 2], buf[at + 3]]),
        );
        assert!(n > at + 4);
        let client_port = if sport == 443 { dport } else { sport };
        port_of_flow
            .entry(client_port)
            .or_default()
            .insert(from.port());
    }
    assert_eq!(port_of_flow.len(), 40);
    assert!(
        port_of_flow.values().all(|ports| ports.len() == 1),
        "{port_of_flow:?}"
    );
    let used: std::collections::BTreeSet<u16> = port_of_flow.values().flatten().copied().collect();
    assert!(used.len() >= 4, "flows spread over source ports: {used:?}");
}
