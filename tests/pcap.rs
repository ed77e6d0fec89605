//! The pcap module as a user meets it: files written from real captures and crafted traffic, read
//! back by tshark; a vxtap process killed with SIGKILL mid-write; a disk that fills up while the other
//! modules keep counting.
//!
//! tshark is required: without it these tests fail under CI=true and are skipped (with a message)
//! elsewhere.

mod common;

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use vxtap::base::Timestamp;
use vxtap::pipeline::Encap;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/pcaps/third-party/");

/// tshark's fields, one row per packet; fails the test if tshark reports any problem with the file.
fn read_fields(file: &Path, fields: &[&str]) -> Vec<Vec<String>> {
    tshark::fields(file, "", fields, true)
}

fn temp_dir(name: &str) -> tempfile::TempDir {
    common::temp_dir(&format!("vxtap-pcap-{name}-"))
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    v.sort();
    v
}

fn capture(name: &str) -> Vec<Datagram> {
    capture_datagrams(&format!("{DIR}{name}"))
}

fn run(config: &str, datagrams: &[Datagram]) -> Vec<ModuleTotals> {
    run_offline(config, datagrams)
}

fn pcap_module(dir: &Path, extra: &str, output: &str) -> String {
    format!(
        "[[module]]\nkind = \"pcap\"\n{extra}\n[module.output]\ndir = \"{}\"\n{output}\n",
        dir.display()
    )
}

const LABELLED_SESSION: &str = r#"
[[sessions.static]]
source = "192.168.56.11"
vni = 123
eni = "eni-0aaa"
labels = { env = "lab", team = "net" }
"#;

#[test]
fn pcapng_names_each_session_as_an_interface() {
    if !tshark::available() {
        return;
    }
    let tmp = temp_dir("sessions");
    let dir = tmp.path();
    let config = format!(
        "{LABELLED_SESSION}[pipeline]\nshards = 1\n{}",
        pcap_module(dir, "", "")
    );
    let counters = run(&config, &capture("vxlan.pcap"));
    assert_eq!(counters, [(10, 10, 0, 0)]);
    let files = files_in(dir);
    assert_eq!(files.len(), 1, "{files:?}");
    let name = files[0].file_name().unwrap().to_str().unwrap();
    // 1467818432 = 2016-07-06 15:20:32 UTC, the first packet's time.
    assert_eq!(name, "vxtap-shard0_20160706T152032Z_0001.pcapng");
    let rows = read_fields(
        &files[0],
        &[
            "frame.interface_name",
            "frame.interface_description",
            "frame.time_epoch",
            "frame.len",
            "frame.cap_len",
            "ip.src",
        ],
    );
    assert_eq!(rows.len(), 10);
    let by_source = |src: &str| rows.iter().filter(|r| r[5] == src).collect::<Vec<_>>();
    // 10.0.0.1's echo requests were mirrored by the labelled session (ENI id as the name); 10.0.0.2's
    // replies by the learned one, named source/vni.
    for r in by_source("10.0.0.1") {
        assert_eq!(r[0], "eni-0aaa");
        assert_eq!(
            r[1],
            "vni=123 source=192.168.56.11 session=eni-0aaa env=lab team=net"
        );
        assert_eq!((r[3].as_str(), r[4].as_str()), ("98", "98"));
    }
    for r in by_source("10.0.0.2") {
        assert_eq!(r[0], "192.168.56.12/123");
        assert_eq!(
            r[1],
            "vni=123 source=192.168.56.12 session=192.168.56.12/123"
        );
    }
    assert_eq!(by_source("10.0.0.1").len() + by_source("10.0.0.2").len(), 8);
    // Nanosecond timestamps from the packets.
    assert_eq!(rows[0][2], "1467818432.675392000");
}

#[test]
fn truncation_shows_as_captured_versus_original_length() {
    if !tshark::available() {
        return;
    }
    // The module's own snap length cuts the jumbo frame; the original length stays 9,050.
    let tmp = temp_dir("snap");
    let dir = tmp.path();
    let config = format!(
        "[pipeline]\nshards = 1\n{}",
        pcap_module(dir, "snaplen = 128", "")
    );
    run(&config, &capture("vxlan-encapsulated-http.pcap"));
    let files = files_in(dir);
    let rows = read_fields(&files[0], &["frame.len", "frame.cap_len"]);
    assert_eq!(rows.len(), 12);
    assert!(rows.iter().any(|r| r == &["9050", "128"]), "{rows:?}");
    assert!(rows.iter().all(|r| r[1].parse::<u32>().unwrap() <= 128));

    // The GWLB capture's 176-byte snap length cut both DNS packets before vxtap saw them: their
    // original lengths come from the IP headers (14 + 82 and 14 + 102 bytes).
    let tmp = temp_dir("cut");
    let dir = tmp.path();
    run(
        &format!("[pipeline]\nshards = 1\n{}", pcap_module(dir, "", "")),
        &capture("geneve-vxlan-dns-truncated.pcap"),
    );
    let files = files_in(dir);
    let rows = read_fields(&files[0], &["frame.len", "frame.cap_len", "udp.srcport"]);
    assert_eq!(rows.len(), 2);
    // Outer frames of 182 and 202 bytes cut to 176: 6 and 26 bytes short.
    assert_eq!(rows[0], ["96", "90", "36872"]);
    assert_eq!(rows[1], ["116", "90", "53"]);
}

#[test]
fn classic_pcap_one_file_per_session_and_a_session_filter() {
    if !tshark::available() {
        return;
    }
    let tmp = temp_dir("classic");
    let dir = tmp.path();
    let config = format!(
        "{LABELLED_SESSION}[pipeline]\nshards = 2\n{}",
        pcap_module(dir, "format = \"pcap\"", "")
    );
    run(&config, &capture("vxlan.pcap"));
    let files = files_in(dir);
    let names: Vec<_> = files
        .iter()
        .map(|p| p.file_name().unwrap().to_str().unwrap().to_owned())
        .collect();
    let mut total = 0;
    for f in &files {
        let rows = read_fields(f, &["frame.len", "eth.type"]);
        total += rows.len();
        let magic = std::fs::read(f).unwrap()[..4].to_vec();
        assert_eq!(magic, [0x4d, 0x3c, 0xb2, 0xa1], "classic nanosecond pcap");
    }
    assert_eq!(total, 10);
    assert!(
        names.iter().any(|n| n.starts_with("vxtap-eni-0aaa-shard")),
        "{names:?}"
    );
    assert!(
        names
            .iter()
            .any(|n| n.starts_with("vxtap-192.168.56.12_123-shard")),
        "{names:?}"
    );
    assert!(names.iter().all(|n| n.ends_with(".pcap")));

    // Only the labelled session, by ENI id.
    let tmp = temp_dir("filter");
    let dir = tmp.path();
    let config = format!(
        "{LABELLED_SESSION}[pipeline]\nshards = 1\n{}",
        pcap_module(dir, "sessions = [\"eni-0aaa\"]", "")
    );
    run(&config, &capture("vxlan.pcap"));
    let rows = read_fields(&files_in(dir)[0], &["frame.interface_name"]);
    assert_eq!(rows.len(), 5, "4 echo requests and one ARP");
    assert!(rows.iter().all(|r| r[0] == "eni-0aaa"));
}

/// `n` TCP packets of `payload` bytes each, one every 10 ms from `start` seconds, in session
/// 10.9.0.1/7.
fn tcp_stream(n: usize, payload: usize, start: u64) -> Vec<Datagram> {
    (0..n)
        .map(|i| {
            let frame = tcp4([10, 0, 0, 1], 40000, [10, 0, 0, 2], 443, &vec![7; payload]);
            (
                Timestamp::from_nanos(start * 1_000_000_000 + i as u64 * 10_000_000),
                "10.9.0.1".parse().unwrap(),
                Encap::Vxlan,
                vxlan(7, &frame),
            )
        })
        .collect()
}

#[test]
fn rotation_by_size_and_time_with_a_total_size_cap() {
    if !tshark::available() {
        return;
    }
    let tmp = temp_dir("ring");
    let dir = tmp.path();
    // 300 packets of 1,054 bytes (+32 per block) over 3 s; files of at most 20 kB; keep 60 kB.
    let config = format!(
        "[pipeline]\nshards = 1\n{}",
        pcap_module(
            dir,
            "",
            "rotate_bytes = 20000\nrotate_secs = 0\nmax_total_bytes = 60000\nbuffer_bytes = 4096"
        )
    );
    let packets = tcp_stream(300, 1000, 1_700_000_000);
    let counters = run(&config, &packets);
    assert_eq!(counters, [(300, 300, 0, 0)]);
    let files = files_in(dir);
    // 300 * 1,088 bytes = 326 kB in 20 kB files: 18 files written, the ring keeps the newest.
    let sizes: Vec<u64> = files.iter().map(|f| f.metadata().unwrap().len()).collect();
    assert!(sizes.iter().sum::<u64>() <= 60_000, "{sizes:?}");
    assert!(files.len() >= 2, "{files:?}");
    assert!(sizes.iter().all(|s| *s <= 20_000), "{sizes:?}");
    let seqs: Vec<u32> = files
        .iter()
        .map(|f| {
            let n = f.file_stem().unwrap().to_str().unwrap();
            n.rsplit('_').next().unwrap().parse().unwrap()
        })
        .collect();
    // About 18 packets per file: 17 files were written, and the ring kept the newest, consecutively.
    assert_eq!(
        *seqs.last().unwrap(),
        17,
        "the newest file survives: {seqs:?}"
    );
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
    let mut seen = 0;
    for f in &files {
        let rows = read_fields(f, &["frame.len"]);
        assert!(rows.iter().all(|r| r[0] == "1054"));
        seen += rows.len();
    }
    // The last file holds the newest packets, through the very last.
    let last = read_fields(files.last().unwrap(), &["frame.time_epoch"]);
    assert_eq!(last.last().unwrap()[0], "1700000002.990000000");
    assert!(seen < 300);

    // Time rotation: one file per 1 s of packet time, UTC-aligned.
    let tmp = temp_dir("time");
    let dir = tmp.path();
    let config = format!(
        "[pipeline]\nshards = 1\n{}",
        pcap_module(dir, "", "rotate_secs = 1")
    );
    run(&config, &packets);
    let names: Vec<_> = files_in(dir)
        .iter()
        .map(|p| p.file_name().unwrap().to_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        names,
        [
            "vxtap-shard0_20231114T221320Z_0001.pcapng",
            "vxtap-shard0_20231114T221321Z_0002.pcapng",
            "vxtap-shard0_20231114T221322Z_0003.pcapng"
        ]
    );
    for f in files_in(dir) {
        assert_eq!(read_fields(&f, &["frame.number"]).len(), 100);
    }
}

/// A tmpfs of `size` bytes, unmounted when dropped. Root can write through any permission bits, so
/// a small filesystem is the honest way to make writes fail.
/// The mount point is a temporary directory, removed (empty again) after the unmount.
struct TinyFs(tempfile::TempDir);

impl TinyFs {
    fn mount(size: &str) -> TinyFs {
        let dir = temp_dir("tmpfs");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mounting a tmpfs (needs root or CAP_SYS_ADMIN): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        TinyFs(dir)
    }

    fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for TinyFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.path()).status();
    }
}

#[test]
fn a_full_disk_stops_the_capture_not_vxtap() {
    if !tshark::available() {
        return;
    }
    let fs = TinyFs::mount("64k");
    let flows_tmp = temp_dir("flows-beside-full-disk");
    let flows = flows_tmp.path();
    // pcap on the tiny disk; flowlog and stats elsewhere. 1 s rotation: the pcap output retries on
    // each new second of packet time.
    let config = format!(
        "[pipeline]\nshards = 1\n{}\n[[module]]\nkind = \"flowlog\"\n[module.output]\ndir = \"{}\"\n\n[[module]]\nkind = \"stats\"\n",
        pcap_module(fs.path(), "", "rotate_secs = 1\nbuffer_bytes = 8192"),
        flows.display()
    );
    // 100 packets (about 108 kB) in the first second: the disk fills.
    let mut packets = tcp_stream(100, 1000, 1_700_000_000);
    let counters = run(&config, &packets);
    let (pcap, flowlog, stats) = (counters[0], counters[1], counters[2]);
    assert_eq!(pcap.0, 100);
    assert!(pcap.2 > 0, "write errors are counted: {pcap:?}");
    assert_eq!(flowlog.0, 100, "the other modules saw everything");
    assert_eq!(stats.0, 100);
    let text = std::fs::read_to_string(&files_in(flows)[0]).unwrap();
    assert!(
        text.contains(" 10.0.0.1 10.0.0.2 40000 443 6 100 104000 "),
        "{text}"
    );
    // What reached the disk reads cleanly: the failed write was undone to the last whole block.
    let files = files_in(fs.path());
    assert_eq!(files.len(), 1, "{files:?}");
    let rows = read_fields(&files[0], &["frame.len"]);
    // Every packet is in the file or counted as an error (those lost from the buffer by the failed
    // write included).
    assert_eq!(rows.len() as u64 + pcap.2, 100, "{pcap:?}");
    assert!(!rows.is_empty());

    // Free the disk; the next second of packets opens a new file and is written.
    for f in files_in(fs.path()) {
        std::fs::remove_file(f).unwrap();
    }
    packets = tcp_stream(100, 1000, 1_700_000_000);
    packets.extend(tcp_stream(5, 100, 1_700_000_002));
    let counters = run(&config, &packets);
    let pcap = counters[0];
    assert_eq!(pcap.0, 105);
    let files = files_in(fs.path());
    assert_eq!(files.len(), 2, "{files:?}");
    let later = read_fields(&files[1], &["frame.len"]);
    assert_eq!(later.len(), 5, "written again after the rotation");
    let first = read_fields(&files[0], &["frame.len"]);
    assert_eq!(first.len() as u64 + 5 + pcap.2, 105, "{pcap:?}");
}

#[test]
fn kill_9_mid_write_leaves_files_tshark_reads() {
    if !tshark::available() {
        return;
    }
    let tmp = temp_dir("kill9");
    let dir = tmp.path();
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config_path = dir.join("vxtap.toml");
    let out_dir = dir.join("out");
    std::fs::write(
        &config_path,
        format!(
            "[ingest]\nvxlan = [\"127.0.0.1:{port}\"]\nworkers = 1\nreceive_buffer_bytes = 0\n\
             [health]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n\
             [pipeline]\nshards = 2\ntick_ms = 20\n\
             [[module]]\nkind = \"pcap\"\n[module.output]\ndir = \"{}\"\nbuffer_bytes = 3000\n",
            out_dir.display()
        ),
    )
    .unwrap();
    let (mut child, _stderr, log) = spawn_vxtap(&config_path, Stdio::null());
    // Keep sending (bounded: at most 5 s) until the files hold at least 200 kB, then kill -9 while
    // packets are still arriving and being written.
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut sent = 0u32;
    let on_disk = || -> u64 {
        std::fs::read_dir(&out_dir)
            .map(|d| {
                d.flatten()
                    .map(|e| e.metadata().map_or(0, |m| m.len()))
                    .sum()
            })
            .unwrap_or(0)
    };
    while Instant::now() < deadline {
        for _ in 0..50 {
            let frame = tcp4(
                [10, 0, 0, 1],
                10000 + (sent % 500) as u16,
                [10, 0, 0, 2],
                443,
                &vec![0x5a; 700 + (sent % 300) as usize],
            );
            tx.send_to(&vxlan(7, &frame), ("127.0.0.1", port)).unwrap();
            sent += 1;
        }
        if on_disk() > 200_000 {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    child.wait().unwrap();
    let files = files_in(&out_dir);
    assert!(!files.is_empty(), "{log}");
    let mut read = 0;
    for f in &files {
        // read_fields fails on any complaint, e.g. "cut short in the middle of a packet".
        let rows = read_fields(f, &["frame.len", "frame.cap_len"]);
        assert!(rows.iter().all(|r| r[0] == r[1]));
        read += rows.len();
    }
    assert!(read > 100, "read {read} packets of {sent} sent");
}
