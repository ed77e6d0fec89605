//! Offline replay: capture files through the same pipeline and modules as a live run.
//!
//! Each record's network layer is found whatever its link type; a UDP datagram to 4789 (VXLAN) or 6081
//! (GENEVE) goes to [`Ingress::datagram`] with the captured outer source, exactly as a socket would have
//! delivered it, and anything else is a plain frame in a session named after the file. Packet time is
//! the capture's. Replay is single-threaded on the reading side and lossless (a shard that is behind
//! makes the reader wait), so the same file gives the same module output every time. Outputs are
//! merged in input order ([`PipelineBuilder::merge_outputs`](crate::pipeline::PipelineBuilder::merge_outputs)),
//! so that output is also the same bytes whatever the number of shards.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use thiserror::Error;

use super::pcap::{self, CaptureError, CaptureReader, Item};
use crate::base::{DropReason, Feed, Session};
use crate::config::Config;
use crate::modules::Registry;
use crate::pipeline::{Ingress, Pipeline, PipelineError, PipelineReport};
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
pub fn replay(
    config: Config,
    registry: Registry,
    files: &[PathBuf],
) -> Result<ReplayReport, ReplayError> {
    let pipeline = Pipeline::builder(config)
        .registry(registry)
        .feed(Feed::Offline)
        .merge_outputs(true)
        .build()?
        .start_handoff()?;
    let mut ingress = pipeline.ingress();
    let mut feeder = Feeder::default();
    let mut summaries = Vec::with_capacity(files.len());
    for path in files {
        summaries.push(feeder.feed_file(&pipeline, &mut ingress, path));
    }
    drop(ingress);
    let pipeline = pipeline.finish();
    Ok(ReplayReport {
        files: summaries,
        pipeline,
        plain_sessions: feeder.plain_names,
    })
}

/// Feeds capture records into an [`Ingress`]: the part of replay shared with anything else that reads
/// captures into a pipeline.
#[derive(Debug, Default)]
pub struct Feeder {
    /// Rebuilt Ethernet frames for link types without an Ethernet header; reused.
    scratch: Vec<u8>,
    plain_names: Vec<String>,
    used_names: BTreeMap<String, usize>,
    /// Packet time (seconds) of the next sweep of idle learned sessions.
    next_sweep: u64,
}

/// How often, in packet time, idle learned sessions are forgotten: as often as a live run does on the
/// wall clock, so a long capture does not fill the session table where a live run would not.
const SWEEP_SECS: u64 = 10;

impl Feeder {
    /// Opens and feeds one file (`-` is standard input); problems are in the returned summary.
    pub fn feed_file(
        &mut self,
        pipeline: &Pipeline,
        ingress: &mut Ingress,
        path: &Path,
    ) -> FileSummary {
        let mut summary = FileSummary {
            path: path.to_owned(),
            ..FileSummary::default()
        };
        let result = if path == Path::new("-") {
            // A capture streamed on stdin: `tcpdump -w - ... | vxtap replay -`.
            let stdin = std::io::stdin().lock();
            CaptureReader::with_window(stdin, path, pcap::READ_BUFFER)
                .and_then(|mut reader| self.feed(pipeline, ingress, &mut reader, &mut summary))
        } else {
            CaptureReader::open(path)
                .and_then(|mut reader| self.feed(pipeline, ingress, &mut reader, &mut summary))
        };
        if let Err(e) = result {
            summary.error = Some(e.to_string());
        }
        if let Some(error) = &summary.error {
            tracing::error!(message = "Cannot replay the whole capture.", file = %path.display(), %error);
        }
        summary
    }

    /// Feeds every record of `reader`.
    pub fn feed<R: Read>(
        &mut self,
        pipeline: &Pipeline,
        ingress: &mut Ingress,
        reader: &mut CaptureReader<R>,
        summary: &mut FileSummary,
    ) -> Result<(), CaptureError> {
        let mut plain: Option<Arc<Session>> = None;
        let mut warned = false;
        let path = reader.path().to_owned();
        while let Some(item) = reader.next_item()? {
            summary.records += 1;
            let record = match item {
                Item::Frame(r) => {
                    self.sweep(pipeline, ingress, r.ts.secs());
                    r
                }
                Item::Bad { why } => {
                    summary.bad_records += 1;
                    ingress.refuse(0, DropReason::BadCaptureRecord);
                    if !warned {
                        warned = true;
                        tracing::warn!(message = "Unusable capture record.", file = %path.display(), record = summary.records, why);
                    }
                    continue;
                }
            };
            let Some(l3) = pcap::l3(record.link, record.data) else {
                summary.bad_records += 1;
                ingress.refuse(record.data.len(), DropReason::BadCaptureRecord);
                if !warned {
                    warned = true;
                    tracing::warn!(message = "Capture record without a readable link header.", file = %path.display(), record = summary.records, link_type = record.link.code());
                }
                continue;
            };
            if let Some(d) = find_datagram(record.link, record.data) {
                summary.encapsulated += 1;
                ingress.datagram(record.ts, d.source, d.encap, d.payload());
                continue;
            }
            summary.plain += 1;
            let session = plain.get_or_insert_with(|| {
                let name = self.plain_name(&path);
                pipeline.plain_session(&name)
            });
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
        Ok(())
    }

    fn sweep(&mut self, pipeline: &Pipeline, ingress: &mut Ingress, now: u64) {
        if now < self.next_sweep {
            return;
        }
        let first = self.next_sweep == 0;
        self.next_sweep = now + SWEEP_SECS;
        if !first && pipeline.sessions().expire_idle(now) > 0 {
            // Lets this ingress drop its cached copies of the expired sessions.
            ingress.send_pending();
        }
    }

    /// The plain session's name: the file name, made unique if two files share it.
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
