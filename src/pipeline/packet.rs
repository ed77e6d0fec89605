//! What a module is given: [`Packet`], borrowing the inner frame, and the small types around it.

use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::session::Session;
use crate::wire::inner::{Fragment, IpLayer, Layers, Transport};

/// A point in packet time: nanoseconds since the Unix epoch.
///
/// Live, it is the kernel's receive timestamp; offline, the capture's. Modules read time only from
/// packets and ticks, never from the clock, so a replay gives the same output every time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(u64);

impl Timestamp {
    /// From nanoseconds since the epoch.
    pub const fn from_nanos(nanos: u64) -> Self {
        Timestamp(nanos)
    }

    /// From whole seconds since the epoch.
    pub const fn from_secs(secs: u64) -> Self {
        Timestamp(secs.saturating_mul(1_000_000_000))
    }

    /// The wall clock, for sources without a kernel timestamp and for idle ticks.
    pub fn now() -> Self {
        let d = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp(d.as_nanos() as u64)
    }

    /// Nanoseconds since the epoch.
    pub const fn nanos(self) -> u64 {
        self.0
    }

    /// Whole seconds since the epoch.
    pub const fn secs(self) -> u64 {
        self.0 / 1_000_000_000
    }

    /// The nanoseconds past [`Timestamp::secs`].
    pub const fn subsec_nanos(self) -> u32 {
        (self.0 % 1_000_000_000) as u32
    }

    /// This time plus `nanos`.
    pub const fn add_nanos(self, nanos: u64) -> Self {
        Timestamp(self.0.saturating_add(nanos))
    }
}

/// The 5-tuple of an IP packet, as sent (not ordered).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Source port; 0 for protocols without ports and for later fragments.
    pub src_port: u16,
    /// Destination port; 0 likewise.
    pub dst_port: u16,
    /// IP protocol number.
    pub protocol: u8,
}

impl FlowKey {
    /// The key of the other direction.
    pub fn reversed(&self) -> FlowKey {
        FlowKey {
            src: self.dst,
            dst: self.src,
            src_port: self.dst_port,
            dst_port: self.src_port,
            ..*self
        }
    }

    /// The same key for both directions, and whether this packet went from the canonical "a" side.
    pub fn canonical(&self) -> (FlowKey, bool) {
        if (self.src, self.src_port) <= (self.dst, self.dst_port) {
            (*self, true)
        } else {
            (self.reversed(), false)
        }
    }
}

/// One inner packet, as every module sees it.
#[derive(Debug, Clone, Copy)]
pub struct Packet<'a> {
    /// The mirror session it arrived in.
    pub session: &'a Session,
    /// Packet time.
    pub ts: Timestamp,
    /// The inner Ethernet frame, after any truncation by vxtap.
    pub frame: &'a [u8],
    /// The frame's length as it arrived, before vxtap's truncation (AWS may already have cut it; see
    /// [`Packet::ip_len`] for the length the sender put on the wire).
    pub orig_len: u32,
    /// What the dissector found.
    pub layers: &'a Layers,
}

impl<'a> Packet<'a> {
    /// Whether vxtap or AWS cut this frame short of what its headers announce.
    pub fn truncated(&self) -> bool {
        self.frame.len() < self.orig_len as usize || self.layers.cut.is_some()
    }

    /// The IP layer, if any.
    pub fn ip(&self) -> Option<&'a IpLayer> {
        self.layers.ip.as_ref()
    }

    /// The IP packet length the sender put on the wire (from the IP header), which survives AWS's and
    /// vxtap's truncation. `None` for non-IP frames.
    pub fn ip_len(&self) -> Option<u32> {
        self.layers.ip.map(|ip| ip.total_len)
    }

    /// The transport layer.
    pub fn transport(&self) -> &'a Transport {
        &self.layers.transport
    }

    /// The 5-tuple, for IP packets. Later fragments have ports 0.
    pub fn flow(&self) -> Option<FlowKey> {
        let ip = self.layers.ip?;
        let (src_port, dst_port) = self.layers.transport.ports().unwrap_or((0, 0));
        Some(FlowKey {
            src: ip.src,
            dst: ip.dst,
            src_port,
            dst_port,
            protocol: ip.protocol,
        })
    }

    /// The bytes from the network header on.
    pub fn l3(&self) -> &'a [u8] {
        self.frame
            .get(self.layers.l3_offset as usize..)
            .unwrap_or(&[])
    }

    /// The transport payload that was captured (may be shorter than what was sent).
    pub fn payload(&self) -> &'a [u8] {
        self.frame
            .get(self.layers.payload_offset as usize..)
            .unwrap_or(&[])
    }

    /// Whether this is a fragment of a larger IP datagram.
    pub fn is_fragment(&self) -> bool {
        self.layers
            .ip
            .is_some_and(|ip| ip.fragment != Fragment::None)
    }
}
