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
///
/// The common mirrored frame takes [`dissect_fast`]; every other one, and any frame the fast path is
/// unsure of, takes [`dissect_general`]. Both give the same [`Layers`] for every frame the fast path
/// accepts: the `dissect_diff` fuzz target holds them to that.
#[inline]
pub fn dissect(frame: &[u8]) -> Layers {
    match dissect_fast(frame) {
        Some(layers) => layers,
        None => dissect_general(frame),
    }
}

/// The common case read by hand: untagged Ethernet, IPv4 (options allowed) or IPv6 without extension
/// headers, not a fragment, carrying a whole TCP or UDP header. The IP payload may be cut after the
/// transport header (AWS's `PacketLength`, vxtap's snaplen), which is [`Layer::Payload`] as on the
/// general path. `None` for anything else, which then takes [`dissect_general`].
///
/// Why by hand: etherparse's lax slices handle every cut, extension header and fragment, and that
/// generality was the largest single cost of ingest (about 225 instructions per datagram in
/// callgrind, docs/performance.md). This reads the fixed offsets directly, in place.
///
/// Held equal to [`dissect_general`], the oracle, by the `dissect_diff` fuzz target: for every input
/// where this returns `Some`, the two results are equal field for field. Where it returns `None` there
/// is nothing to compare, so it errs towards `None` for anything unusual (an IPv4 total length below
/// its header length, an IPv6 payload length of 0, a TCP data offset past the captured bytes).
#[inline]
pub fn dissect_fast(frame: &[u8]) -> Option<Layers> {
    const L3: usize = ETHERNET_LEN;
    const TCP: u8 = 6;
    const UDP: u8 = 17;
    let be16 = |b: &[u8], i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
    let eth = frame.get(..ETHERNET_LEN)?;
    let ether = be16(eth, 12);
    let (ip, l4, end) = match ether {
        ether_type::IPV4 => {
            let h = frame.get(L3..L3 + 20)?;
            if h[0] >> 4 != 4 {
                return None;
            }
            let header_len = usize::from(h[0] & 0x0f) * 4;
            let total_len = usize::from(be16(h, 2));
            // More fragments or a fragment offset: a fragment (DF, and the reserved bit, are not).
            if header_len < 20 || total_len < header_len || be16(h, 6) & 0x3fff != 0 {
                return None;
            }
            let l4 = L3 + header_len;
            if frame.len() < l4 {
                return None;
            }
            let ip = IpLayer {
                src: IpAddr::V4(Ipv4Addr::new(h[12], h[13], h[14], h[15])),
                dst: IpAddr::V4(Ipv4Addr::new(h[16], h[17], h[18], h[19])),
                protocol: h[9],
                total_len: total_len as u32,
                fragment: Fragment::None,
                ttl: h[8],
            };
            (ip, l4, L3 + total_len)
        }
        ether_type::IPV6 => {
            let h = frame.get(L3..L3 + 40)?;
            let payload_len = usize::from(be16(h, 4));
            // Payload length 0 is a jumbogram's (or a broken header's); the general path decides.
            if h[0] >> 4 != 6 || payload_len == 0 {
                return None;
            }
            let mut src = [0u8; 16];
            let mut dst = [0u8; 16];
            src.copy_from_slice(&h[8..24]);
            dst.copy_from_slice(&h[24..40]);
            let ip = IpLayer {
                src: IpAddr::V6(Ipv6Addr::from(src)),
                dst: IpAddr::V6(Ipv6Addr::from(dst)),
                // Only TCP and UDP pass below, so an extension header never gets this far.
                protocol: h[6],
                total_len: payload_len as u32 + 40,
                fragment: Fragment::None,
                ttl: h[7],
            };
            (ip, L3 + 40, L3 + 40 + payload_len)
        }
        _ => return None,
    };
    // The transport bytes that belong to this IP packet and were captured: Ethernet padding after
    // the packet is not part of it, and a cut packet ends where the frame does.
    let (cut, l4_bytes) = match frame.get(l4..end) {
        Some(b) => (None, b),
        None => (Some(Layer::Payload), &frame[l4..]),
    };
    let (transport, header_len) = match ip.protocol {
        TCP => {
            let h = l4_bytes.get(..20)?;
            let header_len = usize::from(h[12] >> 4) * 4;
            if header_len < 20 || header_len > l4_bytes.len() {
                return None;
            }
            let tcp = Transport::Tcp {
                src: be16(h, 0),
                dst: be16(h, 2),
                flags: h[13],
            };
            (tcp, header_len)
        }
        UDP => {
            let h = l4_bytes.get(..8)?;
            let udp = Transport::Udp {
                src: be16(h, 0),
                dst: be16(h, 2),
            };
            (udp, 8)
        }
        _ => return None,
    };
    Some(Layers {
        ether_type: ether,
        l3_offset: L3 as u32,
        l4_offset: Some(l4 as u32),
        payload_offset: (l4 + header_len) as u32,
        ip: Some(ip),
        transport,
        cut,
        ..Layers::default()
    })
}

/// The general path, through etherparse's lax per-layer slices: every frame, whatever its tags,
/// extension headers, fragmentation or cuts. It is also the oracle [`dissect_fast`] is fuzzed against,
/// which is why it is public.
pub fn dissect_general(frame: &[u8]) -> Layers {
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

    /// Frames of every kind the fast path is meant for, and a few it must leave alone.
    fn agreement_frames() -> Vec<Vec<u8>> {
        let mut frames = Vec::new();
        for len in [0usize, 1, 7, 8, 40, 200] {
            let payload = vec![0x61u8; len];
            let eth = || PacketBuilder::ethernet2([2; 6], [4; 6]);
            let mut push = |f: Vec<u8>| frames.push(f);
            let mut f = Vec::new();
            eth()
                .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
                .tcp(40000, 443, 7, 1000)
                .syn()
                .write(&mut f, &payload)
                .unwrap();
            push(f);
            let mut f = Vec::new();
            eth()
                .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
                .tcp(40000, 443, 7, 1000)
                .options(&[etherparse::TcpOptionElement::MaximumSegmentSize(1460)])
                .unwrap()
                .write(&mut f, &payload)
                .unwrap();
            push(f);
            let mut f = Vec::new();
            eth()
                .ipv4([192, 168, 0, 1], [8, 8, 8, 8], 3)
                .udp(5353, 53)
                .write(&mut f, &payload)
                .unwrap();
            push(f);
            let mut f = Vec::new();
            eth()
                .ipv6([0xfd; 16], [0xfe; 16], 64)
                .tcp(51000, 80, 1, 512)
                .ack(99)
                .write(&mut f, &payload)
                .unwrap();
            push(f);
            let mut f = Vec::new();
            eth()
                .ipv6([0xfd; 16], [0xfe; 16], 1)
                .udp(123, 123)
                .write(&mut f, &payload)
                .unwrap();
            push(f);
            let mut f = Vec::new();
            eth()
                .ipv4([192, 168, 0, 1], [8, 8, 8, 8], 3)
                .icmpv4_echo_request(1, 2)
                .write(&mut f, &payload)
                .unwrap();
            push(f);
            let mut f = Vec::new();
            eth()
                .single_vlan(etherparse::VlanId::try_new(7).unwrap())
                .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
                .udp(1, 2)
                .write(&mut f, &payload)
                .unwrap();
            push(f);
        }
        frames
    }

    /// The fast path must give exactly what the general path gives, for the frames it takes and for
    /// every cut and mutation around them. The `dissect_diff` fuzz target checks the same on any bytes;
    /// this keeps the cases that matter in `cargo test`.
    #[test]
    fn fast_path_agrees_with_the_general_path() {
        let mut variants = Vec::new();
        for f in agreement_frames() {
            // Ethernet padding after the IP packet.
            let mut padded = f.clone();
            padded.extend_from_slice(&[0; 18]);
            variants.push(padded);
            let v6 = f[12..14] == ether_type::IPV6.to_be_bytes();
            let mut edits: Vec<(usize, u8)> = vec![(12, 0x86), (12, 0x81), (14, 0x65), (14, 0x45)];
            if v6 {
                // Next header: hop-by-hop, fragment, ICMPv6; payload length 0 and 1.
                edits.extend([(20, 0), (20, 44), (20, 58), (18, 0), (19, 0), (19, 1)]);
            } else {
                // DF, MF, a fragment offset, the reserved bit; IHL 4, 6 and 15; AH.
                edits.extend([(20, 0x40), (20, 0x20), (21, 0x01), (20, 0x80)]);
                edits.extend([(14, 0x44), (14, 0x46), (14, 0x4f), (23, 51)]);
                // Total length: too large, below the header, 0.
                edits.extend([(16, 0xff), (17, 0x13), (16, 0), (17, 0)]);
            }
            let l4 = if v6 { 54 } else { 34 };
            // TCP data offsets 0, 4, 6 and 15 (on UDP: the checksum, which nobody reads).
            edits.extend([
                (l4 + 12, 0x00),
                (l4 + 12, 0x40),
                (l4 + 12, 0x60),
                (l4 + 12, 0xf0),
            ]);
            for (at, value) in edits {
                if at < f.len() {
                    let mut m = f.clone();
                    m[at] = value;
                    variants.push(m);
                }
            }
            variants.push(f);
        }
        let mut fast = 0;
        for v in &variants {
            for cut in 0..=v.len() {
                let frame = &v[..cut];
                if let Some(layers) = dissect_fast(frame) {
                    fast += 1;
                    assert_eq!(layers, dissect_general(frame), "{frame:02x?}");
                }
                assert_eq!(dissect(frame), dissect_general(frame), "{frame:02x?}");
            }
        }
        assert!(fast > 1000, "the fast path took only {fast} frames");
    }

    /// What the fast path is for: it must actually take these, or the speed-up is gone unnoticed.
    #[test]
    fn fast_path_takes_the_common_frames() {
        for f in agreement_frames() {
            let vlan = f[12..14] == ether_type::VLAN.to_be_bytes();
            let icmp = f[14] == 0x45 && f[23] == 1;
            assert_eq!(dissect_fast(&f).is_some(), !vlan && !icmp, "{f:02x?}");
        }
        // IPv4 options, and a payload cut after the transport header.
        let mut f = Vec::new();
        PacketBuilder::ethernet2([2; 6], [4; 6])
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .tcp(40000, 443, 7, 1000)
            .write(&mut f, &[0x61; 100])
            .unwrap();
        let l = dissect_fast(&f[..60]).expect("cut in the payload");
        assert_eq!(l.cut, Some(Layer::Payload));
        assert_eq!(l.payload_offset, 54);
        let mut with_options = f[..34].to_vec();
        with_options[14] = 0x46;
        let total = u16::from_be_bytes([f[16], f[17]]) + 4;
        with_options[16..18].copy_from_slice(&total.to_be_bytes());
        with_options.extend_from_slice(&[1, 1, 1, 0]); // NOP NOP NOP EOL
        with_options.extend_from_slice(&f[34..]);
        let l = dissect_fast(&with_options).expect("IPv4 options");
        assert_eq!(l.l4_offset, Some(38));
        assert_eq!(l, dissect_general(&with_options));
    }
}
