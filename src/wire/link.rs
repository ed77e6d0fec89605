//! Link layers and where a mirror datagram sits in a captured frame.
//!
//! Capture files, interface capture and `vxtap send` all meet frames of some link type and need the
//! same two answers: where the network layer starts, and whether the frame is a UDP datagram to the
//! VXLAN or GENEVE port (through up to two VLAN tags). [`find_datagram`] is that one answer, so
//! replay, interface capture and the sender agree on what a mirror datagram is.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use etherparse::{IpNumber, Ipv4HeaderSlice, Ipv6HeaderSlice};

use super::{geneve, vxlan};

/// EtherTypes that vxtap looks at.
pub mod ether_type {
    /// IPv4.
    pub const IPV4: u16 = 0x0800;
    /// IPv6.
    pub const IPV6: u16 = 0x86dd;
    /// ARP.
    pub const ARP: u16 = 0x0806;
    /// 802.1Q customer VLAN tag.
    pub const VLAN: u16 = 0x8100;
    /// 802.1ad service VLAN tag (QinQ outer tag).
    pub const QINQ: u16 = 0x88a8;
    /// Pre-standard QinQ tag still seen in the wild.
    pub const QINQ_LEGACY: u16 = 0x9100;
}

/// VLAN tags looked through, as 802.1Q/802.1ad allow: a customer tag, or a service tag then a
/// customer tag (QinQ).
pub const MAX_VLANS: usize = 2;

/// Whether an EtherType is a VLAN tag (802.1Q, 802.1ad, or the pre-standard QinQ value).
pub const fn is_vlan(ty: u16) -> bool {
    matches!(
        ty,
        ether_type::VLAN | ether_type::QINQ | ether_type::QINQ_LEGACY
    )
}

/// A link-layer header type (LINKTYPE_* values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkType {
    /// LINKTYPE_NULL (0): BSD loopback, a 4-byte address family in the writer's byte order.
    Null,
    /// LINKTYPE_ETHERNET (1).
    Ethernet,
    /// LINKTYPE_RAW (101, also 12 and 14 on some systems): an IPv4 or IPv6 packet.
    RawIp,
    /// LINKTYPE_IPV4 (228).
    Ipv4,
    /// LINKTYPE_IPV6 (229).
    Ipv6,
    /// LINKTYPE_LINUX_SLL (113): Linux cooked capture v1, a 16-byte header.
    LinuxSll,
    /// LINKTYPE_LINUX_SLL2 (276): Linux cooked capture v2, a 20-byte header.
    LinuxSll2,
    /// Anything else: its records are reported as unusable.
    Other(u16),
}

impl LinkType {
    /// From a LINKTYPE number.
    pub fn from_code(code: u32) -> LinkType {
        // The upper bits of pcap's link-type field carry FCS information (pcap(5)).
        match code & 0xffff {
            0 => LinkType::Null,
            1 => LinkType::Ethernet,
            12 | 14 | 101 => LinkType::RawIp,
            228 => LinkType::Ipv4,
            229 => LinkType::Ipv6,
            113 => LinkType::LinuxSll,
            276 => LinkType::LinuxSll2,
            other => LinkType::Other(other as u16),
        }
    }

    /// The LINKTYPE number.
    pub fn code(self) -> u16 {
        match self {
            LinkType::Null => 0,
            LinkType::Ethernet => 1,
            LinkType::RawIp => 101,
            LinkType::Ipv4 => 228,
            LinkType::Ipv6 => 229,
            LinkType::LinuxSll => 113,
            LinkType::LinuxSll2 => 276,
            LinkType::Other(c) => c,
        }
    }
}

/// The network layer of a captured frame, whatever its link type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct L3<'a> {
    /// The EtherType of what follows (IPv4, IPv6, ARP, ...).
    pub ether_type: u16,
    /// The bytes from the network header on.
    pub bytes: &'a [u8],
}

impl L3<'_> {
    /// Appends this network layer behind an Ethernet header with no addresses: modules (and VXLAN)
    /// carry Ethernet frames whatever link type a capture used.
    pub fn push_as_ethernet(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[0; 12]);
        out.extend_from_slice(&self.ether_type.to_be_bytes());
        out.extend_from_slice(self.bytes);
    }
}

/// Finds the network layer of a frame of link type `link`, or `None` if the link header is cut or
/// the link type is not one vxtap reads. For Ethernet, VLAN tags are not skipped here: the caller
/// gives Ethernet frames to the pipeline whole.
pub fn l3(link: LinkType, frame: &[u8]) -> Option<L3<'_>> {
    let be16 = |at: usize| Some(u16::from_be_bytes([*frame.get(at)?, *frame.get(at + 1)?]));
    let (ether_type, offset) = match link {
        LinkType::Ethernet => (be16(12)?, 14),
        LinkType::RawIp => (ip_ether_type(frame.first()?)?, 0),
        LinkType::Ipv4 => (ether_type::IPV4, 0),
        LinkType::Ipv6 => (ether_type::IPV6, 0),
        LinkType::LinuxSll => (be16(14)?, 16),
        LinkType::LinuxSll2 => (be16(0)?, 20),
        LinkType::Null => {
            // The address family is in the writer's byte order; its values are small, so the
            // non-zero bytes tell the order. IPv6's value differs by OS (10, 24, 28, 30): the version
            // nibble decides.
            let family = frame.get(..4)?;
            if family.iter().all(|b| *b == 0) {
                return None;
            }
            (ip_ether_type(frame.get(4)?)?, 4)
        }
        LinkType::Other(_) => return None,
    };
    Some(L3 {
        ether_type,
        bytes: frame.get(offset..)?,
    })
}

fn ip_ether_type(first: &u8) -> Option<u16> {
    match first >> 4 {
        4 => Some(ether_type::IPV4),
        6 => Some(ether_type::IPV6),
        _ => None,
    }
}

/// The encapsulation a listener expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encap {
    /// VXLAN on UDP 4789: what Traffic Mirroring sends to an ENI or NLB target.
    Vxlan,
    /// GENEVE on UDP 6081: what a Gateway Load Balancer delivers.
    Geneve,
}

impl Encap {
    /// The encapsulation that a UDP destination port conventionally carries.
    pub fn for_port(port: u16) -> Option<Encap> {
        match port {
            vxlan::PORT => Some(Encap::Vxlan),
            geneve::PORT => Some(Encap::Geneve),
            _ => None,
        }
    }
}

/// The source address and the UDP header-and-payload of an IP packet, if it is UDP and not a later
/// fragment: where a mirror datagram sits in a captured IP packet.
pub fn ip_udp(ip: &[u8]) -> Option<(IpAddr, &[u8])> {
    match ip.first()? >> 4 {
        4 => {
            let h = Ipv4HeaderSlice::from_slice(ip).ok()?;
            if h.protocol() != IpNumber::UDP || h.fragments_offset().value() != 0 {
                return None;
            }
            let end = usize::from(h.total_len()).clamp(h.slice().len(), ip.len());
            Some((
                IpAddr::V4(Ipv4Addr::from(h.source())),
                &ip[h.slice().len()..end],
            ))
        }
        6 => {
            let h = Ipv6HeaderSlice::from_slice(ip).ok()?;
            if h.next_header() != IpNumber::UDP {
                return None;
            }
            let end = (40 + usize::from(h.payload_length())).min(ip.len());
            Some((IpAddr::V6(Ipv6Addr::from(h.source())), &ip[40..end]))
        }
        _ => None,
    }
}

/// A UDP datagram to the VXLAN or GENEVE port found in a captured frame: what a socket bound to that
/// port would have been given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MirrorDatagram<'a> {
    /// The outer source address.
    pub source: IpAddr,
    /// Which encapsulation the destination port carries.
    pub encap: Encap,
    /// The UDP header and payload (the payload as far as the IP length and the capture allow).
    pub udp: &'a [u8],
}

impl<'a> MirrorDatagram<'a> {
    /// The UDP payload: the VXLAN or GENEVE header and what it carries.
    pub fn payload(&self) -> &'a [u8] {
        self.udp.get(8..).unwrap_or(&[])
    }

    /// The UDP source port (Traffic Mirroring derives it from the inner flow).
    pub fn source_port(&self) -> u16 {
        u16::from_be_bytes([self.udp[0], self.udp[1]])
    }
}

/// If `frame` (of link type `link`) is a UDP datagram to the VXLAN or GENEVE port, where it is. Up
/// to [`MAX_VLANS`] VLAN tags on an Ethernet frame are looked through; later IP fragments are not
/// datagrams (they carry no UDP header).
pub fn find_datagram(link: LinkType, frame: &[u8]) -> Option<MirrorDatagram<'_>> {
    let l3 = l3(link, frame)?;
    let (mut ty, mut ip) = (l3.ether_type, l3.bytes);
    if link == LinkType::Ethernet {
        for _ in 0..MAX_VLANS {
            if !is_vlan(ty) {
                break;
            }
            ty = u16::from_be_bytes([*ip.get(2)?, *ip.get(3)?]);
            ip = ip.get(4..)?;
        }
    }
    if !matches!(ty, ether_type::IPV4 | ether_type::IPV6) {
        return None;
    }
    let (source, udp) = ip_udp(ip)?;
    if udp.len() < 8 {
        return None;
    }
    let encap = Encap::for_port(u16::from_be_bytes([udp[2], udp[3]]))?;
    Some(MirrorDatagram { source, encap, udp })
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    fn udp_frame(vlans: &[u16], dport: u16) -> Vec<u8> {
        let mut ip = Vec::new();
        PacketBuilder::ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .udp(50_000, dport)
            .write(&mut ip, &[0x08, 0, 0, 0, 0, 0, 1, 0])
            .unwrap();
        let mut f = vec![0u8; 12];
        for v in vlans {
            f.extend_from_slice(&ether_type::VLAN.to_be_bytes());
            f.extend_from_slice(&v.to_be_bytes());
        }
        f.extend_from_slice(&ether_type::IPV4.to_be_bytes());
        f.extend_from_slice(&ip);
        f
    }

    #[test]
    fn finds_mirror_datagrams_behind_vlan_tags() {
        for vlans in [&[][..], &[7], &[7, 8]] {
            let frame = udp_frame(vlans, vxlan::PORT);
            let d =
                find_datagram(LinkType::Ethernet, &frame).unwrap_or_else(|| panic!("{vlans:?}"));
            assert_eq!(d.source, IpAddr::from([10, 0, 0, 1]));
            assert_eq!((d.encap, d.source_port()), (Encap::Vxlan, 50_000));
            assert_eq!(d.payload(), [0x08, 0, 0, 0, 0, 0, 1, 0]);
        }
        let three = udp_frame(&[7, 8, 9], vxlan::PORT);
        assert_eq!(find_datagram(LinkType::Ethernet, &three), None);
        let geneve = udp_frame(&[], geneve::PORT);
        assert_eq!(
            find_datagram(LinkType::Ethernet, &geneve).map(|d| d.encap),
            Some(Encap::Geneve)
        );
        assert_eq!(find_datagram(LinkType::Ethernet, &udp_frame(&[], 53)), None);
    }

    #[test]
    fn raw_ip_and_cut_frames() {
        let frame = udp_frame(&[], vxlan::PORT);
        assert!(find_datagram(LinkType::RawIp, &frame[14..]).is_some());
        for cut in 0..frame.len() {
            // Never panics; whole headers are needed to call it a datagram.
            let _ = find_datagram(LinkType::Ethernet, &frame[..cut]);
        }
        assert_eq!(
            find_datagram(LinkType::Ethernet, &frame[..14 + 20 + 7]),
            None
        );
    }
}
