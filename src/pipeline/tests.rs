//! The pipeline's parts in-process, on explicit packet times (quinn-proto's way of testing its
//! core): a shard needs no thread to process a batch, and a lane needs no socket.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde::Deserialize;

use super::batch::Batch;
use super::lane::{Lane, WhenFull};
use super::shard::Shard;
use crate::base::{DropReason, Feed, Packet, Session, Timestamp};
use crate::modules::{BuildError, Emitter, Module, ModuleConfig, ModuleContext, ModuleSpec};
use crate::session::SessionTable;
use crate::wire::inner::dissect;

/// What the probe module was called with, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Call {
    Packet(u64),
    Tick(u64),
    Finish,
}

#[derive(Deserialize)]
struct ProbeConfig {
    #[serde(skip)]
    calls: Arc<Mutex<Vec<Call>>>,
    #[serde(skip)]
    panic_on_packet: bool,
    #[serde(skip)]
    no_packets: bool,
}

struct Probe {
    calls: Arc<Mutex<Vec<Call>>>,
    panic_on_packet: bool,
    no_packets: bool,
}

impl Module for Probe {
    fn on_packet(&mut self, pkt: &Packet<'_>, _out: &mut Emitter<'_>) {
        assert!(!self.panic_on_packet, "the probe was told to panic");
        self.calls.lock().unwrap().push(Call::Packet(pkt.ts.secs()));
    }
    fn on_tick(&mut self, now: Timestamp, _out: &mut Emitter<'_>) {
        self.calls.lock().unwrap().push(Call::Tick(now.secs()));
    }
    fn finish(&mut self, _out: &mut Emitter<'_>) {
        self.calls.lock().unwrap().push(Call::Finish);
    }
    fn wants_packets(&self) -> bool {
        !self.no_packets
    }
}

impl ModuleConfig for ProbeConfig {
    fn build(&self, _ctx: &ModuleContext) -> Result<Box<dyn Module>, BuildError> {
        Ok(Box::new(Probe {
            calls: self.calls.clone(),
            panic_on_packet: self.panic_on_packet,
            no_packets: self.no_packets,
        }))
    }
}

fn shard(feed: Feed, panic_on_packet: bool) -> (Shard, Arc<Mutex<Vec<Call>>>) {
    probe_shard(feed, panic_on_packet, false)
}

fn probe_shard(
    feed: Feed,
    panic_on_packet: bool,
    no_packets: bool,
) -> (Shard, Arc<Mutex<Vec<Call>>>) {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let spec = ModuleSpec {
        kind: "probe".into(),
        index: 0,
        factory: Arc::new(ProbeConfig {
            calls: calls.clone(),
            panic_on_packet,
            no_packets,
        }),
    };
    let ctx = ModuleContext {
        shard: 0,
        shards: 1,
        sessions: SessionTable::new(&Default::default()),
        feed,
    };
    let (_control_tx, control) = crossbeam_channel::unbounded();
    let shard = Shard::new(ctx, &[spec], 1000, &Default::default(), control, None)
        .expect("the probe builds");
    (shard, calls)
}

const FRAME: [u8; 60] = [0u8; 60];

fn batch_at(secs: &[u64]) -> Box<Batch> {
    let session = Arc::new(Session::plain("test", 1));
    let mut batch = Batch::new(None);
    for s in secs {
        batch.push(
            Timestamp::from_secs(*s),
            0,
            &session,
            &FRAME,
            60,
            dissect(&FRAME),
        );
    }
    batch
}

#[test]
fn a_shard_ticks_on_packet_time_before_the_packet_that_crosses_the_tick() {
    let (mut shard, calls) = shard(Feed::Offline, false);
    shard.process(&batch_at(&[100, 100, 102]));
    shard.finish();
    assert_eq!(
        *calls.lock().unwrap(),
        [
            Call::Tick(100),
            Call::Packet(100),
            Call::Packet(100),
            Call::Tick(102),
            Call::Packet(102),
            Call::Finish
        ]
    );
    assert_eq!(shard.counters().packets.load(Ordering::Relaxed), 3);
}

/// A module that wants no packets is not called for them, and its count still has every one.
#[test]
fn a_module_that_wants_no_packets_gets_ticks_and_counts_them_all() {
    let (mut shard, calls) = probe_shard(Feed::Offline, false, true);
    shard.process(&batch_at(&[100, 100, 102]));
    shard.finish();
    assert_eq!(
        *calls.lock().unwrap(),
        [Call::Tick(100), Call::Tick(102), Call::Finish]
    );
    let module = &shard.counters().modules[0];
    assert_eq!(module.packets.load(Ordering::Relaxed), 3);
}

#[test]
fn only_a_live_shard_ticks_on_the_wall_clock_while_idle() {
    for (feed, ticks) in [(Feed::Live, 1), (Feed::Offline, 0)] {
        let (mut shard, calls) = shard(feed, false);
        shard.process(&batch_at(&[100]));
        shard.idle(Timestamp::from_secs(100)); // not due yet
        shard.idle(Timestamp::from_secs(105));
        let idle_ticks = calls.lock().unwrap()[2..].len();
        assert_eq!(idle_ticks, ticks, "{feed:?}");
    }
}

#[test]
fn a_panicking_module_is_disabled_and_the_shard_goes_on() {
    let (mut shard, calls) = shard(Feed::Offline, true);
    shard.process(&batch_at(&[1, 2]));
    shard.finish();
    // The first tick came before the panic; nothing after it.
    assert_eq!(*calls.lock().unwrap(), [Call::Tick(1)]);
    let module = &shard.counters().modules[0];
    assert_eq!(module.errors.load(Ordering::Relaxed), 1);
    assert_eq!(shard.counters().packets.load(Ordering::Relaxed), 2);
}

#[test]
fn an_inline_lane_processes_each_batch_in_place() {
    let (shard, calls) = shard(Feed::Live, false);
    let mut lane = Lane::inline(shard);
    let session = Arc::new(Session::plain("test", 1));
    for s in [7, 8] {
        let batch = lane.batch().expect("an inline lane always has a batch");
        batch.push(
            Timestamp::from_secs(s),
            0,
            &session,
            &FRAME,
            60,
            dissect(&FRAME),
        );
    }
    assert!(calls.lock().unwrap().is_empty(), "nothing runs before send");
    assert_eq!(lane.send(), (2, None));
    assert_eq!(
        *calls.lock().unwrap(),
        [
            Call::Tick(7),
            Call::Packet(7),
            Call::Tick(8),
            Call::Packet(8)
        ]
    );
    assert_eq!(lane.send(), (0, None), "the batch was emptied");
}

#[test]
fn a_live_handoff_lane_drops_when_its_allowance_is_in_flight() {
    let (tx, rx) = crossbeam_channel::bounded(8);
    let mut lane = Lane::handoff(tx, 2, WhenFull::Drop);
    let session = Arc::new(Session::plain("test", 1));
    let fill = |lane: &mut Lane| match lane.batch() {
        Some(b) => {
            b.push(
                Timestamp::from_secs(1),
                0,
                &session,
                &FRAME,
                60,
                dissect(&FRAME),
            );
            true
        }
        None => false,
    };
    for _ in 0..2 {
        assert!(fill(&mut lane));
        assert_eq!(lane.send(), (1, None));
    }
    // Both batches sit with the shard: the third packet has nowhere to go.
    assert!(!fill(&mut lane));
    // One comes back: packets flow again, and the batch is reused, not allocated.
    let mut back = rx.recv().unwrap();
    back.clear();
    back.home.clone().unwrap().send(back).unwrap();
    assert!(fill(&mut lane));
    drop(rx);
    assert_eq!(lane.send(), (0, Some((DropReason::ShardStopped, 1))));
    assert_eq!(session.dropped(), 1);
}

#[test]
fn an_offline_lane_waits_but_not_for_a_shard_that_is_gone() {
    let (tx, _rx) = crossbeam_channel::bounded(8);
    let gone = Arc::new(AtomicBool::new(false));
    let mut lane = Lane::handoff(
        tx,
        1,
        WhenFull::Wait {
            shard_gone: gone.clone(),
        },
    );
    let session = Arc::new(Session::plain("test", 1));
    lane.batch().unwrap().push(
        Timestamp::from_secs(1),
        0,
        &session,
        &FRAME,
        60,
        dissect(&FRAME),
    );
    assert_eq!(lane.send(), (1, None));
    gone.store(true, Ordering::Release);
    // The one batch is in flight and the shard will never return it: no wait forever.
    assert!(lane.batch().is_none());
}
