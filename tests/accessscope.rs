//! `accessscope` end to end: the two example scopes of docs/modules/accessscope.md over
//! pcaps/accessscope.pcap give exactly the golden records (tests/golden/accessscope.jsonl), the
//! same live (`vxtap send` to a pipeline on loopback) as in a replay, and `check-config` says what
//! a mirror cannot observe.
//!
//! To accept new output after an intended change: `VXTAP_BLESS=1 cargo test --test accessscope`.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use common::*;
use serde_json::Value;
use vxtap::pipeline::Encap;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn vxtap(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_vxtap"))
        .current_dir(ROOT)
        .args(args)
        .output()
        .unwrap()
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
    assert_eq!(
        expected.lines().count(),
        actual.lines().count(),
        "{}",
        path.display()
    );
}

/// Replays pcaps/accessscope.pcap with `config` on one shard (aggregates are per shard: more
/// shards may split one, docs/replay.md); returns the records and the summary.
fn replay_with(config: &str) -> (String, String) {
    let out = vxtap(&[
        "replay",
        "--config",
        config,
        "pcaps/accessscope.pcap",
        "--log-level",
        "warn",
        "--shards",
        "1",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    (String::from_utf8(out.stdout).unwrap(), stderr)
}

fn replay_records() -> String {
    replay_with("tests/scopes/accessscope.toml").0
}

/// [`replay_with`] the test config with its first `from` made `to`, written as `dir/name`.
fn replay_edited(dir: &Path, name: &str, from: &str, to: &str) -> (String, String) {
    let config =
        std::fs::read_to_string(Path::new(ROOT).join("tests/scopes/accessscope.toml")).unwrap();
    assert!(config.contains(from), "{from:?} is not in the config");
    let path = dir.join(name);
    std::fs::write(&path, config.replacen(from, to, 1)).unwrap();
    replay_with(path.to_str().unwrap())
}

#[test]
fn replay_gives_the_golden_findings() {
    let records = replay_records();
    golden("accessscope.jsonl", &records);
    // What the records say, in words (docs/modules/accessscope.md walks through the same list).
    let found: Vec<(String, String, String, u64, u64)> = records
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            let a = &v["accessscope"];
            (
                a["scope"]["file"]
                    .as_str()
                    .unwrap()
                    .trim_start_matches("tests/scopes/")
                    .to_owned(),
                format!(
                    "{} {}",
                    v["vxtap"]["session"].as_str().unwrap(),
                    v["proto"].as_str().unwrap()
                ),
                format!(
                    "{} → {}:{}",
                    a["client"].as_str().unwrap(),
                    a["server"].as_str().unwrap(),
                    a["server_port"]
                ),
                a["flows"].as_u64().unwrap(),
                a["packets"].as_u64().unwrap(),
            )
        })
        .collect();
    let f = |s: &str, sess: &str, what: &str, flows, packets| {
        (
            s.to_owned(),
            sess.to_owned(),
            what.to_owned(),
            flows,
            packets,
        )
    };
    assert_eq!(
        found,
        [
            // Two connections to one server port in the first minute: one record.
            f(
                "eni-to-internet.json",
                "web TCP",
                "10.0.1.10 → 198.51.100.10:443",
                2,
                13
            ),
            f(
                "eni-to-internet.json",
                "web UDP",
                "10.0.1.10 → 198.51.100.10:443",
                1,
                1
            ),
            f(
                "no-inbound-db.json",
                "db TCP",
                "203.0.113.50 → 10.0.2.20:5432",
                1,
                8
            ),
            f(
                "no-inbound-db.json",
                "db TCP",
                "203.0.113.51 → 10.0.2.20:3306",
                1,
                2
            ),
            f(
                "eni-to-internet.json",
                "db TCP",
                "10.0.2.20 → 198.51.100.20:443",
                1,
                8
            ),
            // The first connection's packets after 12:01:00, in the next interval.
            f(
                "eni-to-internet.json",
                "web TCP",
                "10.0.1.10 → 198.51.100.10:443",
                1,
                4
            ),
        ]
    );
    assert_eq!(records, replay_records(), "a second replay differs");
}

/// Findings summed over intervals, without what differs between live and replay by nature
/// (packet times, flow ids that hash the first packet's time, the outer source, which client port
/// came first).
fn totals(records: &str) -> BTreeMap<String, (u64, u64)> {
    let mut m = BTreeMap::new();
    for l in records.lines() {
        let v: Value = serde_json::from_str(l).unwrap();
        let a = &v["accessscope"];
        let key = format!(
            "{} {} {} {} {} {}:{} path {}",
            a["scope"]["index"],
            v["vxtap"]["session"],
            v["vxtap"]["eni"],
            v["proto"],
            a["client"],
            a["server"],
            a["server_port"],
            a["path"],
        );
        let e: &mut (u64, u64) = m.entry(key).or_default();
        e.0 += a["packets"].as_u64().unwrap();
        e.1 += a["bytes"].as_u64().unwrap();
    }
    m
}

#[test]
fn live_gives_the_same_findings_as_replay() {
    let tmp = common::temp_dir("vxtap-accessscope-live-");
    let dir = tmp.path();
    // Live, every datagram comes from 127.0.0.1: the sessions are told their ENIs' addresses.
    let config = format!(
        "[sessions]\nallow = [\"0.0.0.0/0\"]\n\
         [[sessions.static]]\nsource = \"127.0.0.1\"\nvni = 100\nname = \"web\"\neni = \"eni-0a1b2c3d4e5f60718\"\naddresses = [\"10.0.1.10\"]\n\
         [[sessions.static]]\nsource = \"127.0.0.1\"\nvni = 101\nname = \"db\"\neni = \"eni-0db0db0db0db0db00\"\naddresses = [\"10.0.2.20\"]\n\
         [ingest]\nvxlan = [\"127.0.0.1:0\"]\nworkers = 2\n[pipeline]\nshards = 2\n\
         [[module]]\nkind = \"accessscope\"\n\
         scopes = [\"{ROOT}/tests/scopes/eni-to-internet.json\", \"{ROOT}/tests/scopes/no-inbound-db.json\"]\n\
         vpc_cidrs = [\"10.0.0.0/16\"]\noutput = {{ type = \"file\", dir = {:?} }}\n\
         [module.prefix_lists]\n\"pl-0123456789abcdef0\" = [\"10.1.0.0/16\"]\n",
        dir.display().to_string()
    );
    let live = Live::start(&config);
    let to = live.addr(Encap::Vxlan, false).to_string();
    let out = vxtap(&[
        "send",
        "pcaps/accessscope.pcap",
        "--to",
        &to,
        "--pps",
        "5000",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = live.finish_after(85);
    assert_eq!(
        report.counts.received,
        85,
        "{}",
        counts_line(&report.counts)
    );
    let mut live_records = String::new();
    for e in std::fs::read_dir(dir).unwrap() {
        live_records.push_str(&std::fs::read_to_string(e.unwrap().path()).unwrap());
    }
    let replayed = totals(&replay_records());
    assert_eq!(replayed.len(), 5);
    assert_eq!(totals(&live_records), replayed);
}

/// accessscope counts what a finding carried from the flow table's interval counters, which it
/// shares with flowlog when both ask for the same interval. A flowlog before it with another
/// interval keeps the counters, and accessscope counts packet by packet itself: the records must
/// be the same.
#[test]
fn counting_itself_gives_the_same_findings_as_riding_the_interval_counters() {
    let tmp = common::temp_dir("vxtap-accessscope-self-");
    let (records, _) = replay_edited(
        tmp.path(),
        "self.toml",
        "[[module]]\nkind = \"accessscope\"",
        &format!(
            "[[module]]\nkind = \"flowlog\"\ninterval_secs = 600\n\
             output = {{ type = \"file\", dir = {:?} }}\n\n\
             [[module]]\nkind = \"accessscope\"",
            tmp.path().display().to_string()
        ),
    );
    // flowlog did run, beside it.
    assert!(std::fs::read_dir(tmp.path()).unwrap().count() > 1);
    golden("accessscope.jsonl", &records);
}

/// `vxtap_module_accessscope_findings_total{scope, session}` counts the flows of the records
/// written, per scope (its file when it has no `Name` tag) and session.
#[test]
fn findings_are_counted_by_scope_and_session() {
    let config = std::fs::read_to_string(Path::new(ROOT).join("tests/scopes/accessscope.toml"))
        .unwrap()
        .replace("\"tests/scopes/", &format!("\"{ROOT}/tests/scopes/"));
    let config = vxtap::config::Config::parse(&config, "accessscope.toml").unwrap();
    let pipeline = vxtap::pipeline::Pipeline::builder(config)
        .registry(registry())
        .feed(vxtap::base::Feed::Offline)
        .build()
        .and_then(|s| s.start_handoff())
        .unwrap();
    let shards = pipeline.shard_counters().to_vec();
    let mut ingress = pipeline.ingress();
    for (ts, src, encap, payload) in capture_datagrams("pcaps/accessscope.pcap") {
        ingress.datagram(ts, src, encap, &payload);
    }
    drop(ingress);
    pipeline.finish();
    let mut counted = BTreeMap::new();
    for s in &shards {
        for series in s.modules[0].labelled.snapshot() {
            assert_eq!(series.name, "accessscope_findings");
            *counted
                .entry((series.labels[0].1.clone(), series.labels[1].1.clone()))
                .or_insert(0) += series.value;
        }
    }
    let mut expected = BTreeMap::new();
    for l in replay_records().lines() {
        let v: Value = serde_json::from_str(l).unwrap();
        // The scope's Name tag, else its file (as configured: here with the root in front).
        let scope = &v["accessscope"]["scope"];
        let label = match scope["name"].as_str() {
            Some(name) => name.to_string(),
            None => format!("{ROOT}/{}", scope["file"].as_str().unwrap()),
        };
        *expected
            .entry((label, v["vxtap"]["session"].as_str().unwrap().to_string()))
            .or_insert(0) += v["accessscope"]["flows"].as_u64().unwrap();
    }
    assert_eq!(counted.len(), 3, "{counted:?}");
    assert_eq!(counted, expected);
}

/// A full aggregates table is counted, and a replay's summary says so: there is no `/metrics` to
/// scrape at the end of a replay.
#[test]
fn the_replay_summary_says_what_a_full_table_dropped() {
    let tmp = common::temp_dir("vxtap-accessscope-full-");
    let (records, stderr) = replay_edited(
        tmp.path(),
        "full.toml",
        "interval_secs = 60\n",
        "interval_secs = 60\nmax_findings = 1\n",
    );
    let records = records.lines().count();
    // One aggregate per interval fits: one of 12:00's five and 12:01's one.
    assert_eq!(records, 2);
    // 12:00's five aggregates hold six flows; the one that fits holds two (the web ENI's two
    // connections to 198.51.100.10:443 by TCP), and the other four flows are the drops.
    assert!(
        stderr.contains(&format!(
            "module accessscope: {records} records, 0 errors, "
        )),
        "{stderr}"
    );
    let dropped: u64 = stderr
        .lines()
        .find_map(|l| l.strip_prefix("module accessscope: "))
        .and_then(|l| l.split(", ").nth(2))
        .and_then(|d| d.strip_suffix(" dropped"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no accessscope line: {stderr}"));
    assert_eq!(dropped, 4, "{stderr}");
}

#[test]
fn check_config_reports_what_a_mirror_cannot_observe() {
    let tmp = common::temp_dir("vxtap-accessscope-cc-");
    let dir = tmp.path();
    let scope = dir.join("through-nat.json");
    std::fs::write(
        &scope,
        r#"{"MatchPaths":[{"Source":{"ResourceStatement":{"ResourceTypes":["AWS::EC2::Instance"]}},
            "ThroughResources":[{"ResourceStatement":{"ResourceTypes":["AWS::EC2::NatGateway"]}}]}]}"#,
    )
    .unwrap();
    let config = dir.join("vxtap.toml");
    std::fs::write(
        &config,
        format!(
            "[[module]]\nkind = \"accessscope\"\nscopes = [{:?}]\n",
            scope.display().to_string()
        ),
    )
    .unwrap();
    let out = vxtap(&["check-config", config.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let first = stdout.lines().next().unwrap();
    assert_eq!(
        first,
        format!(
            "notice: module 0 (accessscope): scope {}: MatchPaths[0].ThroughResources: the hops between a \
             flow's ends are not visible in one ENI's mirror; ignored: the path is judged on its Source and \
             Destination only, so it may report flows that did not pass through these resources",
            scope.display()
        )
    );
    assert!(stdout
        .lines()
        .last()
        .unwrap()
        .ends_with(": ok (2 listener(s), 0 static session(s), 1 module(s))"));
    // A broken scope is an error naming the file and the JSON path.
    std::fs::write(
        &scope,
        r#"{"MatchPaths":[{"Source":{"PacketHeaderStatement":{"SourcePorts":["http"]}}}]}"#,
    )
    .unwrap();
    let out = vxtap(&["check-config", config.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(&format!(
            "scope {}: MatchPaths[0].Source.PacketHeaderStatement.SourcePorts[0]: \"http\" is not a port",
            scope.display()
        )),
        "{stderr}"
    );
}
