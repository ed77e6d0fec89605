//! `Module::prepare`: every packet a module gets was announced to it in a `prepare` call just before,
//! in the same order and batch by batch; and a module that panics in `prepare` is switched off on its
//! shard without taking the other modules' packets with it.

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Mutex;

use etherparse::PacketBuilder;
use serde::Deserialize;
use vxtap::base::{Feed, Timestamp};
use vxtap::config::Config;
use vxtap::modules::BuildError;
use vxtap::pipeline::{Encap, Pipeline};
use vxtap::{Emitter, Module, ModuleConfig, ModuleContext, Packet, Registry};

#[derive(Debug)]
enum Event {
    Prepare(Vec<u64>),
    Packet(u64),
}

/// What each shard's probe saw, by shard.
static SEEN: Mutex<Vec<(usize, Event)>> = Mutex::new(Vec::new());

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProbeConfig {}

struct Probe {
    shard: usize,
}

impl ModuleConfig for ProbeConfig {
    fn build(&self, ctx: &ModuleContext) -> Result<Box<dyn Module>, BuildError> {
        Ok(Box::new(Probe { shard: ctx.shard }))
    }
}

impl Module for Probe {
    fn prepare(&mut self, packets: &[Packet<'_>]) {
        let ts = packets.iter().map(|p| p.ts.nanos()).collect();
        SEEN.lock().unwrap().push((self.shard, Event::Prepare(ts)));
    }

    fn on_packet(&mut self, pkt: &Packet<'_>, _out: &mut Emitter<'_>) {
        SEEN.lock()
            .unwrap()
            .push((self.shard, Event::Packet(pkt.ts.nanos())));
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultyConfig {}

struct Faulty;

impl ModuleConfig for FaultyConfig {
    fn build(&self, _ctx: &ModuleContext) -> Result<Box<dyn Module>, BuildError> {
        Ok(Box::new(Faulty))
    }
}

impl Module for Faulty {
    fn prepare(&mut self, _packets: &[Packet<'_>]) {
        panic!("a bug in a module's prepare");
    }

    fn on_packet(&mut self, _pkt: &Packet<'_>, _out: &mut Emitter<'_>) {}
}

const CONFIG: &str = r#"
[ingest]
vxlan = ["127.0.0.1:0"]

[pipeline]
shards = 2

[[module]]
kind = "faulty"

[[module]]
kind = "probe"
"#;

fn datagram(i: u16) -> Vec<u8> {
    let mut d = vec![0x08, 0, 0, 0, 0, 0, 7, 0];
    PacketBuilder::ethernet2([2; 6], [4; 6])
        .ipv4([10, 1, (i >> 8) as u8, i as u8], [10, 2, 0, 1], 64)
        .tcp(40000 + i % 1000, 443, 1, 1000)
        .write(&mut d, &[0u8; 40])
        .unwrap();
    d
}

#[test]
fn modules_are_told_of_each_batch_before_its_packets() {
    let config = Config::parse(CONFIG, "module_prepare").unwrap();
    let mut registry = Registry::with_builtins();
    registry
        .register::<ProbeConfig>("probe")
        .register::<FaultyConfig>("faulty");
    let pipeline = Pipeline::builder(config)
        .registry(registry)
        .feed(Feed::Offline)
        .build()
        .and_then(|s| s.start_handoff())
        .unwrap();
    let counters: Vec<_> = pipeline.shard_counters().to_vec();
    let mut ingress = pipeline.ingress();
    let source: IpAddr = [10, 0, 0, 1].into();
    let sent = 3000u64;
    for i in 0..sent {
        let d = datagram(i as u16);
        ingress.datagram(Timestamp::from_nanos(1_000 + i), source, Encap::Vxlan, &d);
        if i % 500 == 499 {
            ingress.send_pending();
        }
    }
    drop(ingress);
    let report = pipeline.finish();
    assert_eq!(report.counts.dispatched, sent, "{:?}", report.counts);

    let seen = SEEN.lock().unwrap();
    let mut packets = 0u64;
    let mut largest_batch = 0;
    assert_eq!(counters.len(), 2);
    for (shard, c) in counters.iter().enumerate() {
        let mut announced: std::collections::VecDeque<u64> = Default::default();
        for (_, e) in seen.iter().filter(|(s, _)| *s == shard) {
            match e {
                Event::Prepare(ts) => {
                    assert!(
                        announced.is_empty(),
                        "shard {shard}: a prepare came before the previous batch's packets ({announced:?} pending)"
                    );
                    assert!(
                        !ts.is_empty() && ts.len() <= 64,
                        "shard {shard}: batch of {}",
                        ts.len()
                    );
                    largest_batch = largest_batch.max(ts.len());
                    announced.extend(ts);
                }
                Event::Packet(ts) => {
                    assert_eq!(
                        announced.pop_front(),
                        Some(*ts),
                        "shard {shard}: a packet that was not announced next"
                    );
                    packets += 1;
                }
            }
        }
        assert!(
            announced.is_empty(),
            "shard {shard}: announced but never given: {announced:?}"
        );
        // The panicking prepare was counted once and the module switched off; the probe went on.
        let faulty = &c.modules[0];
        assert_eq!(faulty.errors.load(Ordering::Relaxed), 1, "shard {shard}");
        assert_eq!(faulty.packets.load(Ordering::Relaxed), 0, "shard {shard}");
    }
    assert_eq!(packets, sent, "every packet reached the probe");
    assert!(
        largest_batch > 1,
        "packets were announced in batches, not one by one"
    );
}
