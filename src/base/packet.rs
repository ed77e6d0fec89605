//! What a module is given: [`Packet`], borrowing the inner frame, and the small types around it.

use std::sync::Arc;

use super::{FlowKey, Session, Timestamp};
use crate::wire::inner::{Fragment, IpLayer, Layer, Layers, Transport};

/// One inner packet, as every module sees it.
#[derive(Debug, Clone, Copy)]
pub struct Packet<'a> {
    /// The mirror session it arrived in (an `Arc`, so that state that outlives the packet, a flow's,
    /// can keep the session alive without copying it).
    pub session: &'a Arc<Session>,
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

    /// The TCP header's sequence and acknowledgement numbers, flags and window, for TCP packets
    /// whose first 16 header bytes were captured.
    pub fn tcp(&self) -> Option<TcpHeader> {
        if !matches!(self.layers.transport, Transport::Tcp { .. }) {
            return None;
        }
        let at = self.layers.l4_offset? as usize;
        let h = self.frame.get(at..at + 16)?;
        let be32 = |i: usize| u32::from_be_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
        Some(TcpHeader {
            seq: be32(4),
            ack: be32(8),
            flags: h[13],
            window: u16::from_be_bytes([h[14], h[15]]),
        })
    }

    /// How many transport payload bytes the sender put on the wire, from the IP length: more than
    /// [`Packet::payload`] holds when AWS or vxtap cut the packet. 0 for non-IP frames and for
    /// packets cut before their payload (where the payload starts is then unknown).
    pub fn wire_payload_len(&self) -> u32 {
        let Some(ip) = self.layers.ip else { return 0 };
        if self.layers.cut.is_some_and(|c| c != Layer::Payload) {
            return 0;
        }
        (self.layers.l3_offset + ip.total_len).saturating_sub(self.layers.payload_offset)
    }

    /// Whether this is a fragment of a larger IP datagram.
    pub fn is_fragment(&self) -> bool {
        self.layers
            .ip
            .is_some_and(|ip| ip.fragment != Fragment::None)
    }
}

/// The TCP header fields the flow layer reads, beyond the ports and flags of [`Transport::Tcp`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpHeader {
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgement number (meaningful with the ACK flag).
    pub ack: u32,
    /// The flags byte: FIN 0x01, SYN 0x02, RST 0x04, PSH 0x08, ACK 0x10, URG 0x20.
    pub flags: u8,
    /// The receive window, unscaled.
    pub window: u16,
}

impl TcpHeader {
    /// FIN.
    pub const FIN: u8 = 0x01;
    /// SYN.
    pub const SYN: u8 = 0x02;
    /// RST.
    pub const RST: u8 = 0x04;
    /// ACK.
    pub const ACK: u8 = 0x10;
}
