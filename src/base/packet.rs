//! What a module is given: [`Packet`], borrowing the inner frame, and the small types around it.

use super::{FlowKey, Session, Timestamp};
use crate::wire::inner::{Fragment, IpLayer, Layers, Transport};

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
