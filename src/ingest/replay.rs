//! Offline replay: capture files through the same pipeline and modules as a live run.
//!
//! Each record's network layer is found whatever its link type; a UDP datagram to 4789 (VXLAN) or 6081
//! (GENEVE) goes to [`Ingress::datagram`] with the captured outer source, exactly as a socket would have
//! delivered it, and anything else is a plain frame in a session named after the file. Packet time is
//! the capture's. Replay is single-threaded on the reading side and lossless (a shard that is behind
//! makes the reader wait), so the same file gives the same module output every time. Outputs are
//! merged in input order ([`PipelineBuilder::merge_outputs`](crate::pipeline::PipelineBuilder::merge_outputs)),
//! so that output is also the same bytes whatever the number of shards.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};

use thiserror::Error;

use super::pcap::{self, CaptureError, CaptureReader, InputReader, Item};
use crate::base::{DropReason, Feed, Session};
use crate::config::Config;
use crate::modules::Registry;
use crate::pipeline::{Ingress, Pipeline, PipelineError, PipelineReport, PlainSessions, ReadTurn};
use crate::session::SessionTable;
use crate::wire::link::{find_datagram, LinkType};

/// Why a replay could not run at all. Errors inside one file are reported per file instead.
#[derive(Debug, Error)]
pub enum ReplayError {
    /// The pipeline could not be built.
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
}

/// What one file contributed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileSummary {
    /// The file.
    pub path: PathBuf,
    /// Records read (frames and unusable records).
    pub records: u64,
    /// Records that were UDP datagrams to 4789 or 6081, handed over as such.
    pub encapsulated: u64,
    /// Records handed over as plain frames.
    pub plain: u64,
    /// Records that were not usable frames, counted as `bad_capture_record`.
    pub bad_records: u64,
    /// Why reading stopped early, if it did (a corrupt header; the records before it were replayed).
    pub error: Option<String>,
}

/// The outcome of a replay.
#[derive(Debug, Clone)]
pub struct ReplayReport {
    /// Per file, in the order given.
    pub files: Vec<FileSummary>,
    /// The pipeline's final counters and sessions.
    pub pipeline: PipelineReport,
    /// Names of the plain-frame sessions (one per file that had plain frames).
    pub plain_sessions: Vec<String>,
}

impl ReplayReport {
    /// Whether every file was read to its end.
    pub fn complete(&self) -> bool {
        self.files.iter().all(|f| f.error.is_none())
    }

    /// Session names, sorted: learned and static ones from the pipeline, then the plain ones.
    pub fn session_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .pipeline
            .sessions
            .iter()
            .filter(|s| s.first_seen() > 0)
            .map(|s| s.name.clone())
            .collect();
        names.sort();
        names.extend(self.plain_sessions.iter().cloned());
        names
    }
}

/// The summary a user reads at the end of `vxtap replay`: stable text, one fact per line.
impl fmt::Display for ReplayReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for file in &self.files {
            write!(
                f,
                "file {}: {} records, {} encapsulated, {} plain, {} unusable",
                file.path.display(),
                file.records,
                file.encapsulated,
                file.plain,
                file.bad_records
            )?;
            if let Some(e) = &file.error {
                write!(f, "; stopped early: {e}")?;
            }
            writeln!(f)?;
        }
        let c = &self.pipeline.counts;
        writeln!(
            f,
            "packets: {} received, {} dispatched, {} dropped",
            c.received,
            c.dispatched,
            c.dropped_total()
        )?;
        for (reason, n) in c.drops_by_reason() {
            writeln!(f, "dropped {reason}: {n}")?;
        }
        for m in &self.pipeline.modules {
            writeln!(
                f,
                "module {}: {} records, {} errors, {} dropped",
                m.kind, m.records, m.errors, m.drops
            )?;
        }
        let names = self.session_names();
        writeln!(f, "sessions: {}", names.len())?;
        for name in names {
            writeln!(f, "session {name}")?;
        }
        Ok(())
    }
}

/// Replays `files` in order through a pipeline built from `config` and `registry`, on packet time,
/// then flushes every module. `config.pipeline.shards` is used as given.
///
/// With one shard, or shards without flow tables, this thread reads and the shard threads run the
/// modules. With two or more that keep flow tables, the shard threads read too, in turns, whenever
/// one has little queued
/// ([`Shards::start_handoff_reading`](crate::pipeline::Shards::start_handoff_reading)), so that no
/// thread beyond one per shard competes for the cores; this thread only waits for the end. Why
/// the split: reading is about half the work of a replay without flow tables (stats, flowlog
/// alone), and there a reader thread that never stops beats reading in turns (0.50 against 0.53 s
/// on two cores); with flow-aware modules the shards' work dominates, and turns keep both cores
/// busy where a third thread left one idle a quarter of the time (0.69 against 0.89 s, L7 set).
pub fn replay(
    config: Config,
    registry: Registry,
    files: &[PathBuf],
) -> Result<ReplayReport, ReplayError> {
    let shards = Pipeline::builder(config)
        .registry(registry)
        .feed(Feed::Offline)
        .merge_outputs(true)
        .build()?;
    if shards.count() < 2 || !shards.track_flows() {
        let pipeline = shards.start_handoff()?;
        let mut source = Source::new(&pipeline, files);
        while source.read(usize::MAX, None) {}
        let read = source.end();
        return Ok(read.report(pipeline.finish()));
    }
    let slot: Arc<Mutex<Turns>> = Arc::new(Mutex::new(Turns::Starting));
    let turn: ReadTurn = {
        let slot = slot.clone();
        Arc::new(move |shard| take_turn(&slot, shard))
    };
    let pipeline = shards.start_handoff_reading(turn)?;
    *lock(&slot) = Turns::Reading(Box::new(Source::new(&pipeline, files)));
    // Returns once the shards have read everything, processed it and finished their modules.
    let report = pipeline.finish();
    let read = match std::mem::replace(&mut *lock(&slot), Turns::Starting) {
        Turns::Done(read) => read,
        // Every shard thread ended before the input did (they all panicked): what was read so far.
        Turns::Reading(source) => source.end(),
        Turns::Starting => Read::default(),
    };
    Ok(read.report(report))
}

/// Records a shard thread reads in one turn: enough that taking the lock, and the partly filled
/// batch sent to the reading shard at the turn's end, are rare; few enough that the other shards
/// are not kept waiting for their packets (about a fifth of a millisecond). 1,024 measured faster
/// than 512 (L7 replay 0.69 against 0.76 s, alternating, on a busy machine).
const TURN_RECORDS: usize = 1024;

/// The reading side of a replay, as the shard threads pass it around.
enum Turns {
    /// The pipeline is starting: nothing to read yet.
    Starting,
    Reading(Box<Source>),
    /// Everything was read and the ingest handle dropped (which is what ends the shards).
    Done(Read),
}

fn lock(slot: &Mutex<Turns>) -> MutexGuard<'_, Turns> {
    slot.lock().unwrap_or_else(|e| e.into_inner())
}

/// One turn at reading, if no other thread is reading and every shard has room for what a record
/// may send it (the thread taking the turn must never wait for a shard: it may be that shard).
fn take_turn(slot: &Mutex<Turns>, shard: usize) -> bool {
    let mut turns = match slot.try_lock() {
        Ok(turns) => turns,
        Err(TryLockError::WouldBlock) => return false,
        Err(TryLockError::Poisoned(poisoned)) => {
            // A turn panicked while reading: nobody can read on from there, so the input ends
            // here (the next turns end it as they would at its end), and the report says so,
            // rather than leave the shards waiting for input.
            let mut turns = poisoned.into_inner();
            if let Turns::Reading(source) = &mut *turns {
                source.stop("reading stopped: the thread reading it panicked");
            }
            slot.clear_poison();
            turns
        }
    };
    let Turns::Reading(source) = &mut *turns else {
        return false;
    };
    if source.read(TURN_RECORDS, Some(shard)) {
        return true;
    }
    if !source.ingress.has_room(1) {
        // Read to the end, but the end's mark does not fit yet.
        return false;
    }
    let Turns::Reading(source) = std::mem::replace(&mut *turns, Turns::Starting) else {
        unreachable!("matched above");
    };
    *turns = Turns::Done(source.end());
    true
}

/// What the reading side reports once it has ended.
#[derive(Debug, Default)]
struct Read {
    files: Vec<FileSummary>,
    plain_sessions: Vec<String>,
}

impl Read {
    fn report(self, pipeline: PipelineReport) -> ReplayReport {
        ReplayReport {
            files: self.files,
            pipeline,
            plain_sessions: self.plain_sessions,
        }
    }
}

/// The files to replay, the one being read, and the ingest handle they go through: read a number
/// of records at a time, by whichever thread has the turn.
struct Source {
    ingress: Ingress,
    sessions: Arc<SessionTable>,
    plain: PlainSessions,
    files: VecDeque<PathBuf>,
    open: Option<OpenFile>,
    summaries: Vec<FileSummary>,
    feeder: Feeder,
    /// Reading cannot go on (see [`Source::stop`]): the input ends here.
    stopped: bool,
}

/// The file being read.
struct OpenFile {
    reader: InputReader,
    summary: FileSummary,
    state: FileState,
}

/// What the feeding keeps per file besides its summary.
#[derive(Debug, Default)]
struct FileState {
    /// Its session for plain frames, made at the first one.
    plain: Option<Arc<Session>>,
    /// Whether an unusable record was reported already (the first is logged, the rest counted).
    warned: bool,
}

/// How often, in packet time, idle learned sessions are forgotten: as often as a live run does on the
/// wall clock, so a long capture does not fill the session table where a live run would not.
const SWEEP_SECS: u64 = 10;

impl Source {
    fn new(pipeline: &Pipeline, files: &[PathBuf]) -> Source {
        Source {
            ingress: pipeline.ingress(),
            sessions: pipeline.sessions().clone(),
            plain: pipeline.plain_sessions(),
            files: files.iter().cloned().collect(),
            open: None,
            summaries: Vec::with_capacity(files.len()),
            feeder: Feeder::default(),
            stopped: false,
        }
    }

    /// Ends the input here, `why` being the open file's error (and every file not yet read).
    fn stop(&mut self, why: &str) {
        self.close(Some(why.to_owned()));
        for path in std::mem::take(&mut self.files) {
            self.report(FileSummary {
                path,
                error: Some(why.to_owned()),
                ..FileSummary::default()
            });
        }
        self.stopped = true;
    }

    /// Reads up to `records` records, file after file; false once every file is read. In a turn of
    /// shard `turn`'s thread, also stops before a record that might have to wait for a shard, and
    /// sends that shard's batch on, full or not, as it is about to work through its queue (the
    /// others fill up in later turns, and a shard that runs out takes its own); otherwise sends
    /// every shard's.
    fn read(&mut self, records: usize, turn: Option<usize>) -> bool {
        let mut n = 0;
        let more = loop {
            if self.stopped {
                break false;
            }
            if n == records || (turn.is_some() && !self.ingress.has_room(2)) {
                break true;
            }
            let Some(file) = self.open.as_mut() else {
                match self.files.pop_front() {
                    Some(path) => self.open(&path),
                    None => break false,
                }
                continue;
            };
            let item = match file.reader.next_item() {
                Ok(Some(item)) => item,
                Ok(None) => {
                    self.close(None);
                    continue;
                }
                Err(e) => {
                    self.close(Some(e.to_string()));
                    continue;
                }
            };
            n += 1;
            self.feeder.record(
                &mut self.ingress,
                &self.sessions,
                &self.plain,
                &mut file.state,
                &mut file.summary,
                item,
            );
        };
        match turn {
            Some(shard) if more => self.ingress.send_to(shard),
            _ => self.ingress.send_pending(),
        }
        more
    }

    /// Starts reading `path` (`-` is standard input); a file that cannot be opened is reported at
    /// once.
    fn open(&mut self, path: &Path) {
        let mut summary = FileSummary {
            path: path.to_owned(),
            ..FileSummary::default()
        };
        match InputReader::open_input(path) {
            Ok(reader) => {
                self.open = Some(OpenFile {
                    reader,
                    summary,
                    state: FileState::default(),
                })
            }
            Err(e) => {
                summary.error = Some(e.to_string());
                self.report(summary);
            }
        }
    }

    /// Ends the file being read, with why it stopped early if it did.
    fn close(&mut self, error: Option<String>) {
        if let Some(mut file) = self.open.take() {
            file.summary.error = error;
            self.report(file.summary);
        }
    }

    fn report(&mut self, summary: FileSummary) {
        if let Some(error) = &summary.error {
            tracing::error!(message = "Cannot replay the whole capture.", file = %summary.path.display(), %error);
        }
        self.summaries.push(summary);
    }

    /// The end of the input: the ingest handle goes, which tells every shard, and what was read
    /// is kept for the report.
    fn end(mut self) -> Read {
        self.close(None);
        drop(self.ingress);
        Read {
            files: self.summaries,
            plain_sessions: self.feeder.plain_names,
        }
    }
}

/// Feeds capture records into an [`Ingress`]: what replay does with each record, shared with anything
/// else that reads captures into a pipeline (and with the `capture` fuzz target).
#[derive(Debug, Default)]
pub struct Feeder {
    /// Rebuilt Ethernet frames for link types without an Ethernet header; reused.
    scratch: Vec<u8>,
    plain_names: Vec<String>,
    used_names: BTreeMap<String, usize>,
    /// Packet time (seconds) of the next sweep of idle learned sessions.
    next_sweep: u64,
}

impl Feeder {
    /// Feeds every record of `reader` into `ingress`, counting them in `summary`.
    pub fn feed<R: std::io::Read>(
        &mut self,
        pipeline: &Pipeline,
        ingress: &mut Ingress,
        reader: &mut CaptureReader<R>,
        summary: &mut FileSummary,
    ) -> Result<(), CaptureError> {
        let plain = pipeline.plain_sessions();
        let mut state = FileState::default();
        while let Some(item) = reader.next_item()? {
            self.record(
                ingress,
                pipeline.sessions(),
                &plain,
                &mut state,
                summary,
                item,
            );
        }
        Ok(())
    }

    /// One record: a mirror datagram, a plain frame in the file's session, or an unusable record
    /// counted as such; idle learned sessions are swept on its packet time.
    fn record(
        &mut self,
        ingress: &mut Ingress,
        sessions: &SessionTable,
        plain: &PlainSessions,
        file: &mut FileState,
        summary: &mut FileSummary,
        item: Item<'_>,
    ) {
        summary.records += 1;
        let record = match item {
            Item::Frame(r) => r,
            Item::Bad { why } => {
                summary.bad_records += 1;
                ingress.refuse(0, DropReason::BadCaptureRecord);
                if !std::mem::replace(&mut file.warned, true) {
                    tracing::warn!(message = "Unusable capture record.", file = %summary.path.display(), record = summary.records, why);
                }
                return;
            }
        };
        let now = record.ts.secs();
        if now >= self.next_sweep {
            let first = self.next_sweep == 0;
            self.next_sweep = now + SWEEP_SECS;
            if !first && sessions.expire_idle(now) > 0 {
                // Lets the ingest handle drop its cached copies of the expired sessions.
                ingress.send_pending();
            }
        }
        let Some(l3) = pcap::l3(record.link, record.data) else {
            summary.bad_records += 1;
            ingress.refuse(record.data.len(), DropReason::BadCaptureRecord);
            if !std::mem::replace(&mut file.warned, true) {
                tracing::warn!(message = "Capture record without a readable link header.", file = %summary.path.display(), record = summary.records, link_type = record.link.code());
            }
            return;
        };
        if let Some(d) = find_datagram(record.link, record.data) {
            summary.encapsulated += 1;
            ingress.datagram(record.ts, d.source, d.encap, d.payload());
            return;
        }
        summary.plain += 1;
        let session = match &file.plain {
            Some(s) => s,
            None => {
                let name = self.plain_name(&summary.path);
                file.plain.insert(plain.session(&name))
            }
        };
        if record.link == LinkType::Ethernet {
            ingress.plain_frame(record.ts, session, record.data, record.orig_len);
        } else {
            let link_header = (record.data.len() - l3.bytes.len()) as u32;
            self.scratch.clear();
            l3.push_as_ethernet(&mut self.scratch);
            let orig = record
                .orig_len
                .saturating_sub(link_header)
                .saturating_add(14);
            ingress.plain_frame(record.ts, session, &self.scratch, orig);
        }
    }

    /// A plain session's name: the file's name, made unique if two files share it.
    fn plain_name(&mut self, path: &Path) -> String {
        let base = if path == Path::new("-") {
            "stdin".to_owned()
        } else {
            path.file_name().map_or_else(
                || path.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            )
        };
        let n = self.used_names.entry(base.clone()).or_insert(0);
        *n += 1;
        let name = if *n == 1 { base } else { format!("{base}#{n}") };
        self.plain_names.push(name.clone());
        name
    }
}
