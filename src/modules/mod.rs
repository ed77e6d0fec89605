//! Inspection modules: the trait, the context a module is built from, and the registry of kinds.
//!
//! A module instance lives on one shard thread and sees every packet of the flows steered there, both
//! directions. It is built from its `[[module]]` table by the config type registered under its `kind`
//! (Vector's shape: a serde config struct with `deny_unknown_fields` and a `build`), so a library user
//! adds a kind with one [`Registry::register`] call.

pub mod accessscope;
pub mod connectivity;
pub mod detect;
pub mod dns;
pub mod eve;
pub mod flowlog;
pub mod forward;
pub mod http;
mod interval_board;
#[cfg(test)]
mod no_alloc_tests;
pub mod pcap;
mod per_session;
pub mod stats;
pub mod tls;

pub use per_session::PerSession;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use thiserror::Error;

use crate::base::counter::bump;
use crate::base::{Feed, Packet, Timestamp};
use crate::config::{Config, ConfigError, ConfigSource, ModuleTable};
use crate::flow::{Chunk, Dir, DirInterval, EndReason, Flow, IntervalSpec};
use crate::session::SessionTable;
use crate::sinks::{KafkaCounts, NullSink, Sink, UploadCounts};

/// An inspection module instance. Time comes only from packets and ticks.
///
/// A packet-level module implements [`Module::on_packet`]. A flow-aware one says so with
/// [`Module::wants_flows`] and gets the shard's flow events instead or as well: a flow's start, each
/// of its packets with its direction, the in-order bytes of the TCP directions it asks for
/// ([`Flow::want_stream`]), and the flow's end with its reason. Per-flow state goes in a
/// [`PerFlow`](crate::flow::PerFlow), found through the flow without a hash map of the module's own.
pub trait Module: Send {
    /// Called for every packet steered to this instance's shard.
    fn on_packet(&mut self, _pkt: &Packet<'_>, _out: &mut Emitter<'_>) {}

    /// Whether this instance wants [`Module::on_packet`]. Asked once, right after it is built. A
    /// module that works on flow events alone (dns, tls, http) says no, and is then not called for
    /// each packet (a dynamic call with panic isolation per packet that would do nothing); its
    /// packet count still counts every packet.
    fn wants_packets(&self) -> bool {
        true
    }

    /// Called with up to a batch of packets before `on_packet` is called for each of them, in the
    /// same order. A hint for modules whose per-packet work is a lookup in a table larger than the
    /// CPU caches: they can start the memory loads for the whole batch here, so that the cache misses
    /// overlap instead of coming one after another (flowlog does; see docs/writing-a-module.md). It
    /// must not change what the module emits. The default does nothing.
    fn prepare(&mut self, _packets: &[Packet<'_>]) {}

    /// Called at least every `[pipeline] tick_ms` of packet time, and of wall time while idle live.
    fn on_tick(&mut self, _now: Timestamp, _out: &mut Emitter<'_>) {}

    /// The instance's last call: emit everything held. It comes when the input ends (the drain
    /// after SIGTERM, the end of a replay) and before a config reload replaces the instance.
    fn finish(&mut self, _out: &mut Emitter<'_>) {}

    /// Whether this instance wants flow events. Asked once, right after it is built; a shard keeps
    /// a flow table only when one of its modules says yes.
    fn wants_flows(&self) -> bool {
        false
    }

    /// A flow's first packet (called before [`Module::on_flow_packet`] for it). The place to ask for
    /// its streams ([`Flow::want_stream`]), so reassembly starts at the first byte.
    fn on_flow_start(&mut self, _flow: &mut Flow<'_>, _pkt: &Packet<'_>, _out: &mut Emitter<'_>) {}

    /// Whether this instance wants [`Module::on_flow_packet`]. Asked once, right after it is built.
    /// A module that works on streams alone says no, and is then not called for each packet (a
    /// dynamic call with panic isolation per packet that would do nothing).
    fn wants_flow_packets(&self) -> bool {
        true
    }

    /// Every packet of a tracked flow, with its direction relative to the client.
    fn on_flow_packet(
        &mut self,
        _flow: &mut Flow<'_>,
        _pkt: &Packet<'_>,
        _dir: Dir,
        _out: &mut Emitter<'_>,
    ) {
    }

    /// In-order bytes of a TCP direction this module asked for, or a gap where bytes will never
    /// come (lost by the mirror, cut by truncation, past a buffer limit): resynchronise or give up
    /// on the flow, never read across it.
    fn on_stream(
        &mut self,
        _flow: &mut Flow<'_>,
        _dir: Dir,
        _chunk: &Chunk<'_>,
        _out: &mut Emitter<'_>,
    ) {
    }

    /// The flow's last event: its streams have delivered everything they held.
    fn on_flow_end(&mut self, _flow: &mut Flow<'_>, _reason: EndReason, _out: &mut Emitter<'_>) {}

    /// Whether this instance could take per-direction interval counters from the shard's flow
    /// table instead of keeping a table of its own: a module that writes one record per direction
    /// per aggregation interval (flowlog) says which interval. Asked once, right after it is built.
    /// The shard takes up the offer only when it keeps a flow table for other modules anyway (the
    /// flow table costs more per packet than a lean table of its own would) and calls
    /// [`Module::use_flow_intervals`]; the modules of one shard that ride it share one interval (a
    /// module asking for another keeps counting itself).
    fn flow_intervals(&self) -> Option<IntervalSpec> {
        None
    }

    /// The shard took up [`Module::flow_intervals`]: from now on the counters come through
    /// [`Module::on_flow_interval`], and [`Module::wants_packets`] is asked again.
    fn use_flow_intervals(&mut self) {}

    /// One direction of a flow with packets since it was last handed over, and why it is handed
    /// over now ([`DirInterval`]); its counters start again from zero. At an interval's end every
    /// such direction comes, least recently seen first, those of flows that ended inside the
    /// interval included (joined with any later connection on the same 5-tuple); an evicted flow's
    /// come at once, before its [`Module::on_flow_end`]; at a reload, a shutdown or a replay's end,
    /// all come before [`Module::finish`].
    fn on_flow_interval(&mut self, _interval: &DirInterval<'_>, _out: &mut Emitter<'_>) {}

    /// Every direction of the interval that ended at `now` (the packet or tick that ended it) has
    /// been handed over through [`Module::on_flow_interval`]. The hand-over runs in the first
    /// riding module's turn of the tick: a module after it that aggregates over the interval
    /// writes in its own `on_tick` (or at its next `on_flow_interval`), where an ordered replay
    /// streams its records instead of holding them until the modules between have passed the tick.
    fn on_flow_interval_end(&mut self, _now: Timestamp, _out: &mut Emitter<'_>) {}
}

/// Counters of one module instance, read by the admin endpoint.
#[derive(Debug, Default)]
pub struct ModuleCounters {
    /// Packets given to the module.
    pub packets: AtomicU64,
    /// Records emitted.
    pub events: AtomicU64,
    /// Records the sink refused (I/O errors).
    pub errors: AtomicU64,
    /// Records the module itself chose to drop (table caps and the like).
    pub drops: AtomicU64,
    /// Malformed inputs the module met (a DNS message, a TLS record, an HTTP head it could not read).
    pub malformed: AtomicU64,
    /// Stream gaps the module met (bytes lost by the mirror, cut by truncation, over a buffer limit).
    pub gaps: AtomicU64,
    /// The module's own counters by label values ([`Emitter::count_labelled`]).
    pub labelled: LabelledCounters,
}

impl ModuleCounters {
    pub(crate) fn packet(&self) {
        bump(&self.packets, 1);
    }

    pub(crate) fn packets(&self, n: u64) {
        bump(&self.packets, n);
    }
}

/// Most series one module instance keeps in [`LabelledCounters`]: label values come from traffic
/// (sessions, peers) and config (scopes, outputs), and `/metrics` must stay bounded.
pub const MAX_LABELLED_SERIES: usize = 1024;

/// One labelled series: a counter name, its label pairs, its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelledSeries {
    /// The counter's name, exported as `vxtap_module_<name>_total`.
    pub name: &'static str,
    /// Label names and values, in the order the module gave them.
    pub labels: Vec<(&'static str, String)>,
    /// The count.
    pub value: u64,
}

/// A module instance's counters by label values: findings per session and kind, drops per output
/// and reason, findings per scope. Only the instance's own shard writes them, and only when the
/// module says so (per record or per tick, never per packet), so the lock behind them is never
/// contended but by a scrape. At most [`MAX_LABELLED_SERIES`] series; counts for more are added to
/// `refused`.
#[derive(Debug, Default)]
pub struct LabelledCounters {
    series: std::sync::Mutex<Vec<LabelledSeries>>,
    /// Counts that found no room for a new series.
    pub refused: AtomicU64,
}

impl LabelledCounters {
    pub(crate) fn add(&self, name: &'static str, labels: &[(&'static str, &str)], n: u64) {
        let mut series = self.series.lock().unwrap_or_else(|e| e.into_inner());
        let same = |s: &LabelledSeries| {
            s.name == name
                && s.labels.len() == labels.len()
                && s.labels
                    .iter()
                    .zip(labels)
                    .all(|((k, v), (k2, v2))| k == k2 && v == v2)
        };
        if let Some(s) = series.iter_mut().find(|s| same(s)) {
            s.value += n;
        } else if series.len() < MAX_LABELLED_SERIES {
            series.push(LabelledSeries {
                name,
                labels: labels.iter().map(|(k, v)| (*k, (*v).to_owned())).collect(),
                value: n,
            });
        } else {
            bump(&self.refused, n);
        }
    }

    /// Every series, for `/metrics`.
    pub fn snapshot(&self) -> Vec<LabelledSeries> {
        self.series
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// A module's door to its output: records go to the sink, and are counted.
pub struct Emitter<'a> {
    sink: &'a mut dyn Sink,
    counters: &'a ModuleCounters,
    scratch: &'a mut String,
    now: Timestamp,
    /// The session the records belong to, when the module said so ([`Emitter::keyed`]).
    key: Option<&'a str>,
}

impl<'a> Emitter<'a> {
    pub(crate) fn new(
        sink: &'a mut dyn Sink,
        counters: &'a ModuleCounters,
        scratch: &'a mut String,
        now: Timestamp,
    ) -> Self {
        Emitter {
            sink,
            counters,
            scratch,
            now,
            key: None,
        }
    }

    /// The same door, for records of the session named `key` (`Session::name`): a Kafka output
    /// keys its messages with it, so one session's records stay in one partition and in order;
    /// other outputs ignore it. `out.keyed(&session.name).emit_line(...)`.
    pub fn keyed<'k>(&'k mut self, key: &'k str) -> Emitter<'k> {
        Emitter {
            sink: &mut *self.sink,
            counters: self.counters,
            scratch: &mut *self.scratch,
            now: self.now,
            key: Some(key),
        }
    }

    /// Sets the order of the records this module writes next at a tick or at the end
    /// (`on_tick`, `finish`, and flow events the tick or the end causes). A replay on several
    /// shards merges every shard's tick records into one output; with keys it orders them by key
    /// (then by their bytes, for equal keys) and streams them as they come, without keys by their
    /// bytes only, holding them until the tick is over and sorting them. So a module with many
    /// records per tick should give each a key that depends on the record's content only (never
    /// on the shard, its table layout or its arrival order), such as the flow's last-seen time, and
    /// write them in non-decreasing key order. A key below one already written is counted as an
    /// error and may make the output depend on the shard count. Other outputs, and records
    /// written while processing a packet (ordered by the packet's position), ignore it.
    pub fn order(&mut self, key: u128) {
        self.sink.order(key);
    }

    /// Emits one complete record.
    pub fn emit(&mut self, record: &[u8]) {
        let written = match self.key {
            Some(key) => self.sink.write_keyed(self.now, key.as_bytes(), record),
            None => self.sink.write(self.now, record),
        };
        match written {
            Ok(()) => bump(&self.counters.events, 1),
            Err(_) => bump(&self.counters.errors, 1 + self.sink.take_lost()),
        }
    }

    /// Emits one text line built by `f` in a reused buffer (no allocation once it has grown); the
    /// newline is added.
    pub fn emit_line(&mut self, f: impl FnOnce(&mut String) -> std::fmt::Result) {
        let mut line = std::mem::take(self.scratch);
        line.clear();
        if f(&mut line).is_ok() {
            line.push('\n');
            self.emit(line.as_bytes());
        } else {
            bump(&self.counters.errors, 1);
        }
        *self.scratch = line;
    }

    /// Emits a line from format arguments: `out.line(format_args!("{a} {b}"))`.
    pub fn line(&mut self, args: std::fmt::Arguments<'_>) {
        self.emit_line(|s| s.write_fmt(args));
    }

    /// Counts `n` records the module dropped itself (e.g. a full table).
    pub fn dropped(&mut self, n: u64) {
        bump(&self.counters.drops, n);
    }

    /// Counts `n` malformed inputs (a message the module's parser refused); the record, if any,
    /// says so too.
    pub fn malformed(&mut self, n: u64) {
        bump(&self.counters.malformed, n);
    }

    /// Counts `n` stream gaps the module met.
    pub fn gaps(&mut self, n: u64) {
        bump(&self.counters.gaps, n);
    }

    /// Adds `n` to the module's own counter `name` for these label values, e.g.
    /// `out.count_labelled("findings", &[("session", &s.name), ("kind", "refused")], 1)`, exported as
    /// `vxtap_module_findings_total{module="…",index="…",session="…",kind="…"}` summed over shards.
    /// `name` and label names: lower-case letters, digits and `_`. Call it per record or per tick,
    /// not per packet: it takes the instance's own lock and may allocate a new series.
    pub fn count_labelled(&mut self, name: &'static str, labels: &[(&'static str, &str)], n: u64) {
        self.counters.labelled.add(name, labels, n);
    }

    /// Counts an error the module hit itself.
    pub fn error(&mut self) {
        bump(&self.counters.errors, 1);
    }

    /// Counts `n` errors (e.g. records a failed write lost).
    pub fn errors(&mut self, n: u64) {
        bump(&self.counters.errors, n);
    }

    /// Counts `n` records a module wrote itself, through sink-layer files it holds (as `pcap` does,
    /// whose files carry per-file state).
    pub fn wrote(&mut self, n: u64) {
        bump(&self.counters.events, n);
    }

    pub(crate) fn flush_sink(&mut self) {
        if self.sink.flush(self.now).is_err() {
            bump(&self.counters.errors, self.sink.take_lost().max(1));
        }
        // The output's S3 uploader runs on its own thread and is no module: what it did since the
        // last flush is reported here, as this module's series, by whichever shard flushes first.
        let up = self.sink.take_uploads();
        self.uploads(up);
        let kafka = self.sink.take_kafka();
        self.kafka(kafka);
    }

    /// Counts what a Kafka output's producer did (`Producer::take_counts`) as this module's
    /// `kafka_delivered_records`, `kafka_delivered_bytes`, `kafka_dropped_records{reason}` and
    /// `kafka_errors`; done for the module's sink at every flush.
    pub fn kafka(&mut self, k: KafkaCounts) {
        if k.is_empty() {
            return;
        }
        let labelled = &self.counters.labelled;
        labelled.add("kafka_delivered_records", &[], k.delivered);
        labelled.add("kafka_delivered_bytes", &[], k.delivered_bytes);
        labelled.add(
            "kafka_dropped_records",
            &[("reason", "buffer_full")],
            k.dropped_full,
        );
        labelled.add(
            "kafka_dropped_records",
            &[("reason", "rejected")],
            k.rejected,
        );
        labelled.add(
            "kafka_dropped_records",
            &[("reason", "undelivered")],
            k.undelivered,
        );
        labelled.add("kafka_errors", &[], k.errors);
    }

    /// Counts what an S3 output's uploader did (`Uploader::take_counts`) as this module's
    /// `s3_uploads{result}`, `s3_upload_bytes` and `s3_spool_dropped_files`. Done for the module's
    /// sink at every flush; a module that holds its own files (as `pcap` does) calls it per tick.
    pub fn uploads(&mut self, up: UploadCounts) {
        if up.is_empty() {
            return;
        }
        let labelled = &self.counters.labelled;
        labelled.add("s3_uploads", &[("result", "ok")], up.uploaded);
        labelled.add("s3_uploads", &[("result", "failed")], up.failed);
        labelled.add("s3_upload_bytes", &[], up.uploaded_bytes);
        labelled.add("s3_spool_dropped_files", &[], up.dropped);
    }
}

/// What a module may know about where it runs.
#[derive(Debug, Clone)]
pub struct ModuleContext {
    /// This instance's shard, 0-based.
    pub shard: usize,
    /// How many shards (and so instances) there are.
    pub shards: usize,
    /// The session registry.
    pub sessions: Arc<SessionTable>,
    /// What feeds the pipeline: live sockets and interfaces, or capture files offline.
    pub feed: Feed,
}

/// Why a module could not be built.
#[derive(Debug, Error)]
#[error("{0}")]
pub struct BuildError(pub String);

impl BuildError {
    /// An error with a message.
    pub fn new(msg: impl Into<String>) -> Self {
        BuildError(msg.into())
    }
}

impl From<std::io::Error> for BuildError {
    fn from(e: std::io::Error) -> Self {
        BuildError(e.to_string())
    }
}

/// A module kind's configuration: deserialized from its `[[module]]` table (use
/// `#[serde(deny_unknown_fields)]`), checked, then asked once per shard for an instance.
pub trait ModuleConfig: DeserializeOwned + Send + Sync + 'static {
    /// Checks values that serde cannot (ranges, combinations). The message names the key.
    fn validate(&self) -> Result<(), String> {
        Ok(())
    }

    /// What a valid configuration does that its author may not expect, one message each (e.g. a
    /// statement the module cannot evaluate and how it treats it instead). `vxtap check-config`
    /// prints them after a successful check: a warning needs a place to be seen, and an error would
    /// refuse a configuration that works. Called after [`ModuleConfig::validate`] succeeded; the
    /// default has none.
    fn notices(&self) -> Vec<String> {
        Vec::new()
    }

    /// Builds the instance for one shard.
    fn build(&self, ctx: &ModuleContext) -> Result<Box<dyn Module>, BuildError>;

    /// Builds the sink for one shard's instance; modules that write nothing keep the default.
    fn sink(&self, _ctx: &ModuleContext) -> Result<Box<dyn Sink>, BuildError> {
        Ok(Box::new(NullSink))
    }
}

/// A checked module configuration, ready to build instances.
pub trait ModuleFactory: Send + Sync {
    /// Builds the instance for one shard.
    fn build(&self, ctx: &ModuleContext) -> Result<Box<dyn Module>, BuildError>;
    /// Builds its sink.
    fn sink(&self, ctx: &ModuleContext) -> Result<Box<dyn Sink>, BuildError>;
    /// Its [`ModuleConfig::notices`].
    fn notices(&self) -> Vec<String>;
}

impl<T: ModuleConfig> ModuleFactory for T {
    fn build(&self, ctx: &ModuleContext) -> Result<Box<dyn Module>, BuildError> {
        ModuleConfig::build(self, ctx)
    }
    fn sink(&self, ctx: &ModuleContext) -> Result<Box<dyn Sink>, BuildError> {
        ModuleConfig::sink(self, ctx)
    }
    fn notices(&self) -> Vec<String> {
        ModuleConfig::notices(self)
    }
}

/// A module kind configured in the file: its name and factory.
#[derive(Clone)]
pub struct ModuleSpec {
    /// The `kind`.
    pub kind: String,
    /// Its position among the `[[module]]` tables, from 0.
    pub index: usize,
    /// The factory.
    pub factory: Arc<dyn ModuleFactory>,
}

impl std::fmt::Debug for ModuleSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModuleSpec")
            .field("kind", &self.kind)
            .field("index", &self.index)
            .finish()
    }
}

type Parser = fn(toml::Table) -> Result<Arc<dyn ModuleFactory>, (String, String)>;

fn parse_kind<T: ModuleConfig>(
    table: toml::Table,
) -> Result<Arc<dyn ModuleFactory>, (String, String)> {
    let config: T = serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
        let path = e.path().to_string();
        (
            if path == "." { String::new() } else { path },
            e.inner().message().trim().to_string(),
        )
    })?;
    config.validate().map_err(|m| (String::new(), m))?;
    Ok(Arc::new(config))
}

/// Module kinds by name.
#[derive(Clone)]
pub struct Registry {
    kinds: BTreeMap<String, Parser>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.kinds.keys()).finish()
    }
}

impl Default for Registry {
    fn default() -> Self {
        Registry::with_builtins()
    }
}

impl Registry {
    /// A registry with no kinds.
    pub fn empty() -> Self {
        Registry {
            kinds: BTreeMap::new(),
        }
    }

    /// A registry with vxtap's own modules.
    pub fn with_builtins() -> Self {
        let mut r = Registry::empty();
        r.register::<stats::StatsConfig>("stats");
        r.register::<flowlog::FlowLogConfig>("flowlog");
        r.register::<pcap::PcapConfig>("pcap");
        r.register::<connectivity::ConnectivityConfig>("connectivity");
        r.register::<detect::DetectConfig>("detect");
        r.register::<tls::TlsConfig>("tls");
        r.register::<dns::DnsConfig>("dns");
        r.register::<http::HttpConfig>("http");
        r.register::<forward::ForwardConfig>("forward");
        r.register::<accessscope::AccessScopeConfig>("accessscope");
        r
    }

    /// Registers (or replaces) a kind.
    pub fn register<T: ModuleConfig>(&mut self, kind: &str) -> &mut Self {
        self.kinds.insert(kind.to_owned(), parse_kind::<T>);
        self
    }

    /// The registered kind names.
    pub fn kinds(&self) -> impl Iterator<Item = &str> {
        self.kinds.keys().map(String::as_str)
    }

    /// Checks every `[[module]]` table of `config` and returns their factories.
    pub fn resolve(&self, config: &Config) -> Result<Vec<ModuleSpec>, ConfigError> {
        let source = &config.source;
        config
            .modules
            .iter()
            .enumerate()
            .map(|(index, table)| self.resolve_one(index, table, source))
            .collect()
    }

    fn resolve_one(
        &self,
        index: usize,
        table: &ModuleTable,
        source: &ConfigSource,
    ) -> Result<ModuleSpec, ConfigError> {
        let Some(parse) = self.kinds.get(&table.kind) else {
            let known: Vec<_> = self.kinds().collect();
            return Err(crate::config::module_error(
                source,
                table,
                "kind",
                format!("unknown module kind; known kinds: {}", known.join(", ")),
            ));
        };
        let factory = parse(table.table.clone())
            .map_err(|(key, msg)| crate::config::module_error(source, table, &key, msg))?;
        Ok(ModuleSpec {
            kind: table.kind.clone(),
            index,
            factory,
        })
    }
}
