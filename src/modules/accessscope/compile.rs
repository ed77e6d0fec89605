//! Scopes compiled once into matchers, so that judging a flow is a few binary searches and
//! comparisons rather than a walk over strings: address lists and prefix lists become sorted,
//! merged ranges; ports become sorted ranges; protocols a bit set; resource types a bit set;
//! resource ids a sorted list. Then every distinct condition of every path is numbered
//! ([`Conditions`]): a flow's addresses and ports are each looked up once, in a table of ranges
//! that carries the bits of every set holding them, and each path is a mask test on the flow's
//! bits. The per-path matchers stay as the reference the bits are tested against, and for scopes
//! with more conditions than the bits hold.
//!
//! What one ENI's mirror cannot see is decided here, once, and said in a notice (see
//! docs/modules/accessscope.md, "What a mirror cannot see"):
//! - `ThroughResources`: the hops between the ends never show in a mirrored packet. In a MatchPath
//!   it is ignored (the path is judged on its ends, so it may report a flow AWS would not); in an
//!   ExcludePath the exclusion never applies (so it never hides a finding).
//! - Resource ids and types that are not an end a mirror can name (NAT gateways, transit gateway
//!   attachments, peering connections, endpoints, load balancers, ...): such a value never matches.
//!   A statement left with no value that can match never matches: its MatchPath never fires, its
//!   ExcludePath never excludes.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;

use super::scope::{AccessScopePath, PacketHeaderStatement, PathStatement, ResourceStatement};

/// A set of addresses as sorted, merged, inclusive ranges; IPv4 and IPv6 apart.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct AddrSet {
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
}

impl AddrSet {
    pub(crate) fn from_nets(nets: &[IpNet]) -> AddrSet {
        let mut set = AddrSet::default();
        for n in nets {
            set.add(*n);
        }
        set.finish();
        set
    }

    fn add(&mut self, net: IpNet) {
        match net {
            IpNet::V4(n) => self
                .v4
                .push((u32::from(n.network()), u32::from(n.broadcast()))),
            IpNet::V6(n) => self
                .v6
                .push((u128::from(n.network()), u128::from(n.broadcast()))),
        }
    }

    fn finish(&mut self) {
        merge(&mut self.v4);
        merge(&mut self.v6);
    }

    pub(crate) fn contains(&self, addr: IpAddr) -> bool {
        // An IPv4-mapped IPv6 address (a dual-stack socket's view) is the IPv4 address.
        match addr.to_canonical() {
            IpAddr::V4(a) => find(&self.v4, u32::from(a)),
            IpAddr::V6(a) => find(&self.v6, u128::from(a)),
        }
    }
}

fn merge<T: Ord + Copy + Successor>(ranges: &mut Vec<(T, T)>) {
    ranges.sort_unstable();
    let mut out: Vec<(T, T)> = Vec::with_capacity(ranges.len());
    for &(lo, hi) in ranges.iter() {
        match out.last_mut() {
            Some(last) if lo <= last.1.succ() => last.1 = last.1.max(hi),
            _ => out.push((lo, hi)),
        }
    }
    *ranges = out;
}

fn find<T: Ord + Copy>(ranges: &[(T, T)], x: T) -> bool {
    // The last range starting at or before x is the only one that can hold it.
    let i = ranges.partition_point(|r| r.0 <= x);
    i > 0 && x <= ranges[i - 1].1
}

trait Successor {
    fn succ(self) -> Self;
}
impl Successor for u32 {
    fn succ(self) -> Self {
        self.saturating_add(1)
    }
}
impl Successor for u128 {
    fn succ(self) -> Self {
        self.saturating_add(1)
    }
}
impl Successor for u16 {
    fn succ(self) -> Self {
        self.saturating_add(1)
    }
}

/// Ports as sorted, merged, inclusive ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PortSet(Vec<(u16, u16)>);

impl PortSet {
    pub(crate) fn contains(&self, port: u16) -> bool {
        find(&self.0, port)
    }
}

/// The kinds of resource an end of a flow can be, as bits.
pub(crate) mod kind {
    pub(crate) const NETWORK_INTERFACE: u8 = 1;
    pub(crate) const INSTANCE: u8 = 2;
    pub(crate) const SUBNET: u8 = 4;
    pub(crate) const VPC: u8 = 8;
    pub(crate) const SECURITY_GROUP: u8 = 16;
    pub(crate) const INTERNET_GATEWAY: u8 = 32;
}

/// The resource types a mirror can attribute to an end of a flow, and their bits.
const OBSERVABLE_TYPES: [(&str, u8); 6] = [
    ("AWS::EC2::NetworkInterface", kind::NETWORK_INTERFACE),
    ("AWS::EC2::Instance", kind::INSTANCE),
    ("AWS::EC2::Subnet", kind::SUBNET),
    ("AWS::EC2::VPC", kind::VPC),
    ("AWS::EC2::SecurityGroup", kind::SECURITY_GROUP),
    ("AWS::EC2::InternetGateway", kind::INTERNET_GATEWAY),
];

/// Id prefixes of the resources an end can be named by. `igw-` stands for the internet
/// gateway approximation: a VPC has at most one, so "the" internet gateway is the one meant.
const OBSERVABLE_ID_PREFIXES: [&str; 6] = ["eni-", "i-", "subnet-", "vpc-", "sg-", "igw-"];

/// What one end of a flow is, as far as the session config, the inventory and `vpc_cidrs` say.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct End<'a> {
    /// Resource kinds it is (bits of [`kind`]).
    pub(crate) kinds: u8,
    /// The ids it is known by: ENI, instance, subnet, VPC.
    pub(crate) ids: [Option<&'a str>; 4],
    /// Its security groups.
    pub(crate) groups: &'a [String],
    /// A second source of security groups (the inventory's, for the mirrored ENI).
    pub(crate) more_groups: &'a [String],
}

impl End<'_> {
    fn has_id(&self, id: &str) -> bool {
        if id.starts_with("igw-") {
            return self.kinds & kind::INTERNET_GATEWAY != 0;
        }
        self.ids.iter().flatten().any(|i| *i == id)
            || self.groups.iter().any(|g| g == id)
            || self.more_groups.iter().any(|g| g == id)
    }
}

/// A resource statement, compiled.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ResourceMatcher {
    /// `Resources`, observable ones only, sorted; `None` = not given.
    ids: Option<Vec<String>>,
    /// `ResourceTypes` as bits; `None` = not given.
    kinds: Option<u8>,
}

impl ResourceMatcher {
    fn matches(&self, end: &End<'_>) -> bool {
        if let Some(kinds) = self.kinds {
            if end.kinds & kinds == 0 {
                return false;
            }
        }
        match &self.ids {
            Some(ids) => ids.iter().any(|id| end.has_id(id)),
            None => true,
        }
    }
}

/// One path compiled: every given condition must hold.
#[derive(Debug, Clone, Default)]
pub(crate) struct PathMatcher {
    /// The packet's source address (the flow's client): one set per statement that gives
    /// `SourceAddresses` or `SourcePrefixLists` (their union), all of which must hold.
    src_addrs: Vec<AddrSet>,
    dst_addrs: Vec<AddrSet>,
    src_ports: Vec<PortSet>,
    dst_ports: Vec<PortSet>,
    /// Bits: 1 tcp, 2 udp.
    protocols: Vec<u8>,
    source: Option<ResourceMatcher>,
    destination: Option<ResourceMatcher>,
    /// A condition that nothing observed can satisfy (all its values unobservable).
    never: bool,
}

/// A flow as a path sees it: the client → server packet and the two ends.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Observed<'a> {
    pub(crate) protocol: u8,
    pub(crate) client: (IpAddr, u16),
    pub(crate) server: (IpAddr, u16),
    pub(crate) client_end: End<'a>,
    pub(crate) server_end: End<'a>,
}

impl PathMatcher {
    pub(crate) fn matches(&self, f: &Observed<'_>) -> bool {
        if self.never {
            return false;
        }
        let has_ports = matches!(f.protocol, 6 | 17);
        self.protocols.iter().all(|p| match f.protocol {
            6 => p & 1 != 0,
            17 => p & 2 != 0,
            _ => false,
        }) && (self.src_ports.is_empty() || has_ports)
            && (self.dst_ports.is_empty() || has_ports)
            && self.src_ports.iter().all(|s| s.contains(f.client.1))
            && self.dst_ports.iter().all(|s| s.contains(f.server.1))
            && self.src_addrs.iter().all(|s| s.contains(f.client.0))
            && self.dst_addrs.iter().all(|s| s.contains(f.server.0))
            && self
                .source
                .as_ref()
                .is_none_or(|r| r.matches(&f.client_end))
            && self
                .destination
                .as_ref()
                .is_none_or(|r| r.matches(&f.server_end))
    }

    /// Whether the path needs to know what the ends are (resource statements).
    pub(crate) fn needs_ends(&self) -> bool {
        self.source.is_some() || self.destination.is_some()
    }
}

/// A whole scope compiled.
#[derive(Debug, Clone, Default)]
pub(crate) struct ScopeMatcher {
    pub(crate) match_paths: Vec<PathMatcher>,
    pub(crate) exclude_paths: Vec<PathMatcher>,
}

impl ScopeMatcher {
    /// The first MatchPath the flow matches, if no ExcludePath matches it.
    pub(crate) fn judge(&self, f: &Observed<'_>) -> Option<usize> {
        let hit = self.match_paths.iter().position(|p| p.matches(f))?;
        (!self.exclude_paths.iter().any(|p| p.matches(f))).then_some(hit)
    }

    pub(crate) fn needs_ends(&self) -> bool {
        self.match_paths
            .iter()
            .chain(&self.exclude_paths)
            .any(PathMatcher::needs_ends)
    }
}

/// A flow's conditions met, one bit each: what [`Conditions`] makes of a flow, and what each path
/// needs of it.
pub(crate) type Bits = u128;

/// Bits every flow is given for its protocol; a path's `Protocols` (all its statements' together)
/// come down to one of them, and ports need TCP or UDP.
const IS_TCP: Bits = 1;
const IS_UDP: Bits = 2;
const IS_TCP_OR_UDP: Bits = 4;
const PROTOCOL_BITS: u32 = 3;

/// A sorted key space (addresses, ports) cut where any set of ranges starts or ends, each piece
/// with the bits of the sets that hold it: one binary search answers every set at once.
#[derive(Debug, Clone, Default)]
struct Atlas<T> {
    /// Each piece's first key; the first is the space's first key, so every key is in a piece.
    starts: Vec<T>,
    bits: Vec<Bits>,
}

impl<T: Ord + Copy + Default + Successor> Atlas<T> {
    fn build(sets: &[(&[(T, T)], Bits)]) -> Atlas<T> {
        let mut cuts = vec![T::default()];
        for (ranges, _) in sets {
            for &(lo, hi) in ranges.iter() {
                // At the top of the space `succ` saturates: a cut at the last key is harmless.
                cuts.extend([lo, hi.succ()]);
            }
        }
        cuts.sort_unstable();
        cuts.dedup();
        let mut atlas = Atlas::default();
        for cut in cuts {
            // Between two cuts no range starts or ends, so the piece is what its first key is.
            let bits = sets
                .iter()
                .filter(|(ranges, _)| find(ranges, cut))
                .fold(0, |acc, (_, bit)| acc | bit);
            if atlas.bits.last() != Some(&bits) {
                atlas.starts.push(cut);
                atlas.bits.push(bits);
            }
        }
        atlas
    }

    fn bits(&self, key: T) -> Bits {
        let i = self.starts.partition_point(|s| *s <= key);
        i.checked_sub(1)
            .and_then(|i| self.bits.get(i))
            .copied()
            .unwrap_or(0)
    }
}

/// One side's (client's or server's) address conditions.
#[derive(Debug, Clone, Default)]
struct AddrAtlas {
    v4: Atlas<u32>,
    v6: Atlas<u128>,
}

impl AddrAtlas {
    fn build(sets: &[(&AddrSet, Bits)]) -> AddrAtlas {
        let v4: Vec<_> = sets.iter().map(|(s, b)| (s.v4.as_slice(), *b)).collect();
        let v6: Vec<_> = sets.iter().map(|(s, b)| (s.v6.as_slice(), *b)).collect();
        AddrAtlas {
            v4: Atlas::build(&v4),
            v6: Atlas::build(&v6),
        }
    }

    fn bits(&self, addr: IpAddr) -> Bits {
        match addr.to_canonical() {
            IpAddr::V4(a) => self.v4.bits(u32::from(a)),
            IpAddr::V6(a) => self.v6.bits(u128::from(a)),
        }
    }
}

/// Every distinct condition of every path of every scope, numbered (at most 125: [`Bits`] has 128
/// bits, and three are the protocol's), and each path as the bits it needs. Judging a flow is then
/// a few binary searches for its bits, and per path one mask test, instead of a walk over each
/// path's sets: the same set is in many paths (a VPC's CIDRs, the internet gateway), and it is
/// looked up once.
#[derive(Debug, Clone, Default)]
pub(crate) struct Conditions {
    client_addrs: AddrAtlas,
    server_addrs: AddrAtlas,
    client_ports: Atlas<u16>,
    server_ports: Atlas<u16>,
    client_ends: Vec<(ResourceMatcher, Bits)>,
    server_ends: Vec<(ResourceMatcher, Bits)>,
    scopes: Vec<ScopeNeeds>,
}

/// What each path of a scope needs; `None` for a path that never matches.
#[derive(Debug, Clone, Default)]
struct ScopeNeeds {
    matching: Vec<Option<Bits>>,
    excluding: Vec<Option<Bits>>,
}

/// Numbers distinct conditions of one kind.
struct Numbering<'a, T> {
    seen: Vec<(&'a T, Bits)>,
}

impl<'a, T: PartialEq> Numbering<'a, T> {
    fn new() -> Self {
        Numbering { seen: Vec::new() }
    }

    fn bit(&mut self, c: &'a T, next: &mut u32) -> Option<Bits> {
        if let Some((_, bit)) = self.seen.iter().find(|(s, _)| *s == c) {
            return Some(*bit);
        }
        let bit = 1u128.checked_shl(*next)?;
        *next += 1;
        self.seen.push((c, bit));
        Some(bit)
    }
}

impl Conditions {
    /// `None` when the scopes hold more distinct conditions than [`Bits`] has bits: their flows
    /// are judged path by path ([`ScopeMatcher::judge`]).
    pub(crate) fn build(scopes: &[&ScopeMatcher]) -> Option<Conditions> {
        let mut next = PROTOCOL_BITS;
        let (mut ca, mut sa) = (Numbering::new(), Numbering::new());
        let (mut cp, mut sp) = (Numbering::new(), Numbering::new());
        let (mut ce, mut se) = (Numbering::new(), Numbering::new());
        let mut needs = Vec::with_capacity(scopes.len());
        for scope in scopes {
            let mut paths = ScopeNeeds::default();
            for (list, into) in [
                (&scope.match_paths, &mut paths.matching),
                (&scope.exclude_paths, &mut paths.excluding),
            ] {
                for p in list {
                    into.push(path_need(
                        p,
                        &mut next,
                        [&mut ca, &mut sa],
                        [&mut cp, &mut sp],
                        [&mut ce, &mut se],
                    )?);
                }
            }
            needs.push(paths);
        }
        let atlas16 = |n: &Numbering<'_, PortSet>| {
            let sets: Vec<_> = n.seen.iter().map(|(s, b)| (s.0.as_slice(), *b)).collect();
            Atlas::build(&sets)
        };
        let addrs = |n: &Numbering<'_, AddrSet>| AddrAtlas::build(&n.seen);
        let ends = |n: &Numbering<'_, ResourceMatcher>| {
            n.seen.iter().map(|(m, b)| ((*m).clone(), *b)).collect()
        };
        Some(Conditions {
            client_addrs: addrs(&ca),
            server_addrs: addrs(&sa),
            client_ports: atlas16(&cp),
            server_ports: atlas16(&sp),
            client_ends: ends(&ce),
            server_ends: ends(&se),
            scopes: needs,
        })
    }

    /// Whether any path asks what the client's (or the server's) end is.
    pub(crate) fn needs_ends(&self) -> (bool, bool) {
        (!self.client_ends.is_empty(), !self.server_ends.is_empty())
    }

    /// The conditions a flow meets; `ends` are its client's and server's, when asked for.
    pub(crate) fn bits(
        &self,
        protocol: u8,
        client: (IpAddr, u16),
        server: (IpAddr, u16),
        ends: (Option<&End<'_>>, Option<&End<'_>>),
    ) -> Bits {
        let mut bits = match protocol {
            6 => IS_TCP | IS_TCP_OR_UDP,
            17 => IS_UDP | IS_TCP_OR_UDP,
            _ => 0,
        };
        bits |= self.client_addrs.bits(client.0) | self.server_addrs.bits(server.0);
        bits |= self.client_ports.bits(client.1) | self.server_ports.bits(server.1);
        for (matchers, end) in [(&self.client_ends, ends.0), (&self.server_ends, ends.1)] {
            if let Some(end) = end {
                for (m, bit) in matchers {
                    if m.matches(end) {
                        bits |= bit;
                    }
                }
            }
        }
        bits
    }

    /// Scope `scope`'s verdict on a flow of `bits`: the first MatchPath it meets, if it meets no
    /// ExcludePath (as [`ScopeMatcher::judge`]).
    pub(crate) fn judge(&self, scope: usize, bits: Bits) -> Option<usize> {
        let needs = self.scopes.get(scope)?;
        let meets = |need: &Option<Bits>| need.is_some_and(|n| bits & n == n);
        let hit = needs.matching.iter().position(meets)?;
        (!needs.excluding.iter().any(meets)).then_some(hit)
    }
}

/// What path `p` needs, in bits numbered by the numberings (client's, then server's); `None`
/// (outer) when the bits ran out, `Some(None)` when the path never matches.
fn path_need<'a>(
    p: &'a PathMatcher,
    next: &mut u32,
    addrs: [&mut Numbering<'a, AddrSet>; 2],
    ports: [&mut Numbering<'a, PortSet>; 2],
    ends: [&mut Numbering<'a, ResourceMatcher>; 2],
) -> Option<Option<Bits>> {
    if p.never {
        return Some(None);
    }
    let mut need = 0;
    if !p.protocols.is_empty() {
        need |= match p.protocols.iter().fold(3, |acc, bits| acc & bits) {
            1 => IS_TCP,
            2 => IS_UDP,
            3 => IS_TCP_OR_UDP,
            _ => return Some(None),
        };
    }
    if !p.src_ports.is_empty() || !p.dst_ports.is_empty() {
        need |= IS_TCP_OR_UDP;
    }
    let [ca, sa] = addrs;
    let [cp, sp] = ports;
    let [ce, se] = ends;
    for s in &p.src_addrs {
        need |= ca.bit(s, next)?;
    }
    for s in &p.dst_addrs {
        need |= sa.bit(s, next)?;
    }
    for s in &p.src_ports {
        need |= cp.bit(s, next)?;
    }
    for s in &p.dst_ports {
        need |= sp.bit(s, next)?;
    }
    if let Some(m) = &p.source {
        need |= ce.bit(m, next)?;
    }
    if let Some(m) = &p.destination {
        need |= se.bit(m, next)?;
    }
    Some(Some(need))
}

/// Compiles one path. `at` is its JSON path (`MatchPaths[0]`); errors start with the JSON path of
/// the value at fault; `notices` gets what cannot be observed and how it is treated.
pub(crate) fn compile_path(
    path: &AccessScopePath,
    at: &str,
    exclude: bool,
    prefix_lists: &BTreeMap<String, Vec<IpNet>>,
    notices: &mut Vec<String>,
) -> Result<PathMatcher, String> {
    let mut m = PathMatcher::default();
    for (side, stmt) in [("Source", &path.source), ("Destination", &path.destination)] {
        let Some(PathStatement {
            packet_header_statement,
            resource_statement,
        }) = stmt
        else {
            continue;
        };
        let here = format!("{at}.{side}");
        if let Some(h) = packet_header_statement {
            packet_header(
                h,
                &format!("{here}.PacketHeaderStatement"),
                prefix_lists,
                &mut m,
            )?;
        }
        if let Some(r) = resource_statement {
            let (matcher, never) =
                resources(r, &format!("{here}.ResourceStatement"), exclude, notices)?;
            m.never |= never;
            if side == "Source" {
                m.source = Some(matcher);
            } else {
                m.destination = Some(matcher);
            }
        }
    }
    if let Some(through) = &path.through_resources {
        if !through.is_empty() {
            let treatment = if exclude {
                m.never = true;
                "this ExcludePath never applies (so that it hides no finding)"
            } else {
                "ignored: the path is judged on its Source and Destination only, so it may report flows that did not pass through these resources"
            };
            notices.push(format!(
                "{at}.ThroughResources: the hops between a flow's ends are not visible in one ENI's mirror; {treatment}"
            ));
        }
    }
    Ok(m)
}

fn packet_header(
    h: &PacketHeaderStatement,
    at: &str,
    prefix_lists: &BTreeMap<String, Vec<IpNet>>,
    m: &mut PathMatcher,
) -> Result<(), String> {
    // Within a statement, addresses and prefix lists are alternatives for the same end.
    for (addrs, lists, key_a, key_l, into) in [
        (
            &h.source_addresses,
            &h.source_prefix_lists,
            "SourceAddresses",
            "SourcePrefixLists",
            &mut m.src_addrs,
        ),
        (
            &h.destination_addresses,
            &h.destination_prefix_lists,
            "DestinationAddresses",
            "DestinationPrefixLists",
            &mut m.dst_addrs,
        ),
    ] {
        if addrs.is_none() && lists.is_none() {
            continue;
        }
        let mut nets = Vec::new();
        for (i, a) in addrs.iter().flatten().enumerate() {
            nets.push(parse_net(a).map_err(|e| format!("{at}.{key_a}[{i}]: {e}"))?);
        }
        for (i, id) in lists.iter().flatten().enumerate() {
            let cidrs = prefix_lists.get(id).ok_or_else(|| {
                format!(
                    "{at}.{key_l}[{i}]: prefix list {id:?} is not in [module.prefix_lists]; \
                     add its CIDRs there (aws ec2 get-managed-prefix-list-entries)"
                )
            })?;
            nets.extend_from_slice(cidrs);
        }
        into.push(AddrSet::from_nets(&nets));
    }
    for (ports, key, into) in [
        (&h.source_ports, "SourcePorts", &mut m.src_ports),
        (&h.destination_ports, "DestinationPorts", &mut m.dst_ports),
    ] {
        if let Some(ports) = ports {
            let mut ranges = Vec::new();
            for (i, p) in ports.iter().enumerate() {
                ranges.push(parse_ports(p).map_err(|e| format!("{at}.{key}[{i}]: {e}"))?);
            }
            merge(&mut ranges);
            into.push(PortSet(ranges));
        }
    }
    if let Some(protocols) = &h.protocols {
        let mut bits = 0;
        for (i, p) in protocols.iter().enumerate() {
            bits |= match p.to_ascii_lowercase().as_str() {
                "tcp" => 1,
                "udp" => 2,
                _ => {
                    return Err(format!(
                        "{at}.Protocols[{i}]: {p:?} is not a protocol a scope takes; use \"tcp\" or \"udp\""
                    ))
                }
            };
        }
        m.protocols.push(bits);
    }
    Ok(())
}

/// A resource statement; the flag says whether nothing observable is left in it.
fn resources(
    r: &ResourceStatement,
    at: &str,
    exclude: bool,
    notices: &mut Vec<String>,
) -> Result<(ResourceMatcher, bool), String> {
    let mut m = ResourceMatcher::default();
    let mut never = false;
    let consequence = if exclude {
        "this ExcludePath never applies"
    } else {
        "this MatchPath never matches"
    };
    if let Some(ids) = &r.resources {
        let mut kept = Vec::new();
        for (i, raw) in ids.iter().enumerate() {
            // An ARN names the resource after its last '/' (…:network-interface/eni-…).
            let id = raw.rsplit('/').next().unwrap_or(raw);
            if id.is_empty() {
                return Err(format!("{at}.Resources[{i}]: an empty resource id"));
            }
            if OBSERVABLE_ID_PREFIXES.iter().any(|p| id.starts_with(p)) {
                if id.starts_with("igw-") {
                    notices.push(format!(
                        "{at}.Resources[{i}]: {raw:?} is taken as the internet gateway approximation \
                         (the peer address is public and outside vpc_cidrs)"
                    ));
                }
                kept.push(id.to_owned());
            } else {
                notices.push(format!(
                    "{at}.Resources[{i}]: {raw:?} is not an end a mirror can name (only ENIs, instances, \
                     subnets, VPCs, security groups and the internet gateway); it never matches"
                ));
            }
        }
        if kept.is_empty() {
            never = true;
            notices.push(format!(
                "{at}.Resources: no resource left that can match; {consequence}"
            ));
        }
        kept.sort();
        kept.dedup();
        m.ids = Some(kept);
    }
    if let Some(types) = &r.resource_types {
        let mut bits = 0;
        for (i, t) in types.iter().enumerate() {
            match OBSERVABLE_TYPES.iter().find(|(name, _)| name == t) {
                Some((name, bit)) => {
                    bits |= bit;
                    if *bit == kind::INTERNET_GATEWAY {
                        notices.push(format!(
                            "{at}.ResourceTypes[{i}]: {name} is approximated: the peer address is \
                             public and outside vpc_cidrs"
                        ));
                    }
                }
                None => notices.push(format!(
                    "{at}.ResourceTypes[{i}]: {t:?} is not a type a mirror can attribute to a flow's end \
                     (NAT gateways, transit gateway attachments, peering connections, endpoints and load \
                     balancers are hops or hide the real peer); it never matches"
                )),
            }
        }
        if bits == 0 {
            never = true;
            notices.push(format!(
                "{at}.ResourceTypes: no type left that can match; {consequence}"
            ));
        }
        m.kinds = Some(bits);
    }
    Ok((m, never))
}

/// A CIDR, or a single address.
fn parse_net(s: &str) -> Result<IpNet, String> {
    if let Ok(n) = s.parse::<IpNet>() {
        return Ok(n.trunc());
    }
    s.parse::<IpAddr>()
        .map(IpNet::from)
        .map_err(|_| format!("{s:?} is not an address or CIDR"))
}

/// `"22"` or `"1024-65535"`.
fn parse_ports(s: &str) -> Result<(u16, u16), String> {
    let bad = || format!("{s:?} is not a port (\"22\") or a range (\"1024-65535\")");
    let (lo, hi) = match s.split_once('-') {
        Some((lo, hi)) => (lo.trim(), hi.trim()),
        None => (s.trim(), s.trim()),
    };
    let lo: u16 = lo.parse().map_err(|_| bad())?;
    let hi: u16 = hi.parse().map_err(|_| bad())?;
    if lo > hi {
        return Err(format!("{s:?}: the range's start is above its end"));
    }
    Ok((lo, hi))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(nets: &[&str]) -> AddrSet {
        let nets: Vec<IpNet> = nets.iter().map(|n| parse_net(n).unwrap()).collect();
        AddrSet::from_nets(&nets)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn address_sets_merge_and_find() {
        let s = set(&[
            "10.0.0.0/16",
            "10.1.0.0/16",
            "192.0.2.7",
            "2001:db8::/32",
            "10.0.5.0/24",
        ]);
        assert_eq!(
            s.v4.len(),
            2,
            "adjacent /16s merge, the /24 inside one vanishes"
        );
        for a in [
            "10.0.0.0",
            "10.1.255.255",
            "192.0.2.7",
            "2001:db8::1",
            "::ffff:10.0.3.4",
        ] {
            assert!(s.contains(ip(a)), "{a}");
        }
        for a in [
            "10.2.0.0",
            "9.255.255.255",
            "192.0.2.8",
            "2001:db9::",
            "::1",
        ] {
            assert!(!s.contains(ip(a)), "{a}");
        }
        assert!(set(&["0.0.0.0/0"]).contains(ip("255.255.255.255")));
        assert!(!set(&[]).contains(ip("1.2.3.4")));
        assert_eq!(parse_net("10.0.0.9/8").unwrap().to_string(), "10.0.0.0/8");
        assert!(parse_net("10.0.0.0/33").is_err());
    }

    #[test]
    fn ports_parse_and_match() {
        assert_eq!(parse_ports("22"), Ok((22, 22)));
        assert_eq!(parse_ports("1024-65535"), Ok((1024, 65535)));
        assert!(parse_ports("65536").is_err());
        assert!(parse_ports("22-21").unwrap_err().contains("start is above"));
        assert!(parse_ports("ssh").is_err());
        let mut r = vec![(3306, 3306), (5432, 5432), (3307, 3310)];
        merge(&mut r);
        assert_eq!(r, vec![(3306, 3310), (5432, 5432)]);
        let p = PortSet(r);
        assert!(p.contains(3308) && p.contains(5432) && !p.contains(5433) && !p.contains(22));
    }
}
