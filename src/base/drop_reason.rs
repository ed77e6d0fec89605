//! Why a datagram was not dispatched: the names every layer counts drops under, and that
//! `/metrics` shows. Every datagram received ends either dispatched or under exactly one of these.

macro_rules! drop_reasons {
    ($($(#[$doc:meta])* $variant:ident => $name:literal,)*) => {
        /// Why a datagram was not dispatched.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        pub enum DropReason {
            $($(#[$doc])* $variant,)*
        }

        impl DropReason {
            /// Every reason, in metric order.
            pub const ALL: &'static [DropReason] = &[$(DropReason::$variant,)*];

            /// The stable name used in metrics and logs.
            pub const fn name(self) -> &'static str {
                match self { $(DropReason::$variant => $name,)* }
            }
        }
    };
}

drop_reasons! {
    /// Shorter than the 8-byte VXLAN header.
    TooShort => "too_short",
    /// The VXLAN I flag is not set: not VXLAN, or not a valid VNI.
    BadVxlanFlags => "bad_vxlan_flags",
    /// A VXLAN header with no frame after it.
    EmptyFrame => "empty_frame",
    /// Larger than the buffer it was received into, so the kernel cut it: 9,216 bytes for UDP
    /// listeners (a 9,001-byte jumbo frame plus VXLAN), 65,536 for interface capture.
    Oversize => "oversize",
    /// A GENEVE header that is cut or has an unknown version.
    BadGeneve => "bad_geneve",
    /// GENEVE carrying something other than IPv4, IPv6 or Ethernet.
    GeneveUnsupportedProtocol => "geneve_unsupported_protocol",
    /// GENEVE carrying an IP packet that is not UDP to port 4789 with a VXLAN header.
    GeneveInnerNotVxlan => "geneve_inner_not_vxlan",
    /// The outer source is outside the allowlist and not a configured session.
    SourceRefused => "source_refused",
    /// An allowed source with an unconfigured session while learning is off.
    SessionUnknown => "session_unknown",
    /// The learned-session cap is reached.
    SessionTableFull => "session_table_full",
    /// The shard's queue from this worker is full: modules are slower than ingest.
    ShardQueueFull => "shard_queue_full",
    /// The shard has stopped (it panicked, or the pipeline is shutting down).
    ShardStopped => "shard_stopped",
    /// A capture record that is not a usable frame (replay and interface capture only).
    BadCaptureRecord => "bad_capture_record",
}

/// Number of drop reasons.
pub const DROP_REASONS: usize = DropReason::ALL.len();
