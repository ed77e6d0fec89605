//! What a shard processed per session, for `/sessions` and the session metrics.

use std::sync::{Arc, Mutex};

use rustc_hash::FxHashMap;

use crate::base::{Session, SessionKey};

/// What one shard processed for one session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionTally {
    /// Packets.
    pub packets: u64,
    /// Inner frame bytes as they were on the wire (before truncation).
    pub bytes: u64,
    /// The shard tick at which this session last had a packet; only used to bound the map.
    touched: u64,
}

/// Sessions a shard keeps tallies for before it forgets the longest idle ones: learned sessions come
/// and go, and a tally must not outlive them forever.
const MAX_TALLIED_SESSIONS: usize = 16_384;

/// A shard's private per-session counts.
#[derive(Debug, Default)]
pub(crate) struct SessionTallies {
    map: FxHashMap<SessionKey, SessionTally>,
    /// Counts for the batch being processed, indexed like `Batch::sessions`, so the map is touched once
    /// per session per batch rather than per packet.
    batch: Vec<(u64, u64)>,
    ticks: u64,
    dirty: bool,
}

impl SessionTallies {
    pub(crate) fn begin(&mut self, sessions: usize) {
        self.batch.clear();
        self.batch.resize(sessions, (0, 0));
    }

    #[inline]
    pub(crate) fn count(&mut self, session: u16, orig_len: u32) {
        if let Some(t) = self.batch.get_mut(usize::from(session)) {
            t.0 += 1;
            t.1 += u64::from(orig_len);
        }
    }

    pub(crate) fn end(&mut self, sessions: &[Arc<Session>]) {
        for (s, (packets, bytes)) in sessions.iter().zip(&self.batch) {
            if *packets > 0 {
                let t = self.map.entry(s.key).or_default();
                t.packets += packets;
                t.bytes += bytes;
                t.touched = self.ticks;
                self.dirty = true;
            }
        }
    }

    pub(crate) fn publish(&mut self, to: &Mutex<FxHashMap<SessionKey, SessionTally>>) {
        self.ticks += 1;
        if !self.dirty {
            return;
        }
        self.dirty = false;
        if self.map.len() > MAX_TALLIED_SESSIONS {
            let mut touched: Vec<u64> = self.map.values().map(|t| t.touched).collect();
            touched.sort_unstable();
            let cut = touched[self.map.len() - MAX_TALLIED_SESSIONS];
            self.map.retain(|_, t| t.touched >= cut);
        }
        let mut published = to.lock().unwrap_or_else(|e| e.into_inner());
        published.clone_from(&self.map);
    }
}
