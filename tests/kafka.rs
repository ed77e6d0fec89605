//! The Kafka output against a real Kafka-compatible broker the test starts (`tansu`, crates.io, built
//! with its `dynostore` feature for the `memory://` storage engine), read back with a real client
//! (kafka-python): a replay gives the records a file output gets, keyed by session and partitioned
//! as Kafka's default partitioner does; records wait for a broker that comes late; past the buffer
//! cap they are dropped and counted in the replay's summary; and `vxtap run` counts its deliveries
//! in `/metrics`.
//!
//! Without tansu (on PATH or in `$VXTAP_TOOL_CACHE/tansu/bin`, where `.ci/run` installs it) or
//! kafka-python each test is skipped with a notice, except under CI=true, where it fails.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::daemon::{metric, wait_for, Daemon};
use common::{udp4, vxlan};

/// Every wait in these tests gives up after this.
const LIMIT: Duration = Duration::from_secs(60);

fn in_ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

fn skip(what: &str) -> Option<Tansu> {
    if in_ci() {
        panic!("{what} is required in CI (.ci/run installs it)");
    }
    eprintln!("SKIPPED: {what} not found (see .ci/run for how it is installed)");
    None
}

/// Where `.ci/run` installs tools it builds.
fn tool_cache() -> PathBuf {
    match std::env::var_os("VXTAP_TOOL_CACHE") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/vxtap-ci"),
    }
}

fn tansu_binary() -> Option<PathBuf> {
    let runs = |p: &Path| {
        Command::new(p)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let cached = tool_cache().join("tansu/bin/tansu");
    if runs(&cached) {
        return Some(cached);
    }
    runs(Path::new("tansu")).then(|| PathBuf::from("tansu"))
}

fn kafka_python() -> bool {
    Command::new("python3")
        .args(["-c", "import kafka"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A tansu broker with in-memory storage on a port of its own, stopped when dropped.
struct Tansu {
    bin: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl Tansu {
    /// The tools, or `None` (after a notice) when one is missing outside CI. The broker is not
    /// started yet: [`Tansu::up`].
    fn find() -> Option<Tansu> {
        let Some(bin) = tansu_binary() else {
            return skip("tansu (cargo install tansu --features dynostore)");
        };
        if !kafka_python() {
            return skip("kafka-python (pip install kafka-python)");
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        Some(Tansu {
            bin,
            port,
            child: None,
        })
    }

    fn start() -> Option<Tansu> {
        let mut t = Tansu::find()?;
        t.up();
        Some(t)
    }

    fn url(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.port)
    }

    fn broker(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn up(&mut self) {
        let child = Command::new(&self.bin)
            .arg("broker")
            .args(["--listener-url", &self.url()])
            .args(["--advertised-listener-url", &self.url()])
            .args(["--storage-engine", "memory://tansu/"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tansu starts");
        self.child = Some(child);
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        wait_for("tansu to listen", LIMIT, || {
            TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
        });
    }

    /// Creates `topic` with `partitions` partitions.
    fn create_topic(&self, topic: &str, partitions: u32) {
        let start = Instant::now();
        loop {
            let out = Command::new(&self.bin)
                .args(["topic", "create", topic, "--broker", &self.url()])
                .args(["--partitions", &partitions.to_string()])
                .output()
                .expect("tansu topic create runs");
            if out.status.success() {
                return;
            }
            assert!(
                start.elapsed() < LIMIT,
                "tansu topic create {topic}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Reads `topic` from its beginning with kafka-python until `expected` records came and no
    /// more arrive for a second (or the limit passes): every message with its partition, key,
    /// value, and the partition kafka-python's own default partitioner picks for its key.
    fn consume(&self, topic: &str, expected: usize) -> Vec<Message> {
        let script = format!(
            r#"
import json, sys, time
from kafka import KafkaConsumer, TopicPartition
from kafka.partitioner.default import murmur2
c = KafkaConsumer(bootstrap_servers='{broker}', group_id=None, enable_auto_commit=False,
                  auto_offset_reset='earliest')
deadline = time.time() + 30
parts = None
while parts is None and time.time() < deadline:
    parts = c.partitions_for_topic('{topic}')
    if parts is None:
        time.sleep(0.2)
parts = sorted(parts)
c.assign([TopicPartition('{topic}', p) for p in parts])
got, quiet_since = [], None
while time.time() < deadline:
    batch = c.poll(timeout_ms=300)
    for tp, msgs in batch.items():
        for m in msgs:
            k = m.key
            got.append({{'partition': m.partition, 'offset': m.offset,
                        'key': None if k is None else k.decode(),
                        'value': m.value.decode(), 'timestamp': m.timestamp,
                        'default_partition': None if k is None else parts[(murmur2(k) & 0x7fffffff) % len(parts)]}})
    if len(got) >= {expected}:
        if batch:
            quiet_since = time.time()
        elif quiet_since is None:
            quiet_since = time.time()
        elif time.time() - quiet_since > 1.0:
            break
for g in got:
    print(json.dumps(g))
"#,
            broker = self.broker()
        );
        let out = Command::new("python3")
            .args(["-c", &script])
            .output()
            .expect("python3 runs");
        assert!(
            out.status.success(),
            "kafka-python consumer failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .expect("utf-8")
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("a json line"))
            .map(|v| Message {
                partition: v["partition"].as_u64().expect("partition"),
                key: v["key"].as_str().map(str::to_owned),
                value: v["value"].as_str().expect("value").to_owned(),
                default_partition: v["default_partition"].as_u64(),
            })
            .collect()
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[derive(Debug, Clone)]
struct Message {
    partition: u64,
    key: Option<String>,
    value: String,
    default_partition: Option<u64>,
}

fn temp_dir(name: &str) -> tempfile::TempDir {
    common::temp_dir(&format!("vxtap-kafka-{name}-"))
}

const CAPTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/pcaps/aws-mirror.pcap");

/// A flowlog (JSON lines) and a dns module, both writing to `output` (a TOML output table body).
fn modules(output: &str) -> String {
    format!(
        "[[module]]\nkind = \"flowlog\"\nencoding = \"json\"\n{}\n\
         [[module]]\nkind = \"dns\"\n{}\n",
        output.replace("OUT", "module.output"),
        output.replace("OUT", "module.output"),
    )
}

/// Replays the capture with `config`; the summary vxtap prints.
fn replay(config: &str, dir: &Path) -> String {
    let file = dir.join("vxtap.toml");
    std::fs::write(&file, config).expect("config written");
    let out = Command::new(env!("CARGO_BIN_EXE_vxtap"))
        .arg("replay")
        .arg("--config")
        .arg(&file)
        .arg(CAPTURE)
        .output()
        .expect("vxtap runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "vxtap replay: {stderr}");
    stderr
}

/// The records a file output got from the same replay: module name → lines.
fn file_records(dir: &Path) -> BTreeMap<String, Vec<String>> {
    let out = dir.join("files");
    replay(
        &modules(&format!(
            "[OUT]\ntype = \"file\"\ndir = \"{}\"\n",
            out.display()
        )),
        dir,
    );
    let mut records = BTreeMap::new();
    for e in std::fs::read_dir(&out).expect("the output dir").flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let module = name.split('-').next().expect("a module prefix").to_owned();
        let text = std::fs::read_to_string(e.path()).expect("a record file");
        records
            .entry(module)
            .or_insert_with(Vec::new)
            .extend(text.lines().map(str::to_owned));
    }
    records
}

fn kafka_output(brokers: &str, extra: &str) -> String {
    format!("[OUT.kafka]\nbrokers = [\"{brokers}\"]\n{extra}")
}

/// The summary line of `topic`.
fn summary_of<'a>(summary: &'a str, topic: &str) -> &'a str {
    summary
        .lines()
        .find(|l| l.starts_with(&format!("kafka {topic}: ")))
        .unwrap_or_else(|| panic!("no summary line for {topic} in:\n{summary}"))
}

fn number_before(line: &str, what: &str) -> u64 {
    let at = line
        .find(what)
        .unwrap_or_else(|| panic!("{what} in {line}"));
    line[..at]
        .trim_end()
        .rsplit([' ', '('])
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a number before {what} in {line}"))
}

fn values(messages: &[Message]) -> Vec<String> {
    let mut v: Vec<String> = messages.iter().map(|m| m.value.clone()).collect();
    v.sort();
    v
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[test]
fn a_replay_to_kafka_gives_the_records_of_a_file_output_keyed_by_session() {
    let Some(tansu) = Tansu::start() else { return };
    tansu.create_topic("vxtap.flowlog", 3);
    tansu.create_topic("vxtap.dns", 3);
    let tmp = temp_dir("replay");
    let dir = tmp.path();
    let expected = file_records(dir);
    let flows = &expected["flowlog"];
    let dns = &expected["dns"];
    assert!(flows.len() >= 10 && !dns.is_empty(), "{expected:?}");

    let summary = replay(
        &modules(&kafka_output(&tansu.broker(), "compression = \"gzip\"\n")),
        dir,
    );
    let line = summary_of(&summary, "vxtap.flowlog");
    assert_eq!(
        number_before(line, "delivered"),
        flows.len() as u64,
        "{line}"
    );
    assert_eq!(number_before(line, "dropped"), 0, "{line}");

    let got = tansu.consume("vxtap.flowlog", flows.len());
    assert_eq!(values(&got), sorted(flows.clone()), "the same records");
    let sessions: Vec<&str> = summary
        .lines()
        .filter_map(|l| l.strip_prefix("session "))
        .collect();
    for m in &got {
        let key = m.key.as_deref().expect("every record keyed");
        assert!(sessions.contains(&key), "{key} is a session: {sessions:?}");
        assert_eq!(
            Some(m.partition),
            m.default_partition,
            "kafka-python's default partitioner agrees for {key}"
        );
    }
    let keys: std::collections::BTreeSet<_> = got.iter().filter_map(|m| m.key.clone()).collect();
    assert!(keys.len() >= 3, "several sessions: {keys:?}");
    // One shard wrote them: within a session, the file's order (two sessions may write the same
    // line, so a session's records are a subsequence of the file).
    for key in &keys {
        let mut file = flows.iter();
        for m in got.iter().filter(|m| m.key.as_ref() == Some(key)) {
            assert!(
                file.any(|l| *l == m.value),
                "{key}'s records out of the file's order at {}",
                m.value
            );
        }
    }

    let got = tansu.consume("vxtap.dns", dns.len());
    assert_eq!(values(&got), sorted(dns.clone()));
    for m in &got {
        let record: serde_json::Value = serde_json::from_str(&m.value).expect("EVE json");
        assert_eq!(
            m.key.as_deref(),
            record["vxtap"]["session"].as_str(),
            "the key is the record's session"
        );
    }
}

#[test]
fn records_wait_for_a_broker_that_comes_late() {
    let Some(mut tansu) = Tansu::find() else {
        return;
    };
    let tmp = temp_dir("late");
    let dir = tmp.path();
    let expected = file_records(dir);
    let flows = &expected["flowlog"];
    // The broker comes up (and its topics are made) while the replay's producer is retrying.
    let broker = tansu.broker();
    let config = modules(&kafka_output(
        &broker,
        "retry_initial_ms = 100\nretry_max_secs = 1\ntimeout_secs = 2\ndrain_timeout_secs = 40\n",
    ));
    let replayed = std::thread::scope(|s| {
        let run = s.spawn(|| replay(&config, dir));
        std::thread::sleep(Duration::from_secs(2));
        assert!(!run.is_finished(), "the replay waits for its records");
        tansu.up();
        tansu.create_topic("vxtap.flowlog", 2);
        tansu.create_topic("vxtap.dns", 2);
        run.join().expect("the replay thread")
    });
    let line = summary_of(&replayed, "vxtap.flowlog");
    assert_eq!(
        number_before(line, "delivered"),
        flows.len() as u64,
        "{line}"
    );
    assert_eq!(number_before(line, "dropped"), 0, "{line}");
    assert!(number_before(line, "failed attempts") > 0, "{line}");
    let got = tansu.consume("vxtap.flowlog", flows.len());
    assert_eq!(values(&got), sorted(flows.clone()));
}

#[test]
fn past_the_buffer_cap_records_are_dropped_and_counted() {
    let Some(mut tansu) = Tansu::find() else {
        return;
    };
    let tmp = temp_dir("cap");
    let dir = tmp.path();
    let expected = file_records(dir);
    let flows = &expected["flowlog"];
    let total: usize = flows.iter().map(|l| l.len() + "10.0.1.10/1001".len()).sum();
    assert!(total > 4096, "enough records for more than two batches");
    // One batch of at most 1 KiB (and its index) fits in the buffer while the broker is away; the
    // next ones are dropped.
    let config = modules(&kafka_output(
        &tansu.broker(),
        "batch_max_bytes = 1024\nbuffer_max_bytes = 2048\nretry_initial_ms = 100\n\
         retry_max_secs = 1\ntimeout_secs = 2\ndrain_timeout_secs = 40\n",
    ));
    let replayed = std::thread::scope(|s| {
        let run = s.spawn(|| replay(&config, dir));
        std::thread::sleep(Duration::from_secs(2));
        tansu.up();
        tansu.create_topic("vxtap.flowlog", 1);
        tansu.create_topic("vxtap.dns", 1);
        run.join().expect("the replay thread")
    });
    let line = summary_of(&replayed, "vxtap.flowlog");
    let delivered = number_before(line, "delivered");
    let dropped = number_before(line, "buffer full");
    assert!(delivered > 0 && dropped > 0, "{line}");
    assert_eq!(delivered + dropped, flows.len() as u64, "{line}");
    assert_eq!(number_before(line, "dropped"), dropped, "{line}");
    // What was buffered is the beginning, in order; one partition keeps it.
    let got = tansu.consume("vxtap.flowlog", delivered as usize);
    let got: Vec<String> = got.into_iter().map(|m| m.value).collect();
    assert_eq!(got, flows[..delivered as usize]);
}

#[test]
fn records_a_broker_never_takes_are_counted_at_exit() {
    let Some(tansu) = Tansu::find() else { return };
    let tmp = temp_dir("never");
    let dir = tmp.path();
    let expected = file_records(dir);
    let flows = &expected["flowlog"];
    // Nothing listens on the broker's port: the replay waits drain_timeout_secs, then gives up.
    let config = modules(&kafka_output(
        &tansu.broker(),
        "retry_initial_ms = 100\nretry_max_secs = 1\ntimeout_secs = 1\ndrain_timeout_secs = 2\n",
    ));
    let started = Instant::now();
    let summary = replay(&config, dir);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "a bounded wait"
    );
    let line = summary_of(&summary, "vxtap.flowlog");
    assert_eq!(number_before(line, "delivered"), 0, "{line}");
    assert_eq!(
        number_before(line, "undelivered"),
        flows.len() as u64,
        "{line}"
    );
    assert_eq!(number_before(line, "dropped"), flows.len() as u64, "{line}");
}

#[test]
fn vxtap_run_counts_its_deliveries_in_metrics() {
    let Some(tansu) = Tansu::start() else { return };
    tansu.create_topic("flows", 1);
    let tmp = temp_dir("daemon");
    let dir = tmp.path();
    let config = dir.join("vxtap.toml");
    std::fs::write(
        &config,
        format!(
            "[ingest]\nvxlan = [\"127.0.0.1:0\"]\nworkers = 1\nreceive_buffer_bytes = 0\n\
             [pipeline]\nshards = 1\ntick_ms = 200\n[admin]\nlisten = \"127.0.0.1:0\"\n\
             [health]\nlisten = \"127.0.0.1:0\"\n\
             [[module]]\nkind = \"flowlog\"\nidle_timeout_secs = 1\n\
             [module.output.kafka]\nbrokers = [\"{}\"]\ntopic = \"flows\"\n",
            tansu.broker()
        ),
    )
    .expect("config");
    let vxtap = Daemon::start(&config, &[], true, LIMIT);
    // Three UDP flows mirrored in one session, as VXLAN datagrams from loopback.
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("a sender");
    for port in [1001u16, 1002, 1003] {
        socket
            .send_to(
                &vxlan(7, &udp4([10, 9, 0, 1], port, [10, 9, 0, 2], 53, b"hello")),
                vxtap.vxlan(),
            )
            .expect("sent");
    }
    wait_for("three deliveries counted in /metrics", LIMIT, || {
        vxtap.get("/metrics").is_some_and(|body| {
            metric(
                &body,
                "vxtap_module_kafka_delivered_records_total",
                "module=\"flowlog\"",
            ) == Some(3)
        })
    });
    let got = tansu.consume("flows", 3);
    assert_eq!(got.len(), 3);
    assert!(got.iter().all(|m| m.key.as_deref() == Some("127.0.0.1/7")));
    let body = vxtap.get("/metrics").expect("metrics");
    assert_eq!(
        metric(
            &body,
            "vxtap_module_kafka_dropped_records_total",
            "reason=\"buffer_full\""
        ),
        Some(0)
    );
}
