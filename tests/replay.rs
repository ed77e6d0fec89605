//! Golden tests for `vxtap replay`: every capture in pcaps/ (ours and the third-party ones) replayed
//! through the real pipeline gives the checked-in module events and drop accounting, the same on every
//! run, and the same packets whatever the number of shards.
//!
//! To accept new output after an intended change: `VXTAP_BLESS=1 cargo test --test replay`, then
//! review the diff of tests/golden/.

mod common;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, LazyLock, Mutex};

use serde::Deserialize;
use vxtap::base::{Packet, Timestamp};
use vxtap::config::Config;
use vxtap::ingest::replay::{replay, ReplayReport};
use vxtap::modules::{BuildError, Emitter, Module, ModuleConfig, ModuleContext, Registry};
use vxtap::sinks::Sink;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Every output line of a `packet_log` module, by tap name.
type Log = Arc<Mutex<Vec<u8>>>;
static LOGS: LazyLock<Mutex<std::collections::HashMap<String, Log>>> =
    LazyLock::new(Default::default);

fn log_for(tap: &str) -> Log {
    LOGS.lock()
        .unwrap()
        .entry(tap.to_owned())
        .or_default()
        .clone()
}

/// A module that writes one line per packet, tick and flush through the ordinary Emitter/Sink path:
/// what a user's logging module would do, with every field a module can see.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PacketLogConfig {
    tap: String,
    /// Also asks for flow events, so that the shards keep flow tables (and read in turns).
    #[serde(default)]
    flows: bool,
}

struct VecSink(Log);

impl Sink for VecSink {
    fn write(&mut self, _now: Timestamp, record: &[u8]) -> std::io::Result<()> {
        self.0.lock().unwrap().extend_from_slice(record);
        Ok(())
    }
    fn flush(&mut self, _now: Timestamp) -> std::io::Result<()> {
        Ok(())
    }
}

impl ModuleConfig for PacketLogConfig {
    fn build(&self, ctx: &ModuleContext) -> Result<Box<dyn Module>, BuildError> {
        Ok(Box::new(PacketLog {
            shard: ctx.shard,
            flows: self.flows,
        }))
    }
    fn sink(&self, _ctx: &ModuleContext) -> Result<Box<dyn Sink>, BuildError> {
        Ok(Box::new(VecSink(log_for(&self.tap))))
    }
}

struct PacketLog {
    shard: usize,
    flows: bool,
}

fn ts(t: Timestamp) -> String {
    format!("{}.{:09}", t.secs(), t.subsec_nanos())
}

impl Module for PacketLog {
    fn on_packet(&mut self, pkt: &Packet<'_>, out: &mut Emitter<'_>) {
        out.emit_line(|l| {
            write!(
                l,
                "{} {} len={} orig={}",
                ts(pkt.ts),
                pkt.session.name,
                pkt.frame.len(),
                pkt.orig_len
            )?;
            if !pkt.layers.vlan_ids().is_empty() {
                write!(l, " vlan={:?}", pkt.layers.vlan_ids())?;
            }
            match pkt.flow() {
                Some(f) => write!(
                    l,
                    " {} {}:{} > {}:{} ip_len={}",
                    f.protocol,
                    f.src,
                    f.src_port,
                    f.dst,
                    f.dst_port,
                    pkt.ip_len().unwrap_or(0)
                )?,
                None => write!(l, " ether_type={:04x}", pkt.layers.ether_type)?,
            }
            if let Some(ip) = pkt.ip() {
                if ip.fragment != vxtap::wire::inner::Fragment::None {
                    write!(l, " fragment={:?}", ip.fragment)?;
                }
            }
            if let vxtap::wire::inner::Transport::Tcp { flags, .. } = pkt.transport() {
                write!(l, " tcp_flags={flags:#04x}")?;
            }
            if let Some(cut) = pkt.layers.cut {
                write!(l, " cut={}", cut.name())?;
            }
            write!(l, " payload={}", pkt.payload().len())
        });
    }

    fn wants_flows(&self) -> bool {
        self.flows
    }

    fn on_tick(&mut self, now: Timestamp, out: &mut Emitter<'_>) {
        out.line(format_args!("tick shard={} {}", self.shard, ts(now)));
    }

    fn finish(&mut self, out: &mut Emitter<'_>) {
        out.line(format_args!("flush shard={}", self.shard));
    }
}

fn registry() -> Registry {
    let mut r = Registry::with_builtins();
    r.register::<PacketLogConfig>("packet_log");
    r
}

fn unique(name: &str) -> String {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    format!(
        "{name}-{}",
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

/// Replays `files` with the packet log (and `extra` config) on `shards` shards; returns the log and
/// the report.
fn run(files: &[PathBuf], shards: usize, extra: &str) -> (String, ReplayReport) {
    run_flows(files, shards, extra, false)
}

/// `run`, with the packet log asking for flow events when `flows`: two or more shards that keep
/// flow tables read the files in turns, without a reader thread.
fn run_flows(files: &[PathBuf], shards: usize, extra: &str, flows: bool) -> (String, ReplayReport) {
    let tap = unique("log");
    let text = format!(
        "[pipeline]\nshards = {shards}\ntick_ms = 1000\n{extra}\n[[module]]\nkind = \"packet_log\"\ntap = \"{tap}\"\nflows = {flows}\n"
    );
    let config = Config::parse(&text, "test.toml").unwrap();
    let report = replay(config, registry(), files).unwrap();
    let log = String::from_utf8(log_for(&tap).lock().unwrap().clone()).unwrap();
    (log, report)
}

fn capture(name: &str) -> PathBuf {
    Path::new(ROOT).join("pcaps").join(name)
}

/// Compares `actual` with tests/golden/`name`, or writes it there under VXTAP_BLESS=1.
fn golden(name: &str, actual: &str) {
    let path = Path::new(ROOT).join("tests/golden").join(name);
    let actual = actual.replace(&format!("{ROOT}/"), "");
    if std::env::var_os("VXTAP_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with VXTAP_BLESS=1 to create it)",
            path.display()
        )
    });
    if expected != actual {
        let diff: Vec<String> = expected
            .lines()
            .zip(actual.lines())
            .enumerate()
            .filter(|(_, (e, a))| e != a)
            .take(5)
            .map(|(i, (e, a))| format!("line {}:\n  expected: {e}\n  actual:   {a}", i + 1))
            .collect();
        panic!(
            "{} differs ({} vs {} lines); first differences:\n{}\n(VXTAP_BLESS=1 accepts the new output)",
            path.display(),
            expected.lines().count(),
            actual.lines().count(),
            diff.join("\n")
        );
    }
}

fn check_capture(file: &str, golden_name: &str) -> (String, ReplayReport) {
    let path = capture(file);
    let (log, report) = run(std::slice::from_ref(&path), 1, "");
    assert!(report.complete(), "{report}");
    assert!(report.pipeline.counts.balanced(), "{report}");
    golden(golden_name, &format!("{log}--\n{report}"));
    // The same file gives the same output every time.
    let (again, report2) = run(&[path], 1, "");
    assert_eq!(log, again, "{file}: a second replay differs");
    assert_eq!(report.to_string(), report2.to_string());
    (log, report)
}

fn packet_lines(log: &str) -> Vec<&str> {
    let mut v: Vec<&str> = log
        .lines()
        .filter(|l| !l.starts_with("tick ") && !l.starts_with("flush "))
        .collect();
    v.sort_unstable();
    v
}

#[test]
fn aws_mirror_capture() {
    let (log, report) = check_capture("aws-mirror.pcap", "aws-mirror.txt");
    let c = &report.pipeline.counts;
    // A replay accepts every outer source by default: the stranger from 203.0.113.9 is replayed
    // (a live socket refuses it: tests/udp_ingest.rs).
    assert_eq!((c.received, c.dispatched), (53, 49));
    assert!(report
        .session_names()
        .contains(&"203.0.113.9/666".to_string()));
    for reason in [
        "too_short",
        "bad_vxlan_flags",
        "empty_frame",
        "bad_capture_record",
    ] {
        assert!(
            c.drops_by_reason().contains(&(reason, 1)),
            "{reason}: {report}"
        );
    }
    // What the capture is documented to hold (pcaps/README.md) reached the modules.
    assert!(log.contains("len=9001 orig=9001"), "the jumbo frame, whole");
    assert!(log.contains("vlan=[42]"), "the VLAN-tagged frame");
    assert_eq!(log.matches("fragment=").count(), 3, "three fragments");
    assert_eq!(
        log.matches("fd00:3::30/1003 len=128 ").count(),
        4,
        "four frames cut to the db session's PacketLength"
    );
    assert!(
        log.contains(" 58 2600:1f18::20:0 > 2606:4700:4700::1111:0"),
        "ICMPv6"
    );
    assert_eq!(log.lines().filter(|l| l.starts_with("flush")).count(), 1);

    // Several shards see the same packets (only the interleaving differs).
    let (four, _) = run(&[capture("aws-mirror.pcap")], 4, "");
    assert_eq!(packet_lines(&log), packet_lines(&four));
    assert_eq!(four.lines().filter(|l| l.starts_with("flush")).count(), 4);
}

#[test]
fn gwlb_capture_gives_the_same_packets_as_the_aws_one() {
    let (log, report) = check_capture("gwlb-geneve.pcapng", "gwlb-geneve.txt");
    let (aws, _) = run(&[capture("aws-mirror.pcap")], 1, "");
    // GENEVE from a GWLB carries the mirror's own packet, so sessions and inner frames are the same.
    assert_eq!(packet_lines(&log), packet_lines(&aws));
    let c = &report.pipeline.counts;
    assert_eq!((c.received, c.dispatched), (53, 49));
    assert!(c.drops_by_reason().contains(&("geneve_inner_not_vxlan", 3)));
}

#[test]
fn replay_applies_the_allowlist_only_when_asked() {
    let (_, report) = run(
        &[capture("aws-mirror.pcap")],
        1,
        "[sessions]\nreplay_sources = \"allowlist\"\n",
    );
    let c = &report.pipeline.counts;
    assert_eq!((c.received, c.dispatched), (53, 48));
    assert!(
        c.drops_by_reason().contains(&("source_refused", 1)),
        "{report}"
    );
    assert!(!report
        .session_names()
        .contains(&"203.0.113.9/666".to_string()));
}

#[test]
fn plain_captures_form_a_session_named_after_the_file() {
    let (log, report) = check_capture("plain.pcapng", "plain.txt");
    assert_eq!(report.plain_sessions, ["plain.pcapng"]);
    assert!(log
        .lines()
        .filter(|l| !l.starts_with("tick") && !l.starts_with("flush"))
        .all(|l| l.contains(" plain.pcapng ")));
    // The cooked (SLL2) interface's frames reach modules as Ethernet, cut by its 148-byte snap length.
    assert!(
        log.contains("len=142 orig=1454 6 172.31.7.30:5432 > 172.31.5.10:41000"),
        "{log}"
    );
    let (_, sll) = check_capture("plain-sll.pcap", "plain-sll.txt");
    assert_eq!(sll.pipeline.counts.dispatched, 12);
}

#[test]
fn mixed_files_in_one_replay() {
    let files = [
        capture("aws-mirror.pcap"),
        capture("plain.pcapng"),
        capture("plain.pcapng"),
    ];
    // A reader thread, then the shards reading in turns: the same packets, sessions and log.
    let (log, report) = run(&files, 2, "");
    assert_eq!(report.pipeline.counts.received, 53 + 48 + 48);
    assert_eq!(report.plain_sessions, ["plain.pcapng", "plain.pcapng#2"]);
    assert_eq!(report.session_names().len(), 6);
    let (turns, by_turns) = run_flows(&files, 2, "", true);
    assert_eq!(by_turns.pipeline.counts, report.pipeline.counts);
    assert_eq!(by_turns.plain_sessions, report.plain_sessions);
    assert_eq!(by_turns.session_names(), report.session_names());
    assert_eq!(turns, log);
}

#[test]
fn third_party_captures() {
    let (log, _) = check_capture(
        "third-party/vxlan-encapsulated-http.pcap",
        "third-party-vxlan-encapsulated-http.txt",
    );
    assert!(log.contains("len=9050 orig=9050"));
    let (log, report) = check_capture("third-party/vxlan.pcap", "third-party-vxlan.txt");
    assert_eq!(
        report.session_names(),
        ["192.168.56.11/123", "192.168.56.12/123"]
    );
    assert_eq!(
        log.matches(" 1 10.0.0.1:0 > 10.0.0.2:0 ip_len=84").count(),
        4,
        "Zeek: 4 packets / 336 IP bytes"
    );
    let (log, _) = check_capture(
        "third-party/geneve-vxlan-dns-truncated.pcap",
        "third-party-geneve-vxlan-dns-truncated.txt",
    );
    assert!(log.contains("17 172.16.11.201:36872 > 1.1.1.1:53 ip_len=82"));
    assert!(log.contains("17 1.1.1.1:53 > 172.16.11.201:36872 ip_len=102"));
}

#[test]
fn unreadable_files_are_reported_and_the_rest_replayed() {
    let tmp = common::temp_dir("vxtap-replay-bad-");
    let dir = tmp.path();
    let text = dir.join("notes.txt");
    std::fs::write(&text, "not a capture").unwrap();
    let missing = dir.join("missing.pcap");
    let files = [text.clone(), capture("plain-sll.pcap"), missing.clone()];
    // One shard: this thread reads. Two with flow tables: the shard threads read in turns.
    for shards in [1, 2] {
        let (_, report) = run_flows(&files, shards, "", shards == 2);
        assert!(!report.complete());
        assert_eq!(report.pipeline.counts.dispatched, 12, "{shards} shards");
        let summary = report.to_string();
        assert!(
            summary.contains("not a pcap or pcapng file (magic 6e6f7420)"),
            "{summary}"
        );
        assert!(
            summary.contains("missing.pcap: No such file or directory"),
            "{summary}"
        );
        let files: Vec<_> = report.files.iter().map(|f| f.path.clone()).collect();
        assert_eq!(
            files,
            [text.clone(), capture("plain-sll.pcap"), missing.clone()]
        );
    }
}

/// The CLI as a user runs it: the stats module's JSON records on stdout, the summary on stderr.
#[test]
fn cli_replay_with_stats_records() {
    let config = Path::new(ROOT).join("tests/golden/stats.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_vxtap"))
        .current_dir(ROOT)
        .args(["replay", "--log-level", "error", "--config"])
        .arg(&config)
        .args(["pcaps/aws-mirror.pcap", "pcaps/plain.pcapng"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    golden("cli-stats.txt", &format!("{stdout}--\n{stderr}"));
    for line in stdout.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(v["packets"].as_u64().unwrap() > 0);
    }

    let bad = Command::new(env!("CARGO_BIN_EXE_vxtap"))
        .args(["replay", "/nonexistent.pcap"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("/nonexistent.pcap: No such file or directory"),
        "{stderr}"
    );
    assert!(
        stderr.contains("vxtap: not every capture could be read to its end"),
        "{stderr}"
    );
}

/// `cargo run --example make_pcaps` rebuilds pcaps/ byte for byte.
#[test]
fn sample_captures_are_reproducible() {
    let tmp = common::temp_dir("vxtap-make-pcaps-");
    let dir = tmp.path();
    let status = Command::new(env!("CARGO"))
        .current_dir(ROOT)
        .args(["run", "--quiet", "--example", "make_pcaps", "--"])
        .arg(dir)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let mut total = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        let fresh = std::fs::read(entry.path()).unwrap();
        let committed = std::fs::read(capture(name.to_str().unwrap()))
            .unwrap_or_else(|e| panic!("pcaps/{}: {e}", name.to_string_lossy()));
        assert!(
            fresh == committed,
            "pcaps/{} is not what the generator writes",
            name.to_string_lossy()
        );
        total += fresh.len();
    }
    assert!(
        total < 1 << 20,
        "the sample captures stay small: {total} bytes"
    );
}

/// Raw IP captures (tcpdump on a tun device, or LINKTYPE_RAW exports) reach modules as Ethernet frames,
/// with their original length kept.
#[test]
fn raw_ip_captures_become_ethernet_frames() {
    let mut v4 = Vec::new();
    etherparse::PacketBuilder::ipv4([192, 168, 1, 1], [192, 168, 1, 2], 64)
        .udp(1000, 2000)
        .write(&mut v4, &[7; 100])
        .unwrap();
    let mut v6 = Vec::new();
    etherparse::PacketBuilder::ipv6([0xfd; 16], [0xfe; 16], 64)
        .tcp(3000, 443, 1, 100)
        .write(&mut v6, &[])
        .unwrap();
    // Big-endian nanosecond pcap, link type 101; the IPv4 record is cut to 40 bytes.
    let mut file = vec![0xa1, 0xb2, 0x3c, 0x4d, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0];
    file.extend_from_slice(&65535u32.to_be_bytes());
    file.extend_from_slice(&101u32.to_be_bytes());
    for (i, (data, orig)) in [(&v4[..40], v4.len()), (&v6[..], v6.len())]
        .into_iter()
        .enumerate()
    {
        for v in [1_700_000_000, i as u32 * 5, data.len() as u32, orig as u32] {
            file.extend_from_slice(&v.to_be_bytes());
        }
        file.extend_from_slice(data);
    }
    let pcap = common::temp_file("vxtap-raw-", ".pcap");
    let path = pcap.path().to_path_buf();
    std::fs::write(&path, &file).unwrap();
    let (log, report) = run(std::slice::from_ref(&path), 1, "");
    let name = path.file_name().unwrap().to_str().unwrap();
    assert_eq!(report.plain_sessions, [name]);
    let lines: Vec<&str> = log.lines().filter(|l| l.starts_with("1700")).collect();
    assert_eq!(
        lines,
        [
            format!("1700000000.000000000 {name} len=54 orig=142 17 192.168.1.1:1000 > 192.168.1.2:2000 ip_len=128 cut=payload payload=12"),
            format!("1700000000.000000005 {name} len=74 orig=74 6 fdfd:fdfd:fdfd:fdfd:fdfd:fdfd:fdfd:fdfd:3000 > fefe:fefe:fefe:fefe:fefe:fefe:fefe:fefe:443 ip_len=60 tcp_flags=0x00 payload=0"),
        ]
    );
}

/// A classic pcap (little-endian, microseconds, Ethernet) of `(seconds, frame)` records, removed when
/// the returned handle drops.
fn write_pcap(records: &[(u32, Vec<u8>)]) -> tempfile::NamedTempFile {
    let mut file = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    file.extend_from_slice(&65535u32.to_le_bytes());
    file.extend_from_slice(&1u32.to_le_bytes());
    for (secs, frame) in records {
        for v in [*secs, 0, frame.len() as u32, frame.len() as u32] {
            file.extend_from_slice(&v.to_le_bytes());
        }
        file.extend_from_slice(frame);
    }
    let pcap = common::temp_file("vxtap-gen-", ".pcap");
    std::fs::write(pcap.path(), &file).unwrap();
    pcap
}

/// An Ethernet/IPv4/UDP datagram from `source` to port 4789 carrying a VXLAN header with `vni` and a
/// small inner frame.
fn mirror_frame(source: [u8; 4], vni: u32) -> Vec<u8> {
    let mut inner = Vec::new();
    etherparse::PacketBuilder::ethernet2([2; 6], [4; 6])
        .ipv4([172, 31, 0, 1], [172, 31, 0, 2], 64)
        .udp(1000, 2000)
        .write(&mut inner, b"x")
        .unwrap();
    let mut payload = vec![0x08, 0, 0, 0, 0, 0, 0, 0];
    payload[4..7].copy_from_slice(&vni.to_be_bytes()[1..]);
    payload.extend_from_slice(&inner);
    let mut f = Vec::new();
    etherparse::PacketBuilder::ethernet2([6; 6], [8; 6])
        .ipv4(source, [10, 0, 0, 100], 64)
        .udp(50000, 4789)
        .write(&mut f, &payload)
        .unwrap();
    f
}

/// Learned sessions expire on packet time during replay as they would live, so a long capture does
/// not fill the session table where a live run would not.
#[test]
fn idle_learned_sessions_expire_on_packet_time() {
    let t0 = 1_700_000_000;
    let pcap = write_pcap(&[
        (t0, mirror_frame([10, 0, 0, 1], 1)),
        (t0 + 5, mirror_frame([10, 0, 0, 1], 1)),
        // Session 10.0.0.2/2 arrives while the first is still fresh: the table (one slot) is full.
        (t0 + 6, mirror_frame([10, 0, 0, 2], 2)),
        // Two minutes later the first has been idle longer than its 60 s timeout.
        (t0 + 125, mirror_frame([10, 0, 0, 2], 2)),
    ]);
    let path = pcap.path().to_path_buf();
    let (log, report) = run(
        std::slice::from_ref(&path),
        1,
        "[sessions]\nmax_learned = 1\nidle_timeout_secs = 60\n",
    );
    let c = &report.pipeline.counts;
    assert_eq!(c.dispatched, 3, "{report}");
    assert_eq!(c.drops_by_reason(), [("session_table_full", 1)], "{report}");
    assert!(
        log.contains(&format!("{}.000000000 10.0.0.2/2 ", t0 + 125)),
        "{log}"
    );
    assert_eq!(report.session_names(), ["10.0.0.2/2"]);
}

/// `vxtap replay` on the embedded default config: the flowlog module's VPC Flow Logs records for the
/// sample captures, the same on every run, and the same set with four shards.
#[test]
fn cli_replay_with_the_default_modules() {
    let replay = |shards: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_vxtap"))
            .current_dir(ROOT)
            .env_remove("VXTAP_CONFIG")
            .args(["replay", "--log-level", "error", "--shards", shards])
            .args([
                "pcaps/aws-mirror.pcap",
                "pcaps/gwlb-geneve.pcapng",
                "pcaps/plain.pcapng",
            ])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(out.status.success(), "{stderr}");
        (String::from_utf8(out.stdout).unwrap(), stderr)
    };
    let (records, summary) = replay("1");
    assert!(records.lines().count() > 20, "{records}");
    golden("cli-default.txt", &format!("{records}--\n{summary}"));
    let (four, _) = replay("4");
    let sorted = |s: &str| {
        let mut v: Vec<String> = s.lines().map(str::to_owned).collect();
        v.sort();
        v
    };
    assert_eq!(sorted(&records), sorted(&four));
}

/// `tcpdump -w - | vxtap replay -`: a capture streamed through a pipe gives the same records as the
/// file itself.
#[test]
fn cli_replay_from_a_pipe() {
    let replay = |args: &[&str], input: Option<Vec<u8>>| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_vxtap"))
            .current_dir(ROOT)
            .env_remove("VXTAP_CONFIG")
            .args(["replay", "--log-level", "error"])
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let writer = std::thread::spawn(move || {
            if let Some(bytes) = input {
                // Small writes, as a capturing tcpdump would make.
                for chunk in bytes.chunks(1000) {
                    std::io::Write::write_all(&mut stdin, chunk).unwrap();
                }
            }
        });
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(out.status.success(), "{stderr}");
        (String::from_utf8(out.stdout).unwrap(), stderr)
    };
    let bytes = std::fs::read(capture("aws-mirror.pcap")).unwrap();
    let (piped, summary) = replay(&["-"], Some(bytes));
    let (direct, _) = replay(&["pcaps/aws-mirror.pcap"], None);
    assert_eq!(piped, direct);
    assert!(piped.lines().count() > 10);
    assert!(
        summary.starts_with("file -: 53 records, 52 encapsulated, 0 plain, 1 unusable\n"),
        "{summary}"
    );
}
