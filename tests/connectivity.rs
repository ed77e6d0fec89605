//! `connectivity` and `detect` on pcaps/connectivity.pcap: the exact records (tests/golden), the same
//! records whatever the number of shards (the interval board merges them), and the same records
//! through the live path (`vxtap send` → `vxtap run` on loopback) as through replay.
//!
//! To accept new output after an intended change: `VXTAP_BLESS=1 cargo test --test connectivity`.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn replay(shards: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_vxtap"))
        .current_dir(ROOT)
        .args(["replay", "--log-level", "error", "--shards", shards])
        .args(["--config", "tests/golden/connectivity.toml"])
        .arg("pcaps/connectivity.pcap")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn golden(name: &str, actual: &str) {
    let path = Path::new(ROOT).join("tests/golden").join(name);
    if std::env::var_os("VXTAP_BLESS").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (VXTAP_BLESS=1 creates it)", path.display()));
    for (i, (e, a)) in expected.lines().zip(actual.lines()).enumerate() {
        assert_eq!(e, a, "{} line {}", path.display(), i + 1);
    }
    assert_eq!(expected.lines().count(), actual.lines().count());
}

fn sorted(s: &str) -> Vec<&str> {
    let mut v: Vec<&str> = s.lines().collect();
    v.sort_unstable();
    v
}

fn records(s: &str) -> Vec<Value> {
    s.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn replay_gives_the_documented_records_with_any_number_of_shards() {
    let one = replay("1");
    golden("connectivity.txt", &one);
    let all = records(&one);
    let kinds = |kind: &str| {
        all.iter()
            .filter(|r| r["connectivity"]["kind"] == kind)
            .count()
    };
    // What pcaps/README.md says the capture holds.
    assert_eq!(
        kinds("unanswered"),
        4,
        "SYN out, SYN in, UDP, the filtered SYN"
    );
    assert_eq!(
        kinds("refused"),
        23,
        "RST, ICMP port and admin, and 20 scanned ports"
    );
    assert_eq!(kinds("half_open"), 10, "ten spoofed flood sources");
    assert_eq!(
        (
            kinds("syn_retransmit"),
            kinds("zero_window"),
            kinds("reset")
        ),
        (1, 1, 1)
    );
    let silent: Vec<_> = all
        .iter()
        .filter(|r| r["connectivity"]["kind"] == "silent_session")
        .map(|r| r["vxtap"]["session"].as_str().unwrap())
        .collect();
    assert_eq!(silent, ["dormant"], "the busy session is never silent");
    let notes: Vec<_> = all
        .iter()
        .filter_map(|r| r["detect"]["note"].as_str())
        .collect();
    assert_eq!(
        notes,
        // In the merged order: records emitted at one tick are ordered by their bytes.
        ["port_scan", "syn_flood", "address_scan", "icmp_flood"]
    );
    // The busy server (198.18.0.0/24 clients to port 443) raised nothing.
    assert!(!one.contains("198.18.0."), "{one}");
    for r in &all {
        assert_ne!(r["connectivity"]["direction"], "unknown", "{r}");
    }

    // A client's attempts to one port land on different shards; the board merges them.
    let four = replay("4");
    assert_eq!(sorted(&one), sorted(&four));
}

/// A record without what depends on when it was received (times, flow ids) or on where from (the
/// outer source), keyed by everything else; flows and packets summed, since a live run may split
/// a key over two intervals.
fn comparable(s: &str) -> BTreeMap<String, (u64, u64)> {
    let mut m = BTreeMap::new();
    for mut r in records(s) {
        if r["connectivity"]["kind"] == "silent_session" {
            continue;
        }
        let o = r.as_object_mut().unwrap();
        for k in ["timestamp", "flow_id", "src_port", "community_id"] {
            o.remove(k);
        }
        o["vxtap"].as_object_mut().unwrap().remove("source");
        let mut counts = (0, 0);
        for section in ["connectivity", "detect"] {
            if let Some(c) = o.get_mut(section).and_then(Value::as_object_mut) {
                for k in ["first", "last", "interval", "window", "max_wait_ms"] {
                    c.remove(k);
                }
                if section == "connectivity" {
                    counts = (
                        c.remove("flows").and_then(|v| v.as_u64()).unwrap_or(0),
                        c.remove("packets").and_then(|v| v.as_u64()).unwrap_or(0),
                    );
                }
            }
        }
        let e = m.entry(r.to_string()).or_insert((0, 0));
        e.0 += counts.0;
        e.1 += counts.1;
    }
    m
}

#[test]
fn live_gives_the_same_records_as_replay() {
    use std::io::Read as _;
    // Detect's 300 s windows follow the wall clock live: start well inside one.
    let now = vxtap::Timestamp::now().secs();
    if 300 - now % 300 < 25 {
        std::thread::sleep(Duration::from_secs(300 - now % 300 + 1));
    }
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let tmp = common::temp_dir("vxtap-live-");
    let dir = tmp.path();
    let golden_config =
        std::fs::read_to_string(Path::new(ROOT).join("tests/golden/connectivity.toml")).unwrap();
    // The same sessions, as they arrive live: every datagram comes from 127.0.0.1.
    let live_config = golden_config
        .replace("shards = 1", "shards = 2")
        .replace("172.31.6.60", "127.0.0.1")
        .replacen("source = \"172.31.5.50\"", "source = \"127.0.0.1\"", 1);
    let config = dir.join("vxtap.toml");
    std::fs::write(
        &config,
        format!(
            "[ingest]\nvxlan = [\"127.0.0.1:{port}\"]\nworkers = 1\n\
             [health]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n{live_config}"
        ),
    )
    .unwrap();
    let (child, mut stderr, mut log) = common::spawn_vxtap(&config, Stdio::piped());
    // Ten times faster than captured: 14 s, with every wait still longer than its gap.
    let sent = Command::new(env!("CARGO_BIN_EXE_vxtap"))
        .current_dir(ROOT)
        .args(["send", "pcaps/connectivity.pcap", "--speed", "10", "--to"])
        .arg(format!("127.0.0.1:{port}"))
        .output()
        .unwrap();
    assert!(
        sent.status.success(),
        "{}",
        String::from_utf8_lossy(&sent.stderr)
    );
    // Past the last wait (3 s for the flood's SYN-ACKs, 5 s for UDP), on idle ticks.
    std::thread::sleep(Duration::from_secs(4));
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.into_inner().wait_with_output().unwrap();
    stderr.read_to_string(&mut log).unwrap();
    assert!(out.status.success(), "{log}");
    let live = String::from_utf8(out.stdout).unwrap();
    assert_eq!(comparable(&live), comparable(&replay("1")), "{live}");
}

/// flowlog writes one NODATA record for the configured session that delivered nothing for the
/// whole minute 12:01–12:02 (AWS's form: flow fields `-`), and none for the busy one, nor for the
/// minutes the capture starts and ends in.
#[test]
fn flowlog_writes_nodata_for_a_silent_static_session() {
    let tmp = common::temp_dir("vxtap-nodata-");
    let dir = tmp.path();
    let sessions =
        std::fs::read_to_string(Path::new(ROOT).join("tests/golden/connectivity.toml")).unwrap();
    let sessions = &sessions[..sessions.find("[[module]]").unwrap()];
    let config = dir.join("flowlog.toml");
    std::fs::write(
        &config,
        format!("{sessions}[[module]]\nkind = \"flowlog\"\n"),
    )
    .unwrap();
    for shards in ["1", "3"] {
        let out = Command::new(env!("CARGO_BIN_EXE_vxtap"))
            .current_dir(ROOT)
            .args([
                "replay",
                "--log-level",
                "error",
                "--shards",
                shards,
                "--config",
            ])
            .arg(&config)
            .arg("pcaps/connectivity.pcap")
            .output()
            .unwrap();
        assert!(out.status.success());
        let stdout = String::from_utf8(out.stdout).unwrap();
        let no_data: Vec<_> = stdout.lines().filter(|l| l.ends_with(" NODATA")).collect();
        assert_eq!(
            no_data,
            ["2 - eni-0dormant - - - - - - - 1709294460 1709294520 - NODATA"],
            "{shards} shards"
        );
        assert!(stdout.lines().any(|l| l.contains("eni-0shop")));
    }
}

/// A SYN flood from 20,000 random spoofed sources through both modules with small caps: each holds
/// what its caps allow, counts everything it refused in `drops`, and still reports the flood.
#[test]
fn spoofed_flood_stays_within_the_caps_and_counts_what_it_refused() {
    let tmp = common::temp_dir("vxtap-flood-");
    let dir = tmp.path();
    let config = format!(
        "[pipeline]\nshards = 1\n\
         [[module]]\nkind = \"connectivity\"\nmax_pending = 1000\nmax_records = 500\n\
         [module.output]\ndir = \"{0}/c\"\n\
         [[module]]\nkind = \"detect\"\nmax_tracked = 1000\n[module.output]\ndir = \"{0}/d\"\n",
        dir.display()
    );
    let t0 = 1_700_000_000_000_000_000u64;
    let mut x: u64 = 0x9e37_79b9;
    let sources = 20_000u64;
    let mut datagrams: Vec<common::Datagram> = (0..sources)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mut f = Vec::new();
            etherparse::PacketBuilder::ethernet2([2; 6], [4; 6])
                .ipv4((x as u32).to_be_bytes(), [172, 31, 5, 50], 64)
                .tcp(1024 + (i % 60_000) as u16, 80, 1, 512)
                .syn()
                .write(&mut f, &[])
                .unwrap();
            (
                vxtap::Timestamp::from_nanos(t0 + i * 50_000),
                std::net::IpAddr::from([172, 31, 5, 50]),
                vxtap::pipeline::Encap::Vxlan,
                common::vxlan(1005, &f),
            )
        })
        .collect();
    // Ten seconds later: every wait has run out.
    let late = common::udp4([172, 31, 5, 50], 5000, [10, 0, 0, 2], 5001, b"x");
    datagrams.push((
        vxtap::Timestamp::from_nanos(t0 + 10_000_000_000),
        std::net::IpAddr::from([172, 31, 5, 50]),
        vxtap::pipeline::Encap::Vxlan,
        common::vxlan(1005, &late),
    ));
    let totals = common::run_offline(&config, &datagrams);
    let lines = |sub: &str| {
        let mut n = 0;
        for f in std::fs::read_dir(dir.join(sub)).unwrap() {
            n += std::fs::read_to_string(f.unwrap().path())
                .unwrap()
                .lines()
                .count();
        }
        n
    };
    // connectivity: 1,000 connections wait at most (the other 19,000 are refused), and of their
    // 1,000 unanswered records, 500 are kept.
    let (_, events, errors, drops) = totals[0];
    assert_eq!((events, errors), (500, 0));
    assert_eq!(lines("c"), 500);
    assert_eq!(
        drops,
        (sources - 1000) + 500,
        "refused waits, then refused records"
    );
    // detect: each per-source table holds 1,000 keys; the flood is one key and is seen whole.
    let (_, events, errors, drops) = totals[1];
    assert_eq!((events, errors), (1, 0));
    // Every source past the cap (the late datagram's too) is refused by both per-source tables; a
    // random source that repeats finds its key and is not.
    assert!(drops <= 2 * (sources + 1 - 1000), "{drops}");
    assert!(drops >= 2 * (sources + 1 - 1000) - 100, "{drops}");
    let notice = std::fs::read_dir(dir.join("d"))
        .unwrap()
        .map(|f| std::fs::read_to_string(f.unwrap().path()).unwrap())
        .collect::<String>();
    assert!(notice.contains("\"note\":\"syn_flood\""), "{notice}");
    assert!(notice.contains("\"count\":20000"), "{notice}");
}

/// Offline, a shard's time is its own packets' time: a shard whose last packet is a SYN never sees
/// the wait run out. Waits the end of the input cut short are judged, once every shard has finished,
/// against the latest time any shard saw, so the records do not depend on where flows landed.
#[test]
fn waits_cut_by_the_end_of_a_replay_count_with_any_number_of_shards() {
    let t0 = 1_700_000_000_000_000_000u64;
    let mut datagrams: Vec<common::Datagram> = (0..40u8)
        .map(|i| {
            let mut f = Vec::new();
            etherparse::PacketBuilder::ethernet2([2; 6], [4; 6])
                .ipv4([198, 51, 100, i], [172, 31, 5, 50], 64)
                .tcp(40000, 443, 1, 64240)
                .syn()
                .write(&mut f, &[])
                .unwrap();
            (
                vxtap::Timestamp::from_nanos(t0 + u64::from(i) * 1_000_000),
                std::net::IpAddr::from([172, 31, 5, 50]),
                vxtap::pipeline::Encap::Vxlan,
                common::vxlan(1005, &f),
            )
        })
        .collect();
    // The capture's last packet, 10 s later, reaches one shard only.
    let late = common::udp4([172, 31, 5, 50], 5000, [10, 0, 0, 2], 5001, b"x");
    datagrams.push((
        vxtap::Timestamp::from_nanos(t0 + 10_000_000_000),
        std::net::IpAddr::from([172, 31, 5, 50]),
        vxtap::pipeline::Encap::Vxlan,
        common::vxlan(1005, &late),
    ));
    let tmp = common::temp_dir("vxtap-tail-");
    let events = |shards: usize| {
        let config = format!(
            "[pipeline]\nshards = {shards}\n[[module]]\nkind = \"connectivity\"\nudp_timeout_secs = 0\n\
             [module.output]\ndir = \"{}\"\n",
            tmp.path().join(shards.to_string()).display()
        );
        common::run_offline(&config, &datagrams)[0].1
    };
    assert_eq!(events(1), 40, "one unanswered record per client");
    assert_eq!(events(4), 40);
}
