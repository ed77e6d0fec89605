//! Per-packet cost of the ingest path, whole and in parts, next to baselines measured in the same run.
//!
//! Every benchmark handles one datagram per iteration, cycling through 4,096 pre-built ones of a
//! realistic mix (1,000 flows over 8 sessions, IPv4 and IPv6, TCP and UDP, 54- to 1,454-byte inner
//! frames), so the figures are per packet. Quote them as ratios against `baseline` from the same run:
//! absolute nanoseconds on a shared two-core machine mean little.
//!
//! - `baseline::memcpy_frame`: copying the inner frame once (what handing it to a shard costs at least).
//! - `baseline::etherparse_sliced`: etherparse's all-layers slicer on the inner frame.
//! - `parts::*`: decapsulation, session lookup, inner dissection, steering, each alone.
//!   `parts::dissect` is what ingest calls (the hand-written fast path, else etherparse);
//!   `parts::dissect_general` is etherparse's path alone, as every frame took it before the fast path.
//! - `core`: the four together, the per-packet work issue 6's ≤ 100 ns goal is about; `core_general`
//!   the same with `dissect_general`, so the fast path's gain is measured in the same run.
//! - `ingress_batch64`: 64 datagrams through `Ingress::datagram` and the flush, with the copy into
//!   batches and the hand-off to two shards running no modules (divide by 64).

use std::hint::black_box;
use std::net::IpAddr;

use divan::Bencher;
use vxtap::base::SessionKey;
use vxtap::base::{Feed, Timestamp};
use vxtap::config::{Config, SessionsConfig};
use vxtap::pipeline::{decap, steer, Encap, Pipeline};
use vxtap::session::{SessionResolver, SessionTable};
use vxtap::wire::inner;

#[path = "common/traffic.rs"]
mod traffic;

const SET: usize = 4096;
const TS: Timestamp = Timestamp::from_nanos(1_700_000_000_000_000_000);

fn main() {
    divan::main();
}

struct Set {
    datagrams: Vec<(IpAddr, Vec<u8>)>,
}

impl Set {
    fn new() -> Set {
        let mut t = traffic::Traffic::new(6, 1000, 8);
        let datagrams = (0..SET)
            .map(|_| {
                let d = t.next();
                (d.source, d.vxlan.to_vec())
            })
            .collect();
        Set { datagrams }
    }

    fn frames(&self) -> Vec<Vec<u8>> {
        self.datagrams
            .iter()
            .map(|(_, p)| p[8..].to_vec())
            .collect()
    }
}

// Every benchmark has a fixed sample shape: divan's automatic sizing is thrown off by a slow first
// call, and equal shapes keep the benchmarks comparable with each other.

/// Cycles through `items` forever, one per call.
fn cycle<'a, T>(items: &'a [T]) -> impl FnMut() -> &'a T + 'a {
    let mut i = 0usize;
    move || {
        let item = &items[i % items.len()];
        i = i.wrapping_add(1);
        item
    }
}

mod baseline {
    use super::*;

    #[divan::bench(sample_count = 300, sample_size = 512)]
    fn memcpy_frame(bencher: Bencher) {
        let frames = Set::new().frames();
        let mut next = cycle(&frames);
        let mut buf = vec![0u8; 9216];
        bencher.bench_local(|| {
            let f = next();
            buf[..f.len()].copy_from_slice(black_box(f));
            black_box(&buf);
        });
    }

    #[divan::bench(sample_count = 300, sample_size = 512)]
    fn etherparse_sliced(bencher: Bencher) {
        let frames = Set::new().frames();
        let mut next = cycle(&frames);
        bencher.bench_local(|| {
            black_box(etherparse::SlicedPacket::from_ethernet(black_box(next())).is_ok())
        });
    }
}

mod parts {
    use super::*;

    #[divan::bench(sample_count = 300, sample_size = 512)]
    fn decap(bencher: Bencher) {
        let set = Set::new();
        let mut next = cycle(&set.datagrams);
        bencher.bench_local(|| {
            let (_, p) = next();
            black_box(decap::decapsulate(Encap::Vxlan, black_box(p)).is_ok())
        });
    }

    #[divan::bench(sample_count = 300, sample_size = 512)]
    fn session_lookup(bencher: Bencher) {
        let set = Set::new();
        let keys: Vec<SessionKey> = set
            .datagrams
            .iter()
            .map(|(source, p)| SessionKey {
                source: *source,
                vni: u32::from_be_bytes([0, p[4], p[5], p[6]]),
            })
            .collect();
        let mut resolver = SessionResolver::new(SessionTable::new(&SessionsConfig::default()));
        for k in &keys {
            let _ = resolver.resolve(*k, TS);
        }
        let mut next = cycle(&keys);
        bencher.bench_local(|| black_box(resolver.resolve(*black_box(next()), TS).is_ok()));
    }

    #[divan::bench(sample_count = 300, sample_size = 512)]
    fn dissect(bencher: Bencher) {
        let frames = Set::new().frames();
        let mut next = cycle(&frames);
        bencher.bench_local(|| black_box(inner::dissect(black_box(next()))));
    }

    #[divan::bench(sample_count = 300, sample_size = 512)]
    fn dissect_general(bencher: Bencher) {
        let frames = Set::new().frames();
        let mut next = cycle(&frames);
        bencher.bench_local(|| black_box(inner::dissect_general(black_box(next()))));
    }

    #[divan::bench(sample_count = 300, sample_size = 512)]
    fn steer(bencher: Bencher) {
        let layers: Vec<inner::Layers> = Set::new()
            .frames()
            .iter()
            .map(|f| inner::dissect(f))
            .collect();
        let mut next = cycle(&layers);
        bencher.bench_local(|| {
            black_box(steer::shard_of(
                steer::symmetric_hash(7, black_box(next())),
                4,
            ))
        });
    }
}

#[divan::bench(sample_count = 300, sample_size = 512)]
fn core(bencher: Bencher) {
    core_with(bencher, inner::dissect);
}

#[divan::bench(sample_count = 300, sample_size = 512)]
fn core_general(bencher: Bencher) {
    core_with(bencher, inner::dissect_general);
}

fn core_with(bencher: Bencher, dissect: fn(&[u8]) -> inner::Layers) {
    let set = Set::new();
    let mut resolver = SessionResolver::new(SessionTable::new(&SessionsConfig::default()));
    for (source, payload) in &set.datagrams {
        let vni = u32::from_be_bytes([0, payload[4], payload[5], payload[6]]);
        let _ = resolver.resolve(
            SessionKey {
                source: *source,
                vni,
            },
            TS,
        );
    }
    let mut next = cycle(&set.datagrams);
    bencher.bench_local(|| {
        let (source, payload) = next();
        let Ok(d) = decap::decapsulate(Encap::Vxlan, black_box(payload)) else {
            return 0;
        };
        let key = SessionKey {
            source: d.source.unwrap_or(*source).to_canonical(),
            vni: d.vni,
        };
        let Ok(session) = resolver.resolve(key, TS) else {
            return 0;
        };
        let layers = dissect(d.frame);
        black_box(steer::shard_of(
            steer::symmetric_hash(session.id, &layers),
            4,
        ))
    });
}

/// One receive batch: 64 datagrams through `Ingress::datagram` and the flush that hands them to the
/// shards, as a UDP worker does after each recvmmsg. Per datagram = median / 64. Between samples
/// (untimed) it waits for the two shards to catch up, so that on a busy two-core machine the
/// figure measures ingest work and not the cheaper `shard_queue_full` drop path.
#[divan::bench(sample_size = 1, sample_count = 3000)]
fn ingress_batch64(bencher: Bencher) {
    let config = Config::parse(
        "[ingest]\nvxlan = [\"127.0.0.1:0\"]\n[pipeline]\nshards = 2\n",
        "bench",
    )
    .expect("valid config");
    let pipeline = Pipeline::builder(config)
        .feed(Feed::Offline)
        .build()
        .and_then(|s| s.start_handoff())
        .expect("pipeline builds");
    let mut ingress = pipeline.ingress();
    let set = Set::new();
    for (source, payload) in &set.datagrams {
        ingress.datagram(TS, *source, Encap::Vxlan, payload);
    }
    ingress.send_pending();
    let chunks: Vec<&[(IpAddr, Vec<u8>)]> = set.datagrams.chunks(64).collect();
    let mut next = cycle(&chunks);
    let caught_up = || {
        while pipeline.processed_packets() < pipeline.accounting().snapshot().dispatched {
            std::thread::yield_now();
        }
    };
    bencher.with_inputs(caught_up).bench_local_values(|()| {
        for (source, payload) in *next() {
            ingress.datagram(TS, *source, Encap::Vxlan, black_box(payload));
        }
        ingress.send_pending();
    });
    drop(ingress);
    let c = pipeline.finish().counts;
    if c.dropped_total() > 0 {
        eprintln!("ingress_batch64: drops {:?}", c.drops_by_reason());
    }
}
