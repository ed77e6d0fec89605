//! Rotating files: one series of files written by one module instance, rotated by size and by packet
//! time, optionally gzip-compressed, laid out flat or by date, and capped in total size.
//!
//! Durability: records are appended to a buffer whole, and the buffer reaches the file in one `write`
//! of whole records (on every tick, when full, and at rotation), so a file cut by `kill -9` or a crash
//! ends at a record boundary. A failed write is undone (the file is truncated back to its last whole
//! record), logged once, counted by the caller, and the series stops writing until its next rotation
//! time, when it tries a new file: a full disk costs this output, never the rest of vxtap.
//! Compressed files are written under `NAME.partial` and renamed when complete, because a gzip stream
//! is unreadable until it is finished; sync tools should skip `*.partial`. An output with S3 writes
//! every file that way (see `s3.rs`), and hands each completed file to its uploader.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use flate2::write::GzEncoder;
use flate2::Compression;
use serde::Deserialize;

use super::clock::UtcTime;
use super::ring::SizeCap;
use super::s3::{S3Config, UploadCounts, Uploader};
use super::Sink;
use crate::base::Timestamp;

/// A file output, as a module's `[module.output]` table gives it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileOutputConfig {
    /// The directory to write into; created if missing.
    pub dir: PathBuf,
    /// Start a new file once this many bytes (before compression) were written; 0 = no size limit.
    #[serde(default = "default_rotate_bytes")]
    pub rotate_bytes: u64,
    /// Start a new file at every multiple of this many seconds of packet time (UTC-aligned, so every
    /// shard rotates at the same moments); 0 = no time limit.
    #[serde(default = "default_rotate_secs")]
    pub rotate_secs: u64,
    /// Compress with gzip (`.gz`).
    #[serde(default)]
    pub gzip: bool,
    /// Delete the oldest files once all files in `dir` with this output's extension add up to more
    /// than this; 0 = keep everything.
    #[serde(default)]
    pub max_total_bytes: u64,
    /// Bytes collected before a write; the buffer is also written on every tick.
    #[serde(default = "default_buffer_bytes")]
    pub buffer_bytes: usize,
    /// Where in `dir` files go: `flat`, `dated` (`YYYY/MM/DD/`), or `aws_logs` (the S3 key layout of
    /// AWS's own log delivery, e.g. `AWSLogs/{account}/vpcflowlogs/{region}/YYYY/MM/DD/`).
    #[serde(default)]
    pub layout: Layout,
    /// Upload every closed file to S3 and delete it once stored: `dir` becomes a spool.
    #[serde(default)]
    pub s3: Option<S3Config>,
    /// The size cap and the uploader, made once and shared by every shard's series (see
    /// [`FileOutputConfig::prepare_dir`]).
    #[serde(skip)]
    shared: Arc<OnceLock<Shared>>,
}

#[derive(Debug, Clone, Default)]
struct Shared {
    cap: Option<Arc<SizeCap>>,
    uploader: Option<Arc<Uploader>>,
}

fn default_rotate_bytes() -> u64 {
    128 << 20
}
fn default_rotate_secs() -> u64 {
    300
}
fn default_buffer_bytes() -> usize {
    64 << 10
}

impl FileOutputConfig {
    /// A flat output into `dir` with the defaults.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        FileOutputConfig {
            dir: dir.into(),
            rotate_bytes: default_rotate_bytes(),
            rotate_secs: default_rotate_secs(),
            gzip: false,
            max_total_bytes: 0,
            buffer_bytes: default_buffer_bytes(),
            layout: Layout::Flat,
            s3: None,
            shared: Arc::default(),
        }
    }

    /// Checks values that serde cannot; messages start with the key.
    pub fn validate(&self) -> Result<(), String> {
        if self.dir.as_os_str().is_empty() {
            return Err("output.dir: must not be empty".into());
        }
        if self.buffer_bytes > 64 << 20 {
            return Err(format!(
                "output.buffer_bytes: {} is over the 64 MiB limit",
                self.buffer_bytes
            ));
        }
        if let Some(s3) = &self.s3 {
            s3.validate()?;
            if self.rotate_bytes == 0 && self.rotate_secs == 0 {
                return Err(
                    "output.s3: needs rotate_bytes or rotate_secs, or no file ever closes".into(),
                );
            }
        }
        if self.max_total_bytes > 0 && self.rotate_bytes == 0 && self.rotate_secs == 0 {
            return Err(
                "output.max_total_bytes: needs rotate_bytes or rotate_secs, or no file ever closes"
                    .into(),
            );
        }
        Ok(())
    }

    /// Creates the directory (and checks that it is writable, so a wrong path fails at start rather
    /// than at the first record) and returns the size cap shared by every series of this output: made
    /// on the first call, over the files in `dir` whose names end in one of `suffixes`. With S3, the
    /// cap is `spool_max_bytes`, and the first call also starts the uploader, which sends the closed
    /// files already in `dir` first.
    pub fn prepare_dir(&self, suffixes: &[&str]) -> io::Result<Option<Arc<SizeCap>>> {
        if let Some(shared) = self.shared.get() {
            return Ok(shared.cap.clone());
        }
        std::fs::create_dir_all(&self.dir)?;
        let probe = self.dir.join(".vxtap-write-test");
        File::create(&probe)?;
        let _ = std::fs::remove_file(&probe);
        let max = match &self.s3 {
            Some(s3) => s3.spool_max_bytes,
            None => self.max_total_bytes,
        };
        // An S3 spool is always accounted (its size is a gauge in /metrics), capped or not.
        let cap = (max > 0 || self.s3.is_some()).then(|| {
            let max = if max == 0 { u64::MAX } else { max };
            Arc::new(SizeCap::new(max, &self.dir, suffixes))
        });
        // Two shards building at once could both get here: the loser's uploader would be a second
        // thread over the same spool, so only the winner of the lock starts one.
        static STARTING: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _guard = STARTING.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(shared) = self.shared.get() {
            return Ok(shared.cap.clone());
        }
        let uploader = match &self.s3 {
            Some(s3) => Some(Uploader::start(s3, &self.dir, suffixes, cap.clone())?),
            None => None,
        };
        Ok(self
            .shared
            .get_or_init(|| Shared { cap, uploader })
            .cap
            .clone())
    }

    /// The S3 uploader of this output, once [`FileOutputConfig::prepare_dir`] has started it.
    pub fn uploader(&self) -> Option<Arc<Uploader>> {
        self.shared.get().and_then(|s| s.uploader.clone())
    }
}

/// Directory layout of an output.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// Every file directly in `dir`.
    #[default]
    Flat,
    /// `dir/YYYY/MM/DD/`.
    Dated,
    /// `dir/AWSLogs/{account}/{service}/{region}/YYYY/MM/DD/`, as AWS delivers logs to S3.
    AwsLogs,
}

/// How the files of one series are named: `{stem}_{time}_{seq}.{ext}[.gz]`, with `time` the UTC packet
/// time of the file's first record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesName {
    /// What the series is: the module, shard and session, e.g. `vxtap-shard0` or `web-1_shard2`.
    pub stem: String,
    /// The extension without the dot: `log`, `pcapng`, `pcap`.
    pub ext: String,
    /// For [`Layout::AwsLogs`]: the path under `dir` before the date, e.g.
    /// `AWSLogs/123456789012/vpcflowlogs/us-east-1`.
    pub aws_prefix: Option<PathBuf>,
}

impl SeriesName {
    /// Makes `s` safe as part of a file name: anything but ASCII letters, digits, `-`, `.` and `_`
    /// becomes `_` (session names such as `10.0.0.1/7` contain slashes).
    pub fn sanitize(s: &str) -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_') {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    }
}

/// What [`RotatingFile::prepare`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prepared {
    /// The record goes into the current file.
    Same,
    /// A new file was started (its header written): repeat whatever per-file state the format needs.
    NewFile,
    /// The series is stopped after an error until its next rotation; the record cannot be written.
    Stopped,
}

enum Writer {
    Plain(File),
    Gzip(GzEncoder<File>),
}

struct OpenFile {
    writer: Writer,
    /// The name it is written under (`.partial` when compressed).
    path: PathBuf,
    /// The name it gets when complete.
    final_path: PathBuf,
    /// Bytes accepted into this file, header and buffer included (before compression).
    written: u64,
    /// Bytes known to be in the file (plain files): where to truncate back to after a failed write.
    on_disk: u64,
    rotate_at: Option<Timestamp>,
}

/// One series of rotating files. Not shared: each module instance (shard) owns its own series, so
/// nothing here takes a lock except the size cap, on open and close.
pub struct RotatingFile {
    config: FileOutputConfig,
    name: SeriesName,
    header: Vec<u8>,
    cap: Option<Arc<SizeCap>>,
    open: Option<OpenFile>,
    buf: Vec<u8>,
    seq: u32,
    stopped_until: Option<Timestamp>,
    files_opened: u64,
    /// Records in `buf`.
    buffered: u64,
    /// Records accepted earlier that a failed write lost, not yet reported.
    lost: u64,
    uploader: Option<Arc<Uploader>>,
}

impl std::fmt::Debug for RotatingFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RotatingFile")
            .field("name", &self.name)
            .field("open", &self.open.as_ref().map(|o| &o.path))
            .finish()
    }
}

/// Retry delay after a failure when the series has no time rotation.
const RETRY_NS: u64 = 60_000_000_000;
const NANOS: u64 = 1_000_000_000;

impl RotatingFile {
    /// A series that writes `header` at the start of every file. Nothing is opened until the first
    /// record.
    pub fn new(
        config: &FileOutputConfig,
        name: SeriesName,
        header: Vec<u8>,
        cap: Option<Arc<SizeCap>>,
    ) -> Self {
        RotatingFile {
            buf: Vec::with_capacity(config.buffer_bytes),
            config: config.clone(),
            name,
            header,
            cap,
            open: None,
            seq: 0,
            stopped_until: None,
            files_opened: 0,
            buffered: 0,
            lost: 0,
            uploader: config.uploader(),
        }
    }

    /// What the output's S3 uploader did since any series of the output last asked (zero without
    /// S3): each count is reported by one series only, so the shards' sums are the totals.
    pub fn take_uploads(&self) -> UploadCounts {
        self.uploader
            .as_ref()
            .map(|u| u.take_counts())
            .unwrap_or_default()
    }

    /// The file being written, if any (its name while being written).
    pub fn current_path(&self) -> Option<&Path> {
        self.open.as_ref().map(|o| o.path.as_path())
    }

    /// Whether the series has no open file and is not waiting to retry after a failure: it holds
    /// nothing and may be dropped.
    pub fn is_idle(&self) -> bool {
        self.open.is_none() && self.stopped_until.is_none()
    }

    /// Files opened so far.
    pub fn files_opened(&self) -> u64 {
        self.files_opened
    }

    /// Records that were accepted by [`RotatingFile::append`] but lost to a later failed write, since
    /// the last call (the caller counts them with the record that failed).
    pub fn take_lost(&mut self) -> u64 {
        std::mem::take(&mut self.lost)
    }

    /// Gets ready for a record of `len` bytes at packet time `now`: opens the first file, rotates when
    /// the current one is due by time or would pass the size limit, and retries a stopped series once
    /// its retry time has come.
    pub fn prepare(&mut self, now: Timestamp, len: usize) -> Prepared {
        if let Some(until) = self.stopped_until {
            if now < until {
                return Prepared::Stopped;
            }
            self.stopped_until = None;
        }
        if let Some(open) = &self.open {
            let by_time = open.rotate_at.is_some_and(|t| now >= t);
            let by_size = self.config.rotate_bytes > 0
                && open.written > self.header.len() as u64
                && open.written + len as u64 > self.config.rotate_bytes;
            if !by_time && !by_size {
                return Prepared::Same;
            }
            self.close();
        }
        match self.open_new(now) {
            Ok(()) => Prepared::NewFile,
            Err(error) => {
                if self.stopped_until.is_none() {
                    self.fail(now, "Cannot open an output file.", &error);
                }
                Prepared::Stopped
            }
        }
    }

    /// Appends one whole record to the current file (after [`RotatingFile::prepare`]).
    pub fn append(&mut self, now: Timestamp, record: &[u8]) -> io::Result<()> {
        if self.open.is_none() {
            return Err(stopped());
        }
        if self.buf.len() + record.len() > self.config.buffer_bytes {
            self.write_buffer(now)?;
        }
        if record.len() > self.config.buffer_bytes {
            self.write_out(now, record)?;
        } else {
            self.buf.extend_from_slice(record);
            self.buffered += 1;
        }
        if let Some(open) = &mut self.open {
            open.written += record.len() as u64;
        }
        Ok(())
    }

    /// Writes buffered records out, and closes the current file if its rotation time has passed (the
    /// next record opens a new one, so an idle series leaves no empty files).
    pub fn tick(&mut self, now: Timestamp) -> io::Result<()> {
        let due = self
            .open
            .as_ref()
            .is_some_and(|o| o.rotate_at.is_some_and(|t| now >= t));
        if due {
            self.close();
            Ok(())
        } else {
            self.write_buffer(now)
        }
    }

    /// Writes everything out and completes the current file.
    pub fn close(&mut self) {
        let Some(mut open) = self.open.take() else {
            return;
        };
        if !self.buf.is_empty() {
            let result = write_to(&mut open.writer, &self.buf);
            self.buf.clear();
            let records = std::mem::take(&mut self.buffered);
            if let Err(error) = result {
                self.lost += records;
                undo(&mut open);
                warn_failed(
                    "Failed to write an output file while closing it.",
                    &open.path,
                    &error,
                );
            } else {
                open.on_disk = open.written;
            }
        }
        let result = match open.writer {
            Writer::Plain(file) => Ok(file),
            Writer::Gzip(enc) => enc.finish(),
        };
        let size = match result {
            Ok(file) => file.metadata().map(|m| m.len()).unwrap_or(open.on_disk),
            Err(error) => {
                warn_failed("Failed to complete a compressed file.", &open.path, &error);
                open.on_disk
            }
        };
        let mut path = open.path.clone();
        if open.path != open.final_path {
            match std::fs::rename(&open.path, &open.final_path) {
                Ok(()) => path = open.final_path.clone(),
                Err(error) => {
                    warn_failed("Cannot rename a completed file.", &open.path, &error);
                }
            }
        }
        tracing::debug!(message = "Closed an output file.", path = %path.display(), bytes = size);
        if let Some(cap) = &self.cap {
            cap.closed(&open.path, &path, size);
        }
        if path == open.final_path {
            if let Some(uploader) = &self.uploader {
                uploader.closed(&path);
            }
        }
    }

    fn open_new(&mut self, now: Timestamp) -> io::Result<()> {
        let t = UtcTime::of(now);
        let mut dir = self.config.dir.clone();
        match self.config.layout {
            Layout::Flat => {}
            Layout::Dated | Layout::AwsLogs => {
                if self.config.layout == Layout::AwsLogs {
                    if let Some(prefix) = &self.name.aws_prefix {
                        dir.push(prefix);
                    }
                }
                dir.push(format!("{:04}", t.year));
                dir.push(format!("{:02}", t.month));
                dir.push(format!("{:02}", t.day));
            }
        }
        std::fs::create_dir_all(&dir)?;
        let gz = if self.config.gzip { ".gz" } else { "" };
        // A gzip stream is unreadable until finished, and an S3 spool must not upload a file still
        // being written (nor take one a crash cut for a closed one at the next start).
        let partial = self.config.gzip || self.config.s3.is_some();
        let (file, final_path, path) = loop {
            self.seq = self.seq.wrapping_add(1);
            let time = if self.config.layout == Layout::AwsLogs {
                t.compact_minutes().to_string()
            } else {
                t.compact().to_string()
            };
            let name = format!(
                "{}_{}_{:04}.{}{}",
                self.name.stem, time, self.seq, self.name.ext, gz
            );
            let final_path = dir.join(&name);
            let path = if partial {
                dir.join(format!("{name}.partial"))
            } else {
                final_path.clone()
            };
            if partial && final_path.exists() {
                continue;
            }
            // Never overwrite: a restarted vxtap, or another shard, may have used the name.
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(f) => break (f, final_path, path),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        };
        let writer = if self.config.gzip {
            Writer::Gzip(GzEncoder::new(file, Compression::default()))
        } else {
            Writer::Plain(file)
        };
        let rotate_at = (self.config.rotate_secs > 0)
            .then(|| now.next_boundary(self.config.rotate_secs * NANOS));
        if let Some(cap) = &self.cap {
            cap.opened(&path);
        }
        tracing::debug!(message = "Opened an output file.", path = %path.display());
        self.files_opened += 1;
        self.open = Some(OpenFile {
            writer,
            path,
            final_path,
            written: 0,
            on_disk: 0,
            rotate_at,
        });
        self.buf.clear();
        let header = std::mem::take(&mut self.header);
        let result = self.append(now, &header);
        self.header = header;
        // The header is not a record of the caller's.
        self.buffered = self.buffered.saturating_sub(1);
        result
    }

    fn write_buffer(&mut self, now: Timestamp) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let buf = std::mem::take(&mut self.buf);
        let result = self.write_out(now, &buf);
        self.buf = buf;
        self.buf.clear();
        self.buffered = 0;
        result
    }

    fn write_out(&mut self, now: Timestamp, bytes: &[u8]) -> io::Result<()> {
        let Some(open) = &mut self.open else {
            return Err(stopped());
        };
        match write_to(&mut open.writer, bytes) {
            Ok(()) => {
                open.on_disk += bytes.len() as u64;
                Ok(())
            }
            Err(error) => {
                undo(open);
                self.fail(now, "Failed to write an output file.", &error);
                Err(error)
            }
        }
    }

    /// Stops the series until its next rotation time: the file is closed where its last whole record
    /// ended, and buffered records are lost (the caller counts them).
    fn fail(&mut self, now: Timestamp, message: &'static str, error: &io::Error) {
        let path = self
            .open
            .as_ref()
            .map(|o| o.path.clone())
            .unwrap_or_else(|| self.config.dir.clone());
        let retry = match self.config.rotate_secs {
            0 => now.add_nanos(RETRY_NS),
            s => now.next_boundary(s * NANOS),
        };
        tracing::warn!(
            message,
            %error,
            path = %path.display(),
            retry_in_secs = retry.secs().saturating_sub(now.secs()),
            stopped = "until the next rotation",
        );
        self.buf.clear();
        self.lost += std::mem::take(&mut self.buffered);
        if let Some(open) = self.open.take() {
            // A file that never got a byte (a full disk at its first write) would only litter.
            let empty = open.on_disk == 0 && std::fs::remove_file(&open.path).is_ok();
            // A plain file was cut back to its last whole record, so an S3 output can still send
            // what it holds; a gzip stream cut by a failed write cannot be trusted and stays
            // `.partial` for the operator.
            let mut path = open.path.clone();
            let salvage = !empty
                && self.uploader.is_some()
                && matches!(open.writer, Writer::Plain(_))
                && open.path != open.final_path;
            if salvage && std::fs::rename(&open.path, &open.final_path).is_ok() {
                path = open.final_path.clone();
            }
            if let Some(cap) = &self.cap {
                cap.closed(&open.path, &path, if empty { 0 } else { open.on_disk });
            }
            if path != open.path {
                if let Some(uploader) = &self.uploader {
                    uploader.closed(&path);
                }
            }
        }
        self.stopped_until = Some(retry);
    }
}

impl Drop for RotatingFile {
    fn drop(&mut self) {
        self.close();
    }
}

fn write_to(writer: &mut Writer, bytes: &[u8]) -> io::Result<()> {
    match writer {
        Writer::Plain(f) => f.write_all(bytes),
        Writer::Gzip(g) => g.write_all(bytes),
    }
}

/// Truncates a plain file back to its last whole record after a failed (perhaps partial) write.
fn undo(open: &mut OpenFile) {
    if let Writer::Plain(f) = &mut open.writer {
        let _ = f.set_len(open.on_disk);
        open.written = open.on_disk;
    }
}

fn stopped() -> io::Error {
    io::Error::other("output stopped after a write error; retrying at its next rotation")
}

fn warn_failed(message: &'static str, path: &Path, error: &io::Error) {
    tracing::warn!(message, %error, path = %path.display());
}

/// A [`Sink`] over one [`RotatingFile`]: for modules whose records stand alone (text lines).
#[derive(Debug)]
pub struct FileSink {
    file: RotatingFile,
}

impl FileSink {
    /// A sink writing into `file`.
    pub fn new(file: RotatingFile) -> Self {
        FileSink { file }
    }
}

impl Sink for FileSink {
    fn write(&mut self, now: Timestamp, record: &[u8]) -> io::Result<()> {
        match self.file.prepare(now, record.len()) {
            Prepared::Stopped => Err(stopped()),
            Prepared::Same | Prepared::NewFile => self.file.append(now, record),
        }
    }

    fn flush(&mut self, now: Timestamp) -> io::Result<()> {
        self.file.tick(now)
    }

    fn take_lost(&mut self) -> u64 {
        self.file.take_lost()
    }

    fn take_uploads(&mut self) -> UploadCounts {
        self.file.take_uploads()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An empty directory, removed when the handle drops, however the test ends.
    fn tmp(name: &str) -> tempfile::TempDir {
        tempfile::Builder::new()
            .prefix(&format!("vxtap-file-{name}-"))
            .tempdir()
            .unwrap()
    }

    fn files(dir: &Path) -> Vec<PathBuf> {
        let mut v: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_file())
            .collect();
        v.sort();
        v
    }

    fn series(config: &FileOutputConfig) -> RotatingFile {
        let name = SeriesName {
            stem: "t".into(),
            ext: "log".into(),
            aws_prefix: None,
        };
        RotatingFile::new(config, name, b"HEADER\n".to_vec(), None)
    }

    #[test]
    fn rotates_by_size_and_by_packet_time_with_the_header_in_every_file() {
        let tmp = tmp("rotate");
        let dir = tmp.path();
        let mut config = FileOutputConfig::new(dir);
        config.rotate_bytes = 30;
        config.rotate_secs = 60;
        std::fs::create_dir_all(dir).unwrap();
        let mut f = FileSink::new(series(&config));
        let t0 = Timestamp::from_secs(1_700_000_000); // 22:13:20 UTC
        for i in 0..5 {
            f.write(t0, format!("record {i}\n").as_bytes()).unwrap();
        }
        // Next minute boundary: a new file even though it is small.
        f.write(Timestamp::from_secs(1_700_000_040), b"later\n")
            .unwrap();
        drop(f);
        let names: Vec<_> = files(dir)
            .iter()
            .map(|p| p.file_name().unwrap().to_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            names,
            [
                "t_20231114T221320Z_0001.log",
                "t_20231114T221320Z_0002.log",
                "t_20231114T221320Z_0003.log",
                "t_20231114T221400Z_0004.log"
            ]
        );
        let text: Vec<_> = files(dir)
            .iter()
            .map(|p| std::fs::read_to_string(p).unwrap())
            .collect();
        assert_eq!(text[0], "HEADER\nrecord 0\nrecord 1\n");
        assert_eq!(text[1], "HEADER\nrecord 2\nrecord 3\n");
        assert_eq!(text[2], "HEADER\nrecord 4\n");
        assert_eq!(text[3], "HEADER\nlater\n");
    }

    #[test]
    fn gzip_files_are_partial_until_complete() {
        use std::io::Read;
        let tmp = tmp("gzip");
        let dir = tmp.path();
        let mut config = FileOutputConfig::new(dir);
        config.gzip = true;
        config.layout = Layout::Dated;
        let mut f = FileSink::new(series(&config));
        let t0 = Timestamp::from_secs(1_700_000_000);
        f.write(t0, b"one\n").unwrap();
        f.flush(t0).unwrap();
        let day = dir.join("2023/11/14");
        let during = files(&day);
        assert_eq!(during.len(), 1);
        assert!(during[0].to_str().unwrap().ends_with(".log.gz.partial"));
        // The tick after the rotation time completes the file.
        f.flush(Timestamp::from_secs(1_700_000_000 + 300)).unwrap();
        let after = files(&day);
        assert!(
            after[0].to_str().unwrap().ends_with("_0001.log.gz"),
            "{after:?}"
        );
        let mut text = String::new();
        flate2::read::GzDecoder::new(File::open(&after[0]).unwrap())
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "HEADER\none\n");
    }
}
