//! The words of the flow layer: which way a packet went, how a flow ended, where a TCP connection
//! stands, and what is counted per direction and per shard.

use std::sync::atomic::AtomicU64;

use crate::base::Timestamp;

/// Which way a packet went, relative to the flow's client (the side that opened it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dir {
    /// From the client to the server.
    ToServer,
    /// From the server to the client.
    ToClient,
}

impl Dir {
    /// 0 for [`Dir::ToServer`], 1 for [`Dir::ToClient`]: for arrays indexed by direction.
    pub const fn index(self) -> usize {
        match self {
            Dir::ToServer => 0,
            Dir::ToClient => 1,
        }
    }

    /// The other direction.
    pub const fn reverse(self) -> Dir {
        match self {
            Dir::ToServer => Dir::ToClient,
            Dir::ToClient => Dir::ToServer,
        }
    }

    /// Both directions, to server first.
    pub const BOTH: [Dir; 2] = [Dir::ToServer, Dir::ToClient];

    /// `to_server` / `to_client`, as records and metrics name them.
    pub const fn name(self) -> &'static str {
        match self {
            Dir::ToServer => "to_server",
            Dir::ToClient => "to_client",
        }
    }
}

/// Why a flow ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum EndReason {
    /// FIN both ways, then `tcp_closed_timeout_secs` without packets, or a new SYN on the same
    /// 5-tuple (the next connection starts as a new flow).
    Fin,
    /// A RST, then `tcp_closed_timeout_secs` without packets, or a new SYN on the same 5-tuple.
    Rst,
    /// No packet for the protocol's (or the TCP state's) timeout.
    IdleTimeout,
    /// The shard's table was full and this flow was nearest its timeout.
    Evicted,
    /// A config reload replaced the modules: their flows end with the old instances, and the new
    /// ones start from the next packet.
    Reload,
    /// vxtap stopped (the drain after SIGTERM, or SIGINT).
    Shutdown,
    /// The replayed captures ended.
    EndOfReplay,
}

impl EndReason {
    /// Every reason, in metric order.
    pub const ALL: [EndReason; 7] = [
        EndReason::Fin,
        EndReason::Rst,
        EndReason::IdleTimeout,
        EndReason::Evicted,
        EndReason::Reload,
        EndReason::Shutdown,
        EndReason::EndOfReplay,
    ];

    /// The stable name in records and metrics.
    pub const fn name(self) -> &'static str {
        match self {
            EndReason::Fin => "fin",
            EndReason::Rst => "rst",
            EndReason::IdleTimeout => "idle_timeout",
            EndReason::Evicted => "evicted",
            EndReason::Reload => "reload",
            EndReason::Shutdown => "shutdown",
            EndReason::EndOfReplay => "end_of_replay",
        }
    }
}

/// Where a TCP connection stands, as far as the mirror shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TcpState {
    /// The client's SYN was seen, nothing back yet.
    SynSent,
    /// The server's SYN-ACK was seen, not yet the client's ACK.
    SynReceived,
    /// The handshake completed, or the connection was picked up mid-stream.
    Established,
    /// A FIN one way.
    Closing,
    /// A FIN each way.
    Closed,
    /// A RST.
    Reset,
}

impl TcpState {
    /// The stable name in records.
    pub const fn name(self) -> &'static str {
        match self {
            TcpState::SynSent => "syn_sent",
            TcpState::SynReceived => "syn_received",
            TcpState::Established => "established",
            TcpState::Closing => "closing",
            TcpState::Closed => "closed",
            TcpState::Reset => "reset",
        }
    }
}

/// What one direction of a flow carried.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DirStats {
    /// Packets.
    pub packets: u64,
    /// IP bytes as the sender put them on the wire (the IP length, which survives truncation).
    pub bytes: u64,
    /// Transport payload bytes as sent (also from the IP length).
    pub payload_bytes: u64,
    /// TCP segments that repeated sequence space already seen (reassembled directions only).
    pub retransmissions: u32,
    /// Holes in the reassembled stream (reassembled directions only).
    pub gaps: u32,
}

/// When a TCP connection's milestones were seen; `None` when not (yet).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TcpTimes {
    /// The client's SYN.
    pub syn: Option<Timestamp>,
    /// The server's SYN-ACK.
    pub syn_ack: Option<Timestamp>,
    /// The client's ACK completing the handshake.
    pub established: Option<Timestamp>,
    /// The first FIN from the client.
    pub fin_to_server: Option<Timestamp>,
    /// The first FIN from the server.
    pub fin_to_client: Option<Timestamp>,
    /// The first RST, either way.
    pub rst: Option<Timestamp>,
}

/// A shard's flow-layer counters, written by the shard only and read by `/metrics`.
#[derive(Debug, Default)]
pub struct FlowCounters {
    /// Flows in the table now.
    pub active: AtomicU64,
    /// Flows started.
    pub started: AtomicU64,
    /// Flows ended, by [`EndReason`] (indexed as [`EndReason::ALL`]).
    pub ended: [AtomicU64; 7],
    /// Bytes of out-of-order segments held for reassembly now.
    pub reassembly_bytes: AtomicU64,
    /// Holes reported in reassembled streams.
    pub gaps: AtomicU64,
    /// Bytes those holes covered.
    pub gap_bytes: AtomicU64,
    /// Stream bytes delivered to modules in order.
    pub stream_bytes: AtomicU64,
    /// Packets of new flows that a full table could not take (none unless eviction fails).
    pub untracked: AtomicU64,
}

/// What a module asks of the flow table's per-direction interval counters
/// (`Module::flow_intervals` answers with it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IntervalSpec {
    /// The interval, in seconds of packet time. Intervals are aligned to multiples of it, so every
    /// shard closes them at the same moments.
    pub interval_secs: u64,
}

/// What one direction of a flow carried since its counters were last handed over.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IntervalCounts {
    /// IP bytes as the sender put them on the wire (the IP length, which survives truncation).
    pub bytes: u64,
    /// The earliest packet's time.
    pub first: Timestamp,
    /// The latest packet's time.
    pub last: Timestamp,
    /// Packets.
    pub packets: u32,
    /// The TCP flags of these packets, OR-ed; 0 for other protocols.
    pub tcp_flags: u8,
    /// Whether one of these packets carried SYN and ACK together (a handshake's reply), which the
    /// OR of the flags cannot tell from a SYN and a later ACK.
    pub syn_ack: bool,
}

/// Why a direction's interval counters are handed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IntervalClose {
    /// The interval ended: every direction with packets in it, those of flows that ended inside it
    /// included.
    IntervalEnd,
    /// The flow ends and its counters cannot wait for the interval's end: evicted from a full
    /// table (the interval is a maximum, so the record goes out early, complete), or every flow at
    /// a reload, a shutdown or a replay's end.
    FlowEnd(EndReason),
}
