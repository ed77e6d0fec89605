//! `[module.output.kafka]`: a module's records as Kafka messages, one topic per module, keyed by
//! mirror session.
//!
//! The shards never touch the network. Each shard's [`KafkaSink`] gathers records into a batch
//! (keys, values and packet times back to back in one buffer, reused) and hands it to the output's
//! producer thread through a bounded channel when the batch is full and at every flush (after each
//! tick, at drain). The thread sends each batch as one produce request per partition (concurrently,
//! so a batch costs one round trip), batch after batch, and retries with backoff while the brokers
//! are away. What it holds is bounded by
//! `buffer_max_bytes`: past it a shard drops the batch it was about to hand over, counted, so that
//! what is already buffered keeps its order and goes first when the brokers come back.
//!
//! A record's partition is Kafka's default for keyed records (murmur2 of the key, as the Java
//! client computes it), so one session's records stay in one partition, in the order one shard
//! wrote them, and any other producer keyed by the same name lands beside them.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use rskafka::client::partition::{Compression as WireCompression, PartitionClient};
use serde::Deserialize;

use super::Sink;
use crate::base::Timestamp;

/// The Kafka side of an output.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap brokers, `host:port`; the rest of the cluster is found through them.
    pub brokers: Vec<String>,
    /// The topic; `vxtap.<module kind>` when absent (e.g. `vxtap.flowlog`). It must exist (or the
    /// brokers must create topics on first use): vxtap does not create topics.
    #[serde(default)]
    pub topic: Option<String>,
    /// Compression of each produce request's record batch.
    #[serde(default)]
    pub compression: KafkaCompression,
    /// A shard hands its records over once they add up to this many bytes, and at every tick.
    #[serde(default = "default_batch_max_bytes")]
    pub batch_max_bytes: usize,
    /// The bounded buffer: memory of the batches handed over and not yet delivered (their
    /// buffers' capacity). Past it, new records are dropped and counted
    /// (`kafka_dropped_records{reason="buffer_full"}`).
    #[serde(default = "default_buffer_max_bytes")]
    pub buffer_max_bytes: u64,
    /// How long one attempt (connecting, a metadata lookup, a produce request with its own
    /// retries) may take before it counts as failed.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// The first wait after a failed attempt; it doubles on each failure in a row.
    #[serde(default = "default_retry_initial_ms")]
    pub retry_initial_ms: u64,
    /// The longest wait between attempts while the brokers are away.
    #[serde(default = "default_retry_max_secs")]
    pub retry_max_secs: u64,
    /// At stop, at the end of a replay and at a reload, how long the producer may still try to
    /// deliver what it holds; what is left then is dropped and counted.
    #[serde(default = "default_drain_timeout_secs")]
    pub drain_timeout_secs: u64,
    /// The client id brokers see in their logs and quotas.
    #[serde(default = "default_client_id")]
    pub client_id: String,
    /// The producer, made by the first shard's sink and shared by the others (see
    /// [`KafkaConfig::producer`]).
    #[serde(skip)]
    shared: Arc<std::sync::OnceLock<Arc<Producer>>>,
}

/// Compression codecs a produce request may use.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum KafkaCompression {
    /// None: Kafka's own default, readable by every client without codec libraries.
    #[default]
    None,
    /// gzip: the smallest, the most CPU.
    Gzip,
    /// Snappy: cheap on CPU.
    Snappy,
    /// LZ4.
    Lz4,
}

impl KafkaCompression {
    fn wire(self) -> WireCompression {
        match self {
            KafkaCompression::None => WireCompression::NoCompression,
            KafkaCompression::Gzip => WireCompression::Gzip,
            KafkaCompression::Snappy => WireCompression::Snappy,
            KafkaCompression::Lz4 => WireCompression::Lz4,
        }
    }
}

fn default_batch_max_bytes() -> usize {
    256 << 10
}
fn default_buffer_max_bytes() -> u64 {
    64 << 20
}
fn default_timeout_secs() -> u64 {
    10
}
fn default_retry_initial_ms() -> u64 {
    500
}
fn default_retry_max_secs() -> u64 {
    30
}
fn default_drain_timeout_secs() -> u64 {
    10
}
fn default_client_id() -> String {
    "vxtap".into()
}

/// Kafka's limit on a topic name's length.
const TOPIC_MAX: usize = 249;

impl KafkaConfig {
    /// An output to `brokers` with the defaults.
    pub fn new(brokers: Vec<String>) -> Self {
        KafkaConfig {
            brokers,
            topic: None,
            compression: KafkaCompression::default(),
            batch_max_bytes: default_batch_max_bytes(),
            buffer_max_bytes: default_buffer_max_bytes(),
            timeout_secs: default_timeout_secs(),
            retry_initial_ms: default_retry_initial_ms(),
            retry_max_secs: default_retry_max_secs(),
            drain_timeout_secs: default_drain_timeout_secs(),
            client_id: default_client_id(),
            shared: Arc::default(),
        }
    }

    /// Checks values serde cannot; messages start with the key.
    pub fn validate(&self) -> Result<(), String> {
        if self.brokers.is_empty() {
            return Err("output.kafka.brokers: needs at least one host:port".into());
        }
        for b in &self.brokers {
            let port = b
                .rsplit_once(':')
                .map(|(host, port)| (host, port.parse::<u16>()));
            if !matches!(port, Some((host, Ok(p))) if !host.is_empty() && p > 0) {
                return Err(format!(
                    "output.kafka.brokers: {b:?} is not host:port (e.g. \"10.0.0.5:9092\")"
                ));
            }
        }
        if let Some(t) = &self.topic {
            check_topic(t).map_err(|m| format!("output.kafka.topic: {m}"))?;
        }
        if !(1024..=16 << 20).contains(&self.batch_max_bytes) {
            return Err(format!(
                "output.kafka.batch_max_bytes: {} is not in 1024..=16777216",
                self.batch_max_bytes
            ));
        }
        if self.buffer_max_bytes < 2 * self.batch_max_bytes as u64 {
            return Err(format!(
                "output.kafka.buffer_max_bytes: {} is less than twice batch_max_bytes ({}): a full batch (and its index) would not fit",
                self.buffer_max_bytes, self.batch_max_bytes
            ));
        }
        // Upper bounds keep every wait and deadline far from Duration's and Instant's limits.
        let bounds = [
            ("timeout_secs", self.timeout_secs, 3_600),
            ("retry_initial_ms", self.retry_initial_ms, 3_600_000),
            ("retry_max_secs", self.retry_max_secs, 86_400),
            ("drain_timeout_secs", self.drain_timeout_secs, 3_600),
        ];
        for (key, value, max) in bounds {
            if value == 0 || value > max {
                return Err(format!("output.kafka.{key}: {value} is not in 1..={max}"));
            }
        }
        if self.client_id.is_empty() {
            return Err("output.kafka.client_id: must not be empty".into());
        }
        Ok(())
    }

    /// The output's producer, started by the first call (with `module` naming the default topic);
    /// every shard's sink shares it.
    pub fn producer(&self, module: &str) -> std::io::Result<Arc<Producer>> {
        if let Some(p) = self.shared.get() {
            return Ok(p.clone());
        }
        // Two shards building at once could both get here: only the winner starts a thread.
        static STARTING: Mutex<()> = Mutex::new(());
        let _guard = lock(&STARTING);
        if let Some(p) = self.shared.get() {
            return Ok(p.clone());
        }
        let topic = match &self.topic {
            Some(t) => t.clone(),
            None => {
                let t = format!("vxtap.{module}");
                check_topic(&t).map_err(|m| {
                    std::io::Error::other(format!(
                        "output.kafka: no topic given, and the default {t:?} is not one: {m}"
                    ))
                })?;
                t
            }
        };
        let producer = Producer::start(self, topic)?;
        Ok(self.shared.get_or_init(|| producer).clone())
    }

    /// The producer, once a sink has started it.
    pub fn started(&self) -> Option<Arc<Producer>> {
        self.shared.get().cloned()
    }
}

fn check_topic(t: &str) -> Result<(), String> {
    if t.is_empty() || t.len() > TOPIC_MAX || t == "." || t == ".." {
        return Err(format!(
            "{t:?} is not a topic name (1 to {TOPIC_MAX} characters)"
        ));
    }
    if let Some(c) = t
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "{t:?} has {c:?}; a topic name has ASCII letters, digits, '.', '_' and '-'"
        ));
    }
    Ok(())
}

/// Kafka's default partitioner for keyed records: murmur2 (seed `0x9747b28c`) over the key, as
/// the Java client's `Utils.murmur2` computes it, so vxtap and any other producer agree on where a
/// key goes.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h = SEED ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= u32::from(rest[2]) << 16;
    }
    if rest.len() >= 2 {
        h ^= u32::from(rest[1]) << 8;
    }
    if !rest.is_empty() {
        h ^= u32::from(rest[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition of `key` among `partitions`, as Kafka's default partitioner picks it.
pub fn partition_of(key: &[u8], partitions: usize) -> usize {
    ((murmur2(key) & 0x7fff_ffff) as u32 as usize) % partitions.max(1)
}

/// What an output's producer did since the last report; see [`Producer::take_counts`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct KafkaCounts {
    /// Records the brokers acknowledged.
    pub delivered: u64,
    /// Their bytes (keys and values, before compression).
    pub delivered_bytes: u64,
    /// Records dropped because the buffer was full (brokers away or too slow).
    pub dropped_full: u64,
    /// Records the brokers refused for good (too large, invalid): retrying cannot help.
    pub rejected: u64,
    /// Records still undelivered when a stop's, a replay's or a reload's wait ran out.
    pub undelivered: u64,
    /// Attempts that failed (each retry counts).
    pub errors: u64,
}

impl KafkaCounts {
    /// Whether there is nothing to report.
    pub fn is_empty(&self) -> bool {
        *self == KafkaCounts::default()
    }

    /// Adds `o` to these counts (a replay's merge sums what its sink reported per segment).
    pub fn add(&mut self, o: KafkaCounts) {
        self.delivered += o.delivered;
        self.delivered_bytes += o.delivered_bytes;
        self.dropped_full += o.dropped_full;
        self.rejected += o.rejected;
        self.undelivered += o.undelivered;
        self.errors += o.errors;
    }

    /// Every record dropped, whatever the reason.
    pub fn dropped(&self) -> u64 {
        self.dropped_full + self.rejected + self.undelivered
    }

    fn minus(&self, o: &KafkaCounts) -> KafkaCounts {
        KafkaCounts {
            delivered: self.delivered.saturating_sub(o.delivered),
            delivered_bytes: self.delivered_bytes.saturating_sub(o.delivered_bytes),
            dropped_full: self.dropped_full.saturating_sub(o.dropped_full),
            rejected: self.rejected.saturating_sub(o.rejected),
            undelivered: self.undelivered.saturating_sub(o.undelivered),
            errors: self.errors.saturating_sub(o.errors),
        }
    }
}

#[derive(Debug, Default)]
struct Stats {
    delivered: AtomicU64,
    delivered_bytes: AtomicU64,
    dropped_full: AtomicU64,
    rejected: AtomicU64,
    undelivered: AtomicU64,
    errors: AtomicU64,
    /// Memory of the batches handed over and not yet delivered or dropped ([`Batch::held`]): what
    /// `buffer_max_bytes` bounds.
    buffered: AtomicU64,
}

impl Stats {
    fn totals(&self) -> KafkaCounts {
        KafkaCounts {
            delivered: self.delivered.load(Ordering::Relaxed),
            delivered_bytes: self.delivered_bytes.load(Ordering::Relaxed),
            dropped_full: self.dropped_full.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            undelivered: self.undelivered.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
        }
    }
}

/// One shard's records on their way: keys and values back to back in `data`, described by
/// `records`. Batches go back and forth between the shards and the thread, so their buffers are
/// reused.
#[derive(Debug, Default)]
struct Batch {
    data: Vec<u8>,
    records: Vec<Entry>,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    /// Key length; `u32::MAX` for a record without a key.
    key: u32,
    value: u32,
    /// Packet time, milliseconds since the epoch: the record's Kafka timestamp.
    ts_ms: i64,
}

const NO_KEY: u32 = u32::MAX;

impl Batch {
    fn clear(&mut self) {
        self.data.clear();
        self.records.clear();
    }

    /// The memory the batch holds, which `buffer_max_bytes` bounds: its buffers' capacity, not
    /// just the records in them.
    fn held(&self) -> u64 {
        (self.data.capacity() + self.records.capacity() * std::mem::size_of::<Entry>()) as u64
    }

    /// Each record's key (if any) and value.
    fn iter(&self) -> impl Iterator<Item = (Option<&[u8]>, &[u8], i64)> {
        let mut at = 0;
        self.records.iter().map(move |e| {
            let key = (e.key != NO_KEY).then(|| {
                let k = &self.data[at..at + e.key as usize];
                at += e.key as usize;
                k
            });
            let value = &self.data[at..at + e.value as usize];
            at += e.value as usize;
            (key, value, e.ts_ms)
        })
    }
}

/// Batches in the channel at most; the byte bound is `buffer_max_bytes`, this only keeps the
/// channel itself finite when batches are small.
const QUEUE: usize = 4096;
/// Empty batches kept for reuse.
const SPARES: usize = 64;

/// An output's producer: the channel into its thread and what it counts.
#[derive(Debug)]
pub struct Producer {
    tx: Sender<Batch>,
    spares: Receiver<Batch>,
    stats: Arc<Stats>,
    control: Arc<Control>,
    buffer_max: u64,
    batch_max: usize,
    topic: String,
    /// Counts taken so far by sinks, so each delta is reported once.
    reported: Mutex<KafkaCounts>,
}

/// What [`finish_kafka`] shares with a thread, apart from the [`Producer`] because the thread
/// outlives it (see `s3.rs`'s `Control`).
#[derive(Debug)]
struct Control {
    topic: String,
    stats: Arc<Stats>,
    finishing: AtomicBool,
    done: AtomicBool,
}

/// Every producer thread of the process that has not ended, for [`finish_kafka`].
static PRODUCERS: Mutex<Vec<Arc<Control>>> = Mutex::new(Vec::new());

impl Producer {
    fn start(config: &KafkaConfig, topic: String) -> std::io::Result<Arc<Producer>> {
        let (tx, rx) = crossbeam_channel::bounded(QUEUE);
        let (spare_tx, spares) = crossbeam_channel::bounded(SPARES);
        let stats = Arc::new(Stats::default());
        let control = Arc::new(Control {
            topic: topic.clone(),
            stats: stats.clone(),
            finishing: AtomicBool::new(false),
            done: AtomicBool::new(false),
        });
        let worker = Worker {
            config: config.clone(),
            topic: topic.clone(),
            rx,
            spares: spare_tx,
            stats: stats.clone(),
            control: control.clone(),
            queue: VecDeque::new(),
            conn: None,
        };
        std::thread::Builder::new()
            .name("vxtap-kafka".into())
            .spawn(move || worker.run())?;
        let mut all = lock(&PRODUCERS);
        all.retain(|c| !c.done.load(Ordering::Relaxed));
        all.push(control.clone());
        drop(all);
        Ok(Arc::new(Producer {
            tx,
            spares,
            stats,
            control,
            buffer_max: config.buffer_max_bytes,
            batch_max: config.batch_max_bytes,
            topic,
            reported: Mutex::default(),
        }))
    }

    /// The topic records go to.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The counts not yet taken by any sink of this output: the thread is no module, so a module's
    /// sink reports them as the module's counters, each delta once.
    pub fn take_counts(&self) -> KafkaCounts {
        let now = self.stats.totals();
        let mut reported = lock(&self.reported);
        let delta = now.minus(&reported);
        *reported = now;
        delta
    }

    /// Running totals since start.
    pub fn totals(&self) -> KafkaCounts {
        self.stats.totals()
    }

    /// Memory held by batches handed over and not yet delivered or dropped.
    pub fn buffered_bytes(&self) -> u64 {
        self.stats.buffered.load(Ordering::Relaxed)
    }

    /// Hands `batch` to the thread without waiting, or drops it (counted) when the buffer is full.
    fn hand_over(&self, batch: Batch) {
        let bytes = batch.held();
        let records = batch.records.len() as u64;
        let before = self.stats.buffered.fetch_add(bytes, Ordering::Relaxed);
        if before + bytes > self.buffer_max || self.control.done.load(Ordering::Relaxed) {
            self.refuse(bytes, records);
            return;
        }
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = self.tx.try_send(batch)
        {
            self.refuse(bytes, records);
        }
    }

    fn refuse(&self, bytes: u64, records: u64) {
        self.stats.buffered.fetch_sub(bytes, Ordering::Relaxed);
        self.stats
            .dropped_full
            .fetch_add(records, Ordering::Relaxed);
    }

    fn empty_batch(&self) -> Batch {
        // Small to start with: a quiet shard hands over a few records per tick, and the buffer
        // counts capacity. A batch grows to batch_max_bytes when the traffic fills it.
        self.spares.try_recv().unwrap_or_else(|_| Batch {
            data: Vec::with_capacity(self.batch_max.min(16 << 10)),
            records: Vec::with_capacity(64),
        })
    }
}

/// What the producers of the process did, at [`finish_kafka`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaSummary {
    /// The topic.
    pub topic: String,
    /// Totals since the producer started.
    pub counts: KafkaCounts,
}

/// Waits up to `timeout` for every producer to deliver what it holds (called at the end of a
/// replay and at stop, after the shards' last flush), then stops the threads; each gives up on
/// its own after its `drain_timeout_secs` and counts what is left as undelivered. Returns each
/// producer's totals, for the replay's summary and the exit log.
pub fn finish_kafka(timeout: Duration) -> Vec<KafkaSummary> {
    let producers: Vec<Arc<Control>> = lock(&PRODUCERS).clone();
    for p in &producers {
        p.finishing.store(true, Ordering::Relaxed);
    }
    let deadline = Instant::now() + timeout;
    while !producers.iter().all(|p| p.done.load(Ordering::Relaxed)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut all = lock(&PRODUCERS);
    all.retain(|c| !c.done.load(Ordering::Relaxed));
    drop(all);
    producers
        .iter()
        .map(|p| {
            let counts = p.stats.totals();
            let left = p.stats.buffered.load(Ordering::Relaxed);
            if !p.done.load(Ordering::Relaxed) && left > 0 {
                // Still trying when the process gives up: what it holds is lost with it.
                tracing::warn!(
                    message = "A Kafka producer did not finish in time; what it holds is lost.",
                    topic = %p.topic,
                    buffered_bytes = left,
                );
            }
            KafkaSummary {
                topic: p.topic.clone(),
                counts,
            }
        })
        .collect()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A connection to the cluster: one client per partition of the topic, in partition order.
struct Conn {
    partitions: Vec<Arc<PartitionClient>>,
}

/// A batch being sent: its records grouped by partition, each group removed once acknowledged,
/// so a retry after a partial failure sends only what is missing.
struct Pending {
    batch: Batch,
    /// Partition count the groups were made for.
    partitions: usize,
    groups: Vec<(usize, Vec<rskafka::record::Record>, u64)>,
}

struct Worker {
    config: KafkaConfig,
    topic: String,
    rx: Receiver<Batch>,
    spares: Sender<Batch>,
    stats: Arc<Stats>,
    control: Arc<Control>,
    queue: VecDeque<Pending>,
    conn: Option<Conn>,
}

#[derive(Debug, thiserror::Error)]
enum SendError {
    #[error("{0}")]
    Retry(String),
    #[error("{0}")]
    Rejected(String),
}

impl Worker {
    fn run(mut self) {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(r) => r,
            Err(error) => {
                tracing::error!(message = "Cannot start the Kafka producer.", %error);
                self.control.done.store(true, Ordering::Relaxed);
                return;
            }
        };
        let initial = Duration::from_millis(self.config.retry_initial_ms);
        let max = Duration::from_secs(self.config.retry_max_secs);
        let drain = Duration::from_secs(self.config.drain_timeout_secs);
        let mut backoff = initial;
        // Set once the output is gone (reload, end of a replay) or the process stops.
        let mut give_up_at: Option<Instant> = None;
        let mut disconnected = false;
        loop {
            while let Ok(b) = self.rx.try_recv() {
                self.add(b);
            }
            if give_up_at.is_none() && self.control.finishing.load(Ordering::Relaxed) {
                give_up_at = Some(Instant::now() + drain);
            }
            if self.queue.is_empty() {
                if give_up_at.is_some() || disconnected {
                    break;
                }
                match self.rx.recv_timeout(Duration::from_millis(200)) {
                    Ok(b) => self.add(b),
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => {
                        disconnected = true;
                        give_up_at.get_or_insert_with(|| Instant::now() + drain);
                    }
                }
                continue;
            }
            if give_up_at.is_some_and(|t| Instant::now() >= t) {
                break;
            }
            match runtime.block_on(self.send_front()) {
                Ok(()) => backoff = initial,
                Err(SendError::Rejected(error)) => {
                    tracing::warn!(
                        message = "Kafka refused records for good; dropped.",
                        topic = %self.topic,
                        %error,
                    );
                }
                Err(SendError::Retry(error)) => {
                    self.stats.errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        message = "Failed to deliver records to Kafka; retrying.",
                        topic = %self.topic,
                        %error,
                        retry_in_ms = backoff.as_millis() as u64,
                        buffered_bytes = self.stats.buffered.load(Ordering::Relaxed),
                    );
                    self.sleep(backoff, give_up_at);
                    backoff = backoff.saturating_mul(2).min(max);
                }
            }
        }
        // What could not be sent in time is lost: counted, and said once.
        let mut left = 0;
        while let Ok(b) = self.rx.try_recv() {
            self.add(b);
        }
        for p in self.queue.drain(..) {
            left += if p.partitions == 0 {
                // Never tried: every record is still there.
                p.batch.records.len() as u64
            } else {
                p.groups.iter().map(|g| g.1.len() as u64).sum::<u64>()
            };
            self.stats
                .buffered
                .fetch_sub(p.batch.held(), Ordering::Relaxed);
        }
        if left > 0 {
            self.stats.undelivered.fetch_add(left, Ordering::Relaxed);
            tracing::warn!(
                message = "Kafka records still undelivered when the wait ran out; dropped.",
                topic = %self.topic,
                records = left,
            );
        }
        self.control.done.store(true, Ordering::Relaxed);
    }

    fn add(&mut self, batch: Batch) {
        self.queue.push_back(Pending {
            batch,
            partitions: 0,
            groups: Vec::new(),
        });
    }

    /// Waits out a backoff while taking batches off the channel, so shards never find it full
    /// because the brokers are away; the end of a drain cuts the wait short.
    fn sleep(&mut self, wait: Duration, give_up_at: Option<Instant>) {
        let mut until = Instant::now() + wait;
        if let Some(t) = give_up_at {
            until = until.min(t);
        }
        loop {
            let now = Instant::now();
            if now >= until {
                return;
            }
            if give_up_at.is_none() && self.control.finishing.load(Ordering::Relaxed) {
                return;
            }
            match self
                .rx
                .recv_timeout((until - now).min(Duration::from_millis(100)))
            {
                Ok(b) => self.add(b),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    std::thread::sleep((until - now).min(Duration::from_millis(100)))
                }
            }
        }
    }

    async fn connect(&self) -> Result<Conn, String> {
        let timeout = Duration::from_secs(self.config.timeout_secs);
        let backoff = rskafka::BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            base: 2.0,
            deadline: Some(timeout),
        };
        let work = async {
            let client = rskafka::client::ClientBuilder::new(self.config.brokers.clone())
                .client_id(self.config.client_id.as_str())
                .backoff_config(backoff)
                .build()
                .await
                .map_err(|e| format!("connecting to {:?}: {e}", self.config.brokers))?;
            let topics = client
                .list_topics()
                .await
                .map_err(|e| format!("listing topics: {e}"))?;
            let Some(topic) = topics.into_iter().find(|t| t.name == self.topic) else {
                return Err(format!("topic {:?} does not exist", self.topic));
            };
            let mut partitions = Vec::with_capacity(topic.partitions.len());
            // Partition ids run from 0; the default partitioner indexes them so.
            for p in 0..topic.partitions.len() as i32 {
                if !topic.partitions.contains(&p) {
                    return Err(format!("topic {:?} has no partition {p}", self.topic));
                }
                let client = client
                    .partition_client(
                        self.topic.clone(),
                        p,
                        rskafka::client::partition::UnknownTopicHandling::Retry,
                    )
                    .await
                    .map_err(|e| format!("partition {p}: {e}"))?;
                partitions.push(Arc::new(client));
            }
            if partitions.is_empty() {
                return Err(format!("topic {:?} has no partitions", self.topic));
            }
            Ok(Conn { partitions })
        };
        tokio::time::timeout(timeout * 2, work)
            .await
            .map_err(|_| format!("no answer from {:?} in time", self.config.brokers))?
    }

    /// Sends the oldest batch, group by group; a batch leaves the queue only when every group is
    /// acknowledged or refused for good.
    async fn send_front(&mut self) -> Result<(), SendError> {
        if self.conn.is_none() {
            self.conn = Some(self.connect().await.map_err(SendError::Retry)?);
        }
        let partitions = self.conn.as_ref().map_or(1, |c| c.partitions.len());
        let compression = self.config.compression.wire();
        let timeout = Duration::from_secs(self.config.timeout_secs);
        let Some(front) = self.queue.front_mut() else {
            return Ok(());
        };
        if front.partitions != partitions {
            // New, or the topic's partition count changed since: (re)group what is still unsent.
            front.groups = group(&front.batch, partitions);
            front.partitions = partitions;
        }
        // One request per partition, all at once: a batch costs one round trip, not one per
        // partition; order within a partition is kept, as batches go one after another.
        let conn = self.conn.as_ref().expect("connected above");
        let mut tasks = tokio::task::JoinSet::new();
        for (i, (p, records, _)) in front.groups.iter().enumerate() {
            let client = conn.partitions[*p].clone();
            let records = records.clone();
            tasks.spawn(async move {
                let sent = client.produce(records, compression);
                (i, tokio::time::timeout(timeout * 2, sent).await)
            });
        }
        let (mut finished, mut rejected, mut retry, mut relookup) = (Vec::new(), None, None, false);
        while let Some(joined) = tasks.join_next().await {
            let Ok((i, sent)) = joined else {
                retry.get_or_insert_with(|| "a produce task failed".to_owned());
                continue;
            };
            let (p, n, bytes) = {
                let g = &front.groups[i];
                (g.0, g.1.len() as u64, g.2)
            };
            match sent {
                Ok(Ok(_offsets)) => {
                    self.stats.delivered.fetch_add(n, Ordering::Relaxed);
                    self.stats
                        .delivered_bytes
                        .fetch_add(bytes, Ordering::Relaxed);
                    finished.push(i);
                }
                Ok(Err(e)) if permanent(&e) => {
                    self.stats.rejected.fetch_add(n, Ordering::Relaxed);
                    rejected = Some(format!("partition {p}: {e}"));
                    finished.push(i);
                }
                Ok(Err(e)) => {
                    relookup |= stale(&e);
                    retry.get_or_insert_with(|| format!("partition {p}: {e}"));
                }
                Err(_) => {
                    retry.get_or_insert_with(|| {
                        format!("partition {p}: no acknowledgement in time")
                    });
                }
            }
        }
        // What is acknowledged (or refused for good) is never sent again.
        finished.sort_unstable();
        for i in finished.into_iter().rev() {
            front.groups.remove(i);
        }
        if relookup {
            self.conn = None;
        }
        if let Some(e) = retry {
            if let Some(r) = rejected {
                tracing::warn!(message = "Kafka refused records for good; dropped.", topic = %self.topic, error = %r);
            }
            return Err(SendError::Retry(e));
        }
        if let Some(mut done) = self.queue.pop_front() {
            self.stats
                .buffered
                .fetch_sub(done.batch.held(), Ordering::Relaxed);
            done.batch.clear();
            let _ = self.spares.try_send(done.batch);
        }
        match rejected {
            Some(e) => Err(SendError::Rejected(e)),
            None => Ok(()),
        }
    }
}

/// The records of `batch` by partition: keyed ones where the default partitioner puts them,
/// unkeyed ones together in the batch's own partition (Kafka's "sticky" choice, one per batch).
/// Order within a partition is the batch's.
fn group(batch: &Batch, partitions: usize) -> Vec<(usize, Vec<rskafka::record::Record>, u64)> {
    use rskafka::chrono::{TimeZone, Utc};
    let sticky = (batch.data.len() + batch.records.len()) % partitions.max(1);
    let mut by: Vec<(usize, Vec<rskafka::record::Record>, u64)> = Vec::new();
    for (key, value, ts) in batch.iter() {
        let p = key.map_or(sticky, |k| partition_of(k, partitions));
        let record = rskafka::record::Record {
            key: key.map(<[u8]>::to_vec),
            value: Some(value.to_vec()),
            headers: Default::default(),
            timestamp: Utc
                .timestamp_millis_opt(ts)
                .single()
                .unwrap_or_else(Utc::now),
        };
        let bytes = (key.map_or(0, <[u8]>::len) + value.len()) as u64;
        match by.iter_mut().find(|g| g.0 == p) {
            Some(g) => {
                g.1.push(record);
                g.2 += bytes;
            }
            None => by.push((p, vec![record], bytes)),
        }
    }
    by
}

/// Errors no retry can mend: the records themselves are refused.
fn permanent(e: &rskafka::client::error::Error) -> bool {
    use rskafka::client::error::{Error, ProtocolError};
    matches!(
        e,
        Error::ServerError {
            protocol_error: ProtocolError::MessageTooLarge
                | ProtocolError::RecordListTooLarge
                | ProtocolError::InvalidRecord
                | ProtocolError::CorruptMessage
                | ProtocolError::InvalidTimestamp
                | ProtocolError::TopicAuthorizationFailed,
            ..
        }
    )
}

/// Errors after which the topic's layout should be looked up again.
fn stale(e: &rskafka::client::error::Error) -> bool {
    use rskafka::client::error::{Error, ProtocolError};
    matches!(
        e,
        Error::ServerError {
            protocol_error: ProtocolError::UnknownTopicOrPartition,
            ..
        }
    )
}

/// One shard's sink into a Kafka output.
#[derive(Debug)]
pub struct KafkaSink {
    producer: Arc<Producer>,
    batch: Batch,
}

impl KafkaSink {
    /// A sink handing its records to `producer`.
    pub fn new(producer: Arc<Producer>) -> Self {
        let batch = producer.empty_batch();
        KafkaSink { producer, batch }
    }

    fn push(&mut self, now: Timestamp, key: Option<&[u8]>, record: &[u8]) -> std::io::Result<()> {
        // A record is a line for files; a message needs no terminator.
        let value = record.strip_suffix(b"\n").unwrap_or(record);
        let too_long = |n: usize| {
            u32::try_from(n)
                .ok()
                .filter(|&n| n != NO_KEY)
                .ok_or_else(|| std::io::Error::other("a record over 4 GiB"))
        };
        let key_len = match key {
            Some(k) => too_long(k.len())?,
            None => NO_KEY,
        };
        let value_len = too_long(value.len())?;
        if !self.batch.records.is_empty()
            && self.batch.data.len() + key.map_or(0, <[u8]>::len) + value.len()
                > self.producer.batch_max
        {
            self.hand_over();
        }
        if let Some(k) = key {
            self.batch.data.extend_from_slice(k);
        }
        self.batch.data.extend_from_slice(value);
        self.batch.records.push(Entry {
            key: key_len,
            value: value_len,
            ts_ms: (now.nanos() / 1_000_000) as i64,
        });
        Ok(())
    }

    fn hand_over(&mut self) {
        if self.batch.records.is_empty() {
            return;
        }
        let next = self.producer.empty_batch();
        let full = std::mem::replace(&mut self.batch, next);
        self.producer.hand_over(full);
    }
}

impl Sink for KafkaSink {
    fn write(&mut self, now: Timestamp, record: &[u8]) -> std::io::Result<()> {
        self.push(now, None, record)
    }
    fn write_keyed(&mut self, now: Timestamp, key: &[u8], record: &[u8]) -> std::io::Result<()> {
        self.push(now, Some(key), record)
    }
    fn flush(&mut self, _now: Timestamp) -> std::io::Result<()> {
        self.hand_over();
        Ok(())
    }
    fn take_kafka(&mut self) -> KafkaCounts {
        self.producer.take_counts()
    }
}

impl Drop for KafkaSink {
    fn drop(&mut self) {
        // Whatever a sink still holds when it goes (a reload, the end of a run) goes too.
        self.hand_over();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_kafkas_partitioner() {
        // Values of the Java client's Utils.murmur2 (also kafka-python's), as signed ints.
        assert_eq!(murmur2(b"21"), -973_932_308);
        assert_eq!(murmur2(b"foobar"), -790_332_482);
        assert_eq!(murmur2(b"a-little-bit-long-string"), -985_981_536);
        assert_eq!(murmur2(b"a-little-bit-longer-string"), -1_486_304_829);
        assert_eq!(
            murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8"),
            -58_897_971
        );
        assert_eq!(murmur2(b"abc"), 479_470_107);
        for n in 1..8 {
            assert!(partition_of(b"eni-0123", n) < n);
        }
    }

    #[test]
    fn a_batch_keeps_keys_values_and_times_apart() {
        let mut b = Batch::default();
        let mut push = |key: Option<&[u8]>, value: &[u8], ts: i64| {
            if let Some(k) = key {
                b.data.extend_from_slice(k);
            }
            b.data.extend_from_slice(value);
            b.records.push(Entry {
                key: key.map_or(NO_KEY, |k| k.len() as u32),
                value: value.len() as u32,
                ts_ms: ts,
            });
        };
        push(Some(b"s1"), b"one", 1);
        push(None, b"two", 2);
        push(Some(b""), b"", 3);
        let all: Vec<_> = b.iter().collect();
        assert_eq!(
            all,
            [
                (Some(&b"s1"[..]), &b"one"[..], 1),
                (None, &b"two"[..], 2),
                (Some(&b""[..]), &b""[..], 3)
            ]
        );
        let groups = group(&b, 1);
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0].1.len(), 3);
        assert_eq!(groups[0].2, 8);
    }

    #[test]
    fn wrong_settings_name_their_key() {
        let base = KafkaConfig::new(vec!["127.0.0.1:9092".into()]);
        assert!(base.validate().is_ok());
        let err = |f: &dyn Fn(&mut KafkaConfig)| {
            let mut c = base.clone();
            f(&mut c);
            c.validate().unwrap_err()
        };
        assert!(err(&|c| c.brokers.clear()).contains("output.kafka.brokers"));
        assert!(err(&|c| c.brokers = vec!["localhost".into()]).contains("not host:port"));
        assert!(err(&|c| c.topic = Some("a b".into())).contains("output.kafka.topic"));
        assert!(err(&|c| c.batch_max_bytes = 10).contains("batch_max_bytes"));
        assert!(err(&|c| c.buffer_max_bytes = 300_000).contains("twice batch_max_bytes"));
        assert!(err(&|c| c.timeout_secs = 0).contains("output.kafka.timeout_secs"));
    }
}
