//! `vxtap replay` writes the same bytes whatever the number of shards (issue 14, goal 3): every
//! module's records are merged in the order of the input, ticks reach every shard at the same place
//! in the input, and records emitted at a tick or at the end are ordered by their bytes. Checked with
//! the real binary on every capture in pcaps/ and on a generated ENI-like capture with thousands of
//! flows opening and closing (DNS, TLS, HTTP, SSH, fragments, malformed datagrams), to standard
//! output (where modules share one stream) and to rotating files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::LazyLock;

#[path = "../benches/common/payloads.rs"]
mod payloads;

#[path = "../benches/common/eni.rs"]
mod eni;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Every module that writes line records, to standard output, with thresholds the small captures
/// reach. detect and stats merge across shards through their interval board; the others' records
/// are per flow.
const LINE_MODULES: &str = "\
[[module]]\nkind = \"stats\"\ninterval_secs = 10\noutput = \"stdout\"\n\
[[module]]\nkind = \"flowlog\"\ninterval_secs = 60\n\
[[module]]\nkind = \"dns\"\n\
[[module]]\nkind = \"tls\"\n\
[[module]]\nkind = \"http\"\n\
[[module]]\nkind = \"connectivity\"\n\
[[module]]\nkind = \"detect\"\nport_scan_threshold = 15\naddress_scan_threshold = 25\n\
syn_flood_threshold = 100\nicmp_flood_threshold = 100\n";

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vxtap-shards-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The ENI-like capture, small: 4,000 flows, at most 600 at once, 3 sessions.
static ENI: LazyLock<PathBuf> = LazyLock::new(|| {
    let path = temp("eni").join("eni.pcap");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
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
    drop(out);
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
fn files_under(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.file_name().is_some_and(|n| n != "config.toml") {
                let name = path.strip_prefix(dir).unwrap().display().to_string();
                files.insert(name, std::fs::read(&path).unwrap());
            }
        }
    }
    files
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
    let dir = temp("stdout");
    let mut files = captures();
    files.push(ENI.clone());
    let one = replay(&dir, LINE_MODULES, &files, Some(1));
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
    ] {
        assert!(count(&text, needle) > 0, "no {module} record in {text}");
    }
    assert!(
        count(&text, " ACCEPT OK") > 4_000,
        "the ENI capture's flows"
    );
    for shards in [2, 3, 4] {
        let other = replay(&dir, LINE_MODULES, &files, Some(shards));
        same(&one, &other, &format!("{shards} shards"));
    }
    // The default is one shard per core, and the same bytes.
    same(&one, &replay(&dir, LINE_MODULES, &files, None), "default");
}

#[test]
fn each_capture_alone_gives_the_same_bytes_with_two_and_three_shards() {
    let dir = temp("each");
    let mut files = captures();
    files.push(ENI.clone());
    for file in files {
        let files = [file];
        let one = replay(&dir, LINE_MODULES, &files, Some(1));
        for shards in [2, 3] {
            let other = replay(&dir, LINE_MODULES, &files, Some(shards));
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
        let dir = temp(&format!("files{shards}"));
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
        let stdout = replay(&dir, &config, std::slice::from_ref(&*ENI), Some(shards));
        assert!(stdout.is_empty(), "every record went to a file");
        files_under(&dir)
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
