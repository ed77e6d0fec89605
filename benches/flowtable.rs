//! Per-packet cost of the shard's flow table at realistic scale (issue 14, goal 2): ENI-like traffic
//! (flows that open, talk and close in time order; `benches/common/eni.rs`) with about 170 k flows
//! live at once, so that the table holds more than 300 k flow directions, larger than the caches.
//!
//! Setup (not timed) runs the generator until the table has filled and reached that size, feeding
//! every packet through the table as a shard would (`prepare` per batch of 64, a tick every second
//! of packet time); then it dissects the next `BATCHES` × 64 packets ahead of time. Each iteration
//! is one packet of those, in capture order, continuing the same table: a sample is one batch of 64
//! (its `prepare` included), so the figures are nanoseconds per packet.
//!
//! - `flow_table`: the table with one flow-aware module that keeps nothing.
//! - `flow_table_with_intervals`: the same table keeping per-direction interval counters (60 s), as
//!   when flowlog rides it: what counting in the flow table instead of a table of flowlog's own
//!   adds per packet (a 60 s interval does not end within the measured packets; flows that end are
//!   parked).
//! - `baseline_fx_hashmap`: the same packets counted in an `FxHashMap` keyed by session and
//!   canonical 5-tuple, never removed from: what a lookup-or-insert alone costs at that size.
//!
//! Quote them as ratios against the baseline from the same run: absolute nanoseconds on a shared
//! two-core machine mean little. `FLOWTABLE_CONCURRENT` changes the live-flow bound (default 170000).

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;

use divan::Bencher;
use rustc_hash::FxBuildHasher;
use vxtap::base::{FlowKey, Packet, Session, Timestamp};
use vxtap::config::FlowConfig;
use vxtap::flow::bench::TableBench;
use vxtap::wire::inner::{dissect, Layers};

#[path = "common/payloads.rs"]
mod payloads;

#[path = "common/eni.rs"]
mod eni;

const BATCH: usize = 64;
/// Batches measured: every sample takes one, and no packet is given twice.
const BATCHES: usize = 2048;

fn main() {
    divan::main();
}

/// One dissected packet; the frame's bytes are not kept (the table reads only the layers).
struct Pre {
    session: usize,
    ts: Timestamp,
    orig_len: u32,
    layers: Layers,
}

struct Traffic {
    sessions: Vec<Arc<Session>>,
    gen: eni::EniTraffic,
}

impl Traffic {
    fn new() -> Traffic {
        let concurrent = std::env::var("FLOWTABLE_CONCURRENT")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(170_000);
        let cfg = eni::EniConfig {
            flows: concurrent * 4,
            concurrent,
            sessions: 3,
            seed: 14,
        };
        Traffic {
            sessions: (0..cfg.sessions)
                .map(|s| Arc::new(Session::plain("eni", s)))
                .collect(),
            gen: eni::EniTraffic::new(cfg),
        }
    }

    /// The next undamaged packet's inner frame, dissected.
    fn next(&mut self) -> Option<Pre> {
        loop {
            let d = self.gen.next()?;
            if d.damage.is_some() {
                continue;
            }
            let inner = &d.frame[eni::VXLAN_OFFSET + 8..];
            return Some(Pre {
                session: d.session as usize,
                ts: Timestamp::from_nanos(d.ts_us * 1000),
                orig_len: inner.len() as u32,
                layers: dissect(inner),
            });
        }
    }

    fn packet<'a>(&'a self, p: &'a Pre) -> Packet<'a> {
        Packet {
            session: &self.sessions[p.session],
            ts: p.ts,
            frame: &[],
            orig_len: p.orig_len,
            layers: &p.layers,
        }
    }
}

/// Feeds `batch` as a shard does: `prepare`, then each packet, ticking on every second of packet time.
fn feed(table: &mut TableBench, next_tick: &mut u64, batch: &[Packet<'_>]) {
    table.prepare(batch);
    for pkt in batch {
        if pkt.ts.nanos() >= *next_tick {
            table.expire(pkt.ts);
            *next_tick = pkt.ts.next_boundary(1_000_000_000).nanos();
        }
        table.packet(pkt);
    }
}

/// A table filled with the generator's traffic until it holds 300 k flow directions (or the
/// generator's flows ran out), and the next packets dissected for the measurement.
type Map = HashMap<(u32, FlowKey), u64, FxBuildHasher>;

fn filled(mut keys: Option<&mut Map>, intervals: bool) -> (Traffic, TableBench, u64, Vec<Pre>) {
    let mut traffic = Traffic::new();
    let config = FlowConfig {
        max_flows: 1 << 20,
        ..FlowConfig::default()
    };
    let mut table = if intervals {
        TableBench::with_intervals(&config, 60)
    } else {
        TableBench::new(&config)
    };
    let mut next_tick = 0;
    let mut fed = 0u64;
    'fill: loop {
        let mut pre = Vec::with_capacity(BATCH);
        for _ in 0..BATCH {
            match traffic.next() {
                Some(p) => pre.push(p),
                None => break 'fill,
            }
        }
        let packets: Vec<Packet<'_>> = pre.iter().map(|p| traffic.packet(p)).collect();
        feed(&mut table, &mut next_tick, &packets);
        if let Some(map) = keys.as_deref_mut() {
            for pkt in &packets {
                if let Some(k) = pkt.flow() {
                    *map.entry((pkt.session.id, k.canonical().0)).or_insert(0) += 1;
                }
            }
        }
        fed += BATCH as u64;
        // Counting directions scans the table: now and then.
        if fed % (1 << 16) == 0 && table.directions() >= 300_000 {
            break;
        }
    }
    let measured: Vec<Pre> = (0..BATCHES * BATCH).map_while(|_| traffic.next()).collect();
    eprintln!(
        "flowtable: {fed} packets fed before measuring; {} flows and {} flow directions in the table, \
         {} flows live in the generator; {} packets to measure",
        table.len(),
        table.directions(),
        traffic.gen.live(),
        measured.len()
    );
    (traffic, table, next_tick, measured)
}

#[divan::bench(sample_count = BATCHES as u32, sample_size = BATCH as u32)]
fn flow_table(bencher: Bencher) {
    measure_table(bencher, false);
}

#[divan::bench(sample_count = BATCHES as u32, sample_size = BATCH as u32)]
fn flow_table_with_intervals(bencher: Bencher) {
    measure_table(bencher, true);
}

fn measure_table(bencher: Bencher, intervals: bool) {
    let (traffic, mut table, mut next_tick, measured) = filled(None, intervals);
    let packets: Vec<Packet<'_>> = measured.iter().map(|p| traffic.packet(p)).collect();
    let mut i = 0usize;
    bencher.bench_local(|| {
        let at = i % packets.len();
        if at % BATCH == 0 {
            table.prepare(&packets[at..(at + BATCH).min(packets.len())]);
        }
        let pkt = &packets[at];
        if pkt.ts.nanos() >= next_tick {
            table.expire(pkt.ts);
            next_tick = pkt.ts.next_boundary(1_000_000_000).nanos();
        }
        table.packet(pkt);
        i += 1;
    });
    black_box(table.seen());
}

#[divan::bench(sample_count = BATCHES as u32, sample_size = BATCH as u32)]
fn baseline_fx_hashmap(bencher: Bencher) {
    // Every flow of the fill, none removed: a larger map than the table, which ends flows.
    let mut map: Map = HashMap::with_capacity_and_hasher(1 << 20, FxBuildHasher);
    let (traffic, table, _, measured) = filled(Some(&mut map), false);
    drop(table);
    let packets: Vec<Packet<'_>> = measured.iter().map(|p| traffic.packet(p)).collect();
    let mut i = 0usize;
    bencher.bench_local(|| {
        let pkt = &packets[i % packets.len()];
        if let Some(k) = pkt.flow() {
            *map.entry((pkt.session.id, k.canonical().0)).or_insert(0) += 1;
        }
        i += 1;
    });
    black_box(map.len());
}
