//! The `tls` module end to end, through the real pipeline:
//! - JA4: every fingerprint FoxIO lists for its captures (`pcaps/third-party/ja4/*.ja4.tsv`)
//!   comes out of the module's records, replayed as plain frames and again sent as VXLAN by
//!   `vxtap send` to a live `vxtap run`;
//! - `pcaps/tls.pcap`: the records match tests/golden/tls.txt (`VXTAP_BLESS=1` to accept a change),
//!   and each documented case gives what pcaps/README.md says;
//! - tshark, a user's tool, as the oracle for the fields it dissects (SNI, offered ciphers and
//!   versions, ALPN, chosen version and cipher, the certificate's serial and names). tshark 4.0
//!   has no JA4 field, so JA4 is held against FoxIO's lists only. Skipped without tshark, except
//!   under CI=true, where it fails.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use serde_json::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const JA4_DIR: &str = "pcaps/third-party/ja4/";
const JA4_FILES: [&str; 3] = ["tls-sni.pcapng", "tls12.pcap", "tls-alpn-h2.pcap"];

fn temp_dir(name: &str) -> tempfile::TempDir {
    common::temp_dir(&format!("vxtap-tls-{name}-"))
}

fn config_file(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("vxtap.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn parse_records(stdout: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// `vxtap replay` with only the tls module; returns its records and the summary on stderr.
fn replay(files: &[&str]) -> (Vec<Value>, String) {
    let (stdout, stderr) = replay_raw(files, 1);
    (parse_records(stdout.as_bytes()), stderr)
}

/// As [`replay`], on `shards` shards, with the records as written.
fn replay_raw(files: &[&str], shards: usize) -> (String, String) {
    let tmp = temp_dir("replay");
    let dir = tmp.path();
    // Records of several shards reach standard output in no fixed order: one shard for goldens.
    let config = config_file(
        dir,
        &format!("[pipeline]\nshards = {shards}\n[[module]]\nkind = \"tls\"\n"),
    );
    let out = Command::new(env!("CARGO_BIN_EXE_vxtap"))
        .current_dir(ROOT)
        .args(["replay", "--log-level", "error", "--config"])
        .arg(&config)
        .args(files)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    (String::from_utf8(out.stdout).unwrap(), stderr)
}

/// (client address, client port, server address, server port, SNI, JA4) as FoxIO lists them.
type Ja4Line = (String, u16, String, u16, String, String);

fn expected_ja4(file: &str) -> Vec<Ja4Line> {
    let text = std::fs::read_to_string(
        Path::new(ROOT)
            .join(JA4_DIR)
            .join(format!("{file}.ja4.tsv")),
    )
    .unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (
                f[0].to_owned(),
                f[1].parse().unwrap(),
                f[2].to_owned(),
                f[3].parse().unwrap(),
                f[4].to_owned(),
                f[5].to_owned(),
            )
        })
        .collect()
}

/// The same lines from the module's records: `ja4` and, after a HelloRetryRequest, `ja4_retry`.
fn ja4_lines(records: &[Value]) -> Vec<Ja4Line> {
    let mut out = Vec::new();
    for r in records {
        let t = &r["tls"];
        let sni = t["sni"].as_str().unwrap_or("").to_owned();
        for key in ["ja4", "ja4_retry"] {
            if let Some(ja4) = t[key].as_str() {
                out.push((
                    r["src_ip"].as_str().unwrap().to_owned(),
                    r["src_port"].as_u64().unwrap() as u16,
                    r["dest_ip"].as_str().unwrap().to_owned(),
                    r["dest_port"].as_u64().unwrap() as u16,
                    sni.clone(),
                    ja4.to_owned(),
                ));
            }
        }
    }
    out.sort();
    out
}

/// Compares the module's lines with FoxIO's, as multisets (a connection after a
/// HelloRetryRequest has two), with the first differences in the message.
fn assert_same_ja4(what: &str, mut want: Vec<Ja4Line>, got: Vec<Ja4Line>) {
    want.sort();
    let missing: Vec<_> = want.iter().filter(|l| !got.contains(l)).take(5).collect();
    let extra: Vec<_> = got.iter().filter(|l| !want.contains(l)).take(5).collect();
    assert!(
        want == got,
        "{what}: {} expected, {} from the module\nmissing: {missing:#?}\nunexpected: {extra:#?}",
        want.len(),
        got.len()
    );
}

fn all_expected() -> Vec<Ja4Line> {
    JA4_FILES.iter().flat_map(|f| expected_ja4(f)).collect()
}

#[test]
fn ja4_of_every_reference_client_hello_through_the_module_replayed() {
    let mut total = 0;
    for file in JA4_FILES {
        let path = format!("{JA4_DIR}{file}");
        let (records, _) = replay(&[&path]);
        let want = expected_ja4(file);
        total += want.len();
        assert_same_ja4(file, want, ja4_lines(&records));
        // Each record is one handshake: a connection's ClientHellos are in one record.
        let flows: BTreeSet<u64> = records
            .iter()
            .map(|r| r["flow_id"].as_u64().unwrap())
            .collect();
        assert_eq!(flows.len(), records.len(), "{file}: one record per flow");
    }
    assert_eq!(total, 66, "FoxIO's 66 reference fingerprints");
}

#[test]
fn ja4_of_every_reference_client_hello_sent_live_as_vxlan() {
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let tmp = temp_dir("live");
    let dir = tmp.path();
    let config = config_file(
        dir,
        &format!(
            "[ingest]\nvxlan = [\"127.0.0.1:{port}\"]\nworkers = 1\n\
             [health]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n\
             [pipeline]\nshards = 2\n[[module]]\nkind = \"tls\"\n"
        ),
    );
    let (child, stderr, mut log) = spawn_vxtap(&config, Stdio::piped());
    let files: Vec<String> = JA4_FILES.iter().map(|f| format!("{JA4_DIR}{f}")).collect();
    let to = format!("127.0.0.1:{port}");
    let sent = Command::new(env!("CARGO_BIN_EXE_vxtap"))
        .current_dir(ROOT)
        .args([
            "send",
            "--log-level",
            "warn",
            "--vni",
            "77",
            "--pps",
            "4000",
            "--to",
        ])
        .arg(&to)
        .args(&files)
        .output()
        .unwrap();
    assert!(
        sent.status.success(),
        "{}",
        String::from_utf8_lossy(&sent.stderr)
    );
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: kill(2) on our own child; SIGINT drains and ends every flow.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.into_inner().wait_with_output().unwrap();
    let mut stderr = stderr;
    stderr.read_to_string(&mut log).unwrap();
    assert!(out.status.success(), "{log}");
    let records = parse_records(&out.stdout);
    assert!(
        records
            .iter()
            .all(|r| r["vxtap"]["vni"] == 77 && r["vxtap"]["session"] == "127.0.0.1/77"),
        "every record names the mirror session"
    );
    assert_same_ja4("live", all_expected(), ja4_lines(&records));
}

fn by_port(records: &[Value]) -> BTreeMap<u64, &Value> {
    records
        .iter()
        .map(|r| (r["src_port"].as_u64().unwrap(), &r["tls"]))
        .collect()
}

#[test]
fn sample_capture_records() {
    let (text, stderr) = replay_raw(&["pcaps/tls.pcap"], 1);
    golden("tls.txt", &format!("{text}--\n{stderr}"));
    let records = parse_records(text.as_bytes());
    // The same records on four shards, in another order.
    let (four, _) = replay_raw(&["pcaps/tls.pcap"], 4);
    let sorted = |t: &str| {
        let mut v: Vec<String> = t.lines().map(str::to_owned).collect();
        v.sort();
        v
    };
    assert_eq!(sorted(&four), sorted(&text));

    let t = by_port(&records);
    // Plain HTTP on 443 (41007) is no record; every other connection is one.
    assert_eq!(
        t.keys().copied().collect::<Vec<_>>(),
        [41001, 41002, 41003, 41004, 41005, 41006, 41008]
    );
    // 1: TLS 1.3 with GREASE, which neither the counts nor the fingerprint see.
    let v = t[&41001];
    assert_eq!(v["sni"], "www.example.com");
    assert_eq!(v["version"], "TLS 1.3");
    assert_eq!(v["client_alpns"], serde_json::json!(["h2", "http/1.1"]));
    assert_eq!(
        v["client_versions"],
        serde_json::json!(["TLS 1.3", "TLS 1.2"])
    );
    assert_eq!(v["client_cipher_count"], 15);
    assert_eq!(v["ja4"], "t13d1511h2_8daaf6152771_c34edd1a8701");
    assert_eq!(v["cipher_suite"], "0x1301");
    assert!(
        v.get("subject").is_none(),
        "TLS 1.3 certificates are encrypted"
    );
    // 2: TLS 1.2 with cloudflare.com's chain.
    let v = t[&41002];
    assert_eq!(v["version"], "TLS 1.2");
    assert_eq!(
        v["serial"],
        "0A:68:BB:98:4A:50:73:99:F4:71:6E:80:9A:44:A7:B0"
    );
    assert_eq!(v["chain_length"], 2);
    assert_eq!(
        v["subjectaltname"],
        serde_json::json!(["cloudflare.com", "www.cloudflare.com"])
    );
    assert_eq!(v["server_alpns"], serde_json::json!(["h2"]));
    assert_eq!(v["notafter"], "2020-11-03T12:00:00");
    // 3: the ClientHello over three segments, out of order, and two records.
    assert_eq!(t[&41003]["sni"], "split.example.net");
    assert!(t[&41003].get("flags").is_none());
    // 4: cut by PacketLength: flagged, no fingerprint, the server's side still read.
    let v = t[&41004];
    assert_eq!(v["flags"], serde_json::json!(["client_gap", "truncated"]));
    assert!(v.get("ja4").is_none() && v.get("sni").is_none());
    assert_eq!(v["version"], "TLS 1.3");
    // 5: port 4433, found by content.
    assert_eq!(t[&41005]["sni"], "api.internal.example");
    assert_eq!(records[4]["dest_port"], 4433);
    // 6: STARTTLS on SMTP.
    assert_eq!(t[&41006]["starttls"], true);
    assert_eq!(t[&41006]["sni"], "mail.example.com");
    // 8: a HelloRetryRequest: both ClientHellos in one record.
    let v = t[&41008];
    assert_eq!(v["hello_retry_request"], true);
    assert!(v["ja4"].is_string() && v["ja4_retry"].is_string());
}

/// Compares `actual` with tests/golden/`name`, or writes it there under VXTAP_BLESS=1.
fn golden(name: &str, actual: &str) {
    let path = Path::new(ROOT).join("tests/golden").join(name);
    let actual = actual.replace(&format!("{ROOT}/"), "");
    if std::env::var_os("VXTAP_BLESS").is_some() {
        std::fs::write(&path, &actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (VXTAP_BLESS=1 creates it)", path.display()));
    if expected != actual {
        let first = expected
            .lines()
            .zip(actual.lines())
            .position(|(e, a)| e != a)
            .unwrap_or(expected.lines().count().min(actual.lines().count()));
        panic!(
            "{} differs from line {} on (VXTAP_BLESS=1 accepts the new output)\nexpected: {:?}\nactual:   {:?}",
            path.display(),
            first + 1,
            expected.lines().nth(first),
            actual.lines().nth(first)
        );
    }
}

// ---------------------------------------------------------------------------------------------------
// tshark as the oracle

/// tshark's handshake messages in `file`, one row per frame: the fields below, in order.
const FIELDS: [&str; 11] = [
    "tcp.stream",
    "tcp.srcport",
    "tls.handshake.type",
    "tls.handshake.extensions_server_name",
    "tls.handshake.ciphersuite",
    "tls.handshake.extensions.supported_version",
    "tls.handshake.version",
    "tls.handshake.extensions_alpn_str",
    "x509af.serialNumber",
    "x509ce.dNSName",
    "tcp.dstport",
];

fn tshark_rows(file: &str) -> Option<Vec<Vec<String>>> {
    let mut cmd = Command::new("tshark");
    cmd.current_dir(ROOT).args([
        "-r",
        file,
        "-o",
        "tcp.reassemble_out_of_order:TRUE",
        "-d",
        "tcp.port==4433,tls",
        "-Y",
        "tls.handshake",
        "-T",
        "fields",
        "-E",
        "separator=|",
    ]);
    for f in FIELDS {
        cmd.args(["-e", f]);
    }
    let out = match cmd.output() {
        Ok(out) => out,
        Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("CI=true but tshark cannot run: {e}")
        }
        Err(e) => {
            eprintln!("SKIPPED: tshark not available ({e})");
            return None;
        }
    };
    assert!(
        out.status.success(),
        "tshark -r {file}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.split('|').map(str::to_owned).collect())
            .collect(),
    )
}

fn grease(v: u16) -> bool {
    v & 0x0f0f == 0x0a0a && v >> 8 == v & 0xff
}

fn hex_list(s: &str) -> Vec<u16> {
    s.split(',')
        .filter(|v| !v.is_empty())
        .map(|v| u16::from_str_radix(v.trim_start_matches("0x"), 16).unwrap())
        .collect()
}

fn version_name(v: u16) -> String {
    match v {
        0x0300 => "SSLv3".into(),
        0x0301 => "TLSv1".into(),
        0x0302 => "TLS 1.1".into(),
        0x0303 => "TLS 1.2".into(),
        0x0304 => "TLS 1.3".into(),
        v => format!("0x{v:04x}"),
    }
}

/// What tshark says of one connection, in the record's terms.
#[derive(Debug, Default, PartialEq)]
struct Seen {
    sni: Option<String>,
    client_cipher_count: Option<usize>,
    client_versions: Vec<String>,
    client_alpns: Vec<String>,
    version: Option<String>,
    cipher_suite: Option<String>,
    server_alpns: Vec<String>,
    serial: Option<String>,
    subjectaltname: Vec<String>,
}

fn tshark_view(rows: &[Vec<String>]) -> BTreeMap<u16, Seen> {
    let mut streams: BTreeMap<String, Seen> = BTreeMap::new();
    let mut ports: BTreeMap<String, u16> = BTreeMap::new();
    for r in rows {
        let f = |i: usize| r.get(i).map(String::as_str).unwrap_or("");
        if f(0).is_empty() {
            continue; // QUIC: TLS in UDP, which the module does not read
        }
        let types: Vec<&str> = f(2).split(',').collect();
        let s = streams.entry(f(0).to_owned()).or_default();
        if types.contains(&"1") && s.client_cipher_count.is_none() {
            ports.insert(f(0).to_owned(), f(1).parse().unwrap());
            s.sni = Some(f(3).to_owned()).filter(|v| !v.is_empty());
            s.client_cipher_count = Some(hex_list(f(4)).iter().filter(|&&c| !grease(c)).count());
            let offered: Vec<u16> = hex_list(f(5)).into_iter().filter(|&v| !grease(v)).collect();
            s.client_versions = if offered.is_empty() {
                hex_list(f(6)).into_iter().map(version_name).collect()
            } else {
                offered.into_iter().map(version_name).collect()
            };
            s.client_alpns = f(7)
                .split(',')
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
                .collect();
        }
        if types.contains(&"2") {
            // The last ServerHello wins: after a HelloRetryRequest, the real one.
            let chosen = hex_list(f(5)).into_iter().chain(hex_list(f(6))).next();
            s.version = chosen.map(version_name);
            s.cipher_suite = hex_list(f(4)).first().map(|c| format!("0x{c:04x}"));
            s.server_alpns = f(7)
                .split(',')
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
                .collect();
        }
        if types.contains(&"11") && s.serial.is_none() {
            let leaf = f(8).split(',').next().unwrap_or("");
            let bytes: Vec<String> = leaf
                .as_bytes()
                .chunks(2)
                .map(|p| String::from_utf8_lossy(p).to_uppercase())
                .collect();
            s.serial = Some(bytes.join(":")).filter(|v| !v.is_empty());
            s.subjectaltname = f(9)
                .split(',')
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
                .collect();
        }
    }
    streams
        .into_iter()
        .filter_map(|(stream, seen)| Some((*ports.get(&stream)?, seen)))
        .collect()
}

fn module_view(records: &[Value]) -> BTreeMap<u16, Seen> {
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| a.iter().map(|s| s.as_str().unwrap().to_owned()).collect())
            .unwrap_or_default()
    };
    let text = |v: &Value| v.as_str().map(str::to_owned);
    records
        .iter()
        .filter(|r| r["tls"]["ja4"].is_string())
        .map(|r| {
            let t = &r["tls"];
            (
                r["src_port"].as_u64().unwrap() as u16,
                Seen {
                    sni: text(&t["sni"]),
                    client_cipher_count: t["client_cipher_count"].as_u64().map(|n| n as usize),
                    client_versions: strings(&t["client_versions"]),
                    client_alpns: strings(&t["client_alpns"]),
                    version: text(&t["version"]),
                    cipher_suite: text(&t["cipher_suite"]),
                    server_alpns: strings(&t["server_alpns"]),
                    serial: text(&t["serial"]),
                    subjectaltname: strings(&t["subjectaltname"]),
                },
            )
        })
        .collect()
}

#[test]
fn tshark_agrees_on_every_handshake() {
    for (file, hellos) in [
        ("pcaps/tls.pcap", 6),
        ("pcaps/third-party/ja4/tls-alpn-h2.pcap", 1),
        ("pcaps/third-party/ja4/tls12.pcap", 1),
        ("pcaps/third-party/ja4/tls-sni.pcapng", 59),
    ] {
        let Some(rows) = tshark_rows(file) else {
            return;
        };
        let theirs = tshark_view(&rows);
        let (records, _) = replay(&[file]);
        let ours = module_view(&records);
        assert_eq!(
            ours.keys().collect::<Vec<_>>(),
            theirs.keys().collect::<Vec<_>>(),
            "{file}: connections with a ClientHello"
        );
        for (port, seen) in &theirs {
            assert_eq!(&ours[port], seen, "{file}: client port {port}");
        }
        assert_eq!(ours.len(), hellos, "{file}");
    }
}

#[test]
fn config_is_checked_with_the_key() {
    let check = |extra: &str| {
        let text = format!("[[module]]\nkind = \"tls\"\n{extra}\n");
        let config = vxtap::Config::parse(&text, "t.toml").unwrap();
        vxtap::modules::Registry::with_builtins()
            .resolve(&config)
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    assert_eq!(check(""), Ok(()));
    assert_eq!(check("memory_bytes = 1048576\noutput = \"stdout\""), Ok(()));
    let e = check("memory_bytes = 1000").unwrap_err();
    assert!(e.contains("memory_bytes: 1000 is less than"), "{e}");
    let e = check("ports = [443]").unwrap_err();
    assert!(e.contains("unknown field `ports`"), "{e}");
}
