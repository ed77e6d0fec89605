//! `vxtap send` against real receivers on loopback: a live pipeline gets the same per-flow packet and
//! byte counts as an offline replay of the same capture; source ports follow the flow; pacing holds.

mod common;

use std::collections::BTreeMap;
use std::net::UdpSocket;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::*;
use vxtap::base::FlowKey;
use vxtap::config::Config;
use vxtap::pipeline::Encap;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn vxtap_send(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_vxtap"))
        .current_dir(ROOT)
        .arg("send")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Per (VNI, flow in both directions as one): packets, IP bytes (the IP header's length, which
/// survives truncation) and frame bytes as received.
type PerFlow = BTreeMap<(u32, Option<FlowKey>), (u64, u64, u64)>;

fn per_flow(seen: &[Seen], with_vni: bool) -> PerFlow {
    let mut m = PerFlow::new();
    for s in seen {
        let key = (
            if with_vni { s.vni } else { 0 },
            s.flow.map(|f| f.canonical().0),
        );
        let e = m.entry(key).or_default();
        e.0 += 1;
        e.1 += u64::from(s.ip_len.unwrap_or(s.orig_len));
        e.2 += u64::from(s.orig_len);
    }
    m
}

/// Both pipelines accept any source: a capture's outer sources are whatever they were, while live
/// every datagram comes from 127.0.0.1.
const ALLOW_ALL: &str = "[sessions]\nallow = [\"0.0.0.0/0\", \"::/0\"]\n";

fn replay_seen(file: &str) -> (vxtap::ingest::replay::ReplayReport, Vec<Seen>) {
    let tap_name = unique("replay");
    let text = format!(
        "{ALLOW_ALL}[pipeline]\nshards = 2\n[[module]]\nkind = \"recorder\"\ntap = \"{tap_name}\"\n"
    );
    let report = vxtap::ingest::replay::replay(
        Config::parse(&text, "replay.toml").unwrap(),
        registry(),
        &[Path::new(ROOT).join(file)],
    )
    .unwrap();
    let seen = std::mem::take(&mut tap(&tap_name).lock().unwrap().packets);
    (report, seen)
}

fn live_seen(
    file: &str,
    send_args: &[&str],
    expect: u64,
) -> (vxtap::pipeline::PipelineReport, Vec<Seen>) {
    let tap_name = unique("live");
    let live = Live::start(&format!(
        "{ALLOW_ALL}[ingest]\nvxlan = [\"127.0.0.1:0\"]\nworkers = 2\n[pipeline]\nshards = 2\n\
         [[module]]\nkind = \"recorder\"\ntap = \"{tap_name}\"\n"
    ));
    let to = live.addr(Encap::Vxlan, false).to_string();
    let mut args = vec![file, "--to", to.as_str()];
    args.extend_from_slice(send_args);
    let out = vxtap_send(&args);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        stderr.contains(&format!("sent {expect} datagrams")),
        "{stderr}"
    );
    let report = live.finish_after(expect);
    let seen = std::mem::take(&mut tap(&tap_name).lock().unwrap().packets);
    (report, seen)
}

#[test]
fn live_equals_replay_for_mirror_traffic() {
    let (replayed, replay) = replay_seen("pcaps/aws-mirror.pcap");
    // 53 records: one is not a frame; the other 52 are datagrams, sent as captured.
    let (report, live) = live_seen("pcaps/aws-mirror.pcap", &["--pps", "2000"], 52);
    assert_eq!(
        report.counts.received,
        52,
        "{}",
        counts_line(&report.counts)
    );
    assert_eq!(per_flow(&live, true), per_flow(&replay, true));
    assert_eq!(
        report.counts.dispatched,
        replayed.pipeline.counts.dispatched
    );
    for reason in ["too_short", "bad_vxlan_flags", "empty_frame"] {
        assert!(
            report.counts.drops_by_reason().contains(&(reason, 1)),
            "{}",
            counts_line(&report.counts)
        );
    }
    assert!(per_flow(&live, true).len() > 10);
}

#[test]
fn live_equals_replay_for_gwlb_traffic_unwrapped() {
    let (_, replay) = replay_seen("pcaps/gwlb-geneve.pcapng");
    let (_, live) = live_seen("pcaps/gwlb-geneve.pcapng", &["--top-speed"], 52);
    assert_eq!(per_flow(&live, true), per_flow(&replay, true));
}

#[test]
fn live_equals_replay_for_plain_frames_wrapped_in_vxlan() {
    let (_, replay) = replay_seen("pcaps/plain.pcapng");
    let (report, live) = live_seen(
        "pcaps/plain.pcapng",
        &["--vni", "4242", "--pps", "2000"],
        47,
    );
    assert!(live
        .iter()
        .all(|s| s.vni == 4242 && s.session == "127.0.0.1/4242"));
    assert_eq!(report.counts.dispatched, 47);
    // Frames the capture's snap length cut arrive as cut: packets and IP bytes (the IP header's own
    // length) agree; the frame bytes differ because replay knows the original length and a VXLAN
    // receiver cannot.
    let strip =
        |m: PerFlow| -> BTreeMap<_, _> { m.into_iter().map(|(k, v)| (k, (v.0, v.1))).collect() };
    assert_eq!(
        strip(per_flow(&live, false)),
        strip(per_flow(&replay, false))
    );
}

/// A bare UDP receiver: (source port, payload) of each datagram until `n` arrived or 5 s passed.
fn receive(socket: &UdpSocket, n: usize) -> Vec<(u16, Vec<u8>)> {
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = vec![0u8; 65536];
    let mut out = Vec::new();
    while out.len() < n && Instant::now() < deadline {
        if let Ok((len, from)) = socket.recv_from(&mut buf) {
            out.push((from.port(), buf[..len].to_vec()));
        }
    }
    out
}

#[test]
fn source_ports_follow_the_flow_or_are_fixed() {
    let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let to = rx.local_addr().unwrap().to_string();
    vxtap_send(&[
        "pcaps/plain.pcapng",
        "--to",
        &to,
        "--top-speed",
        "--vni",
        "9",
    ]);
    let got = receive(&rx, 47);
    assert_eq!(got.len(), 47);
    let mut ports_of_flow: BTreeMap<FlowKey, std::collections::BTreeSet<u16>> = BTreeMap::new();
    for (port, payload) in &got {
        assert_eq!(
            &payload[..8],
            &[0x08, 0, 0, 0, 0, 0, 9, 0],
            "VXLAN, I flag, VNI 9"
        );
        let layers = vxtap::wire::inner::dissect(&payload[8..]);
        if let (Some(ip), Some((sp, dp))) = (layers.ip, layers.transport.ports()) {
            if ip.fragment == vxtap::wire::inner::Fragment::None {
                let key = FlowKey {
                    src: ip.src,
                    dst: ip.dst,
                    src_port: sp,
                    dst_port: dp,
                    protocol: ip.protocol,
                };
                ports_of_flow
                    .entry(key.canonical().0)
                    .or_default()
                    .insert(*port);
            }
        }
    }
    assert!(
        ports_of_flow.values().all(|p| p.len() == 1),
        "one port per flow, both directions: {ports_of_flow:?}"
    );
    let distinct: std::collections::BTreeSet<u16> =
        ports_of_flow.values().flatten().copied().collect();
    assert!(distinct.len() > 2, "flows spread over ports: {distinct:?}");

    let fixed = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let port = fixed.to_string();
    vxtap_send(&[
        "pcaps/plain.pcapng",
        "--to",
        &to,
        "--top-speed",
        "--source-port",
        &port,
        "--batch",
        "4",
    ]);
    let got = receive(&rx, 47);
    assert_eq!(got.len(), 47);
    assert!(got.iter().all(|(p, _)| *p == fixed));
}

#[test]
fn pacing_and_loops() {
    let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let to = rx.local_addr().unwrap().to_string();
    // The app session's frames span 1.134 s of capture time: at speed 8, at least 0.14 s.
    let start = Instant::now();
    let out = vxtap_send(&["pcaps/plain-sll.pcap", "--to", &to, "--speed", "8"]);
    assert!(
        start.elapsed() >= Duration::from_millis(140),
        "{:?}",
        start.elapsed()
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("sent 12 datagrams"));
    assert_eq!(receive(&rx, 12).len(), 12);
    // 36 datagrams at 100 per second: at least 0.35 s.
    let start = Instant::now();
    let out = vxtap_send(&[
        "pcaps/plain-sll.pcap",
        "--to",
        &to,
        "--pps",
        "100",
        "--loop",
        "3",
    ]);
    assert!(
        start.elapsed() >= Duration::from_millis(350),
        "{:?}",
        start.elapsed()
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("sent 36 datagrams"));
    assert_eq!(receive(&rx, 36).len(), 36);
}

#[test]
fn bad_arguments_are_clear_errors() {
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_vxtap"))
            .current_dir(ROOT)
            .arg("send")
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    let e = run(&[
        "pcaps/plain.pcapng",
        "--to",
        "127.0.0.1:9",
        "--vni",
        "16777216",
    ]);
    assert!(e.contains("VNI 16777216 does not fit in 24 bits"), "{e}");
    let e = run(&["pcaps/plain.pcapng", "--to", "nowhere"]);
    assert!(e.contains("--to nowhere"), "{e}");
    let e = run(&[
        "pcaps/plain.pcapng",
        "--to",
        "127.0.0.1:9",
        "--pps",
        "5",
        "--top-speed",
    ]);
    assert!(e.contains("cannot be used with"), "{e}");
    let e = run(&["README.md", "--to", "127.0.0.1:9"]);
    assert!(e.contains("README.md: not a pcap or pcapng file"), "{e}");
}

#[test]
fn sends_to_an_ipv6_receiver() {
    let rx = match UdpSocket::bind("[::1]:0") {
        Ok(rx) => rx,
        Err(e) => return eprintln!("skipped: no IPv6 loopback ({e})"),
    };
    let to = rx.local_addr().unwrap().to_string();
    let out = vxtap_send(&["pcaps/plain-sll.pcap", "--to", &to, "--top-speed"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("sent 12 datagrams"));
    let got = receive(&rx, 12);
    assert_eq!(got.len(), 12);
    // VXLAN around the cooked frames, now Ethernet: the app session's IPv4, IPv6 and VLAN frames.
    let mut types: Vec<u16> = got
        .iter()
        .inspect(|(_, p)| assert_eq!(&p[..8], &[0x08, 0, 0, 0, 0, 0, 1, 0]))
        .map(|(_, p)| u16::from_be_bytes([p[8 + 12], p[8 + 13]]))
        .collect();
    types.sort_unstable();
    types.dedup();
    assert_eq!(types, [0x0800, 0x8100, 0x86dd]);
}
