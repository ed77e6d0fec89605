//! ICMP and ICMPv6 "destination unreachable": which flow an error answers, read from the header it
//! quotes, and what its code means. Pure functions over the message body; nothing here allocates.
//!
//! RFC 792 has a router quote the original IP header and its first 8 data bytes (enough for both
//! ports); RFC 4443 §3.1 quotes as much of the original IPv6 packet as fits. Either way the quote is
//! the packet as its sender sent it, so its source is the flow's client.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::base::FlowKey;

/// What an unreachable code says about the destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) enum Unreachable {
    /// No route to the network (v4 code 0, v6 code 0).
    Network,
    /// The host did not answer ARP/ND or is down (v4 1, v6 3).
    Host,
    /// The protocol is not spoken there (v4 2).
    Protocol,
    /// Nothing listens on the port (v4 3, v6 4).
    Port,
    /// A packet too big for the path with DF set (v4 4): path MTU discovery.
    FragmentationNeeded,
    /// A filter said no (v4 9, 10, 13; v6 1, 5, 6).
    Prohibited,
    /// Any other code.
    Other,
}

impl Unreachable {
    /// The stable name in records.
    pub(super) const fn name(self) -> &'static str {
        match self {
            Unreachable::Network => "network_unreachable",
            Unreachable::Host => "host_unreachable",
            Unreachable::Protocol => "protocol_unreachable",
            Unreachable::Port => "port_unreachable",
            Unreachable::FragmentationNeeded => "fragmentation_needed",
            Unreachable::Prohibited => "administratively_prohibited",
            Unreachable::Other => "unreachable",
        }
    }

    fn of(v6: bool, code: u8) -> Unreachable {
        match (v6, code) {
            (false, 0) | (true, 0) => Unreachable::Network,
            (false, 1) | (true, 3) => Unreachable::Host,
            (false, 2) => Unreachable::Protocol,
            (false, 3) | (true, 4) => Unreachable::Port,
            (false, 4) => Unreachable::FragmentationNeeded,
            (false, 9 | 10 | 13) | (true, 1 | 5 | 6) => Unreachable::Prohibited,
            _ => Unreachable::Other,
        }
    }
}

/// An unreachable error and the flow it answers (as that flow's client sent it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Quoted {
    /// The original packet's 5-tuple; ports are 0 when the quote stops before them.
    pub(super) flow: FlowKey,
    /// What the code says.
    pub(super) what: Unreachable,
}

/// Reads a destination-unreachable message: `v6` for ICMPv6, its type and code, and `body`, the
/// bytes after the 8-byte ICMP header. `None` for other messages and for quotes too short to name
/// a flow (an IP header cut before its addresses).
pub(super) fn unreachable(v6: bool, ty: u8, code: u8, body: &[u8]) -> Option<Quoted> {
    let flow = match (v6, ty) {
        (false, 3) => quoted_v4(body)?,
        (true, 1) => quoted_v6(body)?,
        _ => return None,
    };
    Some(Quoted {
        flow,
        what: Unreachable::of(v6, code),
    })
}

fn ports(protocol: u8, l4: &[u8]) -> (u16, u16) {
    match (protocol, l4) {
        (6 | 17 | 132, [a, b, c, d, ..]) => {
            (u16::from_be_bytes([*a, *b]), u16::from_be_bytes([*c, *d]))
        }
        _ => (0, 0),
    }
}

fn quoted_v4(b: &[u8]) -> Option<FlowKey> {
    let first = *b.first()?;
    if first >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(first & 0x0f) * 4;
    let h = b.get(..20)?;
    let protocol = h[9];
    let src = Ipv4Addr::new(h[12], h[13], h[14], h[15]);
    let dst = Ipv4Addr::new(h[16], h[17], h[18], h[19]);
    // A later fragment quotes no transport header.
    let fragment_offset = u16::from_be_bytes([h[6], h[7]]) & 0x1fff;
    let (src_port, dst_port) = if ihl >= 20 && fragment_offset == 0 {
        ports(protocol, b.get(ihl..).unwrap_or(&[]))
    } else {
        (0, 0)
    };
    Some(FlowKey {
        src: IpAddr::V4(src),
        dst: IpAddr::V4(dst),
        src_port,
        dst_port,
        protocol,
    })
}

fn quoted_v6(b: &[u8]) -> Option<FlowKey> {
    let h = b.get(..40)?;
    if h[0] >> 4 != 6 {
        return None;
    }
    let addr = |at: usize| {
        let mut a = [0u8; 16];
        a.copy_from_slice(&h[at..at + 16]);
        IpAddr::V6(Ipv6Addr::from(a))
    };
    // Extension headers are not walked: a quote whose next header is one gives the addresses only.
    let protocol = h[6];
    let (src_port, dst_port) = ports(protocol, &b[40..]);
    Some(FlowKey {
        src: addr(8),
        dst: addr(24),
        src_port,
        dst_port,
        protocol,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A port unreachable from 10.0.0.2 about UDP 10.0.0.1:5000 → 10.0.0.2:53 (the body only).
    const PORT_UNREACHABLE_V4: [u8; 28] = [
        0x45, 0, 0, 32, 0x12, 0x34, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2, // IP
        0x13, 0x88, 0, 53, 0, 12, 0, 0, // UDP
    ];

    #[test]
    fn a_v4_quote_names_the_flow() {
        let q = unreachable(false, 3, 3, &PORT_UNREACHABLE_V4).unwrap();
        assert_eq!(q.what, Unreachable::Port);
        assert_eq!(q.flow.src, IpAddr::from([10, 0, 0, 1]));
        assert_eq!(q.flow.dst, IpAddr::from([10, 0, 0, 2]));
        assert_eq!(
            (q.flow.src_port, q.flow.dst_port, q.flow.protocol),
            (5000, 53, 17)
        );
        assert_eq!(
            unreachable(false, 3, 13, &PORT_UNREACHABLE_V4)
                .unwrap()
                .what,
            Unreachable::Prohibited
        );
    }

    #[test]
    fn short_or_foreign_quotes_give_what_they_can() {
        // Cut after the IP header: the addresses, no ports.
        let q = unreachable(false, 3, 1, &PORT_UNREACHABLE_V4[..20]).unwrap();
        assert_eq!((q.flow.src_port, q.flow.dst_port), (0, 0));
        assert_eq!(q.what, Unreachable::Host);
        assert!(unreachable(false, 3, 3, &PORT_UNREACHABLE_V4[..19]).is_none());
        assert!(
            unreachable(false, 11, 0, &PORT_UNREACHABLE_V4).is_none(),
            "time exceeded"
        );
        assert!(
            unreachable(true, 1, 4, &PORT_UNREACHABLE_V4).is_none(),
            "not IPv6"
        );
        assert!(unreachable(false, 3, 3, &[]).is_none());
    }

    #[test]
    fn a_v6_quote_names_the_flow() {
        let mut b = vec![0x60, 0, 0, 0, 0, 20, 6, 64];
        b.extend_from_slice(&[0xfd; 16]);
        b.extend_from_slice(&[0xfe; 16]);
        b.extend_from_slice(&[0x9c, 0x40, 0x01, 0xbb, 0, 0, 0, 1]);
        let q = unreachable(true, 1, 1, &b).unwrap();
        assert_eq!(q.what, Unreachable::Prohibited);
        assert_eq!(
            (q.flow.src_port, q.flow.dst_port, q.flow.protocol),
            (40000, 443, 6)
        );
    }
}
