//! `pcap`: mirrored packets to capture files that Wireshark opens with each packet's source labelled.
//!
//! pcapng (the default) writes one file series per shard, and in each file one Interface Description
//! Block per mirror session: `if_name` is the session's ENI id (else its name), `if_description`
//! carries `vni=… source=… session=…` and the labels, timestamps are the packets' own in nanoseconds,
//! and each packet keeps its captured and original length, so truncation (AWS's or vxtap's) shows.
//! Classic pcap (`format = "pcap"`) writes one file series per session per shard, for tools that read
//! only pcap. Either way no two shards write the same file.
//!
//! Files are written through the shared sink layer ([`crate::sinks::RotatingFile`]): rotation by size
//! and packet time, a ring-like total size cap, whole blocks only (after `kill -9` a file reads cleanly
//! up to its last complete packet), and a failed write stops this module's output until the next
//! rotation, with every lost packet counted as an error, while the rest of vxtap runs on.

mod blocks;

use std::fmt::Write as _;
use std::sync::Arc;

use rustc_hash::FxHashMap;
use serde::Deserialize;

use super::{BuildError, Emitter, Module, ModuleConfig, ModuleContext};
use crate::base::{Packet, Session, Timestamp};
use crate::sinks::{
    FileOutputConfig, Layout, OutputConfig, Prepared, RotatingFile, SeriesName, SizeCap,
};

/// `[[module]] kind = "pcap"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PcapConfig {
    /// `pcapng` (one file per shard, an interface per session) or `pcap` (one file per session per
    /// shard).
    #[serde(default)]
    pub format: PcapFormat,
    /// Sessions to write, by name, ENI id or `source/vni`; empty = all.
    #[serde(default)]
    pub sessions: Vec<String>,
    /// Bytes of each frame to keep (0 = all that reached the module, after vxtap's own truncation).
    #[serde(default)]
    pub snaplen: u32,
    /// The start of every file name.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// Where and how files are written: a file output (`[module.output]` with a `dir`).
    pub output: OutputConfig,
}

/// The capture file format.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum PcapFormat {
    /// pcapng with per-session interfaces.
    #[default]
    Pcapng,
    /// Classic pcap, nanosecond timestamps.
    Pcap,
}

fn default_prefix() -> String {
    "vxtap".into()
}

/// The snap length written into headers when the module keeps whole frames: larger than any frame
/// vxtap can receive (9,216-byte datagrams), and the value tcpdump uses.
const WHOLE_FRAMES: u32 = 262_144;

impl PcapFormat {
    fn ext(self) -> &'static str {
        match self {
            PcapFormat::Pcapng => "pcapng",
            PcapFormat::Pcap => "pcap",
        }
    }
}

impl PcapConfig {
    /// The file settings: a capture is a file, never lines on standard output.
    fn files(&self) -> Result<&FileOutputConfig, String> {
        self.output.file().ok_or_else(|| {
            "output: pcap writes capture files; give [module.output] a dir (type = \"file\")".into()
        })
    }
}

impl ModuleConfig for PcapConfig {
    fn validate(&self) -> Result<(), String> {
        let output = self.files()?;
        output.validate()?;
        if output.layout == Layout::AwsLogs {
            return Err(
                "output.layout: \"aws_logs\" is for flow logs; use \"flat\" or \"dated\"".into(),
            );
        }
        if output.gzip {
            return Err(
                "output.gzip: capture files are not compressed (a compressed file cannot be read \
                 after a crash); compress closed files outside vxtap"
                    .into(),
            );
        }
        if self.prefix.is_empty() || SeriesName::sanitize(&self.prefix) != self.prefix {
            return Err(format!(
                "prefix: {:?} must be non-empty ASCII letters, digits, '-', '.' or '_'",
                self.prefix
            ));
        }
        Ok(())
    }

    fn build(&self, ctx: &ModuleContext) -> Result<Box<dyn Module>, BuildError> {
        let output = self.files().map_err(BuildError::new)?;
        let ext = self.format.ext();
        let cap = output
            .prepare_dir(&[&format!(".{ext}")])
            .map_err(|e| BuildError::new(format!("output.dir {}: {e}", output.dir.display())))?;
        let snaplen = if self.snaplen == 0 {
            WHOLE_FRAMES
        } else {
            self.snaplen
        };
        let mut header = Vec::new();
        blocks::section_header(&mut header);
        let shared = match self.format {
            PcapFormat::Pcapng => Some(RotatingFile::new(
                output,
                SeriesName {
                    stem: format!("{}-shard{}", self.prefix, ctx.shard),
                    ext: ext.into(),
                    aws_prefix: None,
                },
                header,
                cap.clone(),
            )),
            PcapFormat::Pcap => None,
        };
        Ok(Box::new(PcapWriter {
            format: self.format,
            filter: self.sessions.clone(),
            snaplen,
            prefix: self.prefix.clone(),
            shard: ctx.shard,
            output: output.clone(),
            cap,
            shared,
            interfaces: FxHashMap::default(),
            per_session: FxHashMap::default(),
            wanted: FxHashMap::default(),
            block: Vec::with_capacity(16 << 10),
        }))
    }
}

struct PcapWriter {
    format: PcapFormat,
    filter: Vec<String>,
    snaplen: u32,
    prefix: String,
    shard: usize,
    output: FileOutputConfig,
    cap: Option<Arc<SizeCap>>,
    /// pcapng: this shard's series.
    shared: Option<RotatingFile>,
    /// pcapng: the interface id of each session in the current file.
    interfaces: FxHashMap<u32, u32>,
    /// pcap: each session's series.
    per_session: FxHashMap<u32, RotatingFile>,
    /// Whether each session passes `sessions`, decided once per session.
    wanted: FxHashMap<u32, bool>,
    /// The block being built; reused.
    block: Vec<u8>,
}

/// `vni=… source=… session=…` and the labels, for `if_description`.
fn description(s: &Session) -> String {
    let mut d = format!(
        "vni={} source={} session={}",
        s.key.vni, s.key.source, s.name
    );
    for (k, v) in &s.labels {
        let _ = write!(d, " {k}={v}");
    }
    d
}

impl PcapWriter {
    fn wants(&mut self, s: &Session) -> bool {
        if self.filter.is_empty() {
            return true;
        }
        let filter = &self.filter;
        *self.wanted.entry(s.id).or_insert_with(|| {
            filter.iter().any(|f| {
                *f == s.name || s.eni.as_deref() == Some(f.as_str()) || *f == s.key.to_string()
            })
        })
    }

    fn write_pcapng(
        &mut self,
        pkt: &Packet<'_>,
        data: &[u8],
        orig_len: u32,
        out: &mut Emitter<'_>,
    ) {
        let Some(file) = self.shared.as_mut() else {
            return;
        };
        let session = pkt.session;
        let idb_room = if self.interfaces.contains_key(&session.id) {
            0
        } else {
            // Generous: the description is bounded by the session's config.
            256 + session.name.len() * 2 + session.labels.len() * 64
        };
        match file.prepare(pkt.ts, blocks::packet_len(data.len()) + idb_room) {
            Prepared::Stopped => return lost(file, out),
            Prepared::NewFile => self.interfaces.clear(),
            Prepared::Same => {}
        }
        if !self.interfaces.contains_key(&session.id) {
            let id = self.interfaces.len() as u32;
            self.block.clear();
            let name = session.eni.as_deref().unwrap_or(&session.name);
            blocks::interface(&mut self.block, self.snaplen, name, &description(session));
            if file.append(pkt.ts, &self.block).is_err() {
                return lost(file, out);
            }
            self.interfaces.insert(session.id, id);
        }
        let id = self.interfaces.get(&session.id).copied().unwrap_or(0);
        self.block.clear();
        blocks::packet(&mut self.block, id, pkt.ts.nanos(), data, orig_len);
        match file.append(pkt.ts, &self.block) {
            Ok(()) => out.wrote(1),
            Err(_) => lost(file, out),
        }
    }

    fn write_pcap(&mut self, pkt: &Packet<'_>, data: &[u8], orig_len: u32, out: &mut Emitter<'_>) {
        let session = pkt.session;
        let file = self.per_session.entry(session.id).or_insert_with(|| {
            RotatingFile::new(
                &self.output,
                SeriesName {
                    stem: format!(
                        "{}-{}-shard{}",
                        self.prefix,
                        SeriesName::sanitize(session.eni.as_deref().unwrap_or(&session.name)),
                        self.shard
                    ),
                    ext: PcapFormat::Pcap.ext().into(),
                    aws_prefix: None,
                },
                blocks::pcap_header(self.snaplen),
                self.cap.clone(),
            )
        });
        if file.prepare(pkt.ts, 16 + data.len()) == Prepared::Stopped {
            return lost(file, out);
        }
        self.block.clear();
        blocks::pcap_record(&mut self.block, pkt.ts.nanos(), data, orig_len);
        match file.append(pkt.ts, &self.block) {
            Ok(()) => out.wrote(1),
            Err(_) => lost(file, out),
        }
    }

    fn files(&mut self) -> impl Iterator<Item = &mut RotatingFile> {
        self.shared.iter_mut().chain(self.per_session.values_mut())
    }
}

/// Counts a packet that could not be written, and any written earlier that a failed write lost.
fn lost(file: &mut RotatingFile, out: &mut Emitter<'_>) {
    out.errors(1 + file.take_lost());
}

impl Module for PcapWriter {
    fn on_packet(&mut self, pkt: &Packet<'_>, out: &mut Emitter<'_>) {
        if !self.wants(pkt.session) {
            return;
        }
        let data = &pkt.frame[..pkt.frame.len().min(self.snaplen as usize)];
        // The frame's length on the wire: what arrived, or what the IP header says when AWS (or a
        // capture) cut the frame before vxtap saw it.
        let on_wire = pkt
            .ip_len()
            .map_or(0, |ip| ip.saturating_add(pkt.layers.l3_offset));
        let orig_len = pkt.orig_len.max(on_wire).max(data.len() as u32);
        match self.format {
            PcapFormat::Pcapng => self.write_pcapng(pkt, data, orig_len, out),
            PcapFormat::Pcap => self.write_pcap(pkt, data, orig_len, out),
        }
    }

    fn on_tick(&mut self, now: Timestamp, out: &mut Emitter<'_>) {
        let mut failed = 0;
        for file in self.files() {
            if file.tick(now).is_err() {
                failed += file.take_lost();
            }
        }
        out.errors(failed);
        if let Some(uploader) = self.output.uploader() {
            out.uploads(uploader.take_counts());
        }
        // A session whose file was closed by rotation and that sent nothing since gives back its
        // buffer and file handle; it gets a new series with its next packet.
        self.per_session.retain(|_, f| !f.is_idle());
    }

    fn finish(&mut self, out: &mut Emitter<'_>) {
        let mut failed = 0;
        for file in self.files() {
            file.close();
            failed += file.take_lost();
        }
        out.errors(failed);
    }
}
