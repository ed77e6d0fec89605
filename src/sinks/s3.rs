//! `[module.output.s3]`: a file output whose directory is a spool that drains into S3.
//!
//! Every file a series closes is handed to one uploader thread per output (shared by the shards'
//! series, as the size cap is) through a bounded channel; the thread uploads it under the same
//! relative path (so `aws_logs` gives Athena AWS's own partitions) and deletes it only once S3 has
//! confirmed the object. Nothing on a shard waits: a full channel only sets a flag that makes the
//! thread rescan the spool, which it also does at start, so files left by a crash or a restart go up
//! too. While S3 is away the thread backs off exponentially and the spool grows, bounded by
//! `spool_max_bytes` through [`SizeCap`], whose deletions are the counted drops.
//!
//! Open files carry a `.partial` suffix while an S3 output writes them (plain files too, unlike a
//! plain file output), so neither the rescan nor the uploader can take a file still being written.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use serde::Deserialize;

use super::ring::SizeCap;

/// The S3 side of a file output.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    /// The bucket objects go to.
    pub bucket: String,
    /// Put before every key (e.g. `flows/`); the rest of the key is the file's path under `dir`.
    #[serde(default)]
    pub prefix: String,
    /// The bucket's region; when absent, `AWS_REGION` / `AWS_DEFAULT_REGION`, else `us-east-1`.
    #[serde(default)]
    pub region: Option<String>,
    /// An S3-compatible server instead of AWS (MinIO, a test server); addressed path-style, and
    /// `http://` allowed, since such servers rarely have per-bucket DNS names.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// The spool's cap: once closed files add up to more, the oldest are deleted and counted as
    /// dropped. 0 = no cap (an outage then fills the disk).
    #[serde(default = "default_spool_max_bytes")]
    pub spool_max_bytes: u64,
    /// The first wait after a failed upload; it doubles on each failure in a row.
    #[serde(default = "default_retry_initial_ms")]
    pub retry_initial_ms: u64,
    /// The longest wait between attempts while S3 is away.
    #[serde(default = "default_retry_max_secs")]
    pub retry_max_secs: u64,
    /// How long one upload may take before it counts as failed (for a multipart upload: each part,
    /// and the completion).
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// Files of at least this many bytes go up as multipart uploads, read one part at a time, so
    /// a large file needs no more memory than a part.
    #[serde(default = "default_multipart_threshold_bytes")]
    pub multipart_threshold_bytes: u64,
    /// The size of each part but the last (S3 takes 5 MiB to 5 GiB; 10,000 parts at most).
    #[serde(default = "default_multipart_part_bytes")]
    pub multipart_part_bytes: u64,
}

fn default_spool_max_bytes() -> u64 {
    1 << 30
}
fn default_retry_initial_ms() -> u64 {
    1000
}
fn default_retry_max_secs() -> u64 {
    300
}
fn default_timeout_secs() -> u64 {
    120
}
fn default_multipart_threshold_bytes() -> u64 {
    64 << 20
}
fn default_multipart_part_bytes() -> u64 {
    16 << 20
}

/// S3's smallest part (all but the last) of a multipart upload.
const MIN_PART: u64 = 5 << 20;
/// The largest part vxtap reads at once: a part is held in memory while it goes up.
const MAX_PART: u64 = 1 << 30;

impl S3Config {
    /// Checks values serde cannot; messages start with the key.
    pub fn validate(&self) -> Result<(), String> {
        if self.bucket.is_empty() || self.bucket.contains('/') {
            return Err(format!(
                "output.s3.bucket: {:?} is not a bucket name",
                self.bucket
            ));
        }
        // Upper bounds keep every wait and deadline far from Duration's and Instant's limits.
        let bounds = [
            ("retry_initial_ms", self.retry_initial_ms, 3_600_000),
            ("retry_max_secs", self.retry_max_secs, 86_400),
            ("timeout_secs", self.timeout_secs, 3_600),
        ];
        for (key, value, max) in bounds {
            if value == 0 || value > max {
                return Err(format!("output.s3.{key}: {value} is not in 1..={max}"));
            }
        }
        if !(MIN_PART..=MAX_PART).contains(&self.multipart_part_bytes) {
            return Err(format!(
                "output.s3.multipart_part_bytes: {} is not in {MIN_PART}..={MAX_PART} (S3's parts are at least 5 MiB)",
                self.multipart_part_bytes
            ));
        }
        if self.multipart_threshold_bytes < self.multipart_part_bytes {
            return Err(format!(
                "output.s3.multipart_threshold_bytes: {} is less than multipart_part_bytes ({})",
                self.multipart_threshold_bytes, self.multipart_part_bytes
            ));
        }
        if let Some(e) = &self.endpoint {
            if !(e.starts_with("http://") || e.starts_with("https://")) {
                return Err(format!(
                    "output.s3.endpoint: {e:?} must start with http(s)://"
                ));
            }
        }
        Ok(())
    }
}

/// What an output's uploader did, as running totals; a module's sink reports the part not yet
/// reported (see [`UploadCounts::take`]) as its labelled counters.
#[derive(Debug, Default)]
struct UploadStats {
    uploaded: AtomicU64,
    uploaded_bytes: AtomicU64,
    failed: AtomicU64,
    spool_bytes: AtomicU64,
}

/// Counts since the last report: the uploader's are shared by every shard's sink of an output, and
/// each delta is taken once (swapped to zero), so summing the shards' counters gives the totals.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct UploadCounts {
    /// Files uploaded and deleted locally.
    pub uploaded: u64,
    /// Their bytes, as stored (compressed when gzip).
    pub uploaded_bytes: u64,
    /// Upload attempts that failed (each retry counts).
    pub failed: u64,
    /// Files the spool cap deleted before they could be uploaded.
    pub dropped: u64,
}

impl UploadCounts {
    /// Whether there is nothing to report.
    pub fn is_empty(&self) -> bool {
        *self == UploadCounts::default()
    }

    /// Adds `o` to these counts (a replay's merge sums what its sink reported per segment).
    pub fn add(&mut self, o: UploadCounts) {
        self.uploaded += o.uploaded;
        self.uploaded_bytes += o.uploaded_bytes;
        self.failed += o.failed;
        self.dropped += o.dropped;
    }
}

/// An output's uploader: the channel into its thread and what it counts.
#[derive(Debug)]
pub struct Uploader {
    tx: Sender<PathBuf>,
    control: Arc<Control>,
    stats: Arc<UploadStats>,
    cap: Option<Arc<SizeCap>>,
    /// Counts taken so far by sinks, so each delta is reported once.
    reported: Mutex<UploadCounts>,
}

/// What [`finish_uploads`] shares with a thread. Apart from the [`Uploader`], because the thread
/// outlives it: the config that holds the uploader is dropped at the end of a replay or at a reload,
/// and the thread still sends what its spool holds before it ends.
#[derive(Debug, Default)]
struct Control {
    state: Mutex<State>,
    rescan: AtomicBool,
    /// The spool, and its accounting, for [`spools`].
    dir: PathBuf,
    cap: Option<Arc<SizeCap>>,
}

#[derive(Debug, Default)]
struct State {
    /// Files known and not yet uploaded (what the thread holds, queued or being retried).
    pending: usize,
    /// Set by [`finish_uploads`]: try what is left now, then stop.
    finishing: bool,
    done: bool,
}

/// Closed files waiting in the channel; past it, the thread finds them by rescanning the spool.
const QUEUE: usize = 1024;

/// Every uploader thread of the process that has not ended, for [`finish_uploads`].
static UPLOADERS: Mutex<Vec<Arc<Control>>> = Mutex::new(Vec::new());

impl Uploader {
    /// Starts the thread of the output spooling into `dir`, whose files end in one of `suffixes`.
    pub(crate) fn start(
        config: &S3Config,
        dir: &Path,
        suffixes: &[&str],
        cap: Option<Arc<SizeCap>>,
    ) -> std::io::Result<Arc<Uploader>> {
        let store = build_store(config).map_err(std::io::Error::other)?;
        let (tx, rx) = crossbeam_channel::bounded(QUEUE);
        let control = Arc::new(Control {
            dir: dir.to_owned(),
            cap: cap.clone(),
            ..Control::default()
        });
        control.rescan.store(true, Ordering::Relaxed);
        let uploader = Arc::new(Uploader {
            tx,
            control: control.clone(),
            stats: Arc::default(),
            cap: cap.clone(),
            reported: Mutex::default(),
        });
        let worker = Worker {
            store,
            config: config.clone(),
            dir: dir.to_owned(),
            suffixes: suffixes.iter().map(|s| (*s).to_owned()).collect(),
            rx,
            control: control.clone(),
            stats: uploader.stats.clone(),
            cap,
            pending: VecDeque::new(),
        };
        std::thread::Builder::new()
            .name("vxtap-s3".into())
            .spawn(move || worker.run())?;
        let mut all = lock(&UPLOADERS);
        all.retain(|c| !lock(&c.state).done);
        all.push(control);
        drop(all);
        Ok(uploader)
    }

    /// Hands a closed file to the thread without waiting: when the channel is full the file stays
    /// in the spool and the next rescan finds it.
    pub(crate) fn closed(&self, path: &Path) {
        match self.tx.try_send(path.to_owned()) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.control.rescan.store(true, Ordering::Relaxed);
            }
        }
    }

    /// The counts not yet taken by any sink of this output.
    pub fn take_counts(&self) -> UploadCounts {
        let now = UploadCounts {
            uploaded: self.stats.uploaded.load(Ordering::Relaxed),
            uploaded_bytes: self.stats.uploaded_bytes.load(Ordering::Relaxed),
            failed: self.stats.failed.load(Ordering::Relaxed),
            dropped: self.cap.as_ref().map_or(0, |c| c.dropped()),
        };
        let mut reported = lock(&self.reported);
        let delta = UploadCounts {
            uploaded: now.uploaded.saturating_sub(reported.uploaded),
            uploaded_bytes: now.uploaded_bytes.saturating_sub(reported.uploaded_bytes),
            failed: now.failed.saturating_sub(reported.failed),
            dropped: now.dropped.saturating_sub(reported.dropped),
        };
        *reported = now;
        delta
    }

    /// Running totals since start: uploaded, failed attempts, dropped files.
    pub fn totals(&self) -> UploadCounts {
        UploadCounts {
            uploaded: self.stats.uploaded.load(Ordering::Relaxed),
            uploaded_bytes: self.stats.uploaded_bytes.load(Ordering::Relaxed),
            failed: self.stats.failed.load(Ordering::Relaxed),
            dropped: self.cap.as_ref().map_or(0, |c| c.dropped()),
        }
    }

    /// Bytes of closed files in the spool, as last seen by the thread.
    pub fn spool_bytes(&self) -> u64 {
        self.stats.spool_bytes.load(Ordering::Relaxed)
    }
}

/// One S3 output's spool as `/metrics` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spool {
    /// The output's `dir`.
    pub dir: PathBuf,
    /// Bytes of closed files in it waiting for their upload.
    pub bytes: u64,
}

/// Every running S3 output's spool: what an outage has piled up, against `spool_max_bytes`.
pub fn spools() -> Vec<Spool> {
    let mut all: Vec<Spool> = lock(&UPLOADERS)
        .iter()
        .filter(|c| !lock(&c.state).done)
        .map(|c| Spool {
            dir: c.dir.clone(),
            bytes: c.cap.as_ref().map_or(0, |cap| cap.closed_bytes()),
        })
        .collect();
    // A reload's old and new outputs over one directory: one series, the newest count.
    all.reverse();
    all.dedup_by(|a, b| a.dir == b.dir);
    all.sort_by(|a, b| a.dir.cmp(&b.dir));
    all
}

/// Waits up to `timeout` for every output's uploader to send what its spool holds (called at the
/// end of a replay and at stop, after the files are closed), then stops the threads; returns
/// whether everything went up. What is left stays in the spool for the next start.
pub fn finish_uploads(timeout: Duration) -> bool {
    let uploaders: Vec<Arc<Control>> = lock(&UPLOADERS).clone();
    for u in &uploaders {
        lock(&u.state).finishing = true;
        u.rescan.store(true, Ordering::Relaxed);
    }
    let deadline = Instant::now() + timeout;
    loop {
        let all_done = uploaders.iter().all(|u| lock(&u.state).done);
        if all_done || Instant::now() >= deadline {
            return uploaders.iter().all(|u| {
                let s = lock(&u.state);
                s.done && s.pending == 0
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

struct Worker {
    store: object_store::aws::AmazonS3,
    config: S3Config,
    dir: PathBuf,
    suffixes: Vec<String>,
    rx: Receiver<PathBuf>,
    control: Arc<Control>,
    stats: Arc<UploadStats>,
    cap: Option<Arc<SizeCap>>,
    /// Oldest first.
    pending: VecDeque<PathBuf>,
}

impl Worker {
    fn run(mut self) {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(r) => r,
            Err(error) => {
                tracing::error!(message = "Cannot start the S3 uploader.", %error);
                lock(&self.control.state).done = true;
                return;
            }
        };
        let initial = Duration::from_millis(self.config.retry_initial_ms);
        let max = Duration::from_secs(self.config.retry_max_secs);
        let mut backoff = initial;
        // Files a stop's single pass could not send: still in the spool for the next start.
        let mut left = 0;
        loop {
            if self.control.rescan.swap(false, Ordering::Relaxed) {
                self.scan();
            }
            while let Ok(path) = self.rx.try_recv() {
                self.add(path);
            }
            let finishing = {
                let mut s = lock(&self.control.state);
                s.pending = self.pending.len();
                s.finishing
            };
            let Some(path) = self.pending.front().cloned() else {
                if finishing {
                    break;
                }
                match self.rx.recv_timeout(Duration::from_millis(500)) {
                    Ok(path) => self.add(path),
                    Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                    // The output is gone (reload, end of a replay) and nothing is left to send.
                    Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
                }
                continue;
            };
            match runtime.block_on(self.upload(&path)) {
                Ok(Sent::Done) => {
                    self.pending.pop_front();
                    backoff = initial;
                }
                Ok(Sent::Busy) => {
                    // Another uploader of the same spool is sending it: look again later (it
                    // is gone by then, or left behind by a failure and ours to send). At a stop
                    // the other one's own stop deals with it.
                    self.pending.pop_front();
                    if !finishing {
                        self.pending.push_back(path);
                        self.sleep(Duration::from_millis(200));
                    }
                }
                Err(error) => {
                    self.stats.failed.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        message = "Failed to upload a spooled file; retrying.",
                        %error,
                        path = %path.display(),
                        retry_in_ms = backoff.as_millis() as u64,
                        spooled = self.pending.len(),
                    );
                    if finishing {
                        // One pass at stop: the rest waits for the next start.
                        self.pending.pop_front();
                        left += 1;
                        continue;
                    }
                    self.sleep(backoff);
                    backoff = backoff.saturating_mul(2).min(max);
                }
            }
        }
        let mut s = lock(&self.control.state);
        s.pending = self.pending.len() + left;
        s.done = true;
    }

    /// Waits out a backoff while still taking closed files off the channel, so shards never find it
    /// full because S3 is down; a stop cuts the wait short.
    fn sleep(&mut self, wait: Duration) {
        let until = Instant::now() + wait;
        loop {
            let now = Instant::now();
            if now >= until || lock(&self.control.state).finishing {
                return;
            }
            let step = (until - now).min(Duration::from_millis(200));
            match self.rx.recv_timeout(step) {
                Ok(path) => self.add(path),
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => std::thread::sleep(step),
            }
        }
    }

    fn add(&mut self, path: PathBuf) {
        if !self.pending.contains(&path) {
            self.pending.push_back(path);
        }
    }

    /// Adds the closed files of the spool it does not know yet, oldest first.
    fn scan(&mut self) {
        let mut found = Vec::new();
        let suffixes: Vec<&str> = self.suffixes.iter().map(String::as_str).collect();
        super::ring::collect(&self.dir, &suffixes, &mut found, 0);
        found.sort();
        let mut bytes = 0;
        for (_, size, path) in found {
            bytes += size;
            self.add(path);
        }
        self.stats.spool_bytes.store(bytes, Ordering::Relaxed);
    }

    async fn upload(&self, path: &Path) -> Result<Sent, String> {
        let Some(_claim) = Claim::take(path) else {
            // Another uploader of the same spool has it: a reload's new output rescans the spool
            // while the old one still sends what it holds. Sending it twice would count it twice.
            return Ok(Sent::Busy);
        };
        let mut file = match tokio::fs::File::open(path).await {
            Ok(f) => f,
            // Dropped by the spool cap (counted there), uploaded by a reload's other uploader, or
            // removed by hand: nothing to send, and no longer in the spool's size.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Some(cap) = &self.cap {
                    cap.removed(path);
                }
                return Ok(Sent::Done);
            }
            Err(e) => return Err(format!("cannot read the file: {e}")),
        };
        let len = file
            .metadata()
            .await
            .map_err(|e| format!("cannot read the file: {e}"))?
            .len();
        let key = object_key(&self.config.prefix, &self.dir, path)
            .ok_or_else(|| "the file is outside the spool directory".to_owned())?;
        let location = object_store::path::Path::from(key.as_str());
        if len >= self.config.multipart_threshold_bytes {
            self.upload_parts(&mut file, len, &location).await?;
        } else {
            let mut data = Vec::with_capacity(len as usize);
            tokio::io::AsyncReadExt::read_to_end(&mut file, &mut data)
                .await
                .map_err(|e| format!("cannot read the file: {e}"))?;
            let put = object_store::ObjectStoreExt::put(&self.store, &location, data.into());
            within(self.config.timeout_secs, put).await?;
        }
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => {
                tracing::warn!(message = "Uploaded a spooled file but cannot delete it.", %error, path = %path.display())
            }
        }
        if let Some(cap) = &self.cap {
            cap.removed(path);
        }
        self.stats.uploaded.fetch_add(1, Ordering::Relaxed);
        self.stats.uploaded_bytes.fetch_add(len, Ordering::Relaxed);
        let _ = self
            .stats
            .spool_bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                Some(b.saturating_sub(len))
            });
        tracing::debug!(message = "Uploaded a spooled file.", key, bytes = len);
        Ok(Sent::Done)
    }
}

impl Worker {
    /// A multipart upload of `file` (`len` bytes), one part in memory at a time; aborted on
    /// failure so S3 keeps no orphaned parts (the next attempt starts over).
    async fn upload_parts(
        &self,
        file: &mut tokio::fs::File,
        len: u64,
        location: &object_store::path::Path,
    ) -> Result<(), String> {
        let start = object_store::ObjectStoreExt::put_multipart(&self.store, location);
        let mut upload = within(self.config.timeout_secs, start).await?;
        let mut sent = 0;
        let result = async {
            while sent < len {
                let size = (len - sent).min(self.config.multipart_part_bytes);
                let mut part = vec![0; size as usize];
                tokio::io::AsyncReadExt::read_exact(file, &mut part)
                    .await
                    .map_err(|e| format!("cannot read the file: {e}"))?;
                within(self.config.timeout_secs, upload.put_part(part.into())).await?;
                sent += size;
            }
            within(self.config.timeout_secs, upload.complete()).await?;
            Ok(())
        }
        .await;
        if result.is_err() {
            let _ = within(self.config.timeout_secs, upload.abort()).await;
        }
        result
    }
}

/// What became of a file the uploader took up.
enum Sent {
    /// Uploaded, or gone: done with.
    Done,
    /// Being uploaded by another uploader of the same spool.
    Busy,
}

/// `work` with the upload timeout.
async fn within<T>(
    secs: u64,
    work: impl std::future::Future<Output = object_store::Result<T>>,
) -> Result<T, String> {
    match tokio::time::timeout(Duration::from_secs(secs), work).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out".into()),
    }
}

/// Files some uploader of the process is sending right now.
static IN_FLIGHT: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// One uploader's hold on a spooled file for the time of its upload, so no other uploader of the
/// same spool sends it at the same time; released when dropped.
struct Claim(PathBuf);

impl Claim {
    fn take(path: &Path) -> Option<Claim> {
        let mut all = lock(&IN_FLIGHT);
        if all.iter().any(|p| p == path) {
            return None;
        }
        all.push(path.to_owned());
        Some(Claim(path.to_owned()))
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        lock(&IN_FLIGHT).retain(|p| *p != self.0);
    }
}

/// `prefix` + the path of `file` under `dir`, with `/` separators.
fn object_key(prefix: &str, dir: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(dir).ok()?;
    let mut key = prefix.to_owned();
    for (i, part) in rel.components().enumerate() {
        let std::path::Component::Normal(part) = part else {
            return None;
        };
        if i > 0 {
            key.push('/');
        }
        key.push_str(part.to_str()?);
    }
    Some(key)
}

fn build_store(config: &S3Config) -> Result<object_store::aws::AmazonS3, String> {
    use object_store::aws::AmazonS3Builder;
    let mut builder = AmazonS3Builder::from_env().with_bucket_name(&config.bucket);
    let region = config
        .region
        .clone()
        .or_else(|| std::env::var("AWS_REGION").ok())
        .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
        .unwrap_or_else(|| "us-east-1".to_owned());
    builder = builder.with_region(region);
    if let Some(endpoint) = &config.endpoint {
        builder = builder
            .with_endpoint(endpoint)
            .with_allow_http(endpoint.starts_with("http://"))
            .with_virtual_hosted_style_request(false);
    }
    if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
        if let Some(profile) = profile_credentials() {
            builder = builder
                .with_access_key_id(profile.key_id)
                .with_secret_access_key(profile.secret);
            if let Some(token) = profile.token {
                builder = builder.with_token(token);
            }
        }
    }
    // Our own loop retries with its backoff and keeps the file; the client's retries only smooth a
    // single request's transient errors.
    let retry = object_store::RetryConfig {
        max_retries: 2,
        retry_timeout: Duration::from_secs(config.timeout_secs),
        ..Default::default()
    };
    builder
        .with_retry(retry)
        .build()
        .map_err(|e| format!("output.s3: {e}"))
}

struct ProfileCredentials {
    key_id: String,
    secret: String,
    token: Option<String>,
}

/// Static keys of the shared-credentials profile (`AWS_PROFILE`, else `default`) in
/// `AWS_SHARED_CREDENTIALS_FILE` or `~/.aws/credentials`, the chain's step between the environment
/// and the instance role; object_store does not read profiles itself. Role-assuming profiles are
/// not followed: on EC2 the instance role is the way.
fn profile_credentials() -> Option<ProfileCredentials> {
    let file = std::env::var_os("AWS_SHARED_CREDENTIALS_FILE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".aws/credentials")))?;
    let text = std::fs::read_to_string(file).ok()?;
    let profile = std::env::var("AWS_PROFILE").unwrap_or_else(|_| "default".to_owned());
    parse_profile(&text, &profile)
}

fn parse_profile(text: &str, profile: &str) -> Option<ProfileCredentials> {
    let (mut key_id, mut secret, mut token) = (None, None, None);
    let mut in_profile = false;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.starts_with(';') || line.is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            in_profile = name.trim() == profile;
            continue;
        }
        if !in_profile {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let v = v.trim().to_owned();
        match k.trim() {
            "aws_access_key_id" => key_id = Some(v),
            "aws_secret_access_key" => secret = Some(v),
            "aws_session_token" => token = Some(v),
            _ => {}
        }
    }
    Some(ProfileCredentials {
        key_id: key_id?,
        secret: secret?,
        token,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_the_path_under_the_spool() {
        let dir = Path::new("/spool/flows");
        assert_eq!(
            object_key("p/", dir, Path::new("/spool/flows/AWSLogs/1/x.log.gz")).as_deref(),
            Some("p/AWSLogs/1/x.log.gz")
        );
        assert_eq!(object_key("", dir, Path::new("/elsewhere/x.log")), None);
    }

    #[test]
    fn a_profile_gives_its_keys() {
        let text = "[default]\naws_access_key_id = A\naws_secret_access_key = B\n\n[other]\n\
                    aws_access_key_id=C\naws_secret_access_key=D\naws_session_token=E\n";
        let p = parse_profile(text, "other").unwrap();
        assert_eq!((p.key_id.as_str(), p.secret.as_str()), ("C", "D"));
        assert_eq!(p.token.as_deref(), Some("E"));
        assert!(parse_profile(text, "default").unwrap().token.is_none());
        assert!(parse_profile(text, "missing").is_none());
    }
}
