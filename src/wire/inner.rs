//! Dissection of the inner Ethernet frame, in place and tolerant of truncation.
//!
//! AWS cuts mirrored packets to the target's MTU or the session's `PacketLength` and then leaves L4 (and
//! sometimes L3) checksums uncomputed (docs/aws-facts.md §1), so nothing here validates a checksum and a frame
//! cut anywhere still yields every layer that was whole, plus [`Layers::cut`] naming where the bytes ran
//! out. The result is a small `Copy` summary of offsets and fields: the ingest worker computes it once to
//! steer the packet, and the shard hands it to every module without parsing again.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use etherparse::{
    Ethernet2Slice, IpNumber, LaxIpv4Slice, LaxIpv6Slice, SingleVlanSlice, TcpHeaderSlice,
};

pub use super::link::ether_type;

const ETHERNET_LEN: usize = 14;
const VLAN_LEN: usize = 4;
const MAX_VLANS: usize = 2;

/// A protocol layer, used to say where a frame was cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Layer {
    /// The Ethernet header is incomplete.
    Ethernet,
    /// A VLAN tag is incomplete.
    Vlan,
    /// The IPv4 header (with options) is incomplete.
    Ipv4,
    /// The IPv6 header is incomplete.
    Ipv6,
    /// An IPv6 extension header (or IPv4 AH) is incomplete.
    IpExtension,
    /// The TCP header is incomplete.
    Tcp,
    /// The UDP header is incomplete.
    Udp,
    /// The ICMP or ICMPv6 header is incomplete.
    Icmp,
    /// All headers are whole, but fewer payload bytes arrived than the IP header announces.
    Payload,
}

impl Layer {
    /// A stable lower-case name for logs and metrics.
    pub const fn name(self) -> &'static str {
        match self {
            Layer::Ethernet => "ethernet",
            Layer::Vlan => "vlan",
            Layer::Ipv4 => "ipv4",
            Layer::Ipv6 => "ipv6",
            Layer::IpExtension => "ip_extension",
            Layer::Tcp => "tcp",
            Layer::Udp => "udp",
            Layer::Icmp => "icmp",
            Layer::Payload => "payload",
        }
    }
}

/// Where a packet sits in its IP datagram's fragmentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Fragment {
    /// Not fragmented.
    #[default]
    None,
    /// The first fragment: carries the transport header.
    First,
    /// A later fragment: no transport header, so no ports.
    Later,
}

/// The IP layer of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpLayer {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// The transport protocol number (after IPv6 extension headers).
    pub protocol: u8,
    /// The packet length the IP header states (IPv4 total length; IPv6 payload length + 40): the
    /// length before any truncation by AWS or vxtap.
    pub total_len: u32,
    /// Fragmentation state.
    pub fragment: Fragment,
    /// Hop limit / TTL.
    pub ttl: u8,
}

/// The transport layer of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Transport {
    /// No transport header was reached: a non-IP frame, a later fragment, or a cut before it.
    #[default]
    None,
    /// TCP; `flags` is the flags byte (FIN=1, SYN=2, RST=4, PSH=8, ACK=16, URG=32, ...), 0 when cut
    /// before it.
    Tcp {
        /// Source port.
        src: u16,
        /// Destination port.
        dst: u16,
        /// The TCP flags byte.
        flags: u8,
    },
    /// UDP.
    Udp {
        /// Source port.
        src: u16,
        /// Destination port.
        dst: u16,
    },
    /// ICMP (v4 or v6, after `IpLayer::protocol`).
    Icmp {
        /// ICMP type.
        ty: u8,
        /// ICMP code.
        code: u8,
    },
    /// Another protocol, or a transport header too short to read even its ports.
    Other,
}

impl Transport {
    /// The ports of a TCP or UDP header.
    #[inline]
    pub fn ports(&self) -> Option<(u16, u16)> {
        match *self {
            Transport::Tcp { src, dst, .. } | Transport::Udp { src, dst } => Some((src, dst)),
            _ => None,
        }
    }
}

/// What [`dissect`] found in a frame: offsets into it and the fields vxtap needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Layers {
    /// VLAN ids from outermost to innermost; `vlan_count` of them are valid.
    pub vlans: [u16; MAX_VLANS],
    /// How many VLAN tags were read.
    pub vlan_count: u8,
    /// The EtherType after the VLAN tags; 0 when the Ethernet header itself was cut.
    pub ether_type: u16,
    /// Offset of the network header (after Ethernet and VLAN tags).
    pub l3_offset: u32,
    /// Offset of the transport header, when one was reached.
    pub l4_offset: Option<u32>,
    /// Offset of the innermost payload that was reached (L4 payload, else L3 payload, else L3).
    pub payload_offset: u32,
    /// The IP layer, when the frame is IPv4 or IPv6 and its header is whole.
    pub ip: Option<IpLayer>,
    /// The transport layer.
    pub transport: Transport,
    /// The first layer whose bytes ran out, if any.
    pub cut: Option<Layer>,
}

impl Default for Layers {
    fn default() -> Self {
        Layers {
            vlans: [0; MAX_VLANS],
            vlan_count: 0,
            ether_type: 0,
            l3_offset: 0,
            l4_offset: None,
            payload_offset: 0,
            ip: None,
            transport: Transport::None,
            cut: None,
        }
    }
}

impl Layers {
    /// The VLAN ids read, outermost first.
    pub fn vlan_ids(&self) -> &[u16] {
        &self.vlans[..usize::from(self.vlan_count)]
    }
}

/// Dissects an Ethernet frame. Never fails and never panics: what cannot be read is left out and
/// [`Layers::cut`] says where the bytes ran out.
pub fn dissect(frame: &[u8]) -> Layers {
    let mut layers = Layers::default();
    let Ok(eth) = Ethernet2Slice::from_slice_without_fcs(frame) else {
        layers.cut = Some(Layer::Ethernet);
        return layers;
    };
    let mut ether_type = eth.ether_type().0;
    let mut offset = ETHERNET_LEN;
    while matches!(
        ether_type,
        ether_type::VLAN | ether_type::QINQ | ether_type::QINQ_LEGACY
    ) {
        if usize::from(layers.vlan_count) == MAX_VLANS {
            // A third tag is not something AWS produces; stop here and let modules see the raw rest.
            break;
        }
        let Ok(vlan) = SingleVlanSlice::from_slice(&frame[offset..]) else {
            layers.ether_type = ether_type;
            layers.l3_offset = offset as u32;
            layers.payload_offset = offset as u32;
            layers.cut = Some(Layer::Vlan);
            return layers;
        };
        layers.vlans[usize::from(layers.vlan_count)] = vlan.vlan_identifier().value();
        layers.vlan_count += 1;
        ether_type = vlan.ether_type().0;
        offset += VLAN_LEN;
    }
    layers.ether_type = ether_type;
    layers.l3_offset = offset as u32;
    layers.payload_offset = offset as u32;
    match ether_type {
        ether_type::IPV4 => dissect_ipv4(frame, offset, &mut layers),
        ether_type::IPV6 => dissect_ipv6(frame, offset, &mut layers),
        _ => {}
    }
    layers
}

fn dissect_ipv4(frame: &[u8], l3: usize, layers: &mut Layers) {
    let Ok((ip, ext_err)) = LaxIpv4Slice::from_slice(&frame[l3..]) else {
        layers.cut = Some(Layer::Ipv4);
        return;
    };
    let header = ip.header();
    let fragment = if !ip.is_payload_fragmented() {
        Fragment::None
    } else if header.fragments_offset().value() == 0 {
        Fragment::First
    } else {
        Fragment::Later
    };
    let payload = ip.payload();
    layers.ip = Some(IpLayer {
        src: IpAddr::V4(Ipv4Addr::from(header.source())),
        dst: IpAddr::V4(Ipv4Addr::from(header.destination())),
        protocol: payload.ip_number.0,
        total_len: u32::from(header.total_len()),
        fragment,
        ttl: header.ttl(),
    });
    let l4 = offset_of(frame, payload.payload);
    layers.payload_offset = l4 as u32;
    if ext_err.is_some() {
        layers.cut = Some(Layer::IpExtension);
        return;
    }
    if payload.incomplete {
        layers.cut = Some(Layer::Payload);
    }
    if fragment != Fragment::Later {
        dissect_transport(frame, l4, payload.ip_number, payload.payload.len(), layers);
    }
}

fn dissect_ipv6(frame: &[u8], l3: usize, layers: &mut Layers) {
    let Ok((ip, ext_err)) = LaxIpv6Slice::from_slice(&frame[l3..]) else {
        layers.cut = Some(Layer::Ipv6);
        return;
    };
    let header = ip.header();
    let payload = ip.payload();
    let fragment = if !payload.fragmented {
        Fragment::None
    } else if first_fragment_offset(header.next_header().0, ip.extensions().slice()) == Some(0) {
        Fragment::First
    } else {
        Fragment::Later
    };
    layers.ip = Some(IpLayer {
        src: IpAddr::V6(Ipv6Addr::from(header.source())),
        dst: IpAddr::V6(Ipv6Addr::from(header.destination())),
        protocol: payload.ip_number.0,
        total_len: u32::from(header.payload_length()) + 40,
        fragment,
        ttl: header.hop_limit(),
    });
    let l4 = offset_of(frame, payload.payload);
    layers.payload_offset = l4 as u32;
    if ext_err.is_some() {
        layers.cut = Some(Layer::IpExtension);
        return;
    }
    if payload.incomplete {
        layers.cut = Some(Layer::Payload);
    }
    if fragment != Fragment::Later {
        dissect_transport(frame, l4, payload.ip_number, payload.payload.len(), layers);
    }
}

/// The fragment offset of the first IPv6 Fragment header among the extension headers in `exts`, whose
/// chain starts with `next`.
///
/// etherparse's own iterator over `Ipv6ExtensionsSlice` trusts the chain's "next header" values and
/// reads past the slice when a Fragment header names a further extension header (found by fuzzing:
/// undefined behaviour in release builds), so the chain is walked here, bounded by the slice.
fn first_fragment_offset(mut next: u8, exts: &[u8]) -> Option<u16> {
    const HOP_BY_HOP: u8 = 0;
    const ROUTING: u8 = 43;
    const FRAGMENT: u8 = 44;
    const AUTH: u8 = 51;
    const DEST_OPTS: u8 = 60;
    let mut at = 0;
    while at + 8 <= exts.len() {
        let h = &exts[at..];
        let len = match next {
            FRAGMENT => return Some(u16::from_be_bytes([h[2], h[3]]) >> 3),
            HOP_BY_HOP | ROUTING | DEST_OPTS => (usize::from(h[1]) + 1) * 8,
            AUTH => (usize::from(h[1]) + 2) * 4,
            _ => return None,
        };
        next = h[0];
        at += len;
    }
    None
}

/// Reads the transport header starting at `l4`, of which `avail` bytes belong to this IP packet.
fn dissect_transport(frame: &[u8], l4: usize, proto: IpNumber, avail: usize, layers: &mut Layers) {
    let bytes = &frame[l4..l4 + avail];
    let port = |i: usize| u16::from_be_bytes([bytes[i], bytes[i + 1]]);
    match proto {
        IpNumber::TCP => {
            layers.l4_offset = Some(l4 as u32);
            match TcpHeaderSlice::from_slice(bytes) {
                Ok(tcp) => {
                    layers.transport = Transport::Tcp {
                        src: tcp.source_port(),
                        dst: tcp.destination_port(),
                        flags: bytes[13],
                    };
                    layers.payload_offset = (l4 + tcp.slice().len()) as u32;
                }
                Err(_) => {
                    // Cut inside the header: the ports (and flags) may still be there.
                    layers.transport = match bytes.len() {
                        0..4 => Transport::Other,
                        4..14 => Transport::Tcp {
                            src: port(0),
                            dst: port(2),
                            flags: 0,
                        },
                        _ => Transport::Tcp {
                            src: port(0),
                            dst: port(2),
                            flags: bytes[13],
                        },
                    };
                    layers.payload_offset = (l4 + bytes.len()) as u32;
                    layers.cut = Some(Layer::Tcp);
                }
            }
        }
        IpNumber::UDP => {
            layers.l4_offset = Some(l4 as u32);
            if bytes.len() >= 4 {
                layers.transport = Transport::Udp {
                    src: port(0),
                    dst: port(2),
                };
            } else {
                layers.transport = Transport::Other;
            }
            if bytes.len() >= 8 {
                layers.payload_offset = (l4 + 8) as u32;
            } else {
                layers.payload_offset = (l4 + bytes.len()) as u32;
                layers.cut = Some(Layer::Udp);
            }
        }
        IpNumber::ICMP | IpNumber::IPV6_ICMP => {
            layers.l4_offset = Some(l4 as u32);
            if bytes.len() >= 2 {
                layers.transport = Transport::Icmp {
                    ty: bytes[0],
                    code: bytes[1],
                };
            } else {
                layers.transport = Transport::Other;
            }
            // ICMPv4 and ICMPv6 both have a fixed 8-byte header before their body.
            if bytes.len() >= 8 {
                layers.payload_offset = (l4 + 8) as u32;
            } else {
                layers.payload_offset = (l4 + bytes.len()) as u32;
                layers.cut = Some(Layer::Icmp);
            }
        }
        _ => {
            layers.transport = Transport::Other;
            layers.l4_offset = Some(l4 as u32);
        }
    }
}

/// The offset of `inner` within `outer`; `inner` must be a sub-slice of `outer`.
fn offset_of(outer: &[u8], inner: &[u8]) -> usize {
    (inner.as_ptr() as usize)
        .saturating_sub(outer.as_ptr() as usize)
        .min(outer.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    fn tcp_frame(payload: &[u8]) -> Vec<u8> {
        let builder = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .tcp(40000, 443, 1, 1000)
            .syn();
        let mut out = Vec::new();
        builder.write(&mut out, payload).unwrap();
        out
    }

    #[test]
    fn whole_tcp_packet() {
        let frame = tcp_frame(b"hello");
        let l = dissect(&frame);
        assert_eq!(l.ether_type, ether_type::IPV4);
        assert_eq!(l.l3_offset, 14);
        assert_eq!(l.l4_offset, Some(34));
        assert_eq!(l.payload_offset, 54);
        let ip = l.ip.unwrap();
        assert_eq!(ip.src, IpAddr::from([10, 0, 0, 1]));
        assert_eq!(ip.total_len, 45);
        assert_eq!(
            l.transport,
            Transport::Tcp {
                src: 40000,
                dst: 443,
                flags: 0x02
            }
        );
        assert_eq!(l.cut, None);
    }

    #[test]
    fn cut_at_every_length_never_panics_and_names_the_layer() {
        let frame = tcp_frame(b"hello");
        for len in 0..frame.len() {
            let l = dissect(&frame[..len]);
            let expect = match len {
                0..14 => Layer::Ethernet,
                14..34 => Layer::Ipv4,
                34..54 => Layer::Tcp,
                _ => Layer::Payload,
            };
            assert_eq!(l.cut, Some(expect), "len {len}");
            if len >= 38 {
                assert_eq!(l.transport.ports(), Some((40000, 443)), "len {len}");
            }
        }
    }

    #[test]
    fn qinq_then_ipv6_udp() {
        let builder = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .double_vlan(
                etherparse::VlanId::try_new(100).unwrap(),
                etherparse::VlanId::try_new(200).unwrap(),
            )
            .ipv6([0xfd; 16], [0xfe; 16], 64)
            .udp(5353, 53);
        let mut frame = Vec::new();
        builder.write(&mut frame, &[0u8; 12]).unwrap();
        let l = dissect(&frame);
        assert_eq!(l.vlan_ids(), &[100, 200]);
        assert_eq!(l.ether_type, ether_type::IPV6);
        assert_eq!(l.l3_offset, 22);
        assert_eq!(l.transport, Transport::Udp { src: 5353, dst: 53 });
        assert_eq!(l.payload_offset, 22 + 40 + 8);
        assert_eq!(l.ip.unwrap().total_len, 40 + 8 + 12);
    }

    #[test]
    fn later_ipv4_fragment_has_no_ports() {
        let mut frame = tcp_frame(&[0u8; 64]);
        // Fragment offset 8 (64 bytes), more fragments unset.
        frame[14 + 6] = 0x00;
        frame[14 + 7] = 0x08;
        let l = dissect(&frame);
        assert_eq!(l.ip.unwrap().fragment, Fragment::Later);
        assert_eq!(l.transport, Transport::None);
        // First fragment: MF set, offset 0.
        frame[14 + 6] = 0x20;
        frame[14 + 7] = 0x00;
        let l = dissect(&frame);
        assert_eq!(l.ip.unwrap().fragment, Fragment::First);
        assert_eq!(l.transport.ports(), Some((40000, 443)));
    }

    /// The fuzzer's find: hop-by-hop, then a later Fragment header whose "next header" names another
    /// hop-by-hop header that is not there.
    #[test]
    fn ipv6_fragment_followed_by_a_missing_extension_header() {
        let mut frame = vec![2, 2, 2, 2, 2, 2, 4, 4, 4, 4, 4, 4, 0x86, 0xdd];
        frame.extend_from_slice(&[0x60, 0, 0, 0, 0x00, 0x10, 0x00, 0x40]);
        frame.extend_from_slice(&[0; 15]);
        frame.push(1);
        frame.extend_from_slice(&[0x41, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        frame.extend_from_slice(&[0x2c, 0x00, b'm', b'o', b'd', b'u', b'l', b'e']); // hop-by-hop -> fragment
        frame.extend_from_slice(&[0x00, 0x01, 0x2e, 0x00, 0, 0, 0, 0]); // fragment (offset 0x5c0) -> hop-by-hop
        frame.extend_from_slice(&[0; 12]);
        let l = dissect(&frame);
        assert_eq!(l.ip.unwrap().fragment, Fragment::Later);
        assert_eq!(l.transport, Transport::None);
    }

    #[test]
    fn arp_is_not_an_error() {
        let mut frame = vec![0xffu8; 12];
        frame.extend_from_slice(&[0x08, 0x06]);
        frame.extend_from_slice(&[0u8; 28]);
        let l = dissect(&frame);
        assert_eq!(l.ether_type, ether_type::ARP);
        assert_eq!(l.ip, None);
        assert_eq!(l.cut, None);
    }
}
