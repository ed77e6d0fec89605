//! Proves that the data path allocates nothing per packet once warm.
//!
//! A counting `#[global_allocator]` wraps the system allocator. The pipeline is driven through its
//! public ingest door (`Ingress::datagram`) with a steady stream of varied datagrams — IPv4 and IPv6,
//! TCP, UDP, ICMP, VLAN and QinQ tags, fragments, truncated and non-IP frames, several sessions (one
//! static with a snap length), and bad datagrams that are dropped with a reason — until every cache,
//! batch and table has seen its working set. Then a long measured stretch must allocate nothing at all:
//! not on the ingest thread, and not on the shard threads running the stats module.
//!
//! It runs without libtest's harness (`harness = false`) so that no other test, and no harness thread,
//! allocates during the measured stretch.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use etherparse::PacketBuilder;
use serde::Deserialize;
use vxtap::base::{DropReason, Timestamp};
use vxtap::config::Config;
use vxtap::modules::BuildError;
use vxtap::pipeline::{Encap, Ingress, Pipeline, Shards};
use vxtap::{Emitter, Module, ModuleConfig, ModuleContext, Packet, Registry};

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static THREAD_ALLOCS: Cell<u64> = const { Cell::new(0) };
}

fn count() {
    ALLOCS.fetch_add(1, Ordering::Relaxed);
    // `try_with`: a thread being torn down may allocate after its locals are gone.
    let _ = THREAD_ALLOCS.try_with(|c| c.set(c.get() + 1));
}

// SAFETY: every call is forwarded unchanged to the system allocator; counting has no side effect on
// the memory handed out.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        System.realloc(ptr, layout, new_size)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn thread_allocs() -> u64 {
    THREAD_ALLOCS.with(Cell::get)
}

/// While closed, the `gate` module holds its shard at the first packet, so that warm-up can exhaust
/// every lane's batch allowance deterministically.
static GATE_OPEN: AtomicBool = AtomicBool::new(true);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GateConfig {}

struct Gate;

impl ModuleConfig for GateConfig {
    fn build(&self, _ctx: &ModuleContext) -> Result<Box<dyn Module>, BuildError> {
        Ok(Box::new(Gate))
    }
}

impl Module for Gate {
    fn on_packet(&mut self, _pkt: &Packet<'_>, _out: &mut Emitter<'_>) {
        while !GATE_OPEN.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// Stream bytes the `streams` module was given: the measured stretch must really reassemble.
static STREAM_BYTES: AtomicU64 = AtomicU64::new(0);

/// A flow-aware module that asks for both directions of every TCP flow and keeps a small state per
/// flow: the flow layer, reassembly and `PerFlow` must not allocate per packet either.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StreamsConfig {}

struct Streams {
    seen: vxtap::flow::PerFlow<u64>,
}

impl ModuleConfig for StreamsConfig {
    fn build(&self, _ctx: &ModuleContext) -> Result<Box<dyn Module>, BuildError> {
        Ok(Box::new(Streams {
            seen: vxtap::flow::PerFlow::new(),
        }))
    }
}

impl Module for Streams {
    fn wants_flows(&self) -> bool {
        true
    }
    fn on_flow_start(
        &mut self,
        flow: &mut vxtap::flow::Flow<'_>,
        _pkt: &Packet<'_>,
        _out: &mut Emitter<'_>,
    ) {
        flow.want_stream(vxtap::flow::Dir::ToServer);
        flow.want_stream(vxtap::flow::Dir::ToClient);
    }
    fn on_stream(
        &mut self,
        flow: &mut vxtap::flow::Flow<'_>,
        _dir: vxtap::flow::Dir,
        chunk: &vxtap::flow::Chunk<'_>,
        _out: &mut Emitter<'_>,
    ) {
        *self.seen.get_or_insert_with(flow, || 0) += chunk.len();
        if let vxtap::flow::Chunk::Data { bytes, .. } = chunk {
            STREAM_BYTES.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        }
    }
    fn on_flow_end(
        &mut self,
        flow: &mut vxtap::flow::Flow<'_>,
        _reason: vxtap::flow::EndReason,
        _out: &mut Emitter<'_>,
    ) {
        self.seen.take(flow);
    }
}

const CONFIG: &str = r#"
[ingest]
vxlan = ["127.0.0.1:0"]

[pipeline]
shards = 2
# Two batches per worker and shard at most: warm-up exhausts that allowance (see `gate`), so the
# measured stretch cannot legitimately allocate a further batch.
queue_batches = 1
# Live pipelines tick on the wall clock after a tick of idleness; a minute never passes idle here.
tick_ms = 60000

[[sessions.static]]
source = "10.9.9.9"
vni = 99
truncate = 60

[[module]]
kind = "gate"

[[module]]
kind = "stats"
interval_secs = 10

[[module]]
kind = "streams"

# Flow-aware modules with per-flow, per-session and per-window tables.
[[module]]
kind = "connectivity"

[[module]]
kind = "detect"
# Counting is what is measured; notices would only print.
port_scan_threshold = 1000000
syn_flood_threshold = 1000000000
icmp_flood_threshold = 1000000000
# Flow-aware, and for TCP flows that are not TLS (these are not) it must cost no allocation either.
[[module]]
kind = "tls"

# Flow-aware too. dns reads the UDP datagrams from port 5353 as mDNS and writes a record flagged
# malformed for each (their payload is not DNS): a record's path, allocating nothing once warm. http's
# probe refuses the TCP payloads and it stops the streams it asked for.
[[module]]
kind = "dns"
output = { type = "file", dir = "@OUT@/dns" }

[[module]]
kind = "http"
output = { type = "file", dir = "@OUT@/http" }

# With flow-aware modules on the shard, flowlog counts through the flow table's interval counters:
# a store into a line the flow's entry brought along, nothing allocated.
[[module]]
kind = "flowlog"
output = { type = "file", dir = "@OUT@/flowlog" }

# Every TCP flow to 443 here is a finding: judged at its start, counted into its aggregate per packet.
[[module]]
kind = "accessscope"
scopes = ["tests/scopes/tcp-443-from-vpc.json"]
vpc_cidrs = ["10.0.0.0/8"]
output = { type = "file", dir = "@OUT@/accessscope" }
"#;

fn vxlan(vni: u32, frame: &[u8]) -> Vec<u8> {
    let mut p = vec![0x08, 0, 0, 0, 0, 0, 0, 0];
    p[4..7].copy_from_slice(&vni.to_be_bytes()[1..]);
    p.extend_from_slice(frame);
    p
}

/// A mix of inner frames, each built once.
fn frames() -> Vec<Vec<u8>> {
    let payload = [0xabu8; 200];
    let mut out = Vec::new();
    for i in 0..16u16 {
        let mut f = Vec::new();
        PacketBuilder::ethernet2([2; 6], [4; 6])
            .ipv4([10, 1, 0, i as u8], [10, 2, 0, 1], 64)
            .tcp(40000 + i, 443, 1, 1000)
            .syn()
            .write(&mut f, &payload[..usize::from(i) * 8])
            .expect("builds");
        out.push(f);
        let mut f = Vec::new();
        PacketBuilder::ethernet2([2; 6], [4; 6])
            .ipv4([10, 2, 0, 1], [10, 1, 0, i as u8], 64)
            .tcp(443, 40000 + i, 1, 1000)
            .ack(1)
            .write(&mut f, &payload)
            .expect("builds");
        out.push(f);
        let mut f = Vec::new();
        PacketBuilder::ethernet2([2; 6], [4; 6])
            .single_vlan(100.try_into().expect("valid VLAN id"))
            .ipv6([0xfd; 16], [0xfe; 16], 64)
            .udp(5353, 1000 + i)
            .write(&mut f, &payload[..64])
            .expect("builds");
        out.push(f);
        let mut f = Vec::new();
        PacketBuilder::ethernet2([2; 6], [4; 6])
            .double_vlan(
                10.try_into().expect("valid VLAN id"),
                20.try_into().expect("valid VLAN id"),
            )
            .ipv4([192, 168, 1, 1], [192, 168, 1, i as u8], 64)
            .icmpv4_echo_request(7, i)
            .write(&mut f, &payload[..32])
            .expect("builds");
        out.push(f);
    }
    // An IPv4 later fragment (offset 185 * 8): no ports.
    let mut f = Vec::new();
    PacketBuilder::ethernet2([2; 6], [4; 6])
        .ipv4([10, 3, 0, 1], [10, 3, 0, 2], 64)
        .udp(1, 2)
        .write(&mut f, &payload[..100])
        .expect("builds");
    f[14 + 6] = 0x20; // more fragments
    f[14 + 7] = 185;
    out.push(f.clone());
    // The same packet cut inside its UDP header, and inside its IP header.
    out.push(f[..14 + 20 + 4].to_vec());
    out.push(f[..14 + 10].to_vec());
    // ARP: not IP, still a frame.
    let mut arp = vec![0xff; 12];
    arp.extend_from_slice(&[0x08, 0x06]);
    arp.extend_from_slice(&[0u8; 28]);
    out.push(arp);
    // A jumbo frame.
    let mut f = Vec::new();
    PacketBuilder::ethernet2([2; 6], [4; 6])
        .ipv4([10, 4, 0, 1], [10, 4, 0, 2], 64)
        .udp(9000, 9001)
        .write(&mut f, &[0x5a; 8900])
        .expect("builds");
    out.push(f);
    out
}

struct Datagram {
    source: IpAddr,
    encap: Encap,
    payload: Vec<u8>,
    /// For TCP segments with data: where the sequence number sits in `payload`, and how far it
    /// moves each round, so every round continues the streams instead of repeating them.
    tcp_seq: Option<(usize, u32)>,
}

impl Datagram {
    fn new(source: IpAddr, encap: Encap, payload: Vec<u8>) -> Datagram {
        let tcp_seq = (encap == Encap::Vxlan && payload.len() > 8)
            .then(|| vxtap::wire::inner::dissect(&payload[8..]))
            .filter(|l| matches!(l.transport, vxtap::wire::inner::Transport::Tcp { .. }))
            .and_then(|l| {
                let at = 8 + l.l4_offset? as usize + 4;
                let data = (payload.len() - 8).saturating_sub(l.payload_offset as usize) as u32;
                (data > 0 && at + 4 <= payload.len()).then_some((at, data))
            });
        Datagram {
            source,
            encap,
            payload,
            tcp_seq,
        }
    }
}

/// Moves every TCP segment one round further along its stream.
fn advance(stream: &mut [Datagram]) {
    for d in stream {
        if let Some((at, step)) = d.tcp_seq {
            let seq = u32::from_be_bytes(d.payload[at..at + 4].try_into().expect("4 bytes"));
            d.payload[at..at + 4].copy_from_slice(&seq.wrapping_add(step).to_be_bytes());
        }
    }
}

fn datagrams() -> Vec<Datagram> {
    let sources: [IpAddr; 4] = [
        "10.0.0.1".parse().expect("literal"),
        "10.0.0.2".parse().expect("literal"),
        "fd00::7".parse().expect("literal"),
        "10.9.9.9".parse().expect("literal"),
    ];
    let mut out = Vec::new();
    for (i, frame) in frames().iter().enumerate() {
        let source = sources[i % sources.len()];
        let vni = if source == sources[3] {
            99
        } else {
            i as u32 % 3
        };
        out.push(Datagram::new(source, Encap::Vxlan, vxlan(vni, frame)));
    }
    // Dropped with reasons: a refused public source, bad flags, too short, empty frame, bad GENEVE.
    let good = out[0].payload.clone();
    out.push(Datagram::new(
        "8.8.8.8".parse().expect("literal"),
        Encap::Vxlan,
        good.clone(),
    ));
    let mut bad = good.clone();
    bad[0] = 0;
    out.push(Datagram::new(sources[0], Encap::Vxlan, bad));
    out.push(Datagram::new(sources[0], Encap::Vxlan, vec![8, 0, 0]));
    out.push(Datagram::new(sources[1], Encap::Vxlan, good[..8].to_vec()));
    out.push(Datagram::new(sources[1], Encap::Geneve, vec![0xc0; 4]));
    out
}

/// All packets stay inside one second of packet time, so no tick (and no stats summary, which
/// allocates once per interval by design) falls inside the measured stretch.
const TS: Timestamp = Timestamp::from_nanos(1_700_000_000_250_000_000);

fn drive(ingress: &mut Ingress, stream: &mut [Datagram], rounds: usize) {
    for _ in 0..rounds {
        advance(stream);
        for d in stream.iter() {
            ingress.datagram(TS, d.source, d.encap, &d.payload);
        }
        ingress.send_pending();
    }
}

/// Like [`drive`], but waits for the shards after every round so that they see (nearly) every
/// packet rather than shedding load onto `shard_queue_full`.
fn drive_paced(pipeline: &Pipeline, ingress: &mut Ingress, stream: &mut [Datagram], rounds: usize) {
    for _ in 0..rounds {
        drive(ingress, stream, 1);
        while pipeline.processed_packets() < pipeline.accounting().snapshot().dispatched {
            std::thread::yield_now();
        }
    }
}

/// Waits until the shards have processed everything dispatched so far.
fn settle(pipeline: &Pipeline) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while pipeline.processed_packets() < pipeline.accounting().snapshot().dispatched {
        assert!(Instant::now() < deadline, "shards did not catch up");
        std::thread::yield_now();
    }
    // The last batch is back in its worker's pool only after the shard has counted it.
    std::thread::sleep(Duration::from_millis(20));
}

/// A live pipeline from `text`, with the gate module registered.
fn live_shards(text: &str) -> Shards {
    let config = Config::parse(text, "no_alloc.rs").expect("valid config");
    let mut registry = Registry::with_builtins();
    registry.register::<GateConfig>("gate");
    registry.register::<StreamsConfig>("streams");
    Pipeline::builder(config)
        .registry(registry)
        .build()
        .expect("pipeline builds")
}

/// A live hand-off pipeline from `text`.
fn live_pipeline(text: &str) -> Pipeline {
    live_shards(text)
        .start_handoff()
        .expect("shard threads start")
}

fn main() {
    // The file outputs (`@OUT@` in CONFIG) go to a temporary directory, removed when main returns or
    // unwinds: they were under target/, where each run's files were added to the last run's (dns alone
    // writes some 85 MB a run, a malformed record for each mDNS-port datagram of the stream).
    let out = common::temp_dir("vxtap-no-alloc-");
    let config = CONFIG.replace("@OUT@", &out.path().display().to_string());
    // Live, as the UDP workers run it: a full shard queue then drops (and is counted) rather than
    // making ingest wait, which the held warm-up below relies on.
    let pipeline = live_pipeline(&config);
    let mut ingress = pipeline.ingress();
    let mut stream = datagrams();
    let per_round = stream.len() as u64;

    // Warm-up, first with the shards held: every lane allocates its whole batch allowance and then
    // sheds packets as shard_queue_full, so no batch is left to allocate later.
    GATE_OPEN.store(false, Ordering::Release);
    drive(&mut ingress, &mut stream, 10);
    let held = pipeline.accounting().snapshot();
    assert!(
        held.dropped(DropReason::ShardQueueFull) > 0,
        "held shards should have exhausted the batch allowance: {held:?}"
    );
    GATE_OPEN.store(true, Ordering::Release);
    // Then freely: learn the sessions, remember the refused source, and grow every batch, hash map
    // and channel to its working size.
    drive(&mut ingress, &mut stream, 2_000);
    settle(&pipeline);

    let rounds = 5_000;
    let streamed = STREAM_BYTES.load(Ordering::Relaxed);
    let (global0, thread0) = (ALLOCS.load(Ordering::Relaxed), thread_allocs());
    let before = pipeline.accounting().snapshot();
    drive_paced(&pipeline, &mut ingress, &mut stream, rounds);
    let ingest_allocs = thread_allocs() - thread0;
    settle(&pipeline);
    let total_allocs = ALLOCS.load(Ordering::Relaxed) - global0;
    let after = pipeline.accounting().snapshot();
    assert!(
        STREAM_BYTES.load(Ordering::Relaxed) > streamed,
        "the measured stretch delivered no stream bytes: reassembly was not exercised"
    );

    let received = after.received - before.received;
    let dispatched = after.dispatched - before.dispatched;
    assert_eq!(received, per_round * rounds as u64);
    assert!(after.balanced(), "accounting out of balance: {after:?}");
    // Paced, the shards keep up: all but the 5 bad datagrams of each round must reach them, for the
    // shard side of the claim to mean anything.
    eprintln!(
        "received {received}, dispatched {dispatched}, ingest allocations {ingest_allocs}, all \
         allocations {total_allocs}"
    );
    assert!(
        dispatched >= (per_round - 5) * rounds as u64 * 9 / 10,
        "too little reached the shards: {dispatched} of {received}"
    );
    assert_eq!(
        ingest_allocs, 0,
        "the ingest thread allocated {ingest_allocs} times for {received} datagrams"
    );
    assert_eq!(
        total_allocs,
        0,
        "the shard threads allocated {} times for {dispatched} packets",
        total_allocs - ingest_allocs
    );

    drop(ingress);
    let report = pipeline.finish();
    assert!(report.counts.balanced());
    println!(
        "no_alloc: {received} datagrams ({dispatched} dispatched) after warm-up: 0 allocations on \
         the ingest thread and the shards"
    );
    run_to_completion(&config, &mut stream);
}

/// The same claim for run-to-completion dispatch, where the receive worker runs the modules itself:
/// nothing on that one thread allocates per packet either.
fn run_to_completion(config: &str, stream: &mut [Datagram]) {
    let shards = live_shards(&config.replace("shards = 2", "shards = 1\ndispatch = \"inline\""));
    let (pipeline, mut ingresses) = shards.run_to_completion();
    let mut ingress = ingresses.pop().expect("one handle per shard");
    assert!(ingress.is_inline());
    drive(&mut ingress, stream, 2_000);
    let rounds = 5_000;
    let streamed = STREAM_BYTES.load(Ordering::Relaxed);
    let (global0, thread0) = (ALLOCS.load(Ordering::Relaxed), thread_allocs());
    let before = pipeline.accounting().snapshot();
    for _ in 0..rounds {
        drive(&mut ingress, stream, 1);
        ingress.beat(TS);
    }
    let allocs = thread_allocs() - thread0;
    let total_allocs = ALLOCS.load(Ordering::Relaxed) - global0;
    let after = pipeline.accounting().snapshot();
    assert!(
        STREAM_BYTES.load(Ordering::Relaxed) > streamed,
        "run-to-completion delivered no stream bytes: reassembly was not exercised"
    );
    let dispatched = after.dispatched - before.dispatched;
    assert_eq!(
        dispatched,
        (stream.len() as u64 - 5) * rounds as u64,
        "inline, every good datagram reaches the modules: {after:?}"
    );
    assert_eq!(pipeline.processed_packets(), after.dispatched);
    assert_eq!(
        (allocs, total_allocs),
        (0, 0),
        "run-to-completion allocated for {dispatched} packets"
    );
    drop(ingress);
    assert!(pipeline.finish().counts.balanced());
    println!("no_alloc: run-to-completion, {dispatched} packets after warm-up: 0 allocations");
}
