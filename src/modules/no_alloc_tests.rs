//! Steady state allocates nothing: flowlog, pcap and forward handle packets of known flows and sessions without
//! touching the heap. Counted by a global allocator that tallies this thread's allocations.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;

use super::{Emitter, ModuleConfig, ModuleContext, ModuleCounters};
use crate::base::{Feed, Packet, Session, Timestamp};
use crate::session::SessionTable;
use crate::wire::inner::{dissect, Layers};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn count() {
    let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
}

// SAFETY: forwards to the system allocator unchanged; counting touches only a const-initialised
// thread-local `Cell`, which never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

fn frames(flows: u16) -> Vec<(Vec<u8>, Layers)> {
    (0..flows)
        .flat_map(|i| {
            [true, false].map(|forward| {
                let mut f = Vec::new();
                let (a, b) = ([10, 0, 0, 1], [10, 0, 0, 2]);
                let b2 = if forward {
                    etherparse::PacketBuilder::ethernet2([2; 6], [4; 6])
                        .ipv4(a, b, 64)
                        .tcp(30000 + i, 443, 1, 1000)
                } else {
                    etherparse::PacketBuilder::ethernet2([4; 6], [2; 6])
                        .ipv4(b, a, 64)
                        .tcp(443, 30000 + i, 1, 1000)
                };
                b2.write(&mut f, &[0x42; 200]).unwrap();
                let layers = dissect(&f);
                (f, layers)
            })
        })
        .collect()
}

/// Feeds every frame once (warm-up), then `rounds` more times, and returns the allocations made on
/// this thread during those rounds.
fn steady_state_allocations(config: &str, kind: &str, rounds: u64) -> u64 {
    steady_state_allocations_after(config, kind, rounds, || {})
}

/// As [`steady_state_allocations`], calling `settle` once the module is built (to wait for what it
/// started, e.g. a client of its server).
fn steady_state_allocations_after(
    config: &str,
    kind: &str,
    rounds: u64,
    settle: impl FnOnce(),
) -> u64 {
    let table: toml::Table = toml::from_str(config).unwrap();
    let ctx = ModuleContext {
        shard: 0,
        shards: 1,
        sessions: SessionTable::new(&Default::default()),
        feed: Feed::Offline,
    };
    let (mut module, mut sink) = match kind {
        "flowlog" => {
            let c: super::flowlog::FlowLogConfig = table.try_into().unwrap();
            c.validate().unwrap();
            (c.build(&ctx).unwrap(), c.sink(&ctx).unwrap())
        }
        "forward" => {
            let c: super::forward::ForwardConfig = table.try_into().unwrap();
            c.validate().unwrap();
            (c.build(&ctx).unwrap(), c.sink(&ctx).unwrap())
        }
        _ => {
            let c: super::pcap::PcapConfig = table.try_into().unwrap();
            c.validate().unwrap();
            (c.build(&ctx).unwrap(), c.sink(&ctx).unwrap())
        }
    };
    settle();
    let session = Arc::new(Session::plain("s", 1));
    let frames = frames(64);
    let counters = ModuleCounters::default();
    let mut scratch = String::new();
    let t0 = 1_700_000_000_000_000_000u64; // a minute boundary: all rounds stay in one interval
                                           // Batches of 64 with `prepare` first, as a shard gives them; the vector is grown in the warm-up.
    let mut batch: Vec<Packet<'_>> = Vec::with_capacity(64);
    let mut feed = |module: &mut Box<dyn super::Module>, round: u64| {
        for (c, chunk) in frames.chunks(64).enumerate() {
            batch.clear();
            for (i, (frame, layers)) in chunk.iter().enumerate() {
                batch.push(Packet {
                    session: &session,
                    ts: Timestamp::from_nanos(t0 + round * 1_000_000 + (c * 64 + i) as u64),
                    frame,
                    orig_len: frame.len() as u32,
                    layers,
                });
            }
            module.prepare(&batch);
            for pkt in &batch {
                let mut out = Emitter::new(sink.as_mut(), &counters, &mut scratch, pkt.ts);
                module.on_packet(pkt, &mut out);
            }
        }
    };
    feed(&mut module, 0);
    let before = allocations();
    for round in 1..=rounds {
        feed(&mut module, round);
    }
    let during = allocations() - before;
    assert_eq!(
        counters.errors.load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    during
}

/// The module's output directory, removed when the handle drops, however the test ends.
fn temp(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("vxtap-noalloc-{name}-"))
        .tempdir()
        .unwrap()
}

#[test]
fn flowlog_steady_state_allocates_nothing() {
    let dir = temp("flowlog");
    let config = format!("[output]\ndir = \"{}\"\n", dir.path().display());
    // 128 flow directions, 100 rounds: 12,800 packets.
    assert_eq!(steady_state_allocations(&config, "flowlog", 100), 0);
}

#[test]
fn pcap_steady_state_allocates_nothing() {
    let dir = temp("pcap");
    // Buffer writes happen (about 30 kB of blocks per round against a 16 kB buffer) but no rotation.
    let config = format!(
        "[output]\ndir = \"{}\"\nbuffer_bytes = 16384\nrotate_secs = 0\n",
        dir.path().display()
    );
    assert_eq!(steady_state_allocations(&config, "pcap", 100), 0);
}

#[test]
fn forward_steady_state_allocates_nothing() {
    use std::io::Read;
    // A receiver that never reads (the kernel discards once its buffer is full) and a PCAP-over-IP
    // client that reads everything, so both outputs take the whole path. `queue = 1`: the shard's one
    // record buffer is made during the warm-up round, whatever the server thread's pace.
    let receiver = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = format!(
        "[[output]]\ntype = \"vxlan\"\nto = [\"{}\"]\nfilter = \"tcp and port 443\"\n\
         [[output]]\ntype = \"pcap_over_ip\"\nlisten = \"127.0.0.1:{port}\"\nqueue = 1\n",
        receiver.local_addr().unwrap()
    );
    let (connected, is_connected) = std::sync::mpsc::channel();
    let client = std::thread::spawn(move || {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let mut s = loop {
            match std::net::TcpStream::connect(("127.0.0.1", port)) {
                Ok(s) => break s,
                Err(_) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(5))
                }
                Err(e) => panic!("{e}"),
            }
        };
        s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let mut buf = [0u8; 65536];
        s.read_exact(&mut buf[..24]).unwrap();
        let _ = connected.send(());
        while std::time::Instant::now() < deadline {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    });
    let settle = || {
        let _ = is_connected.recv_timeout(std::time::Duration::from_secs(20));
        // The server publishes its client count right after writing the header.
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(
        steady_state_allocations_after(&config, "forward", 100, settle),
        0
    );
    client.join().unwrap();
}
