//! Memory per tracked flow: runs the pipeline with the configured modules and feeds it FLOWS
//! distinct concurrent flows (a SYN and one more packet each, all within one second of packet time,
//! so nothing can expire), then reports how much the process's resident memory grew per flow.
//!
//! `flow_memory FLOWS [EXTRA.toml]`: the pipeline runs the stats module, plus whatever `[[module]]`
//! tables EXTRA.toml holds (e.g. flowlog, whose flow table is what issue 6's "≤ 200 bytes per flow"
//! is about). With stats alone it shows what the core itself keeps per flow.
//! Prints `RESULT flowmem flows=… bytes_per_flow=… …` on stderr. `bytes_per_flow` counts growth
//! while the flows arrive; `bytes_per_flow_from_start` also counts what modules reserved at start.

use std::io;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use vxtap::base::{Feed, Timestamp};
use vxtap::config::Config;
use vxtap::pipeline::{Encap, Pipeline};

#[path = "../benches/common/traffic.rs"]
mod traffic;

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn main() -> io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flows: u32 = args
        .first()
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| io::Error::other("usage: flow_memory FLOWS [EXTRA.toml]"))?;
    let extra = match args.get(1) {
        Some(p) => std::fs::read_to_string(p)?,
        None => String::new(),
    };
    let text = format!(
        "[ingest]\nvxlan = [\"127.0.0.1:0\"]\n[pipeline]\nshards = 2\n\n\
         [[module]]\nkind = \"stats\"\ninterval_secs = 10\n\n{extra}"
    );
    let config = Config::parse(&text, "flow_memory").map_err(io::Error::other)?;
    // Before the pipeline exists: modules that reserve their tables at start show up in the
    // per-flow figure measured from here.
    let start = status_kib("VmRSS:");
    let pipeline = Pipeline::builder(config)
        .feed(Feed::Offline)
        .build()
        .and_then(|s| s.start_handoff())
        .map_err(io::Error::other)?;
    let mut ingress = pipeline.ingress();
    let mut t = traffic::Traffic::new(7, flows, 8);
    t.size_divisor = 8;
    let source: IpAddr = [127, 0, 0, 1].into();
    let base = 1_700_000_000_000_000_000u64;
    let step = 1_000_000_000 / (2 * u64::from(flows.max(1)) + 1);
    let settle = |pipeline: &Pipeline| {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if pipeline.processed_packets() >= pipeline.accounting().snapshot().dispatched
                || Instant::now() > deadline
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    };
    // Warm-up outside the measurement: batches, session caches.
    let warm = flows.min(1000);
    for f in 0..warm {
        let d = t.flow_packet(f);
        ingress.datagram(Timestamp::from_nanos(base), source, Encap::Vxlan, d.vxlan);
    }
    ingress.send_pending();
    settle(&pipeline);
    let before = status_kib("VmRSS:");
    let mut i = 0u64;
    for round in 0..2 {
        for f in 0..flows {
            if round == 0 && f < warm {
                continue;
            }
            let d = t.flow_packet(f);
            i += 1;
            ingress.datagram(
                Timestamp::from_nanos(base + i * step),
                source,
                Encap::Vxlan,
                d.vxlan,
            );
            if i % 4096 == 0 {
                ingress.send_pending();
                settle(&pipeline);
            }
        }
    }
    ingress.send_pending();
    settle(&pipeline);
    let after = status_kib("VmRSS:");
    let hwm = status_kib("VmHWM:");
    let module_drops: u64 = pipeline
        .shard_counters()
        .iter()
        .flat_map(|s| s.modules.iter())
        .map(|m| m.drops.load(Ordering::Relaxed))
        .sum();
    drop(ingress);
    let report = pipeline.finish();
    let c = &report.counts;
    let per_flow = |from: u64| (after.saturating_sub(from) * 1024) as f64 / f64::from(flows.max(1));
    // On stderr, so that it stands apart from records a module writes to stdout.
    eprintln!(
        "RESULT flowmem flows={flows} rss_start_kib={start} rss_before_kib={before} \
         rss_after_kib={after} hwm_kib={hwm} bytes_per_flow={:.1} bytes_per_flow_from_start={:.1} \
         dispatched={} drops={:?} module_drops={module_drops}",
        per_flow(before),
        per_flow(start),
        c.dispatched,
        c.drops_by_reason()
    );
    Ok(())
}
