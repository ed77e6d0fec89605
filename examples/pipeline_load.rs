//! The pipeline without sockets, for profiling: one thread drives `Ingress::datagram` with N
//! datagrams (4,096 pre-built ones of the benchmark mix, cycled; flushed every 64 as a UDP worker
//! does) into two shards running the stats module and whatever EXTRA.toml adds, waiting whenever
//! the shards fall more than a few batches behind so that nothing is shed.
//!
//! `pipeline_load N [EXTRA.toml]`; under callgrind:
//! `valgrind --tool=callgrind target/release/examples/pipeline_load 200000`.

use std::io;
use std::net::IpAddr;
use std::time::Instant;

use vxtap::base::{Feed, Timestamp};
use vxtap::config::Config;
use vxtap::pipeline::{Encap, Pipeline};

#[path = "../benches/common/traffic.rs"]
mod traffic;

fn main() -> io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: u64 = args
        .first()
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| io::Error::other("usage: pipeline_load N [EXTRA.toml]"))?;
    let extra = match args.get(1) {
        Some(p) => std::fs::read_to_string(p)?,
        None => String::new(),
    };
    let text = format!(
        "[ingest]\nvxlan = [\"127.0.0.1:0\"]\n[pipeline]\nshards = 2\n\n\
         [[module]]\nkind = \"stats\"\ninterval_secs = 10\n\n{extra}"
    );
    let config = Config::parse(&text, "pipeline_load").map_err(io::Error::other)?;
    let pipeline = Pipeline::builder(config)
        .feed(Feed::Offline)
        .build()
        .and_then(|s| s.start_handoff())
        .map_err(io::Error::other)?;
    let mut ingress = pipeline.ingress();
    let mut t = traffic::Traffic::new(11, 20_000, 8);
    let set: Vec<Vec<u8>> = (0..4096).map(|_| t.next().vxlan.to_vec()).collect();
    let source: IpAddr = [127, 0, 0, 1].into();
    let base = 1_700_000_000_000_000_000u64;
    let start = Instant::now();
    for i in 0..n {
        let ts = Timestamp::from_nanos(base + i * 1000);
        ingress.datagram(ts, source, Encap::Vxlan, &set[i as usize % set.len()]);
        if i % 64 == 63 {
            ingress.send_pending();
            while pipeline.accounting().snapshot().dispatched
                > pipeline.processed_packets() + 16 * 64
            {
                std::thread::yield_now();
            }
        }
    }
    drop(ingress);
    let report = pipeline.finish();
    let secs = start.elapsed().as_secs_f64();
    let c = &report.counts;
    eprintln!(
        "RESULT pipeline_load datagrams={} dispatched={} drops={:?} secs={secs:.3} mdps={:.3}",
        c.received,
        c.dispatched,
        c.drops_by_reason(),
        c.received as f64 / secs / 1e6
    );
    Ok(())
}
