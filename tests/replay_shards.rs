//! `vxtap replay` writes the same bytes whatever the number of shards (issue 14, goal 3): every
//! module's records are merged in the order of the input, ticks reach every shard at the same place
//! in the input, and records emitted at a tick or at the end are ordered by module, by the key the
//! module gave (`Emitter::order`), then by their bytes. Checked with
//! the real binary on every capture in pcaps/ and on a generated ENI-like capture with thousands of
//! flows opening and closing (DNS, TLS, HTTP, SSH, fragments, malformed datagrams), to standard
//! output (where modules share one stream) and to rotating files.

mod common;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::LazyLock;

#[path = "../benches/common/payloads.rs"]
mod payloads;

#[path = "../benches/common/eni.rs"]
mod eni;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Every module that writes line records, to standard output, with thresholds the small captures
/// reach. detect, connectivity, stats and accessscope merge across shards through their interval
/// board (accessscope: one record per scope, session, client, server and server port, whichever
/// shards the connections between them were steered to); the others' records are per flow.
/// accessscope runs bench/'s ten scopes, which the ENI-like capture's flows are findings of.
const LINE_MODULES: &str = "\
[[module]]\nkind = \"stats\"\ninterval_secs = 10\noutput = \"stdout\"\n\
[[module]]\nkind = \"flowlog\"\ninterval_secs = 60\n\
[[module]]\nkind = \"dns\"\n\
[[module]]\nkind = \"tls\"\n\
[[module]]\nkind = \"http\"\n\
[[module]]\nkind = \"connectivity\"\n\
[[module]]\nkind = \"detect\"\nport_scan_threshold = 15\naddress_scan_threshold = 25\n\
syn_flood_threshold = 100\nicmp_flood_threshold = 100\n\
[[module]]\nkind = \"accessscope\"\nvpc_cidrs = [\"10.0.0.0/8\", \"2600:1f18:4000::/40\"]\n\
scopes = [\"bench/scopes/01-eni-to-internet.json\", \"bench/scopes/02-no-inbound-db.json\", \
\"bench/scopes/03-ssh-from-outside.json\", \"bench/scopes/04-sg-to-internet.json\", \
\"bench/scopes/05-blocklist.json\", \"bench/scopes/06-dns-not-via-resolver.json\", \
\"bench/scopes/07-privileged-ports-to-internet.json\", \"bench/scopes/08-instance-to-other-vpc.json\", \
\"bench/scopes/09-ipv6-to-internet.json\", \"bench/scopes/10-smtp-out.json\"]\n\
[module.prefix_lists]\n\"pl-0123456789abcdef0\" = [\"10.17.0.0/16\", \"10.33.0.0/16\", \"10.49.0.0/16\"]\n";

fn temp(name: &str) -> tempfile::TempDir {
    common::temp_dir(&format!("vxtap-shards-{name}-"))
}

/// The ENI-like capture, small: 4,000 flows, at most 600 at once, 3 sessions. A static is never
/// dropped, so a temporary directory would outlive the run: the capture is written afresh on each run
/// to one path in cargo's scratch directory for integration tests (target/tmp), replacing the last
/// run's through a rename (a concurrent run reads a whole file), never adding another.
static ENI: LazyLock<PathBuf> = LazyLock::new(|| {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let mut file = tempfile::Builder::new()
        .prefix("replay_shards-eni-")
        .tempfile_in(dir)
        .unwrap();
    let mut out = std::io::BufWriter::new(file.as_file_mut());
    eni::write_pcap(
        eni::EniConfig {
            flows: 4_000,
            concurrent: 600,
            sessions: 3,
            seed: 14,
        },
        &mut out,
    )
    .unwrap();
    out.flush().unwrap();
    drop(out);
    let path = dir.join("replay_shards-eni.pcap");
    file.persist(&path).unwrap();
    path
});

/// Every capture of the project's own, and the third-party ones.
fn captures() -> Vec<PathBuf> {
    let mut all = Vec::new();
    for dir in ["pcaps", "pcaps/third-party"] {
        for entry in std::fs::read_dir(Path::new(ROOT).join(dir)).unwrap() {
            let path = entry.unwrap().path();
            let ext = path.extension().and_then(|e| e.to_str());
            if matches!(ext, Some("pcap" | "pcapng")) {
                all.push(path);
            }
        }
    }
    all.sort();
    assert!(all.len() >= 10, "{all:?}");
    all
}

/// Runs `vxtap replay` with `config` (written to a file in `dir`) over `files`; returns stdout.
fn replay(dir: &Path, config: &str, files: &[PathBuf], shards: Option<u16>) -> Vec<u8> {
    let path = dir.join("config.toml");
    std::fs::write(&path, config).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vxtap"));
    cmd.current_dir(ROOT)
        .args(["replay", "--log-level", "error", "--config"])
        .arg(&path);
    if let Some(n) = shards {
        cmd.args(["--shards", &n.to_string()]);
    }
    let out = cmd.args(files).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Every file under `dir` but the config, by name, with its bytes.
fn outputs(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    common::files_under(dir)
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n != "config.toml"))
        .map(|p| {
            let name = p.strip_prefix(dir).unwrap().display().to_string();
            (name, std::fs::read(&p).unwrap())
        })
        .collect()
}

fn count(text: &str, needle: &str) -> usize {
    text.lines().filter(|l| l.contains(needle)).count()
}

/// Asserts that `other` is `one` byte for byte, naming the first line that differs.
fn same(one: &[u8], other: &[u8], what: &str) {
    if one == other {
        return;
    }
    let (a, b) = (String::from_utf8_lossy(one), String::from_utf8_lossy(other));
    for (i, (x, y)) in a.lines().zip(b.lines()).enumerate() {
        assert_eq!(x, y, "{what}: line {} differs", i + 1);
    }
    panic!(
        "{what}: {} lines against {} with one shard",
        b.lines().count(),
        a.lines().count()
    );
}

#[test]
fn stdout_is_the_same_bytes_with_one_to_four_shards() {
    let tmp = temp("stdout");
    let dir = tmp.path();
    let mut files = captures();
    files.push(ENI.clone());
    let one = replay(dir, LINE_MODULES, &files, Some(1));
    let text = String::from_utf8(one.clone()).unwrap();
    // Every module wrote something, or the comparison would prove nothing about it.
    for (module, needle) in [
        ("flowlog", " ACCEPT OK"),
        ("stats", "{\"time\":"),
        ("dns", "\"event_type\":\"dns\""),
        ("tls", "\"event_type\":\"tls\""),
        ("http", "\"event_type\":\"http\""),
        ("connectivity", "\"event_type\":\"connectivity\""),
        ("detect", "\"event_type\":\"detect\""),
        ("accessscope", "\"event_type\":\"accessscope\""),
    ] {
        assert!(count(&text, needle) > 0, "no {module} record in {text}");
    }
    assert!(
        count(&text, " ACCEPT OK") > 4_000,
        "the ENI capture's flows"
    );
    for shards in [2, 3, 4] {
        let other = replay(dir, LINE_MODULES, &files, Some(shards));
        same(&one, &other, &format!("{shards} shards"));
    }
    // The default is one shard per core, and the same bytes.
    same(&one, &replay(dir, LINE_MODULES, &files, None), "default");
}

#[test]
fn each_capture_alone_gives_the_same_bytes_with_two_and_three_shards() {
    let tmp = temp("each");
    let dir = tmp.path();
    let mut files = captures();
    files.push(ENI.clone());
    for file in files {
        let files = [file];
        let one = replay(dir, LINE_MODULES, &files, Some(1));
        for shards in [2, 3] {
            let other = replay(dir, LINE_MODULES, &files, Some(shards));
            same(
                &one,
                &other,
                &format!("{} with {shards} shards", files[0].display()),
            );
        }
    }
}

#[test]
fn file_outputs_have_the_same_names_and_bytes_with_any_number_of_shards() {
    let run = |shards: u16| {
        let tmp = temp(&format!("files{shards}"));
        let dir = tmp.path();
        let out = |name: &str| {
            format!(
                "[module.output]\ntype = \"file\"\ndir = \"{}\"\nrotate_secs = 60\n",
                dir.join(name).display()
            )
        };
        let config = format!(
            "[[module]]\nkind = \"flowlog\"\ninterval_secs = 60\n{}\
             [[module]]\nkind = \"dns\"\n{}\
             [[module]]\nkind = \"tls\"\n{}\
             [[module]]\nkind = \"stats\"\ninterval_secs = 10\n{}",
            out("flowlog"),
            out("dns"),
            out("tls"),
            out("stats"),
        );
        let stdout = replay(dir, &config, std::slice::from_ref(&*ENI), Some(shards));
        assert!(stdout.is_empty(), "every record went to a file");
        outputs(dir)
    };
    let one = run(1);
    let names: Vec<&String> = one.keys().collect();
    // One series per module (named as shard 0's), several files each (the capture spans minutes).
    for module in ["flowlog/", "dns/", "tls/", "stats/"] {
        assert!(
            names.iter().filter(|n| n.starts_with(module)).count() >= 2,
            "{names:?}"
        );
    }
    assert!(names.iter().all(|n| n.contains("shard0")), "{names:?}");
    for shards in [2, 4] {
        let other = run(shards);
        assert_eq!(
            one.keys().collect::<Vec<_>>(),
            other.keys().collect::<Vec<_>>(),
            "{shards} shards"
        );
        for (name, bytes) in &one {
            same(bytes, &other[name], &format!("{name} with {shards} shards"));
        }
    }
}

/// A module of a user's that gives its tick records order keys out of order (descending), and
/// writes what it holds at the end with no key at all, in a hash map's order: the merge must still
/// give the same bytes whatever the shard count (the collector holds such a tick's records and sorts
/// them), only slower.
mod disorderly {
    use std::collections::HashMap;
    use std::io::Write;
    use std::path::PathBuf;

    use serde::Deserialize;
    use vxtap::base::FlowKey;
    use vxtap::modules::{BuildError, Emitter, Module, ModuleConfig, ModuleContext};
    use vxtap::sinks::Sink;
    use vxtap::{Packet, Timestamp};

    #[derive(Debug, Deserialize)]
    pub struct Config {
        pub path: PathBuf,
    }

    impl ModuleConfig for Config {
        fn build(&self, _ctx: &ModuleContext) -> Result<Box<dyn Module>, BuildError> {
            Ok(Box::new(Disorderly::default()))
        }

        fn sink(&self, _ctx: &ModuleContext) -> Result<Box<dyn Sink>, BuildError> {
            let file = std::fs::File::create(&self.path)
                .map_err(|e| BuildError::new(format!("{}: {e}", self.path.display())))?;
            Ok(Box::new(FileOut(std::io::BufWriter::new(file))))
        }
    }

    struct FileOut(std::io::BufWriter<std::fs::File>);

    impl Sink for FileOut {
        fn write(&mut self, _now: Timestamp, record: &[u8]) -> std::io::Result<()> {
            self.0.write_all(record)
        }
        fn flush(&mut self, _now: Timestamp) -> std::io::Result<()> {
            self.0.flush()
        }
    }

    #[derive(Default)]
    struct Disorderly {
        /// Last-seen time (ns) of each flow direction since the last tick.
        last: HashMap<FlowKey, u64>,
        /// And since the start.
        all: HashMap<FlowKey, u64>,
    }

    impl Module for Disorderly {
        fn on_packet(&mut self, pkt: &Packet<'_>, _out: &mut Emitter<'_>) {
            if let Some(flow) = pkt.flow() {
                self.last.insert(flow, pkt.ts.nanos());
                self.all.insert(flow, pkt.ts.nanos());
            }
        }

        fn on_tick(&mut self, now: Timestamp, out: &mut Emitter<'_>) {
            let mut flows: Vec<(u64, FlowKey)> = self.last.drain().map(|(k, t)| (t, k)).collect();
            // Least recently seen first, keyed most recently seen first: every key is below the
            // one before it.
            flows.sort_unstable();
            for (t, k) in flows {
                out.order(u128::MAX - u128::from(t));
                out.line(format_args!("tick {} last {t} {k:?}", now.nanos()));
            }
        }

        fn finish(&mut self, out: &mut Emitter<'_>) {
            for (k, t) in &self.all {
                out.line(format_args!("end last {t} {k:?}"));
            }
        }
    }
}

#[test]
fn a_module_giving_keys_out_of_order_or_none_still_gives_the_same_bytes() {
    let tmp = temp("disorderly");
    let dir = tmp.path();
    let run = |shards: u16| {
        let path = dir.join(format!("out{shards}.txt"));
        let text = format!(
            "[pipeline]\nshards = {shards}\n[[module]]\nkind = \"disorderly\"\npath = \"{}\"\n",
            path.display()
        );
        let config = vxtap::Config::parse(&text, "test").unwrap();
        let mut registry = vxtap::Registry::with_builtins();
        registry.register::<disorderly::Config>("disorderly");
        vxtap::ingest::replay::replay(config, registry, std::slice::from_ref(&*ENI)).unwrap();
        std::fs::read(&path).unwrap()
    };
    let one = run(1);
    let text = String::from_utf8(one.clone()).unwrap();
    assert!(count(&text, "tick ") > 4_000, "{}", count(&text, "tick "));
    // More than a chunk (1,024) of records without keys at the end.
    assert!(
        count(&text, "end last ") > 5_000,
        "{}",
        count(&text, "end last ")
    );
    // Within a tick, the keys' order: most recently seen first.
    let lasts: Vec<(u64, u64)> = text
        .lines()
        .filter_map(|l| {
            let mut w = l.split(' ');
            (w.next() == Some("tick")).then(|| {
                let now = w.next().unwrap().parse().unwrap();
                let last: u64 = w.nth(1).unwrap().parse().unwrap();
                (now, u64::MAX - last)
            })
        })
        .collect();
    assert!(lasts.is_sorted(), "tick records in key order");
    for shards in [2, 3] {
        same(&one, &run(shards), &format!("{shards} shards"));
    }
}

/// Two modules sharing one merged output (as modules on stdout do): `fragile` panics at the second
/// tick on the shard that saw no packet, and is switched off there; `bulk` writes more than the
/// merge may hold of one shard's records (1 MiB) at every tick, on every shard. The shard ahead
/// waits inside a tick for the others' collectors to pass it, a disabled module's included.
mod stalling {
    use std::io::Write;
    use std::path::PathBuf;

    use serde::Deserialize;
    use vxtap::modules::{BuildError, Emitter, Module, ModuleConfig, ModuleContext};
    use vxtap::sinks::Sink;
    use vxtap::{Packet, Timestamp};

    #[derive(Debug, Deserialize)]
    pub struct Fragile {
        pub path: PathBuf,
    }

    #[derive(Debug, Deserialize)]
    pub struct Bulk {}

    impl ModuleConfig for Fragile {
        fn build(&self, _ctx: &ModuleContext) -> Result<Box<dyn Module>, BuildError> {
            Ok(Box::new(Counting::default()))
        }

        /// The merge of the modules "on stdout" writes to the first one's sink: this file.
        fn sink(&self, _ctx: &ModuleContext) -> Result<Box<dyn Sink>, BuildError> {
            let file = std::fs::File::create(&self.path)
                .map_err(|e| BuildError::new(format!("{}: {e}", self.path.display())))?;
            Ok(Box::new(SharedOut(Some(std::io::BufWriter::new(file)))))
        }
    }

    impl ModuleConfig for Bulk {
        fn build(&self, _ctx: &ModuleContext) -> Result<Box<dyn Module>, BuildError> {
            Ok(Box::new(Writing))
        }

        fn sink(&self, _ctx: &ModuleContext) -> Result<Box<dyn Sink>, BuildError> {
            Ok(Box::new(SharedOut(None)))
        }
    }

    struct SharedOut(Option<std::io::BufWriter<std::fs::File>>);

    impl Sink for SharedOut {
        fn write(&mut self, _now: Timestamp, record: &[u8]) -> std::io::Result<()> {
            self.0.as_mut().map_or(Ok(()), |f| f.write_all(record))
        }
        fn flush(&mut self, _now: Timestamp) -> std::io::Result<()> {
            self.0.as_mut().map_or(Ok(()), |f| f.flush())
        }
        fn is_stdout(&self) -> bool {
            true
        }
    }

    #[derive(Default)]
    struct Counting {
        packets: u64,
        ticks: u64,
    }

    impl Module for Counting {
        fn on_packet(&mut self, _pkt: &Packet<'_>, _out: &mut Emitter<'_>) {
            self.packets += 1;
        }

        fn on_tick(&mut self, _now: Timestamp, _out: &mut Emitter<'_>) {
            self.ticks += 1;
            assert!(
                self.ticks < 2 || self.packets > 0,
                "this test's module fails on the idle shard"
            );
        }
    }

    struct Writing;

    impl Module for Writing {
        fn on_tick(&mut self, now: Timestamp, out: &mut Emitter<'_>) {
            for k in 0..12_000u64 {
                out.order(u128::from(k));
                out.line(format_args!("bulk {} {k:08} {:-<80}", now.nanos(), ""));
            }
        }
    }
}

/// One flow's VXLAN datagrams, `n` of them 0.5 ms apart.
fn one_flow_capture(n: u32) -> tempfile::NamedTempFile {
    let mut inner = Vec::new();
    etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4([172, 31, 0, 1], [172, 31, 0, 2], 64)
        .udp(40_000, 53)
        .write(&mut inner, &[0x5a; 64])
        .unwrap();
    let mut vxlan = vec![0x08, 0, 0, 0, 0, 0, 7, 0];
    vxlan.extend_from_slice(&inner);
    let mut frame = Vec::new();
    etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 3], [2, 0, 0, 0, 0, 4])
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .udp(50_000, 4789)
        .write(&mut frame, &vxlan)
        .unwrap();
    let mut file = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    file.extend_from_slice(&65535u32.to_le_bytes());
    file.extend_from_slice(&1u32.to_le_bytes());
    for i in 0..n {
        let (secs, usecs) = (1_700_000_000 + i / 2_000, (i % 2_000) * 500);
        for v in [secs, usecs, frame.len() as u32, frame.len() as u32] {
            file.extend_from_slice(&v.to_le_bytes());
        }
        file.extend_from_slice(&frame);
    }
    let pcap = common::temp_file("vxtap-shards-one-flow-", ".pcap");
    std::fs::write(pcap.path(), &file).unwrap();
    pcap
}

#[test]
fn a_module_switched_off_on_an_idle_shard_does_not_stall_the_others() {
    let tmp = temp("stalling");
    let dir = tmp.path();
    let capture = one_flow_capture(8_000);
    let out = dir.join("out.txt");
    let text = format!(
        "[pipeline]\nshards = 2\n[[module]]\nkind = \"fragile\"\npath = \"{}\"\n\
         [[module]]\nkind = \"bulk\"\n",
        out.display()
    );
    let config = vxtap::Config::parse(&text, "test").unwrap();
    let mut registry = vxtap::Registry::with_builtins();
    registry.register::<stalling::Fragile>("fragile");
    registry.register::<stalling::Bulk>("bulk");
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let report =
            vxtap::ingest::replay::replay(config, registry, &[capture.path().to_path_buf()]);
        let _ = done_tx.send(report.map(|r| r.pipeline.counts.dispatched));
    });
    let dispatched = done_rx
        .recv_timeout(std::time::Duration::from_secs(120))
        .expect("the replay stalled")
        .unwrap();
    assert_eq!(dispatched, 8_000);
    let text = std::fs::read_to_string(&out).unwrap();
    // Four ticks (one a second of packet time), 12,000 records each, from each of two shards.
    assert_eq!(count(&text, "bulk "), 4 * 12_000 * 2);
}
