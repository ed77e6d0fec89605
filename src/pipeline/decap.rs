//! From a UDP payload to the mirrored inner frame: VXLAN, or GENEVE around VXLAN (a GWLB endpoint as
//! mirror target). Shared by the live sockets and by replay, so both decapsulate identically.

use std::net::IpAddr;

use crate::base::DropReason;
use crate::wire::link::ether_type;
pub use crate::wire::link::{ip_udp, Encap};
use crate::wire::{geneve, vxlan};

/// A decapsulated mirror packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decapsulated<'a> {
    /// The mirror source, when the encapsulation itself names it (GENEVE from GWLB carries the mirror's
    /// own IP header, whose source is the source ENI); otherwise the datagram's source is used.
    pub source: Option<IpAddr>,
    /// The mirror session's VNI.
    pub vni: u32,
    /// The inner Ethernet frame.
    pub frame: &'a [u8],
}

/// Decapsulates one UDP payload.
pub fn decapsulate(encap: Encap, payload: &[u8]) -> Result<Decapsulated<'_>, DropReason> {
    match encap {
        Encap::Vxlan => vxlan_frame(payload).map(|(vni, frame)| Decapsulated {
            source: None,
            vni,
            frame,
        }),
        Encap::Geneve => geneve_frame(payload),
    }
}

fn vxlan_frame(payload: &[u8]) -> Result<(u32, &[u8]), DropReason> {
    let packet = vxlan::Packet::new_checked(payload).map_err(|_| DropReason::TooShort)?;
    let repr = vxlan::Repr::parse(&packet).map_err(|_| DropReason::BadVxlanFlags)?;
    let frame = &payload[vxlan::HEADER_LEN..];
    if frame.is_empty() {
        return Err(DropReason::EmptyFrame);
    }
    Ok((repr.vni, frame))
}

fn geneve_frame(payload: &[u8]) -> Result<Decapsulated<'_>, DropReason> {
    let packet = geneve::Packet::new_checked(payload).map_err(|_| DropReason::BadGeneve)?;
    let repr = geneve::Repr::parse(&packet).map_err(|_| DropReason::BadGeneve)?;
    let inner = &payload[repr.header_len()..];
    match repr.protocol {
        geneve::PROTO_IPV4 | geneve::PROTO_IPV6 => {
            ip_vxlan(inner).ok_or(DropReason::GeneveInnerNotVxlan)
        }
        geneve::PROTO_ETHERNET => {
            // An Ethernet frame that itself carries the mirror's UDP/VXLAN packet is unwrapped; any
            // other frame is the mirrored frame itself, in the GENEVE VNI's session.
            if let Some(d) = ethernet_vxlan(inner) {
                return Ok(d);
            }
            if inner.is_empty() {
                return Err(DropReason::EmptyFrame);
            }
            Ok(Decapsulated {
                source: None,
                vni: repr.vni,
                frame: inner,
            })
        }
        _ => Err(DropReason::GeneveUnsupportedProtocol),
    }
}

fn ethernet_vxlan(frame: &[u8]) -> Option<Decapsulated<'_>> {
    let ty = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
    matches!(ty, ether_type::IPV4 | ether_type::IPV6)
        .then(|| ip_vxlan(&frame[14..]))
        .flatten()
}

/// Unwraps IPv4 or IPv6 → UDP to port 4789 → VXLAN. Tolerates an IP packet cut short (a capture's snap
/// length), because the VXLAN frame is then simply shorter.
pub(crate) fn ip_vxlan(ip: &[u8]) -> Option<Decapsulated<'_>> {
    let (source, udp) = ip_udp(ip)?;
    if udp.len() < 8 || u16::from_be_bytes([udp[2], udp[3]]) != vxlan::PORT {
        return None;
    }
    let (vni, frame) = vxlan_frame(&udp[8..]).ok()?;
    Some(Decapsulated {
        source: Some(source),
        vni,
        frame,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    fn vxlan_payload(vni: u32, frame: &[u8]) -> Vec<u8> {
        let mut p = vec![0x08, 0, 0, 0, 0, 0, 0, 0];
        p[4..7].copy_from_slice(&vni.to_be_bytes()[1..]);
        p.extend_from_slice(frame);
        p
    }

    #[test]
    fn vxlan_drops_have_reasons() {
        assert_eq!(
            decapsulate(Encap::Vxlan, &[8, 0, 0]),
            Err(DropReason::TooShort)
        );
        assert_eq!(
            decapsulate(Encap::Vxlan, &[0, 0, 0, 0, 0, 0, 1, 0, 1]),
            Err(DropReason::BadVxlanFlags)
        );
        assert_eq!(
            decapsulate(Encap::Vxlan, &vxlan_payload(1, &[])),
            Err(DropReason::EmptyFrame)
        );
        let payload = vxlan_payload(42, &[1, 2, 3]);
        let d = decapsulate(Encap::Vxlan, &payload).unwrap();
        assert_eq!((d.source, d.vni, d.frame), (None, 42, &[1u8, 2, 3][..]));
    }

    #[test]
    fn geneve_ipv4_udp_vxlan_names_the_mirror_source() {
        let mut ip = Vec::new();
        PacketBuilder::ipv4([10, 1, 2, 3], [10, 9, 9, 9], 64)
            .udp(50000, 4789)
            .write(&mut ip, &vxlan_payload(4242, &[0xee; 20]))
            .unwrap();
        let mut g = vec![0u8; 8];
        geneve::Repr {
            protocol: geneve::PROTO_IPV4,
            vni: 0,
            options_len: 0,
        }
        .emit(&mut geneve::Packet::new_unchecked(&mut g[..]));
        g.extend_from_slice(&ip);
        let d = decapsulate(Encap::Geneve, &g).unwrap();
        assert_eq!(d.source, Some(IpAddr::from([10, 1, 2, 3])));
        assert_eq!(d.vni, 4242);
        assert_eq!(d.frame, &[0xee; 20]);

        // The same IP packet to another port is not a mirror packet.
        let n = g.len();
        g[8 + 20 + 3] = 0x00; // UDP destination port 4789 -> 4608
        assert_eq!(
            decapsulate(Encap::Geneve, &g[..n]),
            Err(DropReason::GeneveInnerNotVxlan)
        );
    }

    #[test]
    fn geneve_ethernet_is_the_frame_itself() {
        let mut g = vec![0u8; 8];
        geneve::Repr {
            protocol: geneve::PROTO_ETHERNET,
            vni: 77,
            options_len: 0,
        }
        .emit(&mut geneve::Packet::new_unchecked(&mut g[..]));
        g.extend_from_slice(&[0xff; 14]);
        let d = decapsulate(Encap::Geneve, &g).unwrap();
        assert_eq!((d.source, d.vni, d.frame.len()), (None, 77, 14));
        g[2..4].copy_from_slice(&0x1234u16.to_be_bytes());
        assert_eq!(
            decapsulate(Encap::Geneve, &g),
            Err(DropReason::GeneveUnsupportedProtocol)
        );
        assert_eq!(
            decapsulate(Encap::Geneve, &g[..5]),
            Err(DropReason::BadGeneve)
        );
    }
}
