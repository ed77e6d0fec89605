//! Shared test scaffolding: a module that records what it is given, a pipeline on loopback sockets, and
//! a minimal classic-pcap reader for the reference captures.
#![allow(dead_code, unreachable_pub)]

pub mod daemon;
pub mod tshark;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;
use vxtap::base::{Feed, FlowKey, Packet, Timestamp};
use vxtap::config::Config;
use vxtap::ingest::udp::{LivePipeline, UdpIngest, UdpListeners};
use vxtap::modules::{BuildError, Emitter, Module, ModuleConfig, ModuleContext, Registry};
use vxtap::pipeline::{Counts, Encap, Pipeline, PipelineReport};
use vxtap::wire::inner::Layer;

/// What the recorder saw of one packet.
#[derive(Debug, Clone, PartialEq)]
pub struct Seen {
    pub shard: usize,
    pub session: String,
    pub source: IpAddr,
    pub vni: u32,
    pub eni: Option<String>,
    pub ts: Timestamp,
    pub len: usize,
    pub orig_len: u32,
    pub ip_len: Option<u32>,
    pub flow: Option<FlowKey>,
    pub cut: Option<Layer>,
    pub vlans: Vec<u16>,
    pub ether_type: u16,
    pub payload: Vec<u8>,
}

#[derive(Default)]
pub struct Tap {
    pub packets: Vec<Seen>,
    /// Names of the threads that ran the recorder's `on_packet`.
    pub threads: std::collections::BTreeSet<String>,
    pub flushes: usize,
    pub ticks: usize,
}

static TAPS: LazyLock<Mutex<HashMap<String, Arc<Mutex<Tap>>>>> = LazyLock::new(Default::default);

/// The tap a `[[module]] kind = "recorder" tap = NAME` writes into.
pub fn tap(name: &str) -> Arc<Mutex<Tap>> {
    TAPS.lock()
        .unwrap()
        .entry(name.to_owned())
        .or_default()
        .clone()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecorderConfig {
    tap: String,
}

impl ModuleConfig for RecorderConfig {
    fn build(&self, ctx: &ModuleContext) -> Result<Box<dyn Module>, BuildError> {
        Ok(Box::new(Recorder {
            shard: ctx.shard,
            tap: tap(&self.tap),
        }))
    }
}

struct Recorder {
    shard: usize,
    tap: Arc<Mutex<Tap>>,
}

impl Module for Recorder {
    fn on_packet(&mut self, pkt: &Packet<'_>, _out: &mut Emitter<'_>) {
        let seen = Seen {
            shard: self.shard,
            session: pkt.session.name.clone(),
            source: pkt.session.key.source,
            vni: pkt.session.key.vni,
            eni: pkt.session.eni.clone(),
            ts: pkt.ts,
            len: pkt.frame.len(),
            orig_len: pkt.orig_len,
            ip_len: pkt.ip_len(),
            flow: pkt.flow(),
            cut: pkt.layers.cut,
            vlans: pkt.layers.vlan_ids().to_vec(),
            ether_type: pkt.layers.ether_type,
            payload: pkt.payload().to_vec(),
        };
        let mut tap = self.tap.lock().unwrap();
        tap.packets.push(seen);
        let thread = std::thread::current();
        if !tap.threads.contains(thread.name().unwrap_or("")) {
            tap.threads.insert(thread.name().unwrap_or("").to_owned());
        }
    }

    fn on_tick(&mut self, _now: Timestamp, _out: &mut Emitter<'_>) {
        self.tap.lock().unwrap().ticks += 1;
    }

    fn finish(&mut self, _out: &mut Emitter<'_>) {
        self.tap.lock().unwrap().flushes += 1;
    }
}

pub fn registry() -> Registry {
    let mut r = Registry::with_builtins();
    r.register::<RecorderConfig>("recorder");
    r
}

/// A unique tap name per test.
pub fn unique(name: &str) -> String {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    format!(
        "{name}-{}",
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

/// A directory for one test's files in the system's temporary directory, removed with everything in it
/// when the handle drops, whether the test passed or panicked. `prefix` names the test (`vxtap-pcap-ring-`)
/// so that a directory left by a killed run says where it came from. A vxtap process writing into it
/// must have ended before the handle drops.
pub fn temp_dir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .unwrap_or_else(|e| panic!("a temporary directory {prefix}*: {e}"))
}

/// A file for one test (a config, a capture), named `<prefix>XXXXXX<suffix>` in the system's temporary
/// directory and removed when the handle drops, however the test ends.
pub fn temp_file(prefix: &str, suffix: &str) -> tempfile::NamedTempFile {
    tempfile::Builder::new()
        .prefix(prefix)
        .suffix(suffix)
        .tempfile()
        .unwrap_or_else(|e| panic!("a temporary file {prefix}*{suffix}: {e}"))
}

/// A live pipeline with UDP listeners, as `vxtap run` builds it.
pub struct Live {
    pub pipeline: LivePipeline,
    pub ingest: UdpIngest,
}

impl Live {
    pub fn start(config: &str) -> Live {
        let config = Config::parse(config, "test.toml").expect("test config is valid");
        let shards = Pipeline::builder(config)
            .registry(registry())
            .build()
            .expect("pipeline builds");
        let (pipeline, ingest) = UdpListeners::bind(&shards.config().ingest)
            .and_then(|l| l.start(shards))
            .expect("listeners bind");
        Live { pipeline, ingest }
    }

    pub fn addr(&self, encap: Encap, v6: bool) -> SocketAddr {
        self.ingest
            .local_addrs()
            .iter()
            .find(|(e, a)| *e == encap && a.is_ipv6() == v6)
            .map(|(_, a)| *a)
            .expect("listener for that family")
    }

    /// Waits (bounded) until `n` datagrams have been received.
    pub fn wait_received(&self, n: u64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.pipeline.accounting().snapshot().received < n && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Waits (bounded) until `n` datagrams have been received, then stops and flushes everything.
    pub fn finish_after(self, n: u64) -> PipelineReport {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.pipeline.accounting().snapshot().received < n && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        self.ingest.stop();
        self.pipeline.finish()
    }
}

/// A sender socket on loopback of the family of `to`.
pub fn sender(to: SocketAddr) -> UdpSocket {
    let bind: SocketAddr = if to.is_ipv6() {
        "[::1]:0".parse().unwrap()
    } else {
        "127.0.0.1:0".parse().unwrap()
    };
    UdpSocket::bind(bind).unwrap()
}

/// A VXLAN payload: header with the I flag and `vni`, then `frame`.
pub fn vxlan(vni: u32, frame: &[u8]) -> Vec<u8> {
    let mut p = vec![0x08, 0, 0, 0, 0, 0, 0, 0];
    p[4..7].copy_from_slice(&vni.to_be_bytes()[1..]);
    p.extend_from_slice(frame);
    p
}

/// An Ethernet/IPv4/TCP frame.
pub fn tcp4(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4(src, dst, 64)
        .tcp(sport, dport, 1, 65535)
        .ack(1)
        .write(&mut out, payload)
        .unwrap();
    out
}

/// An Ethernet/IPv6/UDP frame.
pub fn udp6(src: [u8; 16], sport: u16, dst: [u8; 16], dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv6(src, dst, 64)
        .udp(sport, dport)
        .write(&mut out, payload)
        .unwrap();
    out
}

/// An Ethernet/IPv4/UDP frame.
pub fn udp4(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4(src, dst, 64)
        .udp(sport, dport)
        .write(&mut out, payload)
        .unwrap();
    out
}

pub fn counts_line(c: &Counts) -> String {
    format!(
        "received={} dispatched={} drops={:?}",
        c.received,
        c.dispatched,
        c.drops_by_reason()
    )
}

/// Feeds every UDP-encapsulated record of a capture through an offline pipeline, as replay does.
pub fn run_capture(path: &str, config: &str) -> (PipelineReport, Vec<Seen>) {
    let name = unique("capture");
    let config = format!("{config}\n[[module]]\nkind = \"recorder\"\ntap = \"{name}\"\n");
    let config = Config::parse(&config, "test.toml").unwrap();
    let pipeline = Pipeline::builder(config)
        .registry(registry())
        .feed(Feed::Offline)
        .build()
        .and_then(|s| s.start_handoff())
        .unwrap();
    let mut ingress = pipeline.ingress();
    for (ts, src, encap, payload) in capture_datagrams(path) {
        ingress.datagram(ts, src, encap, &payload);
    }
    drop(ingress);
    let report = pipeline.finish();
    let mut packets = std::mem::take(&mut tap(&name).lock().unwrap().packets);
    packets.sort_by_key(|s| s.ts);
    (report, packets)
}

/// A datagram as the pipeline core takes it: receive time, outer source, encapsulation, UDP payload.
pub type Datagram = (Timestamp, IpAddr, Encap, Vec<u8>);

/// The mirror datagrams of a reference capture, read with vxtap's own capture reader: every record of
/// these captures is IP/UDP to 4789 or 6081.
pub fn capture_datagrams(path: &str) -> Vec<Datagram> {
    use vxtap::ingest::pcap::{l3, CaptureReader, Item};
    let mut reader = CaptureReader::open(path.as_ref()).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut out = Vec::new();
    while let Some(item) = reader.next_item().unwrap_or_else(|e| panic!("{path}: {e}")) {
        let Item::Frame(r) = item else {
            panic!("{path}: a bad record: {item:?}")
        };
        let ip = l3(r.link, r.data).expect("reference records are IP");
        let (src, udp) =
            vxtap::pipeline::decap::ip_udp(ip.bytes).expect("reference records are IP/UDP");
        let encap = Encap::for_port(u16::from_be_bytes([udp[2], udp[3]])).expect("4789 or 6081");
        out.push((r.ts, src, encap, udp[8..].to_vec()));
    }
    out
}

/// One module's counters summed over shards: packets, events, errors, drops.
pub type ModuleTotals = (u64, u64, u64, u64);

/// Runs `datagrams` through an offline pipeline built from `config`, finishes it (so modules flush),
/// and returns every configured module's counters, in config order.
pub fn run_offline(config: &str, datagrams: &[Datagram]) -> Vec<ModuleTotals> {
    use std::sync::atomic::Ordering::Relaxed;
    let config = Config::parse(config, "test.toml").expect("test config is valid");
    let pipeline = Pipeline::builder(config)
        .registry(registry())
        .feed(Feed::Offline)
        .build()
        .and_then(|s| s.start_handoff())
        .expect("pipeline builds");
    let shards = pipeline.shard_counters().to_vec();
    let mut ingress = pipeline.ingress();
    for (ts, src, encap, payload) in datagrams {
        ingress.datagram(*ts, *src, *encap, payload);
    }
    drop(ingress);
    pipeline.finish();
    (0..shards[0].modules.len())
        .map(|m| {
            shards.iter().fold((0, 0, 0, 0), |a, s| {
                let c = &s.modules[m];
                (
                    a.0 + c.packets.load(Relaxed),
                    a.1 + c.events.load(Relaxed),
                    a.2 + c.errors.load(Relaxed),
                    a.3 + c.drops.load(Relaxed),
                )
            })
        })
        .collect()
}

/// Starts `vxtap run --config CONFIG` and waits (at most 10 s) until it logs that it is running.
/// Returns the child (stdout as given) and its stderr, with what it logged so far.
/// Reads a vxtap process's log (bounded in time) until it says it is running, and returns what it read.
pub fn wait_until_running(stderr: &mut impl std::io::Read) -> String {
    let mut log = String::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(10);
    while !log.contains("vxtap is running") && Instant::now() < deadline {
        match stderr.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => log.push_str(&String::from_utf8_lossy(&buf[..n])),
        }
    }
    assert!(
        log.contains("vxtap is running"),
        "vxtap did not start: {log}"
    );
    log
}

pub fn spawn_vxtap(
    config: &std::path::Path,
    stdout: std::process::Stdio,
) -> (Reaped, std::process::ChildStderr, String) {
    let mut child = Reaped::new(
        std::process::Command::new(env!("CARGO_BIN_EXE_vxtap"))
            .args(["run", "--config"])
            .arg(config)
            .stdout(stdout)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("the vxtap binary starts"),
    );
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let log = wait_until_running(&mut stderr);
    (child, stderr, log)
}

/// A child process that is killed and reaped when dropped, so that a failing test neither leaves it
/// running nor lets it write into a temporary directory being removed: declared after the test's
/// [`temp_dir`], it drops first.
pub struct Reaped(Option<std::process::Child>);

impl Reaped {
    pub fn new(child: std::process::Child) -> Reaped {
        Reaped(Some(child))
    }

    /// The child, no longer killed on drop: for `wait_with_output`, which consumes it.
    pub fn into_inner(mut self) -> std::process::Child {
        self.0.take().expect("present until taken")
    }
}

impl std::ops::Deref for Reaped {
    type Target = std::process::Child;
    fn deref(&self) -> &std::process::Child {
        self.0.as_ref().expect("present until taken")
    }
}

impl std::ops::DerefMut for Reaped {
    fn deref_mut(&mut self) -> &mut std::process::Child {
        self.0.as_mut().expect("present until taken")
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Every file under `dir` (its subdirectories too), sorted by path.
pub fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}
