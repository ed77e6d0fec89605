//! Packets travelling together from one ingest thread to one shard.

use std::sync::Arc;

use crossbeam_channel::Sender;

use crate::base::{Session, Timestamp};
use crate::wire::inner::Layers;

/// Packets per batch: enough to amortise a channel hand-off, few enough to keep latency low.
pub(crate) const BATCH_PACKETS: usize = 64;
/// Initial frame bytes per batch: seven jumbo frames.
pub(crate) const BATCH_BYTES: usize = 64 * 1024;

/// One packet in a batch: where its bytes are, and what ingest already learned about it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Entry {
    pub(crate) start: u32,
    pub(crate) len: u32,
    pub(crate) orig_len: u32,
    pub(crate) session: u16,
    pub(crate) ts: Timestamp,
    /// Position in its ingest thread's input (see [`Mark`]).
    pub(crate) seq: u64,
    pub(crate) layers: Layers,
}

/// What an ordered (replay) ingest tells every shard after a batch's packets, so that all shards see
/// time pass at the same place in the input whichever packets they were given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mark {
    /// Tick at `now`, before the packet at input position `seq`.
    Tick { now: Timestamp, seq: u64 },
    /// The input has ended; `last` is the latest packet time of the whole input.
    End { last: Timestamp },
}

/// A batch of packets. Batches are allocated once and reused: a hand-off batch cycles between its
/// worker's free pool and the shard thread (`home` is the way back), a run-to-completion batch never
/// leaves its worker. Either way steady-state ingest allocates nothing.
#[derive(Debug)]
pub(crate) struct Batch {
    pub(crate) data: Vec<u8>,
    pub(crate) entries: Vec<Entry>,
    /// The sessions the entries refer to, by index: one reference count per session per batch rather
    /// than per packet.
    pub(crate) sessions: Vec<Arc<Session>>,
    /// Where a shard thread returns the batch once processed; `None` for a batch that never travels.
    pub(crate) home: Option<Sender<Box<Batch>>>,
    /// Ordered ingest only: what comes after the packets.
    pub(crate) mark: Option<Mark>,
}

impl Batch {
    pub(crate) fn new(home: Option<Sender<Box<Batch>>>) -> Box<Batch> {
        Box::new(Batch {
            data: Vec::with_capacity(BATCH_BYTES),
            entries: Vec::with_capacity(BATCH_PACKETS),
            sessions: Vec::with_capacity(4),
            home,
            mark: None,
        })
    }

    pub(crate) fn clear(&mut self) {
        self.data.clear();
        self.entries.clear();
        self.sessions.clear();
        self.mark = None;
    }

    /// No packets and no mark: nothing to send.
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.mark.is_none()
    }

    /// Index of `session` in this batch, adding it if new. A batch holds the few sessions whose traffic
    /// arrived together, so a scan from the newest (pointer compares) beats hashing.
    #[inline]
    fn session_index(&mut self, session: &Arc<Session>) -> u16 {
        if let Some(i) = self.sessions.iter().rposition(|s| Arc::ptr_eq(s, session)) {
            return i as u16;
        }
        self.sessions.push(session.clone());
        (self.sessions.len() - 1) as u16
    }

    /// Appends one packet; the caller has checked [`Batch::is_full_for`].
    #[inline]
    pub(crate) fn push(
        &mut self,
        ts: Timestamp,
        seq: u64,
        session: &Arc<Session>,
        frame: &[u8],
        orig_len: u32,
        layers: Layers,
    ) {
        let session = self.session_index(session);
        let start = self.data.len() as u32;
        self.data.extend_from_slice(frame);
        self.entries.push(Entry {
            start,
            len: frame.len() as u32,
            orig_len,
            session,
            ts,
            seq,
            layers,
        });
    }

    /// Charges every packet of a batch that could not be sent to its session (drop path only).
    pub(crate) fn count_dropped(&self) {
        for e in &self.entries {
            if let Some(s) = self.sessions.get(usize::from(e.session)) {
                s.count_dropped(1);
            }
        }
    }

    /// Whether a frame of `frame_len` bytes no longer fits: the batch has its packets, or as many
    /// sessions as an entry can name, or its bytes would outgrow the buffer (a batch that is empty
    /// takes any frame, so a jumbo frame never waits forever).
    pub(crate) fn is_full_for(&self, frame_len: usize) -> bool {
        self.entries.len() >= BATCH_PACKETS
            || self.sessions.len() >= usize::from(u16::MAX)
            || (!self.entries.is_empty() && self.data.len() + frame_len > self.data.capacity())
    }
}
