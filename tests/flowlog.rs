//! The flowlog module end to end: captures and crafted traffic through the pipeline core, records read
//! back from the files the module wrote and checked field by field. Per-direction packet and IP byte
//! counts agree with Zeek's conn.log baselines for the same captures.

mod common;

use std::io::Read;
use std::path::Path;

use common::*;
use vxtap::base::Timestamp;
use vxtap::config::Config;
use vxtap::pipeline::Encap;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/pcaps/third-party/");

fn temp_dir(name: &str) -> tempfile::TempDir {
    common::temp_dir(&format!("vxtap-flowlog-{name}-"))
}

fn read_text(p: &Path) -> String {
    let bytes = std::fs::read(p).unwrap();
    if p.extension().is_some_and(|e| e == "gz") {
        let mut s = String::new();
        flate2::read::GzDecoder::new(&bytes[..])
            .read_to_string(&mut s)
            .unwrap();
        s
    } else {
        String::from_utf8(bytes).unwrap()
    }
}

/// Records of every file (header lines checked and removed), in file order.
fn records(dir: &Path, header: Option<&str>) -> Vec<String> {
    let mut out = Vec::new();
    for f in common::files_under(dir) {
        let text = read_text(&f);
        let mut lines = text.lines();
        if let Some(h) = header {
            assert_eq!(lines.next(), Some(h), "{}: header line", f.display());
        }
        out.extend(lines.map(str::to_owned));
    }
    out
}

const V2_HEADER: &str = "version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status";

/// Runs `datagrams` offline; `config` configures one flowlog module, first. Returns its counters:
/// (packets, drops, errors).
fn run(config: &str, datagrams: &[Datagram]) -> Run {
    let (packets, _, errors, drops) = run_offline(config, datagrams)[0];
    Run {
        counters: (packets, drops, errors),
    }
}

struct Run {
    counters: (u64, u64, u64),
}

fn capture(name: &str) -> Vec<Datagram> {
    capture_datagrams(&format!("{DIR}{name}"))
}

/// From a Zeek conn.log baseline, the connection whose originator is `orig`:
/// (orig_pkts, orig_ip_bytes, resp_pkts, resp_ip_bytes).
fn zeek_counts(log: &str, orig: &str, proto: &str) -> (u64, u64, u64, u64) {
    let text = std::fs::read_to_string(format!("{DIR}{log}")).unwrap();
    let header: Vec<&str> = text
        .lines()
        .find_map(|l| l.strip_prefix("#fields\t"))
        .unwrap()
        .split('\t')
        .collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let row: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split('\t').collect::<Vec<_>>())
        .find(|r| r[col("id.orig_h")] == orig && r[col("proto")] == proto)
        .unwrap();
    let n = |name: &str| row[col(name)].parse().unwrap();
    (
        n("orig_pkts"),
        n("orig_ip_bytes"),
        n("resp_pkts"),
        n("resp_ip_bytes"),
    )
}

/// Packets and bytes (fields 8 and 9 of the default format) of the record from `src` to `dst`.
fn record_counts(records: &[String], src: &str, dst: &str) -> (u64, u64) {
    let r = records
        .iter()
        .map(|l| fields(l))
        .find(|f| f[3] == src && f[4] == dst)
        .unwrap_or_else(|| panic!("no record {src} -> {dst} in {records:?}"));
    (r[8].parse().unwrap(), r[9].parse().unwrap())
}

fn module(dir: &Path, extra: &str) -> String {
    format!(
        "[pipeline]\nshards = 1\n[[module]]\nkind = \"flowlog\"\n{extra}\n[module.output]\ndir = \"{}\"\nrotate_secs = 0\n",
        dir.display()
    )
}

#[test]
fn icmp_between_two_vxlan_endpoints_matches_zeek() {
    let tmp = temp_dir("icmp");
    let dir = tmp.path();
    let r = run(&module(dir, ""), &capture("vxlan.pcap"));
    let mut got = records(dir, Some(V2_HEADER));
    got.sort();
    // Zeek: 10.0.0.1 -> 10.0.0.2 ICMP, 4 packets / 336 IP bytes each way. Each direction arrives in its
    // own (learned) session, so each record is one direction of one interface; nothing configured
    // names the account or the ENI, hence `-`. ARP has no record.
    assert_eq!(
        got,
        [
            "2 - - 10.0.0.1 10.0.0.2 0 0 1 4 336 1467818432 1467818435 ACCEPT OK",
            "2 - - 10.0.0.2 10.0.0.1 0 0 1 4 336 1467818432 1467818435 ACCEPT OK",
        ]
    );
    assert_eq!(r.counters, (10, 0, 0));
    let (op, ob, rp, rb) = zeek_counts("vxlan.zeek-conn.log", "10.0.0.1", "icmp");
    assert_eq!(record_counts(&got, "10.0.0.1", "10.0.0.2"), (op, ob));
    assert_eq!(record_counts(&got, "10.0.0.2", "10.0.0.1"), (rp, rb));
}

#[test]
fn gwlb_dns_counts_ip_bytes_from_the_header_despite_truncation() {
    let tmp = temp_dir("dns");
    let dir = tmp.path();
    let format =
        "${version} ${interface-id} ${srcaddr} ${dstaddr} ${srcport} ${dstport} ${protocol} \
${packets} ${bytes} ${start} ${end} ${type} ${tcp-flags} ${flow-direction} ${log-status}";
    let config = format!(
        "[[sessions.static]]\nsource = \"127.0.0.1\"\nvni = 4242\neni = \"eni-0dns\"\naddresses = [\"172.16.11.201\"]\n{}",
        module(dir, &format!("format = \"{format}\""))
    );
    run(&config, &capture("geneve-vxlan-dns-truncated.pcap"));
    let got = records(
        dir,
        Some("version interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end type tcp-flags flow-direction log-status"),
    );
    // `version` is 5, the highest among the fields (flow-direction). Zeek: 1 packet / 82 IP bytes out, 1 packet / 102 IP bytes back; the answer was cut by the
    // capture's snap length, but bytes come from the IP header.
    assert_eq!(
        got,
        [
            "5 eni-0dns 172.16.11.201 1.1.1.1 36872 53 17 1 82 1681421823 1681421823 IPv4 0 egress OK",
            "5 eni-0dns 1.1.1.1 172.16.11.201 53 36872 17 1 102 1681421825 1681421825 IPv4 0 ingress OK",
        ]
    );
    let (op, ob, rp, rb) = zeek_counts(
        "geneve-vxlan-truncated.zeek-conn.log",
        "172.16.11.201",
        "udp",
    );
    // This format puts packets and bytes at fields 7 and 8.
    let counts: Vec<(u64, u64)> = got
        .iter()
        .map(|l| (fields(l)[7].parse().unwrap(), fields(l)[8].parse().unwrap()))
        .collect();
    assert_eq!(counts, [(op, ob), (rp, rb)]);
}

const HTTP_SESSION: &str = r#"
[[sessions.static]]
source = "10.1.200.131"
vni = 1
eni = "eni-0123456789abcdef0"
account_id = "123456789012"
vpc_id = "vpc-0aa"
subnet_id = "subnet-0bb"
instance_id = "i-0cc"
region = "us-east-1"
az_id = "use1-az4"
addresses = ["172.16.11.201"]
"#;

const ALL_FIELDS: &str = "${version} ${account-id} ${interface-id} ${srcaddr} ${dstaddr} ${srcport} ${dstport} ${protocol} ${packets} ${bytes} ${start} ${end} ${action} ${log-status} ${vpc-id} ${subnet-id} ${instance-id} ${tcp-flags} ${type} ${pkt-srcaddr} ${pkt-dstaddr} ${region} ${az-id} ${sublocation-type} ${sublocation-id} ${pkt-src-aws-service} ${pkt-dst-aws-service} ${flow-direction} ${traffic-path}";

#[test]
fn aws_mirrored_http_every_field() {
    let tmp = temp_dir("http");
    let dir = tmp.path();
    let config = format!(
        "{HTTP_SESSION}{}",
        module(dir, &format!("format = \"{ALL_FIELDS}\""))
    );
    run(&config, &capture("vxlan-encapsulated-http.pcap"));
    let got = records(dir, Some(&ALL_FIELDS.replace("${", "").replace('}', "")));
    // Client: SYN, ACK, GET, 3 ACKs (one with FIN): 7 packets, 60+52+139+52+52+52+52 IP bytes, flags
    // SYN|FIN = 3. Server: SYN-ACK, ACK, 200, the 9,036-byte jumbo, FIN: 5 packets, 60+52+280+9036+52
    // IP bytes, flags SYN-ACK|FIN = 19. The client is the ENI's own address, so its packets are egress.
    let client = "5 123456789012 eni-0123456789abcdef0 172.16.11.201 54.86.237.188 40354 80 6 7 459 \
1630165473 1630165474 ACCEPT OK vpc-0aa subnet-0bb i-0cc 3 IPv4 172.16.11.201 54.86.237.188 us-east-1 \
use1-az4 - - - - egress -";
    let server = "5 123456789012 eni-0123456789abcdef0 54.86.237.188 172.16.11.201 80 40354 6 5 9480 \
1630165473 1630165474 ACCEPT OK vpc-0aa subnet-0bb i-0cc 19 IPv4 54.86.237.188 172.16.11.201 us-east-1 \
use1-az4 - - - - ingress -";
    // Records come least recently seen first: the client's ACK of the server's FIN is the last packet.
    assert_eq!(got, [server, client]);
}

/// A TCP packet of session 10.9.0.1/7 at `secs` (plus `ms`).
fn tcp_at(secs: u64, ms: u64, sport: u16, payload: usize) -> Datagram {
    (
        Timestamp::from_nanos(secs * 1_000_000_000 + ms * 1_000_000),
        "10.9.0.1".parse().unwrap(),
        Encap::Vxlan,
        vxlan(
            7,
            &tcp4([10, 0, 0, 1], sport, [10, 0, 0, 2], 443, &vec![0; payload]),
        ),
    )
}

fn fields(line: &str) -> Vec<&str> {
    line.split(' ').collect()
}

#[test]
fn intervals_are_aligned_to_packet_time_and_split_records() {
    // 1_700_000_020 is 20 s before a minute boundary (1_700_000_040) and 380 s before a ten-minute one.
    let t = 1_700_000_020;
    let packets = vec![
        tcp_at(t, 0, 40000, 0),
        tcp_at(t + 19, 999, 40000, 10),
        tcp_at(t + 20, 0, 40000, 20),
        tcp_at(t + 80, 0, 40000, 30),
    ];
    let tmp = temp_dir("intervals60");
    let dir = tmp.path();
    run(&module(dir, "interval_secs = 60"), &packets);
    let got: Vec<Vec<String>> = records(dir, Some(V2_HEADER))
        .iter()
        .map(|l| fields(l).iter().map(|s| s.to_string()).collect())
        .collect();
    // Columns 8..12: packets, bytes, start, end. A TCP/IPv4 packet without options is 40 IP bytes.
    let summary: Vec<_> = got.iter().map(|f| f[8..12].join(" ")).collect();
    assert_eq!(
        summary,
        [
            format!("2 90 {} {}", t, t + 19),
            format!("1 60 {} {}", t + 20, t + 20),
            format!("1 70 {} {}", t + 80, t + 80),
        ]
    );

    let tmp = temp_dir("intervals600");
    let dir = tmp.path();
    run(&module(dir, "interval_secs = 600"), &packets);
    let summary: Vec<_> = records(dir, Some(V2_HEADER))
        .iter()
        .map(|l| fields(l)[8..12].join(" "))
        .collect();
    assert_eq!(summary, [format!("4 220 {} {}", t, t + 80)]);
}

#[test]
fn idle_flows_are_emitted_early_and_everything_held_on_flush() {
    let t = 1_700_000_040; // a minute boundary: the interval runs to t+60
    let packets = vec![
        tcp_at(t, 0, 1, 0),
        tcp_at(t, 0, 2, 0),
        // Flow 1 goes quiet; flow 2 keeps going. Ticks come on packet time, so at t+12 flow 1 (idle
        // 12 s > 10 s) is emitted while the interval is still open.
        tcp_at(t + 6, 0, 2, 0),
        tcp_at(t + 12, 0, 2, 0),
        // Flow 1 comes back within the same interval: a second record for it.
        tcp_at(t + 15, 0, 1, 0),
        // The last packets: nothing closes this interval but the flush at the end of the input.
        tcp_at(t + 30, 0, 3, 0),
    ];
    let tmp = temp_dir("idle");
    let dir = tmp.path();
    let r = run(&module(dir, "idle_timeout_secs = 10"), &packets);
    let summary: Vec<_> = records(dir, Some(V2_HEADER))
        .iter()
        .map(|l| {
            let f = fields(l);
            format!("{} {} {} {}", f[5], f[8], f[10], f[11])
        })
        .collect();
    // Flow 2 (last seen t+12) also idled out before t+30 (tick at t+23, cutoff t+13).
    assert_eq!(
        summary,
        [
            format!("1 1 {t} {t}"),
            format!("2 3 {t} {}", t + 12),
            format!("1 1 {} {}", t + 15, t + 15),
            format!("3 1 {} {}", t + 30, t + 30),
        ]
    );
    assert_eq!(r.counters, (6, 0, 0));
}

#[test]
fn a_full_table_sends_the_oldest_record_early_and_loses_nothing() {
    let t = 1_700_000_000;
    let mut packets = Vec::new();
    for i in 0..5u16 {
        packets.push(tcp_at(t + u64::from(i), 0, 100 + i, 0));
        packets.push(tcp_at(t + u64::from(i), 500, 100 + i, 0));
    }
    // The next interval starts with an empty table.
    packets.push(tcp_at(t + 60, 0, 104, 0));
    let tmp = temp_dir("skip");
    let dir = tmp.path();
    let config = format!(
        "[[sessions.static]]\nsource = \"10.9.0.1\"\nvni = 7\neni = \"eni-0full\"\naccount_id = \"123456789012\"\n{}",
        module(dir, "max_flows = 2")
    );
    let r = run(&config, &packets);
    let got = records(dir, Some(V2_HEADER));
    let record = |port: u16, packets: u32, at: u64| {
        format!(
            "2 123456789012 eni-0full 10.0.0.1 10.0.0.2 {port} 443 6 {packets} {} {at} {at} ACCEPT OK",
            40 * packets
        )
    };
    assert_eq!(
        got,
        [
            // Flows 102, 103 and 104 each find the table full: the flow seen least recently goes
            // out early, complete (AWS's interval is a maximum), and makes room. No SKIPDATA.
            record(100, 2, t),
            record(101, 2, t + 1),
            record(102, 2, t + 2),
            // The interval's end writes the rest, least recently seen first.
            record(103, 2, t + 3),
            record(104, 2, t + 4),
            record(104, 1, t + 60),
        ]
    );
    // Every packet is in a record: nothing dropped.
    assert_eq!(r.counters, (11, 0, 0));
}

#[test]
fn a_one_entry_table_still_records_every_packet() {
    // A table of one entry, and two flows in the same second: the first is sent early when the
    // second arrives, and every packet still lands in a record.
    let t = 1_700_000_000;
    let packets = [
        tcp_at(t, 0, 100, 0),
        tcp_at(t, 1, 101, 0),
        tcp_at(t, 2, 100, 0),
    ];
    let tmp = temp_dir("skip1");
    let dir = tmp.path();
    let config = format!(
        "[[sessions.static]]\nsource = \"10.9.0.1\"\nvni = 7\neni = \"eni-0full\"\naccount_id = \"123456789012\"\n{}",
        module(dir, "max_flows = 1")
    );
    let r = run(&config, &packets);
    let got = records(dir, Some(V2_HEADER));
    assert_eq!(got.len(), 3, "{got:#?}");
    assert!(got.iter().all(|l| l.ends_with("ACCEPT OK")), "{got:#?}");
    assert_eq!(r.counters.1, 0);
}

#[test]
fn two_shards_write_their_own_files_and_every_flow_is_recorded_once() {
    let t = 1_700_000_000;
    let mut packets = Vec::new();
    for port in 0..64u16 {
        packets.push(tcp_at(t, u64::from(port), 20000 + port, 0));
    }
    let tmp = temp_dir("shards");
    let dir = tmp.path();
    run(
        &module(dir, "").replace("shards = 1", "shards = 2"),
        &packets,
    );
    let files = common::files_under(dir);
    let names: Vec<_> = files
        .iter()
        .map(|p| p.file_name().unwrap().to_str().unwrap().to_owned())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names[0].starts_with("flowlog-shard0_20231114T221320Z_"));
    assert!(names[1].starts_with("flowlog-shard1_20231114T221320Z_"));
    let mut ports: Vec<u16> = records(dir, Some(V2_HEADER))
        .iter()
        .map(|l| fields(l)[5].parse().unwrap())
        .collect();
    ports.sort();
    assert_eq!(ports, (20000..20064).collect::<Vec<_>>());
}

#[test]
fn aws_logs_layout_gzip_and_json_lines() {
    let tmp = temp_dir("s3");
    let dir = tmp.path();
    let config = format!(
        "{HTTP_SESSION}[pipeline]\nshards = 1\n[[module]]\nkind = \"flowlog\"\naccount_id = \"123456789012\"\nregion = \"us-east-1\"\n[module.output]\ndir = \"{}\"\ngzip = true\nlayout = \"aws_logs\"\n",
        dir.display()
    );
    run(&config, &capture("vxlan-encapsulated-http.pcap"));
    let files = common::files_under(dir);
    assert_eq!(files.len(), 1, "{files:?}");
    let rel = files[0]
        .strip_prefix(dir)
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    // AWS's key layout and object name, so an Athena table over a bucket synced from `dir` finds it.
    assert_eq!(
        rel,
        "AWSLogs/123456789012/vpcflowlogs/us-east-1/2021/08/28/\
123456789012_vpcflowlogs_us-east-1_fl-vxtap-0_20210828T1544Z_0001.log.gz"
    );
    let got = records(dir, Some(V2_HEADER));
    assert_eq!(got.len(), 2);
    assert!(got[1].starts_with(
        "2 123456789012 eni-0123456789abcdef0 172.16.11.201 54.86.237.188 40354 80 6 7 459 "
    ));

    let tmp = temp_dir("json");
    let dir = tmp.path();
    let config = format!(
        "{HTTP_SESSION}{}",
        module(
            dir,
            "encoding = \"json\"\nformat = \"${version} ${account-id} ${srcaddr} ${packets} ${bytes} ${tcp-flags} ${traffic-path} ${log-status}\""
        )
    );
    run(&config, &capture("vxlan-encapsulated-http.pcap"));
    let files = common::files_under(dir);
    assert!(files[0].to_str().unwrap().ends_with(".json"));
    let got = records(dir, None);
    let v: Vec<serde_json::Value> = got
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        v[1],
        serde_json::json!({"version": 5, "account_id": "123456789012", "srcaddr": "172.16.11.201",
            "packets": 7, "bytes": 459, "tcp_flags": 3, "traffic_path": null, "log_status": "OK"})
    );
}

#[test]
fn bad_module_config_is_refused_with_the_key() {
    let check = |extra: &str| {
        let text = format!("[[module]]\nkind = \"flowlog\"\n{extra}\n");
        let config = Config::parse(&text, "f.toml").unwrap();
        registry().resolve(&config).unwrap_err().to_string()
    };
    let e = check("interval_secs = 30");
    assert!(
        e.contains("interval_secs: 30 is not an interval AWS offers"),
        "{e}"
    );
    let e = check("format = \"${version} ${bogus}\"");
    assert!(e.contains("format: unknown field ${bogus}"), "{e}");
    let e = check("max_flow = 3");
    assert!(e.contains("unknown field `max_flow`"), "{e}");
    let e = check("[module.output]\ndir = \"/tmp/x\"\nlayout = \"aws_logs\"");
    assert!(e.contains("needs account_id and region"), "{e}");
}

#[test]
fn vxtap_run_prints_records_on_stdout_and_flushes_them_at_stop() {
    use std::process::Stdio;
    use std::time::Duration;
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let tmp = temp_dir("stdout");
    let dir = tmp.path();
    let config = dir.join("vxtap.toml");
    // The embedded default's flowlog table, on a loopback port.
    std::fs::write(
        &config,
        format!(
            "[ingest]\nvxlan = [\"127.0.0.1:{port}\"]\nworkers = 1\nreceive_buffer_bytes = 0\n\
             [health]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n\
             [[module]]\nkind = \"flowlog\"\n"
        ),
    )
    .unwrap();
    let (child, stderr, mut log) = spawn_vxtap(&config, Stdio::piped());
    let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let before = Timestamp::now().secs();
    for _ in 0..3 {
        let f = tcp4([10, 0, 0, 1], 40000, [10, 0, 0, 2], 443, b"hello");
        tx.send_to(&vxlan(5, &f), ("127.0.0.1", port)).unwrap();
    }
    let f = tcp4([10, 0, 0, 2], 443, [10, 0, 0, 1], 40000, &[0; 100]);
    tx.send_to(&vxlan(5, &f), ("127.0.0.1", port)).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.into_inner().wait_with_output().unwrap();
    let after = Timestamp::now().secs();
    let mut stderr = stderr;
    stderr.read_to_string(&mut log).unwrap();
    assert!(out.status.success(), "{log}");
    let mut lines: Vec<_> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    lines.sort();
    assert_eq!(lines.len(), 2, "{lines:?}");
    let a = fields(&lines[0]);
    let b = fields(&lines[1]);
    assert_eq!(
        a[..10].join(" "),
        "2 - - 10.0.0.1 10.0.0.2 40000 443 6 3 135"
    );
    assert_eq!(
        b[..10].join(" "),
        "2 - - 10.0.0.2 10.0.0.1 443 40000 6 1 140"
    );
    for f in [&a, &b] {
        let (start, end): (u64, u64) = (f[10].parse().unwrap(), f[11].parse().unwrap());
        assert!(before <= start && start <= end && end <= after, "{f:?}");
        assert_eq!(f[12..].join(" "), "ACCEPT OK");
    }
}

#[test]
fn ipv6_flows_count_the_payload_length_plus_the_fixed_header() {
    let mut frame = Vec::new();
    etherparse::PacketBuilder::ethernet2([2; 6], [4; 6])
        .ipv6(
            "fd00::1".parse::<std::net::Ipv6Addr>().unwrap().octets(),
            "fd00::2".parse::<std::net::Ipv6Addr>().unwrap().octets(),
            64,
        )
        .udp(5353, 53)
        .write(&mut frame, &[0; 30])
        .unwrap();
    let t = 1_700_000_000;
    let d = |n: u64| {
        (
            Timestamp::from_secs(t + n),
            "fd00::99".parse().unwrap(),
            Encap::Vxlan,
            vxlan(9, &frame),
        )
    };
    let tmp = temp_dir("ipv6");
    let dir = tmp.path();
    // vxtap's own snap length cuts the frame; bytes still come from the IPv6 header.
    let config = format!(
        "[truncation]\nsnaplen = 60\n{}",
        module(dir, "format = \"${srcaddr} ${dstaddr} ${srcport} ${dstport} ${protocol} ${packets} ${bytes} ${type} ${flow-direction}\"")
    );
    run(&config, &[d(0), d(1), d(2)]);
    // 40 (IPv6 header) + 8 (UDP) + 30 = 78 bytes per packet. The learned session's only known address
    // is its outer source, so the direction is unknown.
    assert_eq!(
        records(
            dir,
            Some("srcaddr dstaddr srcport dstport protocol packets bytes type flow-direction")
        ),
        ["fd00::1 fd00::2 5353 53 17 3 234 IPv6 -"]
    );
}

/// A TCP/IPv4 packet of session 10.9.0.1/7 at `ms` after `t`, with `flags` (SYN 0x02, RST 0x04,
/// FIN 0x01, ACK 0x10).
fn tcp_flags_at(t: u64, ms: u64, from: ([u8; 4], u16), to: ([u8; 4], u16), flags: u8) -> Datagram {
    let mut b = etherparse::PacketBuilder::ethernet2([2; 6], [4; 6])
        .ipv4(from.0, to.0, 64)
        .tcp(from.1, to.1, 1000, 65535);
    if flags & 0x02 != 0 {
        b = b.syn();
    }
    if flags & 0x10 != 0 {
        b = b.ack(1);
    }
    if flags & 0x01 != 0 {
        b = b.fin();
    }
    if flags & 0x04 != 0 {
        b = b.rst();
    }
    let mut frame = Vec::new();
    b.write(&mut frame, b"").unwrap();
    (
        Timestamp::from_nanos(t * 1_000_000_000 + ms * 1_000_000),
        "10.9.0.1".parse().unwrap(),
        Encap::Vxlan,
        vxlan(7, &frame),
    )
}

/// With a flow-aware module on the shard, flowlog counts through the flow table's interval
/// counters instead of its own table: the records must not change, connections that end and come
/// back on the same 5-tuple within an interval included.
#[test]
fn records_are_the_same_when_flowlog_rides_the_flow_table() {
    let t = 1_700_000_040; // a minute boundary
    let (c, s) = ([10, 0, 0, 1], [10, 0, 0, 2]);
    let (syn, ack, fin, rst) = (0x02, 0x10, 0x01, 0x04);
    let mut packets = vec![
        // Port 41000: a whole connection, then a second one on the same 5-tuple.
        tcp_flags_at(t, 0, (c, 41000), (s, 443), syn),
        tcp_flags_at(t, 1, (s, 443), (c, 41000), syn | ack),
        tcp_flags_at(t, 2, (c, 41000), (s, 443), ack),
        tcp_flags_at(t, 3, (c, 41000), (s, 443), fin | ack),
        tcp_flags_at(t, 4, (s, 443), (c, 41000), fin | ack),
        tcp_flags_at(t, 5, (c, 41000), (s, 443), ack),
        tcp_flags_at(t + 10, 0, (c, 41000), (s, 443), syn),
        tcp_flags_at(t + 10, 1, (s, 443), (c, 41000), rst | ack),
        // Port 41001: the client resets, then the server opens one the other way round.
        tcp_flags_at(t + 1, 0, (c, 41001), (s, 443), syn),
        tcp_flags_at(t + 1, 1, (c, 41001), (s, 443), rst),
        tcp_flags_at(t + 2, 0, (s, 443), (c, 41001), syn),
        tcp_flags_at(t + 2, 1, (c, 41001), (s, 443), syn | ack),
        // Port 41002: across the interval's end.
        tcp_flags_at(t + 5, 0, (c, 41002), (s, 443), ack),
        tcp_flags_at(t + 70, 0, (c, 41002), (s, 443), ack),
    ];
    // UDP that times out (udp_timeout_secs = 5) and comes back within the interval.
    for (secs, ms) in [(3, 0), (3, 10), (30, 0), (80, 0)] {
        packets.push((
            Timestamp::from_nanos((t + secs) * 1_000_000_000 + ms * 1_000_000),
            "10.9.0.1".parse().unwrap(),
            Encap::Vxlan,
            vxlan(7, &udp4(c, 5353, s, 53, b"")),
        ));
    }
    packets.sort_by_key(|p| p.0);

    let alone_tmp = temp_dir("ride-alone");
    let alone = alone_tmp.path();
    let config = format!("[flow]\nudp_timeout_secs = 5\n{}", module(alone, ""));
    run(&config, &packets);
    let riding_tmp = temp_dir("ride-riding");
    let riding = riding_tmp.path();
    let dns_tmp = temp_dir("ride-dns");
    let dns = dns_tmp.path();
    // flowlog's own table of one entry would split every record: riding, it is not used.
    let config = format!(
        "[flow]\nudp_timeout_secs = 5\n{}[[module]]\nkind = \"dns\"\n[module.output]\ndir = \"{}\"\n",
        module(riding, "max_flows = 1"),
        dns.display()
    );
    run(&config, &packets);

    let summary = |dir: &Path| -> Vec<String> {
        records(dir, Some(V2_HEADER))
            .iter()
            .map(|l| {
                let f = fields(l);
                format!(
                    "{}:{}>{}:{} {} {}..{}",
                    f[3], f[5], f[4], f[6], f[8], f[10], f[11]
                )
            })
            .collect()
    };
    let first = t;
    let expected = [
        // Least recently seen first: the server's SYN (t+2.000) before the client's reply (t+2.001).
        format!("10.0.0.2:443>10.0.0.1:41001 1 {}..{}", first + 2, first + 2),
        format!("10.0.0.1:41001>10.0.0.2:443 3 {}..{}", first + 1, first + 2),
        format!("10.0.0.1:41002>10.0.0.2:443 1 {}..{}", first + 5, first + 5),
        format!("10.0.0.1:41000>10.0.0.2:443 5 {first}..{}", first + 10),
        format!("10.0.0.2:443>10.0.0.1:41000 3 {first}..{}", first + 10),
        format!("10.0.0.1:5353>10.0.0.2:53 3 {}..{}", first + 3, first + 30),
        format!(
            "10.0.0.1:41002>10.0.0.2:443 1 {}..{}",
            first + 70,
            first + 70
        ),
        format!("10.0.0.1:5353>10.0.0.2:53 1 {}..{}", first + 80, first + 80),
    ];
    assert_eq!(summary(alone), expected);
    assert_eq!(
        records(riding, Some(V2_HEADER)),
        records(alone, Some(V2_HEADER))
    );
}
