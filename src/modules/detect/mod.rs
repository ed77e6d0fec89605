//! `detect`: port scans, address sweeps, SYN floods and ICMP floods, as notices (JSON lines) once per
//! source (per destination, for floods) per kind per window of packet time.
//!
//! One scanner's connections land on every shard (steering hashes the whole 5-tuple), so no shard
//! sees enough to decide alone. Each shard counts in its own tables with fixed-size distinct
//! counters (`distinct.rs`, mergeable by OR), publishes them once per window to a board
//! (`interval_board.rs`), and the shard that completes a window merges and decides. The packet
//! path takes no lock; the board's lock is taken once per window per shard.
//!
//! Memory is bounded under a flood of spoofed sources: each table holds at most `max_tracked` keys
//! per shard (and in the merged view); a key that does not fit is not counted, and the module's
//! `drops` says how many were refused. Floods are keyed by destination, so a spoofed flood fills no
//! table and is still detected.

mod distinct;

use std::net::IpAddr;
use std::sync::Arc;

use rustc_hash::FxHashMap;
use serde::Deserialize;

use self::distinct::{fold, Distinct};
use super::eve::{self, JsonObject};
use super::interval_board::{IntervalBoard, Merge};
use super::{BuildError, Emitter, Module, ModuleConfig, ModuleContext};
use crate::base::{FlowKey, Packet, Session, Timestamp};
use crate::flow::{Dir, EndReason, Flow, PerFlow};
use crate::sinks::{OutputConfig, SeriesName, Sink};
use crate::wire::inner::Transport;

const NANOS: u64 = 1_000_000_000;
/// Destinations a sweep notice names (the lowest addresses, so every run names the same ones).
const SAMPLES: usize = 4;

/// `[[module]] kind = "detect"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectConfig {
    /// The window in seconds of packet time, aligned to the epoch. Zeek's scan policy tracks 5
    /// minutes.
    #[serde(default = "default_window")]
    pub window_secs: u64,
    /// Distinct ports one source tries on one host in a window to be a port scan (Zeek: 15).
    #[serde(default = "default_port_scan")]
    pub port_scan_threshold: u64,
    /// Distinct hosts one source tries on one port in a window to be an address sweep (Zeek: 25).
    #[serde(default = "default_address_scan")]
    pub address_scan_threshold: u64,
    /// SYNs to one destination port in a window to be a SYN flood, when few handshakes complete.
    #[serde(default = "default_syn_flood")]
    pub syn_flood_threshold: u64,
    /// A SYN flood completes at most this share of its handshakes; a busy server completes nearly
    /// all of them.
    #[serde(default = "default_completed_ratio")]
    pub syn_flood_max_completed_ratio: f64,
    /// ICMP echo requests to one destination in a window to be an ICMP flood.
    #[serde(default = "default_icmp_flood")]
    pub icmp_flood_threshold: u64,
    /// Keys each table holds per shard and per window (sources × hosts, sources × ports,
    /// destinations); about 100 bytes each.
    #[serde(default = "default_max_tracked")]
    pub max_tracked: usize,
    /// Where notices go (standard output by default).
    #[serde(default)]
    pub output: OutputConfig,
    #[serde(skip)]
    board: Arc<IntervalBoard<Window>>,
}

fn default_window() -> u64 {
    300
}
fn default_port_scan() -> u64 {
    15
}
fn default_address_scan() -> u64 {
    25
}
fn default_syn_flood() -> u64 {
    1000
}
fn default_completed_ratio() -> f64 {
    0.1
}
fn default_icmp_flood() -> u64 {
    1000
}
fn default_max_tracked() -> usize {
    16_384
}

impl ModuleConfig for DetectConfig {
    fn validate(&self) -> Result<(), String> {
        if self.window_secs == 0 || self.window_secs > 86_400 {
            return Err("window_secs: must be between 1 and 86400".into());
        }
        for (key, v) in [
            ("port_scan_threshold", self.port_scan_threshold),
            ("address_scan_threshold", self.address_scan_threshold),
            ("syn_flood_threshold", self.syn_flood_threshold),
            ("icmp_flood_threshold", self.icmp_flood_threshold),
        ] {
            if v == 0 {
                return Err(format!("{key}: must be at least 1"));
            }
        }
        if !(0.0..=1.0).contains(&self.syn_flood_max_completed_ratio) {
            return Err("syn_flood_max_completed_ratio: must be between 0 and 1".into());
        }
        if self.max_tracked == 0 || self.max_tracked > 1 << 24 {
            return Err("max_tracked: must be between 1 and 16777216".into());
        }
        self.output.validate()
    }

    fn build(&self, ctx: &ModuleContext) -> Result<Box<dyn Module>, BuildError> {
        Ok(Box::new(Detect::new(self, ctx.shard, ctx.shards)))
    }

    fn sink(&self, ctx: &ModuleContext) -> Result<Box<dyn Sink>, BuildError> {
        let name = SeriesName {
            stem: format!("detect-shard{}", ctx.shard),
            ext: "json".into(),
            aws_prefix: None,
        };
        Ok(self.output.record_sink(name, Vec::new())?)
    }
}

/// What one key gathered in a window.
#[derive(Debug, Clone)]
struct Tally {
    /// Distinct ports (port scans), hosts (sweeps) or sources (floods).
    distinct: Distinct,
    /// Attempts, SYNs or echo requests.
    count: u64,
    /// Handshakes completed (SYN floods).
    completed: u64,
    first: Timestamp,
    last: Timestamp,
    /// The session of the earliest attempt.
    session: Arc<Session>,
    /// The lowest destinations tried (sweeps).
    samples: [Option<IpAddr>; SAMPLES],
}

impl Tally {
    fn new(session: &Arc<Session>, at: Timestamp) -> Tally {
        Tally {
            distinct: Distinct::default(),
            count: 0,
            completed: 0,
            first: at,
            last: at,
            session: session.clone(),
            samples: [None; SAMPLES],
        }
    }

    /// The distinct estimate, never above the exact count of what was added: small sets, where the
    /// estimate's error is a value or two, come out exact when each attempt was distinct.
    fn distinct_count(&self) -> u64 {
        self.distinct.estimate().min(self.count)
    }

    fn sample(&mut self, addr: IpAddr) {
        if self.samples.contains(&Some(addr)) {
            return;
        }
        // Keep the lowest SAMPLES addresses, sorted, with empty places last.
        let mut pending = Some(addr);
        for slot in &mut self.samples {
            match (*slot, pending) {
                (None, p) => {
                    *slot = p;
                    return;
                }
                (Some(s), Some(p)) if p < s => {
                    *slot = Some(p);
                    pending = Some(s);
                }
                _ => {}
            }
        }
    }

    fn merge(&mut self, o: Tally) {
        self.distinct.merge(&o.distinct);
        self.count += o.count;
        self.completed += o.completed;
        if (o.first, o.session.id) < (self.first, self.session.id) {
            self.first = o.first;
            self.session = o.session;
        }
        self.last = self.last.max(o.last);
        for a in o.samples.into_iter().flatten() {
            self.sample(a);
        }
    }
}

/// A table of tallies with a fixed capacity; keys past it are refused and counted.
#[derive(Debug)]
struct Table<K> {
    map: FxHashMap<K, Tally>,
    cap: usize,
}

impl<K: std::hash::Hash + Eq + Copy + Ord> Table<K> {
    fn new(cap: usize) -> Self {
        Table {
            map: FxHashMap::default(),
            cap,
        }
    }

    /// The key's tally, or `None` (counted in `refused`) when the table is full.
    fn entry(
        &mut self,
        key: K,
        session: &Arc<Session>,
        at: Timestamp,
        refused: &mut u64,
    ) -> Option<&mut Tally> {
        let full = self.map.len() >= self.cap;
        if full && !self.map.contains_key(&key) {
            *refused += 1;
            return None;
        }
        let t = self
            .map
            .entry(key)
            .or_insert_with(|| Tally::new(session, at));
        t.last = t.last.max(at);
        Some(t)
    }

    fn merge(&mut self, other: Table<K>, refused: &mut u64) {
        for (k, v) in other.map {
            let full = self.map.len() >= self.cap;
            match self.map.get_mut(&k) {
                Some(mine) => mine.merge(v),
                None if !full => {
                    self.map.insert(k, v);
                }
                None => *refused += 1,
            }
        }
    }

    fn sorted(self) -> Vec<(K, Tally)> {
        let mut v: Vec<_> = self.map.into_iter().collect();
        v.sort_by_key(|(k, _)| *k);
        v
    }
}

/// One shard's (and, merged, every shard's) window.
#[derive(Debug)]
struct Window {
    /// (source, victim): distinct ports.
    port_scan: Table<(IpAddr, IpAddr)>,
    /// (source, protocol, port): distinct hosts.
    address_scan: Table<(IpAddr, u8, u16)>,
    /// (victim, port): SYNs, completed handshakes, distinct sources.
    syn: Table<(IpAddr, u16)>,
    /// Victim: echo requests, distinct sources.
    icmp: Table<IpAddr>,
    /// Keys refused by full tables.
    refused: u64,
}

impl Default for Window {
    fn default() -> Self {
        Window::new(default_max_tracked())
    }
}

impl Window {
    fn new(cap: usize) -> Window {
        Window {
            port_scan: Table::new(cap),
            address_scan: Table::new(cap),
            syn: Table::new(cap),
            icmp: Table::new(cap),
            refused: 0,
        }
    }

    #[cfg(test)]
    fn keys(&self) -> usize {
        self.port_scan.map.len()
            + self.address_scan.map.len()
            + self.syn.map.len()
            + self.icmp.map.len()
    }
}

impl Merge for Window {
    fn merge(&mut self, o: Window) {
        // The board's first window for an interval is a default one: take the shard's capacity.
        let cap = o.port_scan.cap;
        for c in [
            &mut self.port_scan.cap,
            &mut self.address_scan.cap,
            &mut self.syn.cap,
            &mut self.icmp.cap,
        ] {
            *c = cap;
        }
        let mut refused = o.refused;
        self.port_scan.merge(o.port_scan, &mut refused);
        self.address_scan.merge(o.address_scan, &mut refused);
        self.syn.merge(o.syn, &mut refused);
        self.icmp.merge(o.icmp, &mut refused);
        self.refused += refused;
    }
}

/// The thresholds, copied from the config.
#[derive(Debug, Clone, Copy)]
struct Thresholds {
    port_scan: u64,
    address_scan: u64,
    syn_flood: u64,
    completed_ratio: f64,
    icmp_flood: u64,
}

struct Detect {
    shard: usize,
    shards: usize,
    window_ns: u64,
    cap: usize,
    thresholds: Thresholds,
    board: Arc<IntervalBoard<Window>>,
    /// Whether a connection's completed handshake was counted.
    counted: PerFlow<bool>,
    open_end: Option<Timestamp>,
    current: Window,
    released: Vec<(u64, Window)>,
}

impl Detect {
    fn new(c: &DetectConfig, shard: usize, shards: usize) -> Detect {
        Detect {
            shard,
            shards,
            window_ns: c.window_secs * NANOS,
            cap: c.max_tracked,
            thresholds: Thresholds {
                port_scan: c.port_scan_threshold,
                address_scan: c.address_scan_threshold,
                syn_flood: c.syn_flood_threshold,
                completed_ratio: c.syn_flood_max_completed_ratio,
                icmp_flood: c.icmp_flood_threshold,
            },
            board: c.board.clone(),
            counted: PerFlow::new(),
            open_end: None,
            current: Window::new(c.max_tracked),
            released: Vec::new(),
        }
    }

    fn advance(&mut self, now: Timestamp, out: &mut Emitter<'_>) {
        let Some(end) = self.open_end else {
            self.open_end = Some(now.next_boundary(self.window_ns));
            return;
        };
        if now < end {
            return;
        }
        let next = now.next_boundary(self.window_ns);
        let data = std::mem::replace(&mut self.current, Window::new(self.cap));
        self.board.publish(
            self.shard,
            self.shards,
            end.nanos(),
            Some(data),
            next.nanos() - self.window_ns,
            &mut self.released,
        );
        self.open_end = Some(next);
        self.emit_released(out);
    }

    /// A connection attempt (a client's SYN, a UDP flow's first datagram) from `key.src`.
    fn attempt(
        &mut self,
        session: &Arc<Session>,
        key: FlowKey,
        at: Timestamp,
        out: &mut Emitter<'_>,
    ) {
        let w = &mut self.current;
        let mut refused = 0;
        if let Some(t) = w
            .port_scan
            .entry((key.src, key.dst), session, at, &mut refused)
        {
            t.count += 1;
            t.distinct
                .add(u64::from(key.dst_port) | u64::from(key.protocol) << 16);
        }
        if let Some(t) = w.address_scan.entry(
            (key.src, key.protocol, key.dst_port),
            session,
            at,
            &mut refused,
        ) {
            t.count += 1;
            t.distinct.add(fold(key.dst));
            t.sample(key.dst);
        }
        w.refused += refused;
        out.dropped(refused);
    }

    fn syn(
        &mut self,
        session: &Arc<Session>,
        key: FlowKey,
        at: Timestamp,
        completed: bool,
        out: &mut Emitter<'_>,
    ) {
        let mut refused = 0;
        if let Some(t) = self
            .current
            .syn
            .entry((key.dst, key.dst_port), session, at, &mut refused)
        {
            if completed {
                t.completed += 1;
            } else {
                t.count += 1;
                t.distinct.add(fold(key.src));
            }
        }
        self.current.refused += refused;
        out.dropped(refused);
    }

    fn emit_released(&mut self, out: &mut Emitter<'_>) {
        for (end, w) in std::mem::take(&mut self.released) {
            emit_window(out, end, self.window_ns, self.thresholds, w);
        }
    }
}

/// One notice.
struct Notice<'a> {
    note: &'static str,
    msg: std::fmt::Arguments<'a>,
    src: Option<IpAddr>,
    dst: Option<IpAddr>,
    port: Option<(u8, u16)>,
    tally: &'a Tally,
    count: u64,
    threshold: u64,
}

fn emit_window(out: &mut Emitter<'_>, end: u64, window_ns: u64, th: Thresholds, w: Window) {
    let secs = window_ns / NANOS;
    // Port scans: one notice per source, about its busiest victim.
    let mut best: Vec<((IpAddr, IpAddr), Tally, u64)> = Vec::new();
    for ((src, dst), t) in w.port_scan.sorted() {
        let n = t.distinct_count();
        if n < th.port_scan {
            continue;
        }
        match best.last_mut() {
            Some(b) if b.0 .0 == src => {
                if n > b.2 {
                    *b = ((src, dst), t, n);
                }
            }
            _ => best.push(((src, dst), t, n)),
        }
    }
    for ((src, dst), t, n) in &best {
        notice(
            out,
            end,
            window_ns,
            &Notice {
                note: "port_scan",
                msg: format_args!("{src} tried {n} ports on {dst} in {secs} s"),
                src: Some(*src),
                dst: Some(*dst),
                port: None,
                tally: t,
                count: *n,
                threshold: th.port_scan,
            },
        );
    }
    // Address sweeps: one notice per source, about its most swept port.
    let mut best: Vec<((IpAddr, u8, u16), Tally, u64)> = Vec::new();
    for ((src, proto, port), t) in w.address_scan.sorted() {
        let n = t.distinct_count();
        if n < th.address_scan {
            continue;
        }
        match best.last_mut() {
            Some(b) if b.0 .0 == src => {
                if n > b.2 {
                    *b = ((src, proto, port), t, n);
                }
            }
            _ => best.push(((src, proto, port), t, n)),
        }
    }
    for ((src, proto, port), t, n) in &best {
        notice(
            out,
            end,
            window_ns,
            &Notice {
                note: "address_scan",
                msg: format_args!("{src} tried port {port} on {n} hosts in {secs} s"),
                src: Some(*src),
                dst: None,
                port: Some((*proto, *port)),
                tally: t,
                count: *n,
                threshold: th.address_scan,
            },
        );
    }
    for ((dst, port), t) in w.syn.sorted() {
        if t.count < th.syn_flood || t.completed as f64 > t.count as f64 * th.completed_ratio {
            continue;
        }
        let (syns, done) = (t.count, t.completed);
        notice(
            out,
            end,
            window_ns,
            &Notice {
                note: "syn_flood",
                msg: format_args!(
                    "{syns} SYNs to {dst} port {port} in {secs} s, {done} handshakes completed"
                ),
                src: None,
                dst: Some(dst),
                port: Some((6, port)),
                tally: &t,
                count: syns,
                threshold: th.syn_flood,
            },
        );
    }
    for (dst, t) in w.icmp.sorted() {
        if t.count < th.icmp_flood {
            continue;
        }
        let n = t.count;
        notice(
            out,
            end,
            window_ns,
            &Notice {
                note: "icmp_flood",
                msg: format_args!("{n} echo requests to {dst} in {secs} s"),
                src: None,
                dst: Some(dst),
                port: None,
                tally: &t,
                count: n,
                threshold: th.icmp_flood,
            },
        );
    }
}

fn notice(out: &mut Emitter<'_>, end: u64, window_ns: u64, n: &Notice<'_>) {
    out.keyed(&n.tally.session.name).emit_line(|s| {
        let mut o = JsonObject::begin(s);
        o.timestamp("timestamp", n.tally.first);
        o.str("event_type", "detect");
        if let Some(src) = n.src {
            o.ip("src_ip", src);
        }
        if let Some(dst) = n.dst {
            o.ip("dest_ip", dst);
        }
        if let Some((proto, port)) = n.port {
            o.u64("dest_port", u64::from(port));
            o.str("proto", eve::proto_name(proto));
        }
        eve::session_object(&mut o, &n.tally.session);
        o.object("detect", |d| {
            d.str("note", n.note);
            d.display("msg", n.msg);
            d.u64("count", n.count);
            d.u64("threshold", n.threshold);
            match n.note {
                "syn_flood" => {
                    d.u64("completed", n.tally.completed);
                    d.u64("sources", n.tally.distinct_count());
                }
                "icmp_flood" => {
                    d.u64("sources", n.tally.distinct_count());
                }
                _ => {
                    d.u64("attempts", n.tally.count);
                }
            }
            if n.note == "address_scan" {
                d.array("destinations", |a| {
                    for addr in n.tally.samples.iter().flatten() {
                        a.ip(*addr);
                    }
                });
            }
            d.timestamp("first", n.tally.first);
            d.timestamp("last", n.tally.last);
            d.object("window", |w| {
                w.timestamp(
                    "start",
                    Timestamp::from_nanos(end.saturating_sub(window_ns)),
                );
                w.timestamp("end", Timestamp::from_nanos(end));
            });
        });
        o.end();
        Ok(())
    });
}

impl Module for Detect {
    fn wants_flows(&self) -> bool {
        true
    }

    fn on_packet(&mut self, pkt: &Packet<'_>, out: &mut Emitter<'_>) {
        self.advance(pkt.ts, out);
        let (Transport::Icmp { ty, .. }, Some(ip)) = (*pkt.transport(), pkt.ip()) else {
            return;
        };
        // Echo requests: ICMP type 8, ICMPv6 type 128.
        if !matches!((ip.protocol, ty), (1, 8) | (58, 128)) {
            return;
        }
        let mut refused = 0;
        if let Some(t) = self
            .current
            .icmp
            .entry(ip.dst, pkt.session, pkt.ts, &mut refused)
        {
            t.count += 1;
            t.distinct.add(fold(ip.src));
        }
        self.current.refused += refused;
        out.dropped(refused);
    }

    fn on_flow_start(&mut self, flow: &mut Flow<'_>, pkt: &Packet<'_>, out: &mut Emitter<'_>) {
        self.advance(pkt.ts, out);
        if flow.guessed() {
            return;
        }
        let key = flow.key();
        let attempt = match key.protocol {
            6 => pkt.tcp().is_some_and(|h| h.flags & 0x12 == 0x02),
            17 => true,
            _ => false,
        };
        if attempt {
            self.attempt(flow.session(), key, pkt.ts, out);
        }
    }

    fn on_flow_packet(
        &mut self,
        flow: &mut Flow<'_>,
        pkt: &Packet<'_>,
        dir: Dir,
        out: &mut Emitter<'_>,
    ) {
        if dir != Dir::ToServer || flow.key().protocol != 6 {
            return;
        }
        let Some(h) = pkt.tcp() else { return };
        self.advance(pkt.ts, out);
        let key = flow.key();
        if h.flags & 0x12 == 0x02 {
            self.syn(flow.session(), key, pkt.ts, false, out);
        } else if h.flags & 0x16 == 0x10 && flow.tcp_times().established.is_some() {
            let counted = self.counted.get_or_insert_with(flow, || false);
            if !*counted {
                *counted = true;
                let session = flow.session().clone();
                self.syn(&session, key, pkt.ts, true, out);
            }
        }
    }

    fn on_flow_end(&mut self, flow: &mut Flow<'_>, _reason: EndReason, _out: &mut Emitter<'_>) {
        self.counted.take(flow);
    }

    fn on_tick(&mut self, now: Timestamp, out: &mut Emitter<'_>) {
        self.advance(now, out);
    }

    fn finish(&mut self, out: &mut Emitter<'_>) {
        let end = self.open_end.map_or(0, Timestamp::nanos);
        let data = self
            .open_end
            .map(|_| std::mem::replace(&mut self.current, Window::new(self.cap)));
        self.board.publish(
            self.shard,
            self.shards,
            end,
            data,
            u64::MAX,
            &mut self.released,
        );
        self.open_end = None;
        self.emit_released(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::ModuleCounters;
    use crate::sinks::NullSink;

    fn config(max_tracked: usize) -> DetectConfig {
        let mut c: DetectConfig = toml::from_str("").expect("defaults");
        c.max_tracked = max_tracked;
        c
    }

    /// A flood of random spoofed sources, each trying a few ports and hosts: every table stays
    /// at its cap, and every key it refused is counted.
    #[test]
    fn memory_stays_bounded_under_spoofed_sources() {
        let cap = 1000;
        let mut d = Detect::new(&config(cap), 0, 1);
        let session = Arc::new(Session::plain("test", 1));
        let counters = ModuleCounters::default();
        let mut sink = NullSink;
        let mut scratch = String::new();
        let t0 = Timestamp::from_secs(1_700_000_000);
        let mut out = Emitter::new(&mut sink, &counters, &mut scratch, t0);
        let mut x: u64 = 0x1234_5678;
        let sources = 200_000u64;
        for i in 0..sources {
            // xorshift: a different "spoofed" source each time.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let key = FlowKey {
                src: IpAddr::from((x as u32).to_be_bytes()),
                dst: IpAddr::from([10, 0, 0, 1]),
                src_port: 1024 + (i % 60000) as u16,
                dst_port: 80,
                protocol: 6,
            };
            let at = t0.add_nanos(i * 1000);
            d.attempt(&session, key, at, &mut out);
            d.syn(&session, key, at, false, &mut out);
        }
        let w = &d.current;
        assert_eq!(w.port_scan.map.len(), cap);
        assert_eq!(w.address_scan.map.len(), cap);
        assert_eq!(w.syn.map.len(), 1, "floods are keyed by destination");
        assert!(w.keys() <= 3 * cap + 1);
        // Every source past the cap was refused twice (one key in each per-source table).
        let refused = 2 * (sources - cap as u64);
        assert!(w.refused >= refused - 2 * 50, "{}", w.refused);
        assert_eq!(
            counters.drops.load(std::sync::atomic::Ordering::Relaxed),
            w.refused
        );
        // The flood itself is still seen whole.
        let syn = w.syn.map.values().next().expect("one destination");
        assert_eq!(syn.count, sources);
        assert!(syn.distinct.estimate() > 1000);
    }
}
