//! The 5-tuple.

use std::net::IpAddr;

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
        if self.src_first() {
            (*self, true)
        } else {
            (self.reversed(), false)
        }
    }

    /// `(src, src_port) <= (dst, dst_port)` as `IpAddr` orders (IPv4 before IPv6, then by
    /// value), on numbers: it runs for every packet, and `IpAddr`'s own comparison of IPv6
    /// addresses goes through their eight groups one by one.
    fn src_first(&self) -> bool {
        match (self.src, self.dst) {
            (IpAddr::V4(a), IpAddr::V4(b)) => {
                let side = |a: std::net::Ipv4Addr, port: u16| {
                    (u64::from(a.to_bits()) << 16) | u64::from(port)
                };
                side(a, self.src_port) <= side(b, self.dst_port)
            }
            (IpAddr::V6(a), IpAddr::V6(b)) => {
                (a.to_bits(), self.src_port) <= (b.to_bits(), self.dst_port)
            }
            (IpAddr::V4(_), IpAddr::V6(_)) => true,
            (IpAddr::V6(_), IpAddr::V4(_)) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_order_is_ipaddrs() {
        let addrs: Vec<IpAddr> = [
            "0.0.0.0",
            "10.0.0.1",
            "10.0.0.2",
            "255.255.255.255",
            "::",
            "::1",
            "::ffff:10.0.0.1",
            "2001:db8::1",
            "2001:db8:0:1::",
            "fe80::1",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        ]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
        for &src in &addrs {
            for &dst in &addrs {
                for (src_port, dst_port) in [(1, 2), (2, 1), (7, 7)] {
                    let k = FlowKey {
                        src,
                        dst,
                        src_port,
                        dst_port,
                        protocol: 6,
                    };
                    let forward = (k.src, k.src_port) <= (k.dst, k.dst_port);
                    assert_eq!(k.canonical().1, forward, "{k:?}");
                }
            }
        }
    }
}
