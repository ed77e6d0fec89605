//! A door for `benches/flowtable.rs` to the shard's flow table, which is crate-private: the table
//! with a consumer that keeps nothing, so the benchmark measures the table's own per-packet cost.
//! Not an API: hidden from the docs, and free to change with the table.

use super::table::{FlowEvents, FlowTable};
use super::{Chunk, Dir, DirInterval, EndReason, Flow, IntervalSpec};
use crate::base::{Packet, Timestamp};
use crate::config::FlowConfig;

/// A flow-aware module that only looks at what it is given.
struct Null {
    seen: u64,
}

impl FlowEvents for Null {
    fn start(&mut self, flow: &mut Flow<'_>, _pkt: &Packet<'_>) {
        self.seen = self.seen.wrapping_add(flow.id());
    }
    fn packet(&mut self, _flow: &mut Flow<'_>, _pkt: &Packet<'_>, dir: Dir) {
        self.seen = self.seen.wrapping_add(dir.index() as u64);
    }
    fn stream(&mut self, _flow: &mut Flow<'_>, _dir: Dir, _chunk: &Chunk<'_>) {}
    fn end(&mut self, flow: &mut Flow<'_>, _reason: EndReason) {
        self.seen = self.seen.wrapping_add(flow.stats(Dir::ToServer).packets);
    }
    fn interval(&mut self, interval: &DirInterval<'_>) {
        self.seen = self.seen.wrapping_add(u64::from(interval.counts().packets));
    }
    fn interval_end(&mut self, now: Timestamp) {
        self.seen = self.seen.wrapping_add(now.nanos());
    }
}

/// The shard's flow table with one flow-aware module that keeps nothing.
pub struct TableBench {
    table: FlowTable,
    events: Null,
}

impl TableBench {
    /// A table as a shard with one flow-aware module builds it from `config`.
    pub fn new(config: &FlowConfig) -> TableBench {
        TableBench {
            table: FlowTable::new(config, 1),
            events: Null { seen: 0 },
        }
    }

    /// The same, keeping per-direction interval counters as it does when flowlog rides it.
    pub fn with_intervals(config: &FlowConfig, interval_secs: u64) -> TableBench {
        let mut bench = TableBench::new(config);
        bench
            .table
            .set_intervals(Some(IntervalSpec { interval_secs }));
        bench
    }

    /// What the shard does before a batch (up to 64 packets).
    pub fn prepare(&mut self, packets: &[Packet<'_>]) {
        self.table.prepare(packets);
    }

    /// One packet.
    pub fn packet(&mut self, pkt: &Packet<'_>) {
        self.table.packet(pkt, &mut self.events);
    }

    /// A tick: ends the flows idle past their timeout.
    pub fn expire(&mut self, now: Timestamp) {
        self.table.expire(now, &mut self.events);
        self.table.close_interval_if_due(now, &mut self.events);
    }

    /// Flows in the table.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Directions of the flows in the table that carried at least one packet.
    pub fn directions(&self) -> usize {
        self.table.directions()
    }

    /// Something derived from every event, so that none can be optimised away.
    pub fn seen(&self) -> u64 {
        self.events.seen
    }
}
