//! `flowlog`: mirrored traffic as VPC Flow Logs records, so the queries, Athena tables and tools people
//! already run on VPC Flow Logs work unchanged — and VPC Flow Logs never record mirrored traffic.
//!
//! As AWS does, each record is one direction of one flow (srcaddr → dstaddr with its own packets and
//! bytes) of one network interface (the mirror session) over one aggregation interval. Intervals are
//! aligned to multiples of `interval_secs` of packet time, so every shard closes them at the same
//! moments and a replay gives the same records as the live run.
//!
//! Bounds: each shard's table holds at most `max_flows` entries. An entry idle for `idle_timeout_secs`
//! is emitted early and its slot freed (a flow that resumes gets a second record in the interval, as
//! AWS's records may also be split). When the table is full, the entry that would expire first is
//! written early, complete, and makes room: the interval is a maximum, so nothing is lost. Only if no
//! entry can be taken out is a packet left uncounted: its session then gets one `SKIPDATA` record for
//! the interval (AWS's status for "records were skipped because capacity was exceeded") and the
//! packet is counted in the module's `drops`.
//!
//! When the shard keeps a flow table for other modules anyway, flowlog counts through it instead
//! ([`Module::flow_intervals`]): a second table would cost every packet a second lookup. The records
//! are the same; `[flow] max_flows` is then the bound, and a flow it evicts has its directions
//! written at once, as a full table of flowlog's own writes its oldest entry.
//!
//! A configured (static) session that delivered nothing for a whole interval gets one `NODATA` record
//! (AWS's status for an interface without traffic): otherwise a broken mirror session (deleted, its
//! filter changed, its target unhealthy) would be as quiet as an idle one. Whether a session was
//! silent is a question for all shards together, so each shard publishes the sessions it saw when
//! it closes an interval, through a board (`interval_board.rs`), and the shard that completes the
//! interval writes the NODATA records. Intervals the module did not see from their start (the first one, and
//! the one the input ends in) are not whole, and give none.

mod format;
mod table;

use std::sync::Arc;

use arrayvec::ArrayVec;
use rustc_hash::FxHashMap;
use serde::Deserialize;

pub use self::format::{Direction, Field, FlowCounts, Format, Record, SessionMeta, DEFAULT_FORMAT};
use self::table::{Entry, FlowTable, Key};
use super::interval_board::{IntervalBoard, Merge};
use super::{BuildError, Emitter, Module, ModuleConfig, ModuleContext, PerSession};
use crate::base::{Packet, Session, Timestamp};
use crate::flow::{DirInterval, IntervalSpec};
use crate::session::SessionTable;
use crate::sinks::{Layout, OutputConfig, SeriesName, Sink};
use crate::wire::inner::Transport;

const NANOS: u64 = 1_000_000_000;

/// `[[module]] kind = "flowlog"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowLogConfig {
    /// The maximum aggregation interval, in seconds of packet time: 60 or 600, as AWS offers.
    #[serde(default = "default_interval")]
    pub interval_secs: u64,
    /// Emit a flow direction early once it has been idle this long; at most `interval_secs`.
    /// Default: `interval_secs`.
    #[serde(default)]
    pub idle_timeout_secs: Option<u64>,
    /// Flow directions each shard holds at once (memory is reserved for them at start).
    #[serde(default = "default_max_flows")]
    pub max_flows: usize,
    /// The record format in AWS's syntax; default AWS's version 2 default format.
    #[serde(default = "default_format")]
    pub format: String,
    /// `text` (AWS's space-separated records) or `json` (one object per line, Athena column names).
    #[serde(default)]
    pub encoding: Encoding,
    /// For `layout = "aws_logs"`: the account and region in the object key path.
    #[serde(default)]
    pub account_id: Option<String>,
    /// For `layout = "aws_logs"`.
    #[serde(default)]
    pub region: Option<String>,
    /// The flow log id in file names with `layout = "aws_logs"`.
    #[serde(default = "default_flow_log_id")]
    pub flow_log_id: String,
    /// Where records go: standard output (the default) or rotating files.
    #[serde(default)]
    pub output: OutputConfig,
    #[serde(skip)]
    board: Arc<IntervalBoard<Seen>>,
}

/// Empty intervals a shard reports when its time jumps, so that a long silence still gives NODATA
/// records, without unbounded work.
const MAX_EMPTY_INTERVALS: u64 = 16;

/// Which sessions delivered packets in one interval, as one shard (or, merged, every shard) saw it.
#[derive(Debug, Default)]
struct Seen {
    sessions: Vec<u32>,
    /// The earliest packet time the module saw (ns); 0 when none yet.
    started: u64,
    /// Closed by the end of the input rather than by time.
    partial: bool,
}

impl Merge for Seen {
    fn merge(&mut self, other: Seen) {
        self.sessions.extend(other.sessions);
        self.sessions.sort_unstable();
        self.sessions.dedup();
        self.started = match (self.started, other.started) {
            (0, s) | (s, 0) => s,
            (a, b) => a.min(b),
        };
        self.partial |= other.partial;
    }
}

/// How records are written.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// Space-separated fields, as AWS delivers them.
    #[default]
    Text,
    /// JSON lines.
    Json,
}

fn default_interval() -> u64 {
    60
}
fn default_max_flows() -> usize {
    262_144
}
fn default_format() -> String {
    DEFAULT_FORMAT.to_owned()
}
fn default_flow_log_id() -> String {
    "fl-vxtap".to_owned()
}

impl FlowLogConfig {
    fn idle_timeout(&self) -> u64 {
        self.idle_timeout_secs.unwrap_or(self.interval_secs)
    }

    fn extension(&self) -> &'static str {
        match self.encoding {
            Encoding::Text => "log",
            Encoding::Json => "json",
        }
    }
}

impl ModuleConfig for FlowLogConfig {
    fn validate(&self) -> Result<(), String> {
        if self.interval_secs != 60 && self.interval_secs != 600 {
            return Err(format!(
                "interval_secs: {} is not an interval AWS offers; use 60 or 600",
                self.interval_secs
            ));
        }
        let idle = self.idle_timeout();
        if idle == 0 || idle > self.interval_secs {
            return Err(format!(
                "idle_timeout_secs: {idle} must be between 1 and interval_secs ({})",
                self.interval_secs
            ));
        }
        if self.max_flows == 0 || self.max_flows > 1 << 26 {
            return Err(format!(
                "max_flows: {} is out of range 1..=67108864",
                self.max_flows
            ));
        }
        Format::parse(&self.format).map_err(|e| format!("format: {e}"))?;
        self.output.validate()?;
        if let Some(out) = self.output.file() {
            if out.layout == Layout::AwsLogs && (self.account_id.is_none() || self.region.is_none())
            {
                return Err(
                    "output.layout: \"aws_logs\" needs account_id and region on the module, for the \
                     AWSLogs/{account_id}/vpcflowlogs/{region}/ path"
                        .into(),
                );
            }
        }
        Ok(())
    }

    fn build(&self, ctx: &ModuleContext) -> Result<Box<dyn Module>, BuildError> {
        let format = Format::parse(&self.format).map_err(BuildError::new)?;
        Ok(Box::new(FlowLog {
            shard: ctx.shard,
            shards: ctx.shards,
            registry: ctx.sessions.clone(),
            board: self.board.clone(),
            started: 0,
            released: Vec::new(),
            format,
            encoding: self.encoding,
            interval_ns: self.interval_secs * NANOS,
            table: FlowTable::new(self.max_flows, self.idle_timeout() * NANOS),
            sessions: PerSession::new(),
            meta_for: None,
            prepared: ArrayVec::new(),
            prepared_pos: 0,
            skipped: FxHashMap::default(),
            interval_end: None,
            // Only when no direction is emitted early for idleness: the flow table hands
            // directions over at intervals' ends and when flows are evicted, nothing in between.
            can_ride: self.idle_timeout() == self.interval_secs,
            riding: false,
        }))
    }

    fn sink(&self, ctx: &ModuleContext) -> Result<Box<dyn Sink>, BuildError> {
        let ext = self.extension();
        let layout = self.output.file().map(|f| f.layout);
        let name = match (layout, &self.account_id, &self.region) {
            (Some(Layout::AwsLogs), Some(account), Some(region)) => SeriesName {
                // AWS names objects {account}_vpcflowlogs_{region}_{flow-log-id}_{time}_{hash}.
                stem: format!(
                    "{}_vpcflowlogs_{}_{}-{}",
                    SeriesName::sanitize(account),
                    SeriesName::sanitize(region),
                    SeriesName::sanitize(&self.flow_log_id),
                    ctx.shard
                ),
                ext: ext.into(),
                aws_prefix: Some(
                    ["AWSLogs", account, "vpcflowlogs", region]
                        .iter()
                        .map(|s| SeriesName::sanitize(s))
                        .collect(),
                ),
            },
            _ => SeriesName {
                stem: format!("flowlog-shard{}", ctx.shard),
                ext: ext.into(),
                aws_prefix: None,
            },
        };
        let header = match self.encoding {
            // Athena skips it (`skip.header.line.count`), as for AWS's own files.
            Encoding::Text => Format::parse(&self.format)
                .map_err(BuildError::new)?
                .header()
                .into_bytes(),
            Encoding::Json => Vec::new(),
        };
        Ok(self.output.record_sink(name, header)?)
    }
}

/// Packets of one session that a full table kept out of records, in the current interval.
#[derive(Debug, Clone, Copy)]
struct Skipped {
    first: Timestamp,
    last: Timestamp,
}

struct FlowLog {
    shard: usize,
    shards: usize,
    registry: Arc<SessionTable>,
    board: Arc<IntervalBoard<Seen>>,
    /// The first packet time this instance saw (ns); 0 before.
    started: u64,
    released: Vec<(u64, Seen)>,
    format: Format,
    encoding: Encoding,
    interval_ns: u64,
    table: FlowTable,
    /// Metadata of the sessions with entries (or skipped packets) in the current interval: copied once
    /// per session per interval, not per packet.
    sessions: PerSession<SessionMeta>,
    /// The session whose metadata was last made sure of in `sessions` (consecutive packets mostly
    /// share one).
    meta_for: Option<u32>,
    /// The keys and hashes `prepare` made for the current batch, in packet order (`None`: not IP),
    /// and how many of them `on_packet` has passed.
    prepared: ArrayVec<Option<(Key, u64)>, 64>,
    prepared_pos: usize,
    skipped: FxHashMap<u32, Skipped>,
    interval_end: Option<Timestamp>,
    /// Whether the flow table's interval counters would do (see [`Module::flow_intervals`]).
    can_ride: bool,
    /// Counting through the shard's flow table rather than `table`.
    riding: bool,
}

/// TCP flags as VPC Flow Logs report them: FIN (1), SYN (2) and RST (4) as they are, and ACK (16) only
/// together with SYN, so a handshake reply shows as SYN-ACK (18) while plain ACKs add nothing.
fn aws_tcp_flags(flags: u8) -> u8 {
    aws_tcp_flags_joined(flags, flags & SYN_ACK == SYN_ACK)
}

const SYN_ACK: u8 = 0x12;

/// The same for many packets' flags OR-ed together, given whether one of them had SYN and ACK
/// together (which the OR cannot tell from a SYN and a later ACK).
fn aws_tcp_flags_joined(or: u8, syn_ack: bool) -> u8 {
    const FIN_SYN_RST: u8 = 0x07;
    (or & FIN_SYN_RST) | if syn_ack { SYN_ACK } else { 0 }
}

/// Ingress when the session's own interface is the destination, egress when it is the source.
fn direction(session: &Session, src: &std::net::IpAddr, dst: &std::net::IpAddr) -> Direction {
    if session.addresses.contains(dst) {
        Direction::Ingress
    } else if session.addresses.contains(src) {
        Direction::Egress
    } else {
        Direction::Unknown
    }
}

fn session_meta(s: &Session) -> SessionMeta {
    SessionMeta {
        session: s.name.clone(),
        account_id: s.aws.account_id.clone(),
        interface_id: s.eni.clone(),
        vpc_id: s.aws.vpc_id.clone(),
        subnet_id: s.aws.subnet_id.clone(),
        instance_id: s.aws.instance_id.clone(),
        region: s.aws.region.clone(),
        az_id: s.aws.az_id.clone(),
    }
}

impl FlowLog {
    /// Closes the current interval if `now` is past it.
    fn advance(&mut self, now: Timestamp, out: &mut Emitter<'_>) {
        match self.interval_end {
            Some(end) if now < end => {}
            Some(end) => {
                let seen = self.seen(false);
                self.emit_all(out);
                let next = self.end_of_interval(now);
                self.publish_seen(end.nanos(), seen, next.nanos() - self.interval_ns);
                self.interval_end = Some(next);
                self.emit_no_data(out);
            }
            None => self.start(now),
        }
    }

    /// The first packet (or tick): the interval schedule starts.
    fn start(&mut self, now: Timestamp) {
        self.started = now.nanos().max(1);
        self.interval_end = Some(self.end_of_interval(now));
    }

    /// The sessions with packets in the current interval (read before `emit_all` forgets them).
    fn seen(&self, partial: bool) -> Seen {
        let mut sessions: Vec<u32> = self.sessions.iter().map(|(id, _)| id).collect();
        sessions.sort_unstable();
        Seen {
            sessions,
            started: self.started,
            partial,
        }
    }

    /// Publishes the interval ending at `end`, and the empty ones after it up to `through`.
    fn publish_seen(&mut self, end: u64, seen: Seen, through: u64) {
        let (shard, shards) = (self.shard, self.shards);
        self.board
            .publish(shard, shards, end, Some(seen), end, &mut self.released);
        let mut e = end.saturating_add(self.interval_ns);
        let mut n = 0;
        while e <= through && n < MAX_EMPTY_INTERVALS {
            let empty = Seen {
                started: self.started,
                ..Seen::default()
            };
            self.board
                .publish(shard, shards, e, Some(empty), e, &mut self.released);
            e = e.saturating_add(self.interval_ns);
            n += 1;
        }
        self.board
            .publish(shard, shards, end, None, through, &mut self.released);
    }

    /// NODATA records for the static sessions silent through whole released intervals.
    fn emit_no_data(&mut self, out: &mut Emitter<'_>) {
        if self.released.is_empty() {
            return;
        }
        let released = std::mem::take(&mut self.released);
        let mut statics: Vec<Arc<Session>> = Vec::new();
        for (end, seen) in released {
            let start = end.saturating_sub(self.interval_ns);
            if seen.partial || seen.started == 0 || seen.started > start {
                continue;
            }
            if statics.is_empty() {
                statics = self
                    .registry
                    .sessions()
                    .into_iter()
                    .filter(|s| !s.learned)
                    .collect();
            }
            for s in &statics {
                if seen.sessions.binary_search(&s.id).is_err() {
                    let meta = session_meta(s);
                    out.order(2 << 64 | u128::from(end));
                    self.emit(
                        &Record {
                            meta: &meta,
                            flow: None,
                            start: start / NANOS,
                            end: end / NANOS,
                            no_data: true,
                        },
                        out,
                    );
                }
            }
        }
    }

    fn end_of_interval(&self, now: Timestamp) -> Timestamp {
        now.next_boundary(self.interval_ns)
    }

    /// Writes one entry's record. At a tick the table hands entries over by last-seen time, and
    /// that is the record's order key: it depends on the traffic only, so a replay's merge streams
    /// every shard's records in one order without sorting them (equal times, rare, by their bytes).
    /// SKIPDATA and NODATA records follow, keyed above every entry.
    fn emit_entry(&self, e: &Entry, out: &mut Emitter<'_>) {
        let counts = FlowCounts {
            key: e.key.flow,
            packets: e.packets,
            bytes: e.bytes,
            tcp_flags: e.tcp_flags,
            direction: e.direction,
        };
        self.emit_counts(e.key.session, &counts, e.first, e.last, out);
    }

    /// Writes one direction's record, whichever table counted it.
    fn emit_counts(
        &self,
        session: u32,
        counts: &FlowCounts,
        first: Timestamp,
        last: Timestamp,
        out: &mut Emitter<'_>,
    ) {
        let Some(meta) = self.sessions.get(session) else {
            out.error();
            return;
        };
        out.order(u128::from(last.nanos()));
        self.emit(
            &Record {
                meta,
                flow: Some(counts),
                start: first.secs(),
                end: last.secs(),
                no_data: false,
            },
            out,
        );
    }

    fn emit(&self, r: &Record<'_>, out: &mut Emitter<'_>) {
        let format = &self.format;
        let out = &mut out.keyed(&r.meta.session);
        match self.encoding {
            Encoding::Text => out.emit_line(|line| {
                format.render_text(r, line);
                Ok(())
            }),
            Encoding::Json => out.emit_line(|line| {
                format.render_json(r, line);
                Ok(())
            }),
        }
    }

    /// Emits every entry (least recently seen first, by last-seen time), then one SKIPDATA record
    /// per session that lost packets to a full table, and starts the next interval empty.
    fn emit_all(&mut self, out: &mut Emitter<'_>) {
        self.table.take_all();
        while let Some(e) = self.table.next_out() {
            self.emit_entry(&e, out);
        }
        let mut skipped: Vec<_> = self.skipped.drain().collect();
        skipped.sort_by_key(|(id, s)| (s.first, *id));
        for (id, s) in skipped {
            if let Some(meta) = self.sessions.get(id) {
                out.order(1 << 64 | u128::from(s.first.nanos()));
                self.emit(
                    &Record {
                        meta,
                        flow: None,
                        start: s.first.secs(),
                        end: s.last.secs(),
                        no_data: false,
                    },
                    out,
                );
            }
        }
        self.sessions.clear();
        self.meta_for = None;
    }
}

/// The table key of a packet flowlog records, and its IP length; `None` for non-IP frames, which
/// VPC Flow Logs do not record.
#[inline]
fn packet_key(pkt: &Packet<'_>) -> Option<(Key, u32)> {
    let ip = pkt.layers.ip.as_ref()?;
    let ports = pkt.layers.transport.ports().unwrap_or((0, 0));
    Some((Key::new(pkt.session.id, ip, ports), ip.total_len))
}

impl Module for FlowLog {
    /// Each packet's lookup reads an index cell and then an entry, both most likely cache misses on
    /// a large table; loading all the batch's cells, then all their entries, lets the misses overlap.
    /// The keys and hashes made here are kept for `on_packet`, which gets the same packets next.
    fn prepare(&mut self, packets: &[Packet<'_>]) {
        if self.riding {
            // Not called per packet: the first IP packet starts the interval schedule here, as
            // `on_packet` would have.
            if self.interval_end.is_none() {
                if let Some(first) = packets.iter().find(|p| p.layers.ip.is_some()) {
                    self.start(first.ts);
                }
            }
            return;
        }
        self.prepared.clear();
        self.prepared_pos = 0;
        let (cells, entries) = self.table.worth_prefetching();
        if !cells && !entries {
            return;
        }
        for pkt in packets.iter().take(self.prepared.capacity()) {
            let Some((key, _)) = packet_key(pkt) else {
                self.prepared.push(None);
                continue;
            };
            let hash = key.hash();
            if cells {
                self.table.prefetch_index(hash);
            }
            self.prepared.push(Some((key, hash)));
        }
        if entries {
            for &(_, hash) in self.prepared.iter().flatten() {
                self.table.prefetch_entry(hash);
            }
        }
    }

    fn on_packet(&mut self, pkt: &Packet<'_>, out: &mut Emitter<'_>) {
        let prepared = self.prepared.get(self.prepared_pos).copied().flatten();
        self.prepared_pos += 1;
        // VPC Flow Logs record IP traffic only; ARP and other non-IP frames have no record.
        let Some((key, ip_len)) = packet_key(pkt) else {
            return;
        };
        // `prepare` saw this batch's packets in this order; the key comparison makes sure.
        let hash = match prepared {
            Some((k, hash)) if k == key => hash,
            _ => key.hash(),
        };
        self.advance(pkt.ts, out);
        let session = pkt.session;
        if self.meta_for != Some(session.id) {
            self.sessions
                .get_or_insert_with(session.id, || session_meta(session));
            self.meta_for = Some(session.id);
        }
        let flags = match *pkt.transport() {
            Transport::Tcp { flags, .. } => aws_tcp_flags(flags),
            _ => 0,
        };
        let ip = pkt.layers.ip.as_ref();
        let direction = || {
            ip.map_or(Direction::Unknown, |ip| {
                direction(session, &ip.src, &ip.dst)
            })
        };
        // Bytes are the IP length the sender put on the wire (from the IP header), which AWS's and
        // vxtap's truncation leave intact.
        let bytes = u64::from(ip_len);
        if self
            .table
            .update(&key, hash, pkt.ts, bytes, flags, direction)
            .is_ok()
        {
            return;
        }
        // Full: the entry that would expire first goes out now, complete, and makes room.
        if let Some(e) = self.table.evict_oldest() {
            self.emit_entry(&e, out);
            if self
                .table
                .update(&key, hash, pkt.ts, bytes, flags, direction)
                .is_ok()
            {
                return;
            }
        }
        let s = self.skipped.entry(session.id).or_insert(Skipped {
            first: pkt.ts,
            last: pkt.ts,
        });
        s.first = s.first.min(pkt.ts);
        s.last = s.last.max(pkt.ts);
        out.dropped(1);
    }

    fn wants_packets(&self) -> bool {
        !self.riding
    }

    /// With the default idle timeout (the interval), records are one per direction, 5-tuple and
    /// interval, which the flow table's interval counters give as they are.
    fn flow_intervals(&self) -> Option<IntervalSpec> {
        self.can_ride.then_some(IntervalSpec {
            interval_secs: self.interval_ns / NANOS,
        })
    }

    fn use_flow_intervals(&mut self) {
        self.riding = true;
        // The flow table's cap bounds the flows counted now; the reservation goes.
        self.table = FlowTable::new(1, self.interval_ns);
    }

    fn on_flow_interval(&mut self, d: &DirInterval<'_>, out: &mut Emitter<'_>) {
        let session = d.session();
        if self.meta_for != Some(session.id) {
            self.sessions
                .get_or_insert_with(session.id, || session_meta(session));
            self.meta_for = Some(session.id);
        }
        let (key, c) = (d.key(), d.counts());
        self.emit_counts(
            session.id,
            &FlowCounts {
                key,
                packets: u64::from(c.packets),
                bytes: c.bytes,
                tcp_flags: aws_tcp_flags_joined(c.tcp_flags, c.syn_ack),
                direction: direction(session, &key.src, &key.dst),
            },
            c.first,
            c.last,
            out,
        );
    }

    fn on_flow_interval_end(&mut self, now: Timestamp, out: &mut Emitter<'_>) {
        self.advance(now, out);
    }

    fn on_tick(&mut self, now: Timestamp, out: &mut Emitter<'_>) {
        self.advance(now, out);
        self.table.expire(now);
        while let Some(e) = self.table.next_out() {
            self.emit_entry(&e, out);
        }
    }

    fn finish(&mut self, out: &mut Emitter<'_>) {
        let seen = self.interval_end.map(|_| self.seen(true));
        self.emit_all(out);
        let end = self.interval_end.map_or(0, Timestamp::nanos);
        self.board.publish(
            self.shard,
            self.shards,
            end,
            seen,
            u64::MAX,
            &mut self.released,
        );
        self.interval_end = None;
        self.emit_no_data(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_flags_use_awss_encoding() {
        assert_eq!(aws_tcp_flags(0x02), 2, "SYN");
        assert_eq!(aws_tcp_flags(0x12), 18, "SYN-ACK");
        assert_eq!(aws_tcp_flags(0x10), 0, "a plain ACK adds nothing");
        assert_eq!(aws_tcp_flags(0x18), 0, "PSH-ACK neither");
        assert_eq!(aws_tcp_flags(0x11), 1, "FIN-ACK is FIN");
        assert_eq!(aws_tcp_flags(0x14), 4, "RST-ACK is RST");
        assert_eq!(aws_tcp_flags(0x12) | aws_tcp_flags(0x11), 19);
    }
}
