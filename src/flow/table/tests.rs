//! The flow table on crafted packets and explicit packet times, through a recording event sink.

use std::sync::Arc;

use etherparse::PacketBuilder;

use super::*;
use crate::wire::inner::dissect;

/// Records every event as a line; asks for both streams at start when `streams`.
#[derive(Default)]
struct Rec {
    log: Vec<String>,
    streams: bool,
    stop_after_bytes: Option<u64>,
    /// Stops the packets of the flows to this port at their start.
    no_packets_to: Option<u16>,
    /// Tags each flow at its start with its client's port (0 for a client on 443), and logs with
    /// each hand-over what it says of the flow.
    tags: bool,
    /// With `tags`: each flow's id and Community ID at its start.
    started: Vec<(u64, String)>,
}

impl FlowEvents for Rec {
    fn start(&mut self, flow: &mut Flow<'_>, _pkt: &Packet<'_>) {
        flow.set_module(0);
        let k = flow.key();
        self.log.push(format!(
            "start {}:{}>{}:{} guessed={}",
            k.src,
            k.src_port,
            k.dst,
            k.dst_port,
            flow.guessed()
        ));
        if self.streams {
            flow.want_stream(Dir::ToServer);
            flow.want_stream(Dir::ToClient);
        }
        if self.no_packets_to == Some(k.dst_port) {
            flow.stop_packets();
        }
        if self.tags {
            flow.set_tag(if k.src_port == 443 {
                0
            } else {
                u32::from(k.src_port)
            });
            self.started
                .push((flow.id(), flow.community_id().to_string()));
        }
    }
    fn packet(&mut self, flow: &mut Flow<'_>, _pkt: &Packet<'_>, dir: Dir) {
        let state = flow.tcp_state().map_or("-", |s| s.name());
        self.log.push(format!("packet {} {state}", dir.name()));
    }
    fn stream(&mut self, flow: &mut Flow<'_>, dir: Dir, chunk: &Chunk<'_>) {
        flow.set_module(0);
        match *chunk {
            Chunk::Data { offset, bytes } => self.log.push(format!(
                "data {} @{offset} {:?}",
                dir.name(),
                String::from_utf8_lossy(bytes)
            )),
            Chunk::Gap { offset, len, why } => self.log.push(format!(
                "gap {} @{offset} +{len} {}",
                dir.name(),
                why.as_str()
            )),
        }
        if let Some(limit) = self.stop_after_bytes {
            if chunk.offset() + chunk.len() >= limit {
                flow.stop_stream(dir);
            }
        }
    }
    fn interval(&mut self, d: &DirInterval<'_>) {
        let (k, c) = (d.key(), d.counts());
        let why = match d.why() {
            IntervalClose::IntervalEnd => "interval_end",
            IntervalClose::FlowEnd(r) => r.name(),
        };
        self.log.push(format!(
            "interval {why} {}:{}>{}:{} packets={} bytes={} ms={}..{} flags={:#x} syn_ack={}",
            k.src,
            k.src_port,
            k.dst,
            k.dst_port,
            c.packets,
            c.bytes,
            c.first.nanos() / 1_000_000 - 1_000_000,
            c.last.nanos() / 1_000_000 - 1_000_000,
            c.tcp_flags,
            c.syn_ack
        ));
        if self.tags {
            let mut d = *d;
            d.set_module(Some(0));
            // Which connection (in order of start) the hand-over says it is.
            let flow = self
                .started
                .iter()
                .position(|(id, cid)| *id == d.flow_id() && **cid == *d.community_id());
            let ck = d.client_key();
            let line = self.log.last_mut().expect("pushed just above");
            line.push_str(&format!(
                " {} client={}:{} tag={} counts_flow={} flow={flow:?}",
                d.dir().name(),
                ck.src,
                ck.src_port,
                d.tag(),
                d.counts_flow()
            ));
        }
    }
    fn interval_end(&mut self, now: Timestamp) {
        self.log.push(format!("closed at {}", now.secs() - 1_000));
    }
    fn end(&mut self, flow: &mut Flow<'_>, reason: EndReason) {
        let s = flow.stats(Dir::ToServer);
        let c = flow.stats(Dir::ToClient);
        self.log.push(format!(
            "end {} packets={}/{} payload={}/{}",
            reason.name(),
            s.packets,
            c.packets,
            s.payload_bytes,
            c.payload_bytes
        ));
    }
}

const C: [u8; 4] = [10, 0, 0, 1];
const S: [u8; 4] = [10, 0, 0, 2];
const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const FIN: u8 = 0x01;
const RST: u8 = 0x04;
const PSH: u8 = 0x08;

fn tcp(from_client: bool, flags: u8, seq: u32, ack: u32, payload: &[u8]) -> Vec<u8> {
    tcp_on(50_000, from_client, flags, seq, ack, payload)
}

/// A segment between client port `port` and the server's 443.
fn tcp_on(port: u16, from_client: bool, flags: u8, seq: u32, ack: u32, payload: &[u8]) -> Vec<u8> {
    let (src, dst, sp, dp) = if from_client {
        (C, S, port, 443)
    } else {
        (S, C, 443, port)
    };
    let mut b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4(src, dst, 64)
        .tcp(sp, dp, seq, 65_000);
    if flags & SYN != 0 {
        b = b.syn();
    }
    if flags & ACK != 0 {
        b = b.ack(ack);
    }
    if flags & FIN != 0 {
        b = b.fin();
    }
    if flags & RST != 0 {
        b = b.rst();
    }
    if flags & PSH != 0 {
        b = b.psh();
    }
    let mut out = Vec::new();
    b.write(&mut out, payload).unwrap();
    out
}

fn udp(src: [u8; 4], dst: [u8; 4], sp: u16, dp: u16) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4(src, dst, 64)
        .udp(sp, dp)
        .write(&mut out, b"q")
        .unwrap();
    out
}

fn icmp_echo(src: [u8; 4], dst: [u8; 4], reply: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]).ipv4(src, dst, 64);
    let b = if reply {
        b.icmpv4_echo_reply(7, 1)
    } else {
        b.icmpv4_echo_request(7, 1)
    };
    b.write(&mut out, b"ping").unwrap();
    out
}

struct Feed {
    table: FlowTable,
    session: Arc<Session>,
    rec: Rec,
    /// The latest packet time fed.
    last: Timestamp,
}

impl Feed {
    fn new(config: FlowConfig, rec: Rec) -> Feed {
        Feed {
            table: FlowTable::new(&config, 1),
            session: Arc::new(Session::plain("test", 7)),
            rec,
            last: Timestamp::default(),
        }
    }

    fn at(&mut self, ms: u64, frame: &[u8]) {
        let layers = dissect(frame);
        let pkt = Packet {
            session: &self.session,
            ts: Timestamp::from_nanos(1_000 * NANOS + ms * 1_000_000),
            frame,
            orig_len: frame.len() as u32,
            layers: &layers,
        };
        self.last = self.last.max(pkt.ts);
        self.table.packet(&pkt, &mut self.rec);
    }

    fn cut_at(&mut self, ms: u64, frame: &[u8], keep: usize) {
        let frame = &frame[..keep];
        let layers = dissect(frame);
        let pkt = Packet {
            session: &self.session,
            ts: Timestamp::from_nanos(1_000 * NANOS + ms * 1_000_000),
            frame,
            orig_len: frame.len() as u32,
            layers: &layers,
        };
        self.last = self.last.max(pkt.ts);
        self.table.packet(&pkt, &mut self.rec);
    }

    /// A tick as the shard gives it: flows past their timeouts end, then an interval that ended
    /// is handed over.
    fn tick(&mut self, secs: u64) {
        let now = Timestamp::from_secs(1_000 + secs);
        self.table.expire(now, &mut self.rec);
        self.table.close_interval_if_due(now, &mut self.rec);
    }

    /// Ends every flow, as the shard does at the end, at the latest packet time fed.
    fn end_all(&mut self, reason: EndReason) {
        self.table.end_all(reason, self.last, &mut self.rec);
    }

    fn take(&mut self) -> Vec<String> {
        std::mem::take(&mut self.rec.log)
    }
}

/// A packet reads two cache lines of its flow (the hot part, aligned so that it is exactly two),
/// and a flow costs no more than it did before the split (224 bytes in one piece).
#[test]
fn the_hot_part_is_two_cache_lines_and_a_flow_stays_within_224_bytes() {
    assert_eq!(std::mem::size_of::<Entry>(), 128);
    assert_eq!(std::mem::align_of::<Entry>(), 64);
    let cold = std::mem::size_of::<Cold>();
    assert!(128 + cold <= 224, "cold part: {cold} bytes");
}

#[test]
fn a_connection_from_handshake_to_fin_both_ways() {
    let mut f = Feed::new(FlowConfig::default(), Rec::default());
    f.at(0, &tcp(true, SYN, 100, 0, b""));
    f.at(1, &tcp(false, SYN | ACK, 900, 101, b""));
    f.at(2, &tcp(true, ACK, 101, 901, b""));
    f.at(3, &tcp(true, ACK | PSH, 101, 901, b"hello"));
    f.at(4, &tcp(false, ACK | PSH, 901, 106, b"world!"));
    f.at(5, &tcp(true, ACK | FIN, 106, 907, b""));
    f.at(6, &tcp(false, ACK | FIN, 907, 107, b""));
    f.at(7, &tcp(true, ACK, 107, 908, b""));
    assert_eq!(
        f.take(),
        [
            "start 10.0.0.1:50000>10.0.0.2:443 guessed=false",
            "packet to_server syn_sent",
            "packet to_client syn_received",
            "packet to_server established",
            "packet to_server established",
            "packet to_client established",
            "packet to_server closing",
            "packet to_client closed",
            "packet to_server closed",
        ]
    );
    // Closed: 30 s after the last packet, not the hour an established connection gets.
    f.tick(29);
    assert!(f.take().is_empty());
    f.tick(31);
    assert_eq!(f.take(), ["end fin packets=5/3 payload=5/6"]);
    assert_eq!(f.table.len(), 0);
    assert_eq!(
        f.table.counters().ended[EndReason::Fin as usize]
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

#[test]
fn mid_stream_pickup_guesses_the_lower_port_is_the_server() {
    let mut f = Feed::new(FlowConfig::default(), Rec::default());
    f.at(0, &tcp(false, ACK | PSH, 5000, 77, b"response"));
    f.at(1, &tcp(true, ACK, 77, 5008, b""));
    assert_eq!(
        f.take(),
        [
            "start 10.0.0.1:50000>10.0.0.2:443 guessed=true",
            "packet to_client established",
            "packet to_server established",
        ]
    );
}

#[test]
fn udp_and_icmp_orientation() {
    let mut f = Feed::new(FlowConfig::default(), Rec::default());
    // A DNS answer seen before its query: the port-53 side is the server, and that is a guess.
    f.at(0, &udp(S, C, 53, 40_000));
    // A plain UDP first packet: its sender is the client.
    f.at(1, &udp(C, S, 40_001, 5_000));
    // An echo reply seen first comes from the server.
    f.at(2, &icmp_echo(S, C, true));
    assert_eq!(
        f.take(),
        [
            "start 10.0.0.1:40000>10.0.0.2:53 guessed=true",
            "packet to_client -",
            "start 10.0.0.1:40001>10.0.0.2:5000 guessed=false",
            "packet to_server -",
            "start 10.0.0.1:0>10.0.0.2:0 guessed=false",
            "packet to_client -",
        ]
    );
    // ICMP times out after 30 s, UDP after 60 s; both idle.
    f.tick(31);
    assert_eq!(f.take(), ["end idle_timeout packets=0/1 payload=0/4"]);
    f.tick(61);
    assert_eq!(f.take().len(), 2);
}

#[test]
fn a_new_syn_on_a_closed_five_tuple_starts_a_new_flow() {
    let mut f = Feed::new(FlowConfig::default(), Rec::default());
    f.at(0, &tcp(true, SYN, 100, 0, b""));
    f.at(1, &tcp(false, RST | ACK, 0, 101, b""));
    f.at(2, &tcp(true, SYN, 5000, 0, b""));
    assert_eq!(
        f.take(),
        [
            "start 10.0.0.1:50000>10.0.0.2:443 guessed=false",
            "packet to_server syn_sent",
            "packet to_client reset",
            "end rst packets=1/1 payload=0/0",
            "start 10.0.0.1:50000>10.0.0.2:443 guessed=false",
            "packet to_server syn_sent",
        ]
    );
}

#[test]
fn a_full_table_evicts_the_flow_nearest_its_timeout() {
    let config = FlowConfig {
        max_flows: 2,
        ..FlowConfig::default()
    };
    let mut f = Feed::new(config, Rec::default());
    f.at(0, &udp(C, S, 40_001, 2000));
    f.at(1_000, &udp(C, S, 40_002, 2000));
    f.at(2_000, &udp(C, S, 40_001, 2000)); // the first flow is busy again
    f.at(3_000, &udp(C, S, 40_003, 2000)); // full: port 40002's flow is the one idle longest
    let log = f.take();
    assert_eq!(log[5], "end evicted packets=1/0 payload=1/0", "{log:#?}");
    assert_eq!(log[6], "start 10.0.0.1:40003>10.0.0.2:2000 guessed=false");
    assert_eq!(f.table.len(), 2);
}

#[test]
fn streams_arrive_in_order_with_gaps_named() {
    let rec = Rec {
        streams: true,
        ..Rec::default()
    };
    let mut f = Feed::new(FlowConfig::default(), rec);
    f.at(0, &tcp(true, SYN, 100, 0, b""));
    f.at(1, &tcp(false, SYN | ACK, 900, 101, b""));
    f.at(2, &tcp(true, ACK | PSH, 106, 901, b" world")); // out of order
    f.at(3, &tcp(true, ACK | PSH, 101, 901, b"hello"));
    // A segment cut by the capture: 10 bytes announced, 4 captured.
    let cut = tcp(false, ACK | PSH, 901, 112, b"0123456789");
    f.cut_at(4, &cut, cut.len() - 6);
    f.at(5, &tcp(false, ACK | PSH, 911, 112, b"end"));
    let log: Vec<String> = f
        .take()
        .into_iter()
        .filter(|l| !l.starts_with("packet"))
        .collect();
    assert_eq!(
        log,
        [
            "start 10.0.0.1:50000>10.0.0.2:443 guessed=false",
            "data to_server @0 \"hello\"",
            "data to_server @5 \" world\"",
            "data to_client @0 \"0123\"",
            "gap to_client @4 +6 truncated",
            "data to_client @10 \"end\"",
        ]
    );
    f.end_all(EndReason::EndOfReplay);
    assert_eq!(f.take(), ["end end_of_replay packets=3/3 payload=11/13"]);
    assert_eq!(f.table.pool.held_bytes(), 0);
    assert_eq!(f.table.streams.len(), f.table.free_streams.len());
}

/// A module that stops a flow's packets gets none of them, and still its bytes and its end; other
/// flows' packets still come.
#[test]
fn a_module_that_stops_a_flows_packets_gets_its_streams_and_end() {
    let rec = Rec {
        streams: true,
        no_packets_to: Some(443),
        ..Rec::default()
    };
    let mut f = Feed::new(FlowConfig::default(), rec);
    f.at(0, &tcp(true, SYN, 100, 0, b""));
    f.at(1, &tcp(true, ACK | PSH, 101, 1, b"hello"));
    f.at(2, &udp(C, S, 40_001, 2000));
    f.at(3, &tcp(true, ACK | RST, 106, 1, b""));
    f.tick(100);
    assert_eq!(
        f.take(),
        [
            "start 10.0.0.1:50000>10.0.0.2:443 guessed=false",
            "data to_server @0 \"hello\"",
            "start 10.0.0.1:40001>10.0.0.2:2000 guessed=false",
            "packet to_server -",
            "end idle_timeout packets=1/0 payload=1/0",
            "end rst packets=3/0 payload=5/0",
        ]
    );
}

#[test]
fn a_module_that_stops_asking_releases_the_stream() {
    let rec = Rec {
        streams: true,
        stop_after_bytes: Some(5),
        ..Rec::default()
    };
    let mut f = Feed::new(FlowConfig::default(), rec);
    f.at(0, &tcp(true, SYN, 100, 0, b""));
    f.at(1, &tcp(true, ACK | PSH, 101, 1, b"hello"));
    // Out of order past the stop: nothing is held for it.
    f.at(2, &tcp(true, ACK | PSH, 200, 1, b"later"));
    f.at(3, &tcp(true, ACK | PSH, 106, 1, b"more"));
    let data: Vec<String> = f
        .take()
        .into_iter()
        .filter(|l| l.starts_with("data"))
        .collect();
    assert_eq!(data, ["data to_server @0 \"hello\""]);
    assert_eq!(f.table.pool.held_bytes(), 0);
}

#[test]
fn flows_end_least_recently_seen_first_and_ids_do_not_depend_on_arrival_order() {
    let mut f = Feed::new(FlowConfig::default(), Rec::default());
    f.at(0, &udp(C, S, 40_001, 2000));
    f.at(1, &udp(C, S, 40_002, 2000));
    f.at(2, &udp(C, S, 40_001, 2000));
    f.take();
    f.end_all(EndReason::Shutdown);
    assert_eq!(
        f.take(),
        [
            "end shutdown packets=1/0 payload=1/0",
            "end shutdown packets=2/0 payload=2/0"
        ]
    );
    let canon = FlowKey {
        src: C.into(),
        dst: S.into(),
        src_port: 40_001,
        dst_port: 2000,
        protocol: 17,
    };
    let s = Session::plain("x", 1);
    let a = flow_id(&s, &canon, Timestamp::from_secs(5));
    assert_eq!(a, flow_id(&s, &canon, Timestamp::from_secs(5)));
    assert_ne!(a, flow_id(&s, &canon, Timestamp::from_secs(6)));
    assert!(a < 1 << 53);
}

/// `prepare` hands `packet` each packet's key, hash and likely entry. Between the two, the batch's
/// own packets and ticks end flows, evict them and reuse their entries, so the hint is stale as
/// often as not: the events must be the very ones the table gives without `prepare`.
#[test]
fn prepared_batches_give_the_same_events_as_single_packets() {
    // Few ports, so 5-tuples come back after their flow ended; a small table, so flows are
    // evicted inside a batch; short timeouts, so ticks inside a batch end flows.
    let mut next = crate::base::xorshift(0x2545_f491_4f6c_dd1d);
    let mut frames = Vec::new();
    let mut ms = 0u64;
    for _ in 0..3_000 {
        ms += next() % 120;
        let r = next();
        let port = 40_000 + (r % 11) as u16;
        let from_client = r >> 8 & 1 == 0;
        let frame = match r >> 9 & 15 {
            0 if from_client => udp(C, S, port, 53),
            0 => udp(S, C, 443, 53),
            1 => {
                // Not IP: no flow, but still a place in the batch.
                let mut f = vec![0xff; 14];
                f[12..14].copy_from_slice(&[0x08, 0x06]);
                f.extend_from_slice(&[0; 28]);
                f
            }
            k => {
                let flags = match k {
                    2 => SYN,
                    3 => SYN | ACK,
                    4 => ACK | FIN,
                    5 => RST,
                    _ => ACK | PSH,
                };
                let seq = (r >> 16) as u32 % 4 * 8;
                let payload: &[u8] = if flags == ACK | PSH { b"12345678" } else { b"" };
                tcp_on(port, from_client, flags, seq, seq, payload)
            }
        };
        frames.push((ms, frame));
    }
    let config = FlowConfig {
        max_flows: 14,
        tcp_closed_timeout_secs: 1,
        udp_timeout_secs: 2,
        tcp_established_timeout_secs: 5,
        ..FlowConfig::default()
    };
    let ts = |ms: u64| Timestamp::from_nanos(1_000 * NANOS + ms * 1_000_000);
    let layers: Vec<_> = frames.iter().map(|(_, f)| dissect(f)).collect();
    let run = |prepared: bool| {
        let mut f = Feed::new(
            config.clone(),
            Rec {
                streams: true,
                ..Rec::default()
            },
        );
        let packets: Vec<Packet<'_>> = frames
            .iter()
            .zip(&layers)
            .map(|((ms, frame), layers)| Packet {
                session: &f.session,
                ts: ts(*ms),
                frame,
                orig_len: frame.len() as u32,
                layers,
            })
            .collect();
        let mut next_tick = 0;
        for batch in packets.chunks(PREPARED) {
            if prepared {
                f.table.prepare(batch);
            }
            for pkt in batch {
                if pkt.ts.nanos() >= next_tick {
                    f.table.expire(pkt.ts, &mut f.rec);
                    next_tick = pkt.ts.next_boundary(NANOS).nanos();
                }
                f.table.packet(pkt, &mut f.rec);
            }
        }
        f.end_all(EndReason::EndOfReplay);
        f.take()
    };
    let plain = run(false);
    let count = |what: &str| plain.iter().filter(|l| l.starts_with(what)).count();
    for what in [
        "end evicted",
        "end fin",
        "end rst",
        "end idle_timeout",
        "data",
    ] {
        assert!(count(what) > 10, "too few {what:?}: {plain:#?}");
    }
    assert_eq!(run(true), plain);
}

/// A feed whose table keeps one-minute interval counters, and only those events in its log.
fn interval_feed(config: FlowConfig) -> Feed {
    let mut f = Feed::new(config, Rec::default());
    f.table
        .set_intervals(Some(IntervalSpec { interval_secs: 60 }));
    f
}

fn intervals_only(log: Vec<String>) -> Vec<String> {
    log.into_iter()
        .filter(|l| l.starts_with("interval") || l.starts_with("closed"))
        .collect()
}

/// Packet time 1,000 s is 20 s before a minute boundary: the first interval ends at 20,000 ms.
#[test]
fn interval_counters_are_handed_over_at_the_boundary_by_five_tuple() {
    let mut f = interval_feed(FlowConfig::default());
    f.at(0, &tcp(true, SYN, 100, 0, b""));
    f.at(1, &tcp(false, RST | ACK, 0, 101, b""));
    // A new connection on the same 5-tuple: the first one ends, its counters wait for the
    // interval's end and join the new one's.
    f.at(2, &tcp(true, SYN, 5000, 0, b""));
    f.at(3, &tcp(false, SYN | ACK, 9000, 5001, b""));
    f.at(4, &tcp(true, ACK, 5001, 9001, b"hello"));
    // Port 50001: a connection the client resets, then one the server opens on the same 5-tuple
    // (the other way round): directions are joined by who sent, not by who opened.
    f.at(5, &tcp_on(50_001, true, SYN, 1, 0, b""));
    f.at(6, &tcp_on(50_001, true, RST, 2, 0, b""));
    f.at(7, &tcp_on(50_001, false, SYN, 700, 0, b""));
    f.at(19_999, &udp(C, S, 40_000, 53));
    // The packet at 20,000 ms is the next interval's: the interval ends before it counts.
    f.at(20_000, &tcp(true, FIN | ACK, 5006, 9001, b""));
    let log = intervals_only(f.take());
    assert_eq!(
        log,
        [
            "interval interval_end 10.0.0.2:443>10.0.0.1:50000 packets=2 bytes=80 ms=1..3 flags=0x16 syn_ack=true",
            "interval interval_end 10.0.0.1:50000>10.0.0.2:443 packets=3 bytes=125 ms=0..4 flags=0x12 syn_ack=false",
            "interval interval_end 10.0.0.1:50001>10.0.0.2:443 packets=2 bytes=80 ms=5..6 flags=0x6 syn_ack=false",
            "interval interval_end 10.0.0.2:443>10.0.0.1:50001 packets=1 bytes=40 ms=7..7 flags=0x2 syn_ack=false",
            "interval interval_end 10.0.0.1:40000>10.0.0.2:53 packets=1 bytes=29 ms=19999..19999 flags=0x0 syn_ack=false",
            "closed at 20",
        ]
    );
    // The FIN counts in the new interval, handed over with everything at the end.
    f.end_all(EndReason::EndOfReplay);
    assert_eq!(
        intervals_only(f.take()),
        ["interval end_of_replay 10.0.0.1:50000>10.0.0.2:443 packets=1 bytes=40 ms=20000..20000 flags=0x11 syn_ack=false"]
    );
}

#[test]
fn a_tick_past_the_boundary_ends_the_interval_and_an_evicted_flow_goes_at_once() {
    let config = FlowConfig {
        max_flows: 2,
        udp_timeout_secs: 5,
        ..FlowConfig::default()
    };
    let mut f = interval_feed(config);
    f.at(0, &udp(C, S, 40_001, 2000));
    f.tick(6); // the flow times out; its counters wait
    f.at(7_000, &udp(C, S, 40_001, 2000)); // the same 5-tuple again
    f.at(8_000, &udp(C, S, 40_002, 2000));
    f.at(9_000, &udp(C, S, 40_003, 2000)); // full: 40001's flow goes, with what it left before
    assert_eq!(
        intervals_only(f.take()),
        ["interval evicted 10.0.0.1:40001>10.0.0.2:2000 packets=2 bytes=58 ms=0..7000 flags=0x0 syn_ack=false"]
    );
    f.tick(21); // no packet crossed the boundary: the tick does
    assert_eq!(
        intervals_only(f.take()),
        [
            "interval interval_end 10.0.0.1:40002>10.0.0.2:2000 packets=1 bytes=29 ms=8000..8000 flags=0x0 syn_ack=false",
            "interval interval_end 10.0.0.1:40003>10.0.0.2:2000 packets=1 bytes=29 ms=9000..9000 flags=0x0 syn_ack=false",
            "closed at 21",
        ]
    );
    // Nothing counted since: nothing to hand over at the end.
    f.end_all(EndReason::Shutdown);
    assert!(intervals_only(f.take()).is_empty());
}

/// What a hand-over says of its flow beyond the counters: which way the direction goes, the client,
/// the module's tag (carried past the flow's end), the flow's id and Community ID (of the latest
/// connection, for directions joined by 5-tuple), and one direction per flow that counts it.
#[test]
fn hand_overs_carry_the_flows_tag_id_and_one_flow_count() {
    let mut f = Feed::new(
        FlowConfig::default(),
        Rec {
            tags: true,
            ..Rec::default()
        },
    );
    f.table
        .set_intervals(Some(IntervalSpec { interval_secs: 60 }));
    // Flow 0: both ways, ended by a reset inside the interval (parked).
    f.at(0, &tcp(true, SYN, 100, 0, b""));
    f.at(1, &tcp(false, RST | ACK, 0, 101, b""));
    // Flow 1: the client resets it; flow 2, the same 5-tuple opened by the server (tag 0), takes
    // its counters: the joined directions are flow 2's, client and tag.
    f.at(5, &tcp_on(50_001, true, SYN, 1, 0, b""));
    f.at(6, &tcp_on(50_001, true, RST, 2, 0, b""));
    f.at(7, &tcp_on(50_001, false, SYN, 700, 0, b""));
    // Flow 3: live at the interval's end; in the next, only its server talks.
    f.at(8, &tcp_on(50_002, true, SYN, 1, 0, b""));
    f.at(20_000, &udp(C, S, 40_000, 53));
    let log = intervals_only(f.take());
    assert_eq!(
        log,
        [
            "interval interval_end 10.0.0.1:50000>10.0.0.2:443 packets=1 bytes=40 ms=0..0 flags=0x2 syn_ack=false to_server client=10.0.0.1:50000 tag=50000 counts_flow=true flow=Some(0)",
            "interval interval_end 10.0.0.2:443>10.0.0.1:50000 packets=1 bytes=40 ms=1..1 flags=0x14 syn_ack=false to_client client=10.0.0.1:50000 tag=50000 counts_flow=false flow=Some(0)",
            "interval interval_end 10.0.0.1:50001>10.0.0.2:443 packets=2 bytes=80 ms=5..6 flags=0x6 syn_ack=false to_client client=10.0.0.2:443 tag=0 counts_flow=false flow=Some(2)",
            "interval interval_end 10.0.0.2:443>10.0.0.1:50001 packets=1 bytes=40 ms=7..7 flags=0x2 syn_ack=false to_server client=10.0.0.2:443 tag=0 counts_flow=true flow=Some(2)",
            "interval interval_end 10.0.0.1:50002>10.0.0.2:443 packets=1 bytes=40 ms=8..8 flags=0x2 syn_ack=false to_server client=10.0.0.1:50002 tag=50002 counts_flow=true flow=Some(3)",
            "closed at 20",
        ]
    );
    f.at(21_000, &tcp_on(50_002, false, SYN | ACK, 9, 2, b""));
    f.end_all(EndReason::EndOfReplay);
    assert_eq!(
        intervals_only(f.take()),
        [
            "interval end_of_replay 10.0.0.1:40000>10.0.0.2:53 packets=1 bytes=29 ms=20000..20000 flags=0x0 syn_ack=false to_server client=10.0.0.1:40000 tag=40000 counts_flow=true flow=Some(4)",
            "interval end_of_replay 10.0.0.2:443>10.0.0.1:50002 packets=1 bytes=40 ms=21000..21000 flags=0x12 syn_ack=true to_client client=10.0.0.1:50002 tag=50002 counts_flow=true flow=Some(3)",
        ]
    );
}
