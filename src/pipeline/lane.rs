//! One ingest thread's way to one shard: either the shard itself, run in place, or a channel to the
//! shard's thread with a bounded pool of batches.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TrySendError};

use super::batch::Batch;
use super::shard::Shard;
use crate::base::DropReason;

/// What a hand-off lane does when its whole allowance of batches is in flight (the shard is behind).
#[derive(Debug, Clone)]
pub(crate) enum WhenFull {
    /// Live: drop the packet (`shard_queue_full`); a network cannot be asked to wait.
    Drop,
    /// Offline: wait for a batch to come back, unless the shard's thread has ended (`shard_gone`),
    /// so a replay is lossless and never waits on a dead shard.
    Wait { shard_gone: Arc<AtomicBool> },
}

/// One ingest thread → one shard.
pub(crate) enum Lane {
    /// Run-to-completion: the shard runs on the ingest thread, one batch at a time, so there is no
    /// queue to fill and nothing to drop.
    Inline {
        shard: Box<Shard>,
        batch: Box<Batch>,
    },
    /// Hand-off to the shard's own thread.
    Handoff(HandoffLane),
}

/// The sending side of a hand-off: the batch being filled and the pool of batches coming back.
pub(crate) struct HandoffLane {
    tx: Sender<Box<Batch>>,
    free_tx: Sender<Box<Batch>>,
    free_rx: Receiver<Box<Batch>>,
    current: Option<Box<Batch>>,
    allocated: usize,
    max_batches: usize,
    when_full: WhenFull,
}

/// What sending a lane's batch did: packets dispatched, and packets dropped with the reason.
pub(crate) type Sent = (u64, Option<(DropReason, u64)>);

impl Lane {
    pub(crate) fn inline(shard: Shard) -> Lane {
        Lane::Inline {
            shard: Box::new(shard),
            batch: Batch::new(None),
        }
    }

    /// A lane that may have at most `max_batches` batches in flight to the shard thread behind `tx`.
    pub(crate) fn handoff(tx: Sender<Box<Batch>>, max_batches: usize, when_full: WhenFull) -> Lane {
        // Bounded, not unbounded: crossbeam's unbounded channel allocates a block every 31 sends,
        // which would be a steady allocation on the shard's return path. No more than `max_batches`
        // batches ever exist for this lane, so the returning send never waits.
        let (free_tx, free_rx) = crossbeam_channel::bounded(max_batches);
        Lane::Handoff(HandoffLane {
            tx,
            free_tx,
            free_rx,
            current: None,
            allocated: 0,
            max_batches,
            when_full,
        })
    }

    /// The batch to append to, or `None` when a hand-off lane has its whole allowance in flight and
    /// may not wait.
    #[inline]
    pub(crate) fn batch(&mut self) -> Option<&mut Batch> {
        match self {
            Lane::Inline { batch, .. } => Some(batch),
            Lane::Handoff(lane) => lane.batch(),
        }
    }

    /// Processes (run-to-completion) or sends (hand-off) the batch being filled.
    pub(crate) fn send(&mut self) -> Sent {
        match self {
            Lane::Inline { shard, batch } => {
                let n = batch.entries.len() as u64;
                if !batch.is_empty() {
                    // Settings from a reload apply between batches, as on a shard thread.
                    shard.apply_control();
                    shard.process(batch);
                    batch.clear();
                }
                (n, None)
            }
            Lane::Handoff(lane) => lane.send(),
        }
    }

    /// How many batches the lane can fill and send before it would have to wait for its shard (a
    /// run-to-completion lane never waits, nor does one whose shard's thread has ended: its packets
    /// are counted as dropped at once).
    pub(crate) fn room(&self) -> usize {
        match self {
            Lane::Inline { .. } => usize::MAX,
            Lane::Handoff(HandoffLane {
                when_full: WhenFull::Wait { shard_gone },
                ..
            }) if shard_gone.load(Ordering::Acquire) => usize::MAX,
            Lane::Handoff(lane) => {
                lane.max_batches - lane.allocated
                    + lane.free_rx.len()
                    + usize::from(lane.current.is_some())
            }
        }
    }

    /// The shard this lane runs itself, if it is a run-to-completion lane.
    pub(crate) fn inline_shard(&mut self) -> Option<&mut Shard> {
        match self {
            Lane::Inline { shard, .. } => Some(shard),
            Lane::Handoff(_) => None,
        }
    }
}

impl HandoffLane {
    #[inline]
    fn batch(&mut self) -> Option<&mut Batch> {
        if self.current.is_none() {
            self.current = match self.free_rx.try_recv() {
                Ok(b) => Some(b),
                Err(_) if self.allocated < self.max_batches => {
                    self.allocated += 1;
                    Some(Batch::new(Some(self.free_tx.clone())))
                }
                Err(_) => self.wait_for_batch(),
            };
        }
        self.current.as_deref_mut()
    }

    #[cold]
    fn wait_for_batch(&self) -> Option<Box<Batch>> {
        let WhenFull::Wait { shard_gone } = &self.when_full else {
            return None;
        };
        loop {
            match self.free_rx.recv_timeout(Duration::from_millis(20)) {
                Ok(b) => return Some(b),
                Err(_) if shard_gone.load(Ordering::Acquire) => return None,
                Err(_) => {}
            }
        }
    }

    fn send(&mut self) -> Sent {
        let Some(batch) = self.current.take() else {
            return (0, None);
        };
        if batch.is_empty() {
            self.current = Some(batch);
            return (0, None);
        }
        let n = batch.entries.len() as u64;
        let sent = match self.when_full {
            // The channel holds every batch this lane may have in flight, so this wait is brief
            // unless the shard is stuck; a stopped shard disconnects it.
            WhenFull::Wait { .. } => self
                .tx
                .send(batch)
                .map_err(|e| TrySendError::Disconnected(e.into_inner())),
            WhenFull::Drop => self.tx.try_send(batch),
        };
        let (mut batch, reason) = match sent {
            Ok(()) => return (n, None),
            Err(TrySendError::Full(b)) => (b, DropReason::ShardQueueFull),
            Err(TrySendError::Disconnected(b)) => (b, DropReason::ShardStopped),
        };
        batch.count_dropped();
        batch.clear();
        self.current = Some(batch);
        (0, Some((reason, n)))
    }
}
