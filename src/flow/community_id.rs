//! Community ID v1: the flow hash that Zeek, Suricata, Arkime and Wireshark write as `community_id`,
//! so that vxtap's records join with theirs.
//!
//! The definition is Corelight's specification (github.com/corelight/community-id-spec):
//! `"1:" + base64(SHA-1(seed ‖ saddr ‖ daddr ‖ proto ‖ 0 ‖ sport ‖ dport))`, all integers big-endian,
//! with the endpoints ordered so that the same flow hashes alike in both directions. ICMP and ICMPv6
//! have no ports: the type stands in for the source port and, for the request/response pairs of the
//! spec's table, the counterpart type for the destination port (so a request and its reply share an
//! ID); every other type is one-way, hashed with its code, in the direction it was seen. Protocols
//! other than TCP, UDP, SCTP, ICMP and ICMPv6 hash the addresses and the protocol only.
//!
//! SHA-1 comes from RustCrypto's `sha1`, which uses the CPU's SHA extensions where it has them
//! (every record of every JSON module carries an ID), and base64 from `base64` writing into a fixed
//! buffer: computing an ID allocates nothing, which the flow layer needs per new flow.

use std::fmt;
use std::net::IpAddr;
use std::ops::Deref;

use base64::Engine as _;
use sha1::{Digest as _, Sha1};

const TCP: u8 = 6;
const UDP: u8 = 17;
const SCTP: u8 = 132;
const ICMP: u8 = 1;
const ICMPV6: u8 = 58;

/// "1:" and 28 base64 characters (20 bytes of SHA-1, padded).
const LEN: usize = 30;

/// A Community ID string held inline: it dereferences to `&str` ("1:…=") and costs no allocation.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CommunityId {
    bytes: [u8; LEN],
}

impl CommunityId {
    /// The ID as text, e.g. `1:LQU9qZlK+B5F3KDmev6m5PMibrg=`.
    pub fn as_str(&self) -> &str {
        debug_assert!(self.bytes.is_ascii());
        // SAFETY: only ASCII ever goes in ("1:", the base64 alphabet, or the zeros the buffer
        // starts with), so the bytes are UTF-8. Every record of every JSON module reads an ID, and
        // checking it each time cost as much as the base64 that wrote it.
        unsafe { std::str::from_utf8_unchecked(&self.bytes) }
    }
}

impl Deref for CommunityId {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for CommunityId {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Display for CommunityId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for CommunityId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// The counterpart of an ICMP type that has one, per the spec's table (taken from Zeek's
/// `ICMP4_counterpart`/`ICMP6_counterpart`); `None` means the type is one-way.
fn icmp_counterpart(proto: u8, ty: u16) -> Option<u16> {
    let pair = |a: u16, b: u16| {
        if ty == a {
            Some(b)
        } else if ty == b {
            Some(a)
        } else {
            None
        }
    };
    if proto == ICMP {
        // echo, router solicitation/advertisement, timestamp, information, address mask
        pair(8, 0)
            .or_else(|| pair(10, 9))
            .or_else(|| pair(13, 14))
            .or_else(|| pair(15, 16))
            .or_else(|| pair(17, 18))
    } else {
        // echo, MLD query/report, router solicitation/advertisement, neighbor
        // solicitation/advertisement, node information (who-are-you) query/reply, home agent
        // address discovery request/reply
        pair(128, 129)
            .or_else(|| pair(130, 131))
            .or_else(|| pair(133, 134))
            .or_else(|| pair(135, 136))
            .or_else(|| pair(139, 140))
            .or_else(|| pair(144, 145))
    }
}

/// Computes the Community ID v1 of a flow (or of one packet of it: both directions give the same ID,
/// except for one-way ICMP types, which the spec hashes as seen).
///
/// `src_port`/`dst_port` are the transport ports for TCP, UDP and SCTP; for ICMP (1) and ICMPv6 (58)
/// pass the message type as `src_port` and the code as `dst_port`, the spec's input convention. For any
/// other protocol the ports are ignored. Addresses of different families (which cannot belong to one
/// flow) are hashed as given, each in its own length. Zeek, Suricata and Arkime use seed 0.
pub fn community_id_v1(
    seed: u16,
    proto: u8,
    src: IpAddr,
    dst: IpAddr,
    src_port: u16,
    dst_port: u16,
) -> CommunityId {
    let (ports, one_way) = match proto {
        TCP | UDP | SCTP => (Some((src_port, dst_port)), false),
        ICMP | ICMPV6 => match icmp_counterpart(proto, src_port) {
            Some(other) => (Some((src_port, other)), false),
            None => (Some((src_port, dst_port)), true),
        },
        _ => (None, false),
    };
    hash_v1(seed, proto, src, dst, ports, one_way)
}

/// The Community ID of a packet whose transport header is not there to read: a non-first IP
/// fragment, or a packet cut before its ports. It hashes addresses and protocol only, as Wireshark
/// does for such packets; a flow's own ID (from its first fragment or any whole packet) is
/// [`community_id_v1`]'s, so prefer that one when the flow is known.
pub fn community_id_v1_without_ports(
    seed: u16,
    proto: u8,
    src: IpAddr,
    dst: IpAddr,
) -> CommunityId {
    hash_v1(seed, proto, src, dst, None, false)
}

fn hash_v1(
    seed: u16,
    proto: u8,
    src: IpAddr,
    dst: IpAddr,
    ports: Option<(u16, u16)>,
    one_way: bool,
) -> CommunityId {
    let has_ports = ports.is_some();
    let (sport, dport) = ports.unwrap_or((0, 0));
    let src_key = (addr_key(&src), sport);
    let dst_key = (addr_key(&dst), dport);
    let ((a, ap), (b, bp)) = if one_way || src_key <= dst_key {
        (src_key, dst_key)
    } else {
        (dst_key, src_key)
    };

    let mut hash = Sha1::new();
    hash.update(seed.to_be_bytes());
    hash.update(a.as_slice());
    hash.update(b.as_slice());
    hash.update([proto, 0]);
    if has_ports {
        hash.update(ap.to_be_bytes());
        hash.update(bp.to_be_bytes());
    }
    let digest = hash.finalize();

    let mut bytes = [0u8; LEN];
    bytes[..2].copy_from_slice(b"1:");
    let written = base64::engine::general_purpose::STANDARD
        .encode_slice(digest, &mut bytes[2..])
        .unwrap_or(0);
    debug_assert_eq!(written, LEN - 2, "20 bytes encode to 28 base64 characters");
    CommunityId { bytes }
}

/// An address as the bytes the spec hashes (4 or 16, network order), comparable the way the spec
/// orders endpoints: byte-wise, which for one family is numeric order.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct AddrKey {
    len: usize,
    bytes: [u8; 16],
}

impl AddrKey {
    fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

fn addr_key(addr: &IpAddr) -> AddrKey {
    let mut bytes = [0u8; 16];
    match addr {
        IpAddr::V4(a) => {
            bytes[..4].copy_from_slice(&a.octets());
            AddrKey { len: 4, bytes }
        }
        IpAddr::V6(a) => {
            bytes.copy_from_slice(&a.octets());
            AddrKey { len: 16, bytes }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Vectors from the spec repository's `baseline/baseline_deflt.json` (seed 0) and
    /// `baseline/baseline_seed1.json` (seed 1), computed there over its sample pcaps
    /// (`pcaps/{tcp,udp,sctp,icmp,icmp6,ipv6,rsvp}.pcap`). For ICMP the baseline lists the mapped
    /// port pair; the inputs below are (type, code) as captured, code 0 in every two-way case.
    /// Columns: proto, src, dst, sport (or type), dport (or code), seed 0 ID, seed 1 ID.
    const VECTORS: &[(u8, &str, &str, u16, u16, &str, &str)] = &[
        // tcp.pcap: IPv4 TCP, both directions
        (
            6,
            "128.232.110.120",
            "66.35.250.204",
            34855,
            80,
            "1:LQU9qZlK+B5F3KDmev6m5PMibrg=",
            "1:3V71V58M3Ksw/yuFALMcW0LAHvc=",
        ),
        (
            6,
            "66.35.250.204",
            "128.232.110.120",
            80,
            34855,
            "1:LQU9qZlK+B5F3KDmev6m5PMibrg=",
            "1:3V71V58M3Ksw/yuFALMcW0LAHvc=",
        ),
        // ipv6.pcap: IPv6 TCP
        (
            6,
            "2001:470:e5bf:dead:4957:2174:e82c:4887",
            "2607:f8b0:400c:c03::1a",
            63943,
            25,
            "1:/qFaeAR+gFe1KYjMzVDsMv+wgU4=",
            "1:eJYTW6AOzFLlSUoESovMjnu7rMw=",
        ),
        (
            6,
            "2607:f8b0:400c:c03::1a",
            "2001:470:e5bf:dead:4957:2174:e82c:4887",
            25,
            63943,
            "1:/qFaeAR+gFe1KYjMzVDsMv+wgU4=",
            "1:eJYTW6AOzFLlSUoESovMjnu7rMw=",
        ),
        // udp.pcap: IPv4 UDP (DNS)
        (
            17,
            "192.168.1.52",
            "8.8.8.8",
            54585,
            53,
            "1:d/FP5EW3wiY1vCndhwleRRKHowQ=",
            "1:Q9We8WO3piVF8yEQBNJF4uiSVrI=",
        ),
        (
            17,
            "8.8.8.8",
            "192.168.1.52",
            53,
            54585,
            "1:d/FP5EW3wiY1vCndhwleRRKHowQ=",
            "1:Q9We8WO3piVF8yEQBNJF4uiSVrI=",
        ),
        // sctp.pcap: equal ports, ordered by address
        (
            132,
            "192.168.170.8",
            "192.168.170.56",
            7,
            7,
            "1:MP2EtRCAUIZvTw6MxJHLV7N7JDs=",
            "1:5w3ZRjeKBzqT3zsaEECDGjUbYeg=",
        ),
        (
            132,
            "192.168.170.56",
            "192.168.170.8",
            7,
            7,
            "1:MP2EtRCAUIZvTw6MxJHLV7N7JDs=",
            "1:5w3ZRjeKBzqT3zsaEECDGjUbYeg=",
        ),
        // icmp.pcap: echo request (8) and its reply (0) share an ID
        (
            1,
            "192.168.0.89",
            "192.168.0.1",
            8,
            0,
            "1:X0snYXpgwiv9TZtqg64sgzUn6Dk=",
            "1:03g6IloqVBdcZlPyX8r0hgoE7kA=",
        ),
        (
            1,
            "192.168.0.1",
            "192.168.0.89",
            0,
            0,
            "1:X0snYXpgwiv9TZtqg64sgzUn6Dk=",
            "1:03g6IloqVBdcZlPyX8r0hgoE7kA=",
        ),
        // icmp.pcap: time exceeded (11), one-way
        (
            1,
            "10.0.0.1",
            "10.0.0.2",
            11,
            0,
            "1:YHxtAirCG//0OzkcVAukqKQN9xM=",
            "1:XjUibYHaafLQ3pxQeiMI8g25q20=",
        ),
        // icmp6.pcap: neighbor solicitation (135) and advertisement (136), both ways
        (
            58,
            "fe80::200:86ff:fe05:80da",
            "fe80::260:97ff:fe07:69ea",
            135,
            0,
            "1:dGHyGvjMfljg6Bppwm3bg0LO8TY=",
            "1:kHa1FhMYIT6Ym2Vm2AOtoOARDzY=",
        ),
        (
            58,
            "fe80::260:97ff:fe07:69ea",
            "fe80::200:86ff:fe05:80da",
            136,
            0,
            "1:dGHyGvjMfljg6Bppwm3bg0LO8TY=",
            "1:kHa1FhMYIT6Ym2Vm2AOtoOARDzY=",
        ),
        (
            58,
            "fe80::260:97ff:fe07:69ea",
            "fe80::200:86ff:fe05:80da",
            135,
            0,
            "1:zavyT/cezQr1fmImYCwYnMXbgck=",
            "1:2hSqmsDZ2kdcY9kbiUzOEBic0iM=",
        ),
        // icmp6.pcap: time exceeded (3/0) and destination unreachable (1/4), one-way
        (
            58,
            "3ffe:501:1800:2345::2",
            "3ffe:507:0:1:200:86ff:fe05:80da",
            3,
            0,
            "1:2ObVBgIn28oZvibYZhZMBgh7WdQ=",
            "1:lVEtCZpYu84Xqaa++3lXFyuu2n4=",
        ),
        (
            58,
            "3ffe:501:410:0:2c0:dfff:fe47:33e",
            "3ffe:507:0:1:200:86ff:fe05:80da",
            1,
            4,
            "1:hLZd0XGWojozrvxqE0dWB1iM6R0=",
            "1:W8MHwXpWzpoSTD+cGcaJr4u0ys8=",
        ),
        // icmp6.pcap: echo request (128) and reply (129)
        (
            58,
            "3ffe:507:0:1:200:86ff:fe05:80da",
            "3ffe:501:0:1001::2",
            128,
            0,
            "1:+TW+HtLHvV1xnGhV1lv7XoJrqQg=",
            "1:GfZxjAkDk2MkegpBYHV6tadtFXQ=",
        ),
        (
            58,
            "3ffe:501:0:1001::2",
            "3ffe:507:0:1:200:86ff:fe05:80da",
            129,
            0,
            "1:+TW+HtLHvV1xnGhV1lv7XoJrqQg=",
            "1:GfZxjAkDk2MkegpBYHV6tadtFXQ=",
        ),
        // icmp6.pcap: router solicitation (133) and advertisement (134) to multicast groups
        (
            58,
            "fe80::200:86ff:fe05:80da",
            "ff02::2",
            133,
            0,
            "1:hO+sN4H+MG5MY/8hIrXPqc4ZQz0=",
            "1:L7Ka0ZMYu+J3bL4ulW2PrqyXNo8=",
        ),
        (
            58,
            "fe80::260:97ff:fe07:69ea",
            "ff02::1",
            134,
            0,
            "1:pkvHqCL88/tg1k4cPigmZXUtL00=",
            "1:K/ee5UCqAMAQXDorP5nSa2CGLjc=",
        ),
        // rsvp.pcap: protocol 46, no ports (the ports given are ignored)
        (
            46,
            "10.1.12.1",
            "10.1.12.2",
            1234,
            5678,
            "1:KHlLkgoJW7ifUTyTSgyVfkFHzKw=",
            "1:rYir8gphR31noO9iDRQmF/BteEI=",
        ),
        (
            46,
            "10.1.12.2",
            "10.1.12.1",
            0,
            0,
            "1:KHlLkgoJW7ifUTyTSgyVfkFHzKw=",
            "1:rYir8gphR31noO9iDRQmF/BteEI=",
        ),
    ];

    #[test]
    fn community_id_matches_spec_baselines() {
        for &(proto, src, dst, sp, dp, seed0, seed1) in VECTORS {
            let (s, d) = (src.parse().unwrap(), dst.parse().unwrap());
            assert_eq!(
                &*community_id_v1(0, proto, s, d, sp, dp),
                seed0,
                "seed 0: {proto} {src} {dst} {sp} {dp}"
            );
            assert_eq!(
                community_id_v1(1, proto, s, d, sp, dp).as_str(),
                seed1,
                "seed 1: {proto} {src} {dst} {sp} {dp}"
            );
        }
    }

    #[test]
    fn community_id_is_fixed_size_text() {
        let id = community_id_v1(
            0,
            6,
            "10.0.0.1".parse().unwrap(),
            "10.0.0.2".parse().unwrap(),
            1,
            2,
        );
        assert_eq!(id.len(), 30);
        assert!(id.starts_with("1:") && id.ends_with('='));
        assert_eq!(format!("{id}"), id.as_str());
        assert_eq!(format!("{id:?}"), format!("{:?}", id.as_str()));
    }

    #[test]
    fn community_id_icmp_router_advert_pairs_with_solicit() {
        // pycommunityid's table pairs 9 and 10 both ways, so an advertisement answering a
        // solicitation shares its ID.
        let (a, b) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        assert_eq!(
            community_id_v1(0, 1, a, b, 10, 0),
            community_id_v1(0, 1, b, a, 9, 0)
        );
        // A one-way type keeps its direction.
        assert_ne!(
            community_id_v1(0, 1, a, b, 3, 1),
            community_id_v1(0, 1, b, a, 3, 1)
        );
    }

    /// Wireshark computes Community IDs too (its `communityid` post-dissector): every packet of the
    /// project's unencapsulated sample captures must get the same ID from both. Skipped with a
    /// notice where tshark is missing, except in CI, which installs it.
    #[test]
    fn community_id_matches_tshark_on_sample_captures() {
        use std::process::Command;
        const FIELDS: &[&str] = &[
            "ip.src",
            "ip.dst",
            "ipv6.src",
            "ipv6.dst",
            "ip.proto",
            "tcp.srcport",
            "tcp.dstport",
            "udp.srcport",
            "udp.dstport",
            "icmp.type",
            "icmp.code",
            "icmpv6.type",
            "icmpv6.code",
            "communityid",
        ];
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("pcaps");
        let mut checked = 0;
        for file in ["plain.pcapng", "plain-sll.pcap"] {
            let mut cmd = Command::new("tshark");
            cmd.args(["--enable-protocol", "communityid", "-T", "fields", "-r"])
                .arg(dir.join(file));
            for f in FIELDS {
                cmd.args(["-e", f]);
            }
            let out = match cmd.output() {
                Ok(out) if out.status.success() => out,
                other => {
                    assert!(
                        std::env::var("CI").as_deref() != Ok("true"),
                        "tshark is required in CI: {other:?}"
                    );
                    eprintln!("skipped: tshark not available ({other:?})");
                    return;
                }
            };
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                let v: Vec<&str> = line.split('\t').collect();
                // Tunnelled packets list several layers; which one tshark hashes is its choice.
                if v.len() != FIELDS.len() || v.iter().any(|f| f.contains(',')) || v[13].is_empty()
                {
                    continue;
                }
                let (src, dst) = if v[0].is_empty() {
                    (v[2], v[3])
                } else {
                    (v[0], v[1])
                };
                let num = |s: &str| s.parse::<u16>().ok();
                let (proto, sp, dp) = if let (Some(a), Some(b)) = (num(v[5]), num(v[6])) {
                    (6, a, b)
                } else if let (Some(a), Some(b)) = (num(v[7]), num(v[8])) {
                    (17, a, b)
                } else if let (Some(a), Some(b)) = (num(v[9]), num(v[10])) {
                    (1, a, b)
                } else if let (Some(a), Some(b)) = (num(v[11]), num(v[12])) {
                    (58, a, b)
                } else if let Ok(p) = v[4].parse::<u8>() {
                    // A non-first fragment, or a protocol without ports.
                    let id = community_id_v1_without_ports(
                        0,
                        p,
                        src.parse().unwrap(),
                        dst.parse().unwrap(),
                    );
                    assert_eq!(id.as_str(), v[13], "{file}: {line}");
                    checked += 1;
                    continue;
                } else {
                    continue;
                };
                let id =
                    community_id_v1(0, proto, src.parse().unwrap(), dst.parse().unwrap(), sp, dp);
                assert_eq!(id.as_str(), v[13], "{file}: {line}");
                checked += 1;
            }
        }
        assert!(checked > 0, "tshark gave no Community IDs to compare");
    }
}
