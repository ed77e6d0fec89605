//! `forward`: vxtap as a packet broker. The decapsulated inner frames, labelled by mirror session, go
//! on to other tools through any number of outputs: VXLAN re-send to other appliances or an NLB, TAP
//! devices that local sniffers read, and PCAP-over-IP streams. AWS allows three mirror sessions per
//! source ENI; this lets one session feed every tool on the appliance and beyond.
//!
//! Each output selects its packets (sessions, an inner-packet filter compiled at config time, a
//! packets-per-second cap on packet time) and may cut them (`snaplen`). Forwarding never holds a
//! shard back: sockets and TAP queues are written without blocking, the PCAP-over-IP server is fed
//! through bounded channels, and whatever cannot go out at once is dropped and counted, per output and
//! reason (logged at the end, summed into the module's `drops` and `errors` for `/modules` and
//! `/metrics`). See docs/modules/forward.md.

mod filter;
mod pcap_over_ip;
mod rate;
mod tap;
mod vxlan;

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::{Arc, Mutex, Weak};

use rustc_hash::FxHashMap;
use serde::Deserialize;

use super::{BuildError, Emitter, Module, ModuleConfig, ModuleContext};
use crate::base::{Packet, Session, Timestamp};
use crate::wire::flow_hash::symmetric_hash;
use filter::Filter;
use pcap_over_ip::{Hub, PcapOverIpShard, ServerSettings};
use rate::RateCap;
use tap::{Names, TapQueue};
use vxlan::VxlanSender;

/// `[[module]] kind = "forward"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardConfig {
    /// The outputs (`[[module.output]]`, at least one); each takes every packet its selection
    /// admits, independently of the others.
    pub output: Vec<ForwardOutput>,
}

/// One `[[module.output]]` of a forward module, by `type`.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ForwardOutput {
    /// VXLAN re-send to UDP receivers.
    Vxlan(VxlanOutput),
    /// Linux TAP devices.
    Tap(TapOutput),
    /// A PCAP-over-IP TCP server.
    PcapOverIp(PcapOverIpOutput),
}

/// `type = "vxlan"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VxlanOutput {
    /// Receivers, `host:port`, all of one address family; each flow goes to one of them (by the
    /// symmetric flow hash), so several receivers share the load with flows kept whole.
    pub to: Vec<String>,
    /// VNI per session (by name, ENI id or `source/vni`); sessions not listed keep their own VNI.
    #[serde(default)]
    pub vni: BTreeMap<String, u32>,
    /// Outer source ports per shard: a flow's port is picked among them by its symmetric hash, as AWS
    /// picks its own, so a downstream NLB spreads flows and keeps both directions together.
    #[serde(default = "default_source_ports")]
    pub source_ports: usize,
    /// Selection and shaping.
    #[serde(flatten)]
    pub select: SelectConfig,
}

/// `type = "tap"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TapOutput {
    /// One device per session (named `vx` + a hash of the ENI id or session name), or one device for
    /// all (`name`).
    #[serde(default = "yes")]
    pub per_session: bool,
    /// The single device's name when `per_session = false`.
    #[serde(default = "default_tap_name")]
    pub name: String,
    /// The devices' MTU: 9,216 fits AWS's 9,001-byte packets with VLAN tags to spare, so sniffers
    /// that size their buffers by the MTU never cut a mirrored frame.
    #[serde(default = "default_mtu")]
    pub mtu: u32,
    /// Devices per shard at most (learned sessions could otherwise create devices without bound);
    /// packets of sessions past it are dropped and counted (`tap_limit`).
    #[serde(default = "default_max_devices")]
    pub max_devices: usize,
    /// Selection and shaping.
    #[serde(flatten)]
    pub select: SelectConfig,
    #[serde(skip)]
    names: Names,
}

/// `type = "pcap_over_ip"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PcapOverIpOutput {
    /// The TCP address to listen on; loopback by default, since the stream is unauthenticated.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Records each shard may have in flight to the server; more are dropped (`queue_full`).
    #[serde(default = "default_queue")]
    pub queue: usize,
    /// Bytes buffered per client; a client that falls this far behind is disconnected.
    #[serde(default = "default_client_buffer")]
    pub client_buffer: usize,
    /// Clients at once; later connections are closed at once and counted.
    #[serde(default = "default_max_clients")]
    pub max_clients: usize,
    /// Selection and shaping.
    #[serde(flatten)]
    pub select: SelectConfig,
    /// The running server, shared by this output's shard instances while any of them lives.
    #[serde(skip)]
    hub: Mutex<Weak<Hub>>,
}

/// What an output takes, and how much of it.
#[derive(Debug, Default, Deserialize)]
pub struct SelectConfig {
    /// Sessions by name, ENI id or `source/vni`; empty = all.
    #[serde(default)]
    pub sessions: Vec<String>,
    /// A filter on the inner packet (a subset of the pcap syntax; docs/modules/forward.md).
    #[serde(default)]
    pub filter: String,
    /// Bytes of each frame to forward (0 = all).
    #[serde(default)]
    pub snaplen: u32,
    /// Packets per second at most, over all shards, on packet time (0 = no cap).
    #[serde(default)]
    pub pps: u64,
}

fn default_source_ports() -> usize {
    4
}
fn yes() -> bool {
    true
}
fn default_tap_name() -> String {
    "vxtap0".into()
}
fn default_mtu() -> u32 {
    9216
}
fn default_max_devices() -> usize {
    64
}
fn default_listen() -> String {
    "127.0.0.1:57012".into()
}
fn default_queue() -> usize {
    4096
}
fn default_client_buffer() -> usize {
    8 << 20
}
fn default_max_clients() -> usize {
    8
}

/// The snap length a PCAP-over-IP header states when frames are kept whole.
const WHOLE_FRAMES: u32 = 262_144;

impl ForwardOutput {
    fn select(&self) -> &SelectConfig {
        match self {
            ForwardOutput::Vxlan(o) => &o.select,
            ForwardOutput::Tap(o) => &o.select,
            ForwardOutput::PcapOverIp(o) => &o.select,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            ForwardOutput::Vxlan(_) => "vxlan",
            ForwardOutput::Tap(_) => "tap",
            ForwardOutput::PcapOverIp(_) => "pcap_over_ip",
        }
    }
}

fn resolve(to: &[String]) -> Result<Vec<SocketAddr>, String> {
    let mut out = Vec::with_capacity(to.len());
    for (i, t) in to.iter().enumerate() {
        let addr = t
            .to_socket_addrs()
            .map_err(|e| format!("to[{i}]: {t:?}: {e} (expected host:port)"))?
            .next()
            .ok_or_else(|| format!("to[{i}]: {t:?} has no address"))?;
        out.push(addr);
    }
    Ok(out)
}

fn validate_output(o: &ForwardOutput) -> Result<(), String> {
    let sel = o.select();
    Filter::compile(&sel.filter).map_err(|e| format!("filter: {e}"))?;
    match o {
        ForwardOutput::Vxlan(v) => {
            if v.to.is_empty() || v.to.len() > 256 {
                return Err("to: give 1 to 256 receivers (\"host:port\")".into());
            }
            let addrs = resolve(&v.to)?;
            if addrs.iter().any(|a| a.is_ipv4() != addrs[0].is_ipv4()) {
                return Err("to: all receivers must be of one address family".into());
            }
            if !(1..=64).contains(&v.source_ports) {
                return Err("source_ports: use 1 to 64".into());
            }
            if let Some((k, vni)) = v.vni.iter().find(|(_, vni)| **vni > 0x00ff_ffff) {
                return Err(format!("vni.{k}: {vni} does not fit in 24 bits"));
            }
        }
        ForwardOutput::Tap(t) => {
            if !t.per_session && (t.name.is_empty() || t.name.len() > 15 || t.name.contains('/')) {
                return Err(format!(
                    "name: {:?} must be 1 to 15 bytes, without '/'",
                    t.name
                ));
            }
            if !(1280..=65_535).contains(&t.mtu) {
                return Err(format!("mtu: {} is outside 1280 to 65535", t.mtu));
            }
            if t.max_devices == 0 {
                return Err("max_devices: must be at least 1".into());
            }
        }
        ForwardOutput::PcapOverIp(p) => {
            p.listen
                .parse::<SocketAddr>()
                .map_err(|e| format!("listen: {:?}: {e} (expected ip:port)", p.listen))?;
            if p.queue == 0 || p.client_buffer < 65_536 || p.max_clients == 0 {
                return Err(
                    "queue and max_clients must be at least 1, client_buffer at least 65536".into(),
                );
            }
        }
    }
    Ok(())
}

impl ModuleConfig for ForwardConfig {
    fn validate(&self) -> Result<(), String> {
        if self.output.is_empty() {
            return Err(
                "output: give at least one [[module.output]] (type = \"vxlan\", \"tap\" or \
                 \"pcap_over_ip\")"
                    .into(),
            );
        }
        for (i, o) in self.output.iter().enumerate() {
            validate_output(o).map_err(|e| format!("output[{i}].{e}"))?;
        }
        Ok(())
    }

    fn build(&self, ctx: &ModuleContext) -> Result<Box<dyn Module>, BuildError> {
        let mut outputs = Vec::with_capacity(self.output.len());
        for (i, o) in self.output.iter().enumerate() {
            let err = |e: String| BuildError::new(format!("output[{i}] ({}): {e}", o.kind()));
            let sel = o.select();
            let kind = match o {
                ForwardOutput::Vxlan(v) => {
                    let to = resolve(&v.to).map_err(err)?;
                    Kind::Vxlan {
                        sender: VxlanSender::new(&to, v.source_ports)
                            .map_err(|e| err(e.to_string()))?,
                        vni: v.vni.clone(),
                    }
                }
                ForwardOutput::Tap(t) => {
                    let mut taps = Taps {
                        denied: None,
                        per_session: t.per_session,
                        mtu: t.mtu,
                        max_devices: t.max_devices,
                        names: t.names.clone(),
                        queues: Vec::new(),
                        by_name: FxHashMap::default(),
                    };
                    if !t.per_session {
                        taps.open(&t.name)
                            .map_err(|e| err(tap_error(&t.name, &e)))?;
                    }
                    Kind::Tap(taps)
                }
                ForwardOutput::PcapOverIp(p) => {
                    let hub = {
                        // Taken only while shards are built, never on the packet path.
                        let mut slot = p.hub.lock().unwrap_or_else(|e| e.into_inner());
                        match slot.upgrade() {
                            Some(hub) => hub,
                            None => {
                                let listen: SocketAddr = p
                                    .listen
                                    .parse()
                                    .map_err(|e: std::net::AddrParseError| err(e.to_string()))?;
                                let snaplen = if sel.snaplen == 0 {
                                    WHOLE_FRAMES
                                } else {
                                    sel.snaplen
                                };
                                let hub = Hub::start(
                                    listen,
                                    ServerSettings {
                                        snaplen,
                                        client_buffer: p.client_buffer,
                                        max_clients: p.max_clients,
                                    },
                                )
                                .map_err(|e| err(format!("listen {}: {e}", p.listen)))?;
                                *slot = Arc::downgrade(&hub);
                                hub
                            }
                        }
                    };
                    Kind::PcapOverIp(
                        PcapOverIpShard::new(hub, p.queue, ctx.shard == 0)
                            .map_err(|e| err(e.to_string()))?,
                    )
                }
            };
            let mut out = Output {
                index: i,
                sessions: sel.sessions.clone(),
                filter: Filter::compile(&sel.filter).map_err(|e| err(format!("filter: {e}")))?,
                snaplen: if sel.snaplen == 0 {
                    usize::MAX
                } else {
                    sel.snaplen as usize
                },
                rate: RateCap::new(sel.pps, ctx.shards),
                choices: FxHashMap::default(),
                kind,
                drops: Drops::default(),
                wrote: 0,
            };
            // Devices of the sessions configured now exist from the start, so a sniffer can be
            // attached before the first packet; learned sessions get theirs with their first one.
            if matches!(&out.kind, Kind::Tap(t) if t.per_session) {
                for s in ctx.sessions.sessions().iter().filter(|s| !s.learned) {
                    out.choice(s);
                }
                // Without the privilege no device will ever work: say so at start, not per packet.
                if let Kind::Tap(Taps {
                    denied: Some((name, e)),
                    ..
                }) = &out.kind
                {
                    return Err(err(tap_error(name, e)));
                }
            }
            outputs.push(out);
        }
        Ok(Box::new(Forward {
            published: vec![Drops::default(); outputs.len()],
            outputs,
            remaining: 0,
            reported: Reported::default(),
        }))
    }
}

/// Packets an output did not deliver, by reason. Kept per output and per shard, logged at the end,
/// and summed into the module's `drops` (the first group) and `errors` (the second).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Drops {
    /// Over the output's `pps` cap.
    pub(crate) rate_cap: u64,
    /// PCAP-over-IP: the shard's queue to the server was full.
    pub(crate) queue_full: u64,
    /// VXLAN: the socket's send buffer was full.
    pub(crate) socket_full: u64,
    /// TAP: the device's queue was full.
    pub(crate) tap_full: u64,
    /// TAP: more sessions than `max_devices`.
    pub(crate) tap_limit: u64,
    /// PCAP-over-IP: clients disconnected for falling behind (one per client).
    pub(crate) clients_cut: u64,
    /// PCAP-over-IP: connections over `max_clients`.
    pub(crate) clients_refused: u64,
    /// VXLAN: a frame too large for one UDP datagram.
    pub(crate) too_large: u64,
    /// Errors: sends the kernel refused, writes that failed.
    pub(crate) send_errors: u64,
    /// Errors: the session's TAP device could not be created.
    pub(crate) tap_unavailable: u64,
}

impl Drops {
    /// Every reason with its count, under its metric label.
    fn by_reason(&self) -> [(&'static str, u64); 10] {
        [
            ("rate_cap", self.rate_cap),
            ("queue_full", self.queue_full),
            ("socket_full", self.socket_full),
            ("tap_full", self.tap_full),
            ("tap_limit", self.tap_limit),
            ("clients_cut", self.clients_cut),
            ("clients_refused", self.clients_refused),
            ("too_large", self.too_large),
            ("send_errors", self.send_errors),
            ("tap_unavailable", self.tap_unavailable),
        ]
    }

    fn dropped(&self) -> u64 {
        self.rate_cap
            + self.queue_full
            + self.socket_full
            + self.tap_full
            + self.tap_limit
            + self.clients_cut
            + self.clients_refused
            + self.too_large
    }

    fn errors(&self) -> u64 {
        self.send_errors + self.tap_unavailable
    }
}

/// What one output decided for one session, once.
#[derive(Debug, Clone, Copy)]
struct Choice {
    wanted: bool,
    vni: u32,
    /// TAP: the session's queue in `Taps::queues`.
    tap: Option<usize>,
}

/// A TAP creation error, with what to do when it is a missing privilege.
fn tap_error(name: &str, e: &std::io::Error) -> String {
    if e.kind() == std::io::ErrorKind::PermissionDenied {
        format!(
            "cannot create TAP device {name}: {e}; TAP devices need CAP_NET_ADMIN and \
             /dev/net/tun (under systemd: install systemd/vxtap-tap.conf, docs/modules/forward.md)"
        )
    } else {
        format!("cannot create TAP device {name}: {e}")
    }
}

struct Taps {
    /// The first creation refused for want of privilege, kept so that the build can fail with it.
    denied: Option<(String, std::io::Error)>,
    per_session: bool,
    mtu: u32,
    max_devices: usize,
    names: Names,
    queues: Vec<Option<TapQueue>>,
    by_name: FxHashMap<String, usize>,
}

impl Taps {
    fn open(&mut self, name: &str) -> std::io::Result<usize> {
        let q = TapQueue::open(name, self.mtu)?;
        self.queues.push(Some(q));
        self.by_name.insert(name.to_owned(), self.queues.len() - 1);
        Ok(self.queues.len() - 1)
    }

    /// The queue for a session: its own device's, or the shared one. `None` past `max_devices`.
    fn for_session(&mut self, s: &Session) -> Option<usize> {
        if !self.per_session {
            return Some(0);
        }
        let key = s.eni.as_deref().unwrap_or(&s.name);
        let name = tap::reserve(&self.names, key);
        if let Some(i) = self.by_name.get(&name) {
            return Some(*i);
        }
        if self.queues.len() >= self.max_devices {
            return None;
        }
        match self.open(&name) {
            Ok(i) => {
                tracing::info!(message = "TAP device for a session.", device = %name, session = %s.name, key);
                Some(i)
            }
            Err(error) => {
                if error.kind() == std::io::ErrorKind::PermissionDenied && self.denied.is_none() {
                    self.denied = Some((name.clone(), std::io::Error::from(error.kind())));
                }
                tracing::warn!(message = "Cannot create the TAP device of a session; its packets are counted as errors.", device = %name, session = %s.name, %error);
                self.queues.push(None);
                self.by_name.insert(name, self.queues.len() - 1);
                Some(self.queues.len() - 1)
            }
        }
    }
}

enum Kind {
    Vxlan {
        sender: VxlanSender,
        vni: BTreeMap<String, u32>,
    },
    Tap(Taps),
    PcapOverIp(PcapOverIpShard),
}

struct Output {
    index: usize,
    sessions: Vec<String>,
    filter: Filter,
    snaplen: usize,
    rate: Option<RateCap>,
    /// Per session id; cleared when it grows past `MAX_CHOICES` (learned sessions come and go).
    choices: FxHashMap<u32, Choice>,
    kind: Kind,
    drops: Drops,
    /// Packets delivered (VXLAN: taken by the kernel; TAP: written; PCAP-over-IP: handed to the
    /// server).
    wrote: u64,
}

/// Sessions remembered per output; the decision is cheap to redo, so the map is simply cleared.
const MAX_CHOICES: usize = 65_536;

fn names_session(selector: &str, s: &Session) -> bool {
    selector == s.name || s.eni.as_deref() == Some(selector) || selector == s.key.to_string()
}

impl Output {
    fn choice(&mut self, s: &Session) -> Choice {
        if let Some(c) = self.choices.get(&s.id) {
            return *c;
        }
        let wanted = self.sessions.is_empty() || self.sessions.iter().any(|f| names_session(f, s));
        let mut choice = Choice {
            wanted,
            vni: s.key.vni,
            tap: None,
        };
        if wanted {
            match &mut self.kind {
                Kind::Vxlan { vni, .. } => {
                    if let Some((_, v)) = vni.iter().find(|(k, _)| names_session(k, s)) {
                        choice.vni = *v;
                    }
                }
                Kind::Tap(taps) => choice.tap = taps.for_session(s),
                Kind::PcapOverIp(_) => {}
            }
        }
        if self.choices.len() >= MAX_CHOICES {
            self.choices.clear();
        }
        self.choices.insert(s.id, choice);
        choice
    }

    fn packet(&mut self, pkt: &Packet<'_>) {
        let choice = self.choice(pkt.session);
        if !choice.wanted || (!self.filter.is_any() && !self.filter.matches(pkt.layers)) {
            return;
        }
        if let Some(rate) = &mut self.rate {
            if !rate.allow(pkt.ts) {
                self.drops.rate_cap += 1;
                return;
            }
        }
        let data = &pkt.frame[..pkt.frame.len().min(self.snaplen)];
        match &mut self.kind {
            Kind::Vxlan { sender, .. } => {
                let hash = symmetric_hash(pkt.session.id, pkt.layers);
                sender.queue(choice.vni, data, hash, &mut self.drops);
            }
            Kind::Tap(taps) => match choice.tap.and_then(|i| taps.queues.get(i)) {
                Some(Some(q)) => {
                    if q.write(data, &mut self.drops) {
                        self.wrote += 1;
                    }
                }
                Some(None) => self.drops.tap_unavailable += 1,
                None => self.drops.tap_limit += 1,
            },
            Kind::PcapOverIp(server) => {
                let on_wire = pkt
                    .ip_len()
                    .map_or(0, |ip| ip.saturating_add(pkt.layers.l3_offset));
                let orig_len = pkt.orig_len.max(on_wire).max(data.len() as u32);
                if server.send(pkt.ts.nanos(), data, orig_len, &mut self.drops) {
                    self.wrote += 1;
                }
            }
        }
    }

    fn flush(&mut self) {
        match &mut self.kind {
            Kind::Vxlan { sender, .. } => self.wrote += sender.flush(&mut self.drops),
            Kind::PcapOverIp(server) => server.collect(&mut self.drops),
            Kind::Tap(_) => {}
        }
    }
}

/// What has been reported through the Emitter so far.
#[derive(Debug, Default)]
struct Reported {
    wrote: u64,
    dropped: u64,
    errors: u64,
}

struct Forward {
    outputs: Vec<Output>,
    /// Each output's drops as last published to the labelled counters.
    published: Vec<Drops>,
    /// Packets left in the batch announced by `prepare`; the queued datagrams go out after the last.
    remaining: usize,
    reported: Reported,
}

impl Forward {
    fn flush(&mut self, out: &mut Emitter<'_>) {
        let (mut wrote, mut dropped, mut errors) = (0, 0, 0);
        for o in &mut self.outputs {
            o.flush();
            wrote += o.wrote;
            dropped += o.drops.dropped();
            errors += o.drops.errors();
        }
        out.wrote(wrote.saturating_sub(self.reported.wrote));
        out.dropped(dropped.saturating_sub(self.reported.dropped));
        out.errors(errors.saturating_sub(self.reported.errors));
        self.reported = Reported {
            wrote,
            dropped,
            errors,
        };
    }
}

impl Forward {
    /// Drops per output and reason since the last tick, as `vxtap_module_forward_dropped_total`
    /// (once per tick: the labelled counters take a lock).
    fn publish(&mut self, out: &mut Emitter<'_>) {
        self.published.resize(self.outputs.len(), Drops::default());
        for (o, last) in self.outputs.iter().zip(&mut self.published) {
            let ty = match o.kind {
                Kind::Vxlan { .. } => "vxlan",
                Kind::Tap(_) => "tap",
                Kind::PcapOverIp(_) => "pcap_over_ip",
            };
            let index = o.index.to_string();
            for ((reason, now), (_, before)) in
                o.drops.by_reason().into_iter().zip(last.by_reason())
            {
                if now > before {
                    out.count_labelled(
                        "forward_dropped",
                        &[("output", &index), ("type", ty), ("reason", reason)],
                        now - before,
                    );
                }
            }
            *last = o.drops;
        }
    }
}

impl Module for Forward {
    fn prepare(&mut self, packets: &[Packet<'_>]) {
        self.remaining = packets.len();
    }

    fn on_packet(&mut self, pkt: &Packet<'_>, out: &mut Emitter<'_>) {
        for o in &mut self.outputs {
            o.packet(pkt);
        }
        // Without a `prepare` (a caller that does not batch) every packet is its own batch.
        self.remaining = self.remaining.saturating_sub(1);
        if self.remaining == 0 {
            self.flush(out);
        }
    }

    fn on_tick(&mut self, _now: Timestamp, out: &mut Emitter<'_>) {
        self.flush(out);
        self.publish(out);
    }

    fn finish(&mut self, out: &mut Emitter<'_>) {
        self.flush(out);
        self.publish(out);
        for o in &self.outputs {
            let d = &o.drops;
            if d.dropped() + d.errors() == 0 {
                continue;
            }
            let listen = match &o.kind {
                Kind::PcapOverIp(s) => Some(s.local_addr()),
                _ => None,
            };
            tracing::info!(
                message = "Forward output totals.",
                output = o.index,
                wrote = o.wrote,
                rate_cap = d.rate_cap,
                queue_full = d.queue_full,
                socket_full = d.socket_full,
                tap_full = d.tap_full,
                tap_limit = d.tap_limit,
                clients_cut = d.clients_cut,
                clients_refused = d.clients_refused,
                too_large = d.too_large,
                send_errors = d.send_errors,
                tap_unavailable = d.tap_unavailable,
                listen = ?listen,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> Result<ForwardConfig, String> {
        let c: ForwardConfig = toml::from_str(toml_text).map_err(|e| e.to_string())?;
        c.validate()?;
        Ok(c)
    }

    #[test]
    fn the_issue_sketch_parses() {
        let c = parse(
            r#"
            [[output]]
            type = "vxlan"
            to = ["10.0.7.7:4789"]
            sessions = ["eni-0a1b2c3d4e5f60718"]
            filter = "tcp port 443"

            [[output]]
            type = "tap"
            per_session = true

            [[output]]
            type = "pcap_over_ip"
            listen = "127.0.0.1:57012"
            "#,
        )
        .unwrap();
        assert_eq!(c.output.len(), 3);
        assert!(matches!(&c.output[2], ForwardOutput::PcapOverIp(p) if p.queue == 4096));
    }

    #[test]
    fn bad_outputs_are_named() {
        let e =
            parse("[[output]]\ntype = \"vxlan\"\nto = [\"127.0.0.1:1\"]\nfilter = \"tcp port x\"")
                .unwrap_err();
        assert_eq!(
            e,
            "output[0].filter: at column 10: \"x\" is not a port 0-65535"
        );
        let e = parse("[[output]]\ntype = \"tap\"\nbogus = 1").unwrap_err();
        assert!(e.contains("bogus"), "{e}");
        let e = parse("[[output]]\ntype = \"smtp\"").unwrap_err();
        assert!(e.contains("smtp"), "{e}");
        let e =
            parse("[[output]]\ntype = \"vxlan\"\nto = [\"127.0.0.1:1\", \"[::1]:2\"]").unwrap_err();
        assert!(e.contains("one address family"), "{e}");
        assert!(parse("output = []").unwrap_err().contains("at least one"));
    }
}
