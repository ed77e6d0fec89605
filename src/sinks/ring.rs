//! A total size cap over the files a module kind writes: when closed files add up to more than the cap,
//! the oldest are deleted, as `tcpdump -W` does with its ring of files.
//!
//! Shared by all shards' instances of one module (they write into the same directory); touched when a
//! file opens or closes, never per record.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// The ring of one output directory.
#[derive(Debug)]
pub struct SizeCap {
    max_bytes: u64,
    inner: Mutex<Ring>,
    /// Files deleted to stay under the cap: for an S3 spool, files lost before their upload.
    dropped: AtomicU64,
}

#[derive(Debug, Default)]
struct Ring {
    /// Files in the order they were opened; `None` size while still open.
    files: VecDeque<(PathBuf, Option<u64>)>,
    closed_bytes: u64,
}

impl SizeCap {
    /// A cap of `max_bytes` over the files already in `dir` (from an earlier run) whose names end in one
    /// of `suffixes`, oldest first by modification time, and those written from now on.
    pub fn new(max_bytes: u64, dir: &Path, suffixes: &[&str]) -> SizeCap {
        let mut existing = Vec::new();
        collect(dir, suffixes, &mut existing, 0);
        existing.sort();
        let mut ring = Ring::default();
        for (_, size, path) in existing {
            ring.closed_bytes += size;
            ring.files.push_back((path, Some(size)));
        }
        let cap = SizeCap {
            max_bytes,
            inner: Mutex::new(ring),
            dropped: AtomicU64::new(0),
        };
        cap.enforce();
        cap
    }

    /// Notes a file that was just opened.
    pub fn opened(&self, path: &Path) {
        self.lock().files.push_back((path.to_owned(), None));
    }

    /// Notes that `opened_as` was closed (and perhaps renamed to `path`) at `size` bytes, then deletes
    /// the oldest closed files while the total is over the cap.
    pub fn closed(&self, opened_as: &Path, path: &Path, size: u64) {
        {
            let mut ring = self.lock();
            if let Some(entry) = ring.files.iter_mut().find(|(p, _)| p == opened_as) {
                *entry = (path.to_owned(), Some(size));
            } else {
                ring.files.push_back((path.to_owned(), Some(size)));
            }
            ring.closed_bytes += size;
        }
        self.enforce();
    }

    /// Notes that a closed file left the directory another way (uploaded from an S3 spool), so it
    /// no longer counts toward the cap.
    pub fn removed(&self, path: &Path) {
        let mut ring = self.lock();
        if let Some(i) = ring.files.iter().position(|(p, _)| p == path) {
            if let Some((_, size)) = ring.files.remove(i) {
                ring.closed_bytes = ring.closed_bytes.saturating_sub(size.unwrap_or(0));
            }
        }
    }

    /// Files deleted so far to stay under the cap.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Bytes of the closed files under the cap.
    pub fn closed_bytes(&self) -> u64 {
        self.lock().closed_bytes
    }

    fn enforce(&self) {
        let mut ring = self.lock();
        while ring.closed_bytes > self.max_bytes {
            let Some(i) = ring.files.iter().position(|(_, size)| size.is_some()) else {
                break;
            };
            let Some((path, size)) = ring.files.remove(i) else {
                break;
            };
            ring.closed_bytes -= size.unwrap_or(0);
            match std::fs::remove_file(&path) {
                Ok(()) => {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(message = "Deleted the oldest file to stay under the size cap.", path = %path.display())
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => {
                    tracing::warn!(message = "Cannot delete a file over the size cap.", %error, path = %path.display())
                }
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Ring> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Files under `dir` (a few levels deep, for date-partitioned layouts) ending in one of `suffixes`.
pub(super) fn collect(
    dir: &Path,
    suffixes: &[&str],
    out: &mut Vec<(std::time::SystemTime, u64, PathBuf)>,
    depth: u32,
) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(meta) = entry.metadata() else { continue };
        let path = entry.path();
        if meta.is_dir() && depth < 8 {
            collect(&path, suffixes, out, depth + 1);
        } else if meta.is_file()
            && path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| suffixes.iter().any(|s| n.ends_with(s)))
        {
            let mtime = meta.modified().unwrap_or(std::time::UNIX_EPOCH);
            out.push((mtime, meta.len(), path));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oldest_closed_files_go_first_and_open_ones_stay() {
        let tmp = tempfile::Builder::new()
            .prefix("vxtap-ring-")
            .tempdir()
            .unwrap();
        let dir = tmp.path();
        let old = dir.join("old.pcap");
        std::fs::write(&old, [0u8; 600]).unwrap();
        std::fs::write(dir.join("other.txt"), [0u8; 5000]).unwrap();
        let cap = SizeCap::new(1000, dir, &[".pcap"]);
        assert!(old.exists(), "under the cap");
        let (a, b) = (dir.join("a.pcap"), dir.join("b.pcap"));
        cap.opened(&a);
        cap.opened(&b);
        std::fs::write(&a, [0u8; 300]).unwrap();
        std::fs::write(&b, [0u8; 300]).unwrap();
        cap.closed(&b, &b, 300);
        assert!(old.exists() && a.exists() && b.exists(), "900 bytes closed");
        cap.closed(&a, &a, 300);
        assert!(!old.exists(), "1200 > 1000: the oldest goes");
        assert!(a.exists() && b.exists());
        assert!(dir.join("other.txt").exists(), "not ours");
    }
}
