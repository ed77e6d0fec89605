//! Where packets come from, which decides two things at once: what a full queue does, and whether
//! time can pass without packets.

/// What feeds a pipeline.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Feed {
    /// Sockets and interfaces. A network cannot be asked to wait, so a shard that falls behind costs
    /// counted drops (`shard_queue_full`) rather than a blocked receive loop; and while no packets
    /// arrive, modules still tick on the wall clock, so records of an idle session go out on time.
    #[default]
    Live,
    /// Capture files. A file can be read again, so ingest waits for a shard that is behind and loses
    /// nothing; and time is packet time only, so the same file gives the same records however fast
    /// it was read.
    Offline,
}

impl Feed {
    /// Whether this is a live feed.
    pub const fn is_live(self) -> bool {
        matches!(self, Feed::Live)
    }
}
