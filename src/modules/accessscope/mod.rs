//! `accessscope` (issue 16): Network Access Scopes, the policy documents of AWS's Network Access
//! Analyzer, held against the flows a mirror actually sees. AWS evaluates a scope against the
//! configuration (routes, security groups, ACLs) and says which paths *could* exist; this module
//! says which ones *did*, with packets and bytes: "an ENI of the database tier talked to the
//! internet" as a live alarm.
//!
//! Each flow is judged once, at its first packet, against every scope compiled at config time
//! (`compile.rs`): it is a finding of a scope when it matches one of its MatchPaths and none of its
//! ExcludePaths; the path's `Source` is the flow's client, its `Destination` the server.
//! Findings are aggregated per (scope, session, client, server, server port, protocol) over
//! intervals of `interval_secs` of packet time aligned to the epoch (as flowlog's), and written at
//! each interval's end and at `finish`, one EVE-shaped record each, so a port scan of a database
//! from outside is one record per interval, not one per probe. A finding's connections are
//! steered to shards by their whole 5-tuple, so each shard aggregates its part; at the interval's
//! close the parts meet on an interval board (`interval_board.rs`) and the shard that closes it
//! last writes them merged: the records do not depend on the number of shards.
//!
//! No packet of a flow comes here after its first. The verdict is interned (a shard sees few
//! distinct sets of scopes and paths) and its id kept in the flow's tag ([`Flow::set_tag`]); what
//! the flow carried comes from the flow table's interval counters, which hand every direction over
//! at the interval's end with that tag (`on_flow_interval`), ended flows' included. A module
//! per packet would cost a cache miss on its own per-flow state for each packet of a finding,
//! and findings can be most of the traffic (an ENI that talks to the internet). Only when an
//! earlier module of the shard has taken the counters for another interval does the module count
//! itself, with a [`PerFlow`] verdict updated per packet ([`Verdict`]).
//!
//! Bounds: at most `max_findings` aggregates per shard and interval (a finding that finds the table
//! full is counted in the module's `drops` and retried in the next interval), at most
//! [`MAX_HITS`] scopes per flow (more are counted as drops).

mod compile;
mod inventory;
mod scope;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use arrayvec::ArrayVec;
use hashbrown::HashTable;
use ipnet::IpNet;
use rustc_hash::FxHashMap;
use serde::Deserialize;

use self::compile::{kind, AddrSet, Bits, Conditions, End, Observed, ScopeMatcher};
use self::inventory::Inventory;
use super::eve;
use super::interval_board::{IntervalBoard, Merge};
use super::{BuildError, Emitter, Module, ModuleConfig, ModuleContext};
use crate::base::{FlowKey, Packet, Session, Timestamp};
use crate::flow::community_id::CommunityId;
use crate::flow::index::key_hash;
use crate::flow::{flow_community_id, Dir, DirInterval, EndReason, Flow, IntervalSpec, PerFlow};
use crate::sinks::{OutputConfig, SeriesName, Sink};

const NANOS: u64 = 1_000_000_000;

/// Scopes one flow can be a finding of at once; a flow's verdict is a fixed array so that its
/// `PerFlow` slot is reused without allocation.
pub const MAX_HITS: usize = 8;

/// `[[module]] kind = "accessscope"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessScopeConfig {
    /// Scope documents (JSON), in either form AWS gives them: `create-network-insights-access-scope`
    /// input or `get-network-insights-access-scope-content` output. Read when the module is built:
    /// at start, and at a reload that changes this table (a reload keeps unchanged modules).
    pub scopes: Vec<PathBuf>,
    /// What "inside the VPC" means: a peer outside these and with a public address is taken as
    /// reached through the internet gateway (`AWS::EC2::InternetGateway`); one inside them is an
    /// ENI in a subnet of the VPC.
    #[serde(default)]
    pub vpc_cidrs: Vec<IpNet>,
    /// `aws ec2 describe-network-interfaces` output: which ENI, instance, subnet, VPC and security
    /// groups a peer address belongs to.
    #[serde(default)]
    pub inventory: Option<PathBuf>,
    /// Prefix list id → its CIDRs, for `SourcePrefixLists` / `DestinationPrefixLists`.
    #[serde(default)]
    pub prefix_lists: BTreeMap<String, Vec<IpNet>>,
    /// Findings are aggregated over intervals of this many seconds of packet time.
    #[serde(default = "default_interval")]
    pub interval_secs: u64,
    /// Aggregates each shard holds per interval.
    #[serde(default = "default_max_findings")]
    pub max_findings: usize,
    /// Where records go.
    #[serde(default)]
    pub output: OutputConfig,
    /// Compiled by `validate` (which `check-config` and the pipeline both run) and shared by every
    /// shard's instance: read-only after it is made, so sharing it costs no synchronisation.
    #[serde(skip)]
    compiled: OnceLock<Arc<Compiled>>,
    /// Where the shards' instances meet at each interval's end: the connections of one finding
    /// (one client and server port) are steered to shards by their whole 5-tuple, so each shard
    /// holds a part of its aggregate.
    #[serde(skip)]
    board: Arc<IntervalBoard<Findings>>,
}

fn default_interval() -> u64 {
    60
}

/// Sized so that an ENI-like minute of traffic keeps every finding on one shard: the benchmark
/// capture's first minute, 50 k connections open at once and two thirds of them findings, needs
/// 86,296 aggregates, and with 65,536 lost 20,909 findings. An aggregate is under 200 bytes (its
/// record and its index entry), held while the interval lasts: at most ~50 MiB per shard, and
/// only as many findings as there are.
fn default_max_findings() -> usize {
    262_144
}

/// One scope, compiled, with what records say about it.
#[derive(Debug)]
struct CompiledScope {
    file: String,
    id: Option<String>,
    name: Option<String>,
    description: Option<String>,
    matcher: ScopeMatcher,
    /// The records' `scope` object, written once here: it is the same in every record of the scope.
    scope_json: String,
    /// Each MatchPath's `path` object (its index and its JSON as is), for the same reason.
    path_json: Vec<String>,
}

impl CompiledScope {
    fn render(&mut self, index: usize, match_json: &[String]) {
        let mut out = String::new();
        let mut s = eve::JsonObject::begin(&mut out);
        s.str("file", &self.file)
            .u64("index", index as u64)
            .opt_str("id", self.id.as_deref())
            .opt_str("name", self.name.as_deref())
            .opt_str("description", self.description.as_deref());
        s.end();
        self.scope_json = out;
        self.path_json = match_json
            .iter()
            .enumerate()
            .map(|(i, json)| {
                let mut out = String::new();
                let mut p = eve::JsonObject::begin(&mut out);
                p.u64("index", i as u64)
                    .field("statement", |out| out.push_str(json));
                p.end();
                out
            })
            .collect();
    }
}

/// Everything a flow is judged with.
#[derive(Debug, Default)]
struct Compiled {
    scopes: Vec<CompiledScope>,
    vpc: AddrSet,
    inventory: Inventory,
    notices: Vec<String>,
    /// Whether any path has a resource statement (else the ends need not be looked up).
    needs_ends: bool,
    /// Every scope's conditions numbered, for judging by bits; `None` when there are too many
    /// (then flows are judged path by path).
    conditions: Option<Conditions>,
}

impl AccessScopeConfig {
    fn compile(&self) -> Result<Compiled, String> {
        if self.scopes.is_empty() {
            return Err("scopes: give at least one scope file".into());
        }
        if self.scopes.len() > usize::from(u16::MAX) {
            return Err("scopes: more than 65535 scope files".into());
        }
        for (id, nets) in &self.prefix_lists {
            if nets.is_empty() {
                return Err(format!("prefix_lists.{id}: a prefix list with no CIDR"));
            }
        }
        let mut c = Compiled {
            vpc: AddrSet::from_nets(&self.vpc_cidrs),
            ..Compiled::default()
        };
        for file in &self.scopes {
            let doc = scope::load(file)?;
            let name = file.display().to_string();
            let mut matcher = ScopeMatcher::default();
            let mut notices = Vec::new();
            for (list, key, exclude) in [
                (&doc.match_paths, "MatchPaths", false),
                (&doc.exclude_paths, "ExcludePaths", true),
            ] {
                if list.len() > usize::from(u16::MAX) {
                    return Err(format!("scope {name}: {key}: more than 65535 paths"));
                }
                for (i, (path, _)) in list.iter().enumerate() {
                    let at = format!("{}{key}[{i}]", doc.prefix);
                    let m =
                        compile::compile_path(path, &at, exclude, &self.prefix_lists, &mut notices)
                            .map_err(|e| format!("scope {name}: {e}"))?;
                    if exclude {
                        matcher.exclude_paths.push(m);
                    } else {
                        matcher.match_paths.push(m);
                    }
                }
            }
            if self.vpc_cidrs.is_empty() && notices.iter().any(|n| n.contains("approximat")) {
                notices.push(
                    "vpc_cidrs is empty: every public peer address counts as reached through the \
                     internet gateway"
                        .into(),
                );
            }
            c.notices
                .extend(notices.into_iter().map(|n| format!("scope {name}: {n}")));
            c.needs_ends |= matcher.needs_ends();
            let match_json: Vec<String> = doc.match_paths.into_iter().map(|(_, j)| j).collect();
            let mut scope = CompiledScope {
                file: name,
                id: doc.id,
                name: doc.name,
                description: doc.description,
                matcher,
                scope_json: String::new(),
                path_json: Vec::new(),
            };
            scope.render(c.scopes.len(), &match_json);
            c.scopes.push(scope);
        }
        if let Some(file) = &self.inventory {
            c.inventory = Inventory::load(file)?;
        }
        let matchers: Vec<&ScopeMatcher> = c.scopes.iter().map(|s| &s.matcher).collect();
        c.conditions = Conditions::build(&matchers);
        Ok(c)
    }

    fn compiled(&self) -> Result<Arc<Compiled>, String> {
        if let Some(c) = self.compiled.get() {
            return Ok(c.clone());
        }
        let c = Arc::new(self.compile()?);
        Ok(self.compiled.get_or_init(|| c).clone())
    }
}

impl ModuleConfig for AccessScopeConfig {
    fn validate(&self) -> Result<(), String> {
        if !(1..=86_400).contains(&self.interval_secs) {
            return Err(format!(
                "interval_secs: {} is out of range 1..=86400",
                self.interval_secs
            ));
        }
        if !(1..=16_777_216).contains(&self.max_findings) {
            return Err(format!(
                "max_findings: {} is out of range 1..=16777216",
                self.max_findings
            ));
        }
        self.output.validate()?;
        self.compiled().map(|_| ())
    }

    fn notices(&self) -> Vec<String> {
        self.compiled
            .get()
            .map(|c| c.notices.clone())
            .unwrap_or_default()
    }

    fn build(&self, ctx: &ModuleContext) -> Result<Box<dyn Module>, BuildError> {
        let compiled = self.compiled().map_err(BuildError::new)?;
        // check-config prints them; a daemon started (or reloaded) without it says them once too.
        if ctx.shard == 0 {
            for notice in &compiled.notices {
                tracing::warn!(message = "A scope statement is not evaluated as AWS would.", %notice);
            }
        }
        Ok(Box::new(AccessScope {
            compiled,
            riding: false,
            verdict_ids: FxHashMap::default(),
            interned: Vec::new(),
            remembered: FxHashMap::default(),
            closed: None,
            shard: ctx.shard,
            shards: ctx.shards,
            board: self.board.clone(),
            released: Vec::new(),
            through: 0,
            tally: FxHashMap::default(),
            verdicts: PerFlow::new(),
            table: FindingTable::new(self.max_findings),
            interval_ns: self.interval_secs * NANOS,
            interval_end: None,
            epoch: 1,
        }))
    }

    fn sink(&self, ctx: &ModuleContext) -> Result<Box<dyn Sink>, BuildError> {
        let name = SeriesName {
            stem: format!("accessscope-shard{}", ctx.shard),
            ext: "json".into(),
            aws_prefix: None,
        };
        Ok(self.output.record_sink(name, Vec::new())?)
    }
}

/// Whether an address can only be reached through an internet gateway when it is outside the VPC:
/// not private (RFC 1918, RFC 6598 shared space, ULA), loopback, link-local, multicast or
/// unspecified. Documentation ranges count as public, so examples and tests can use them.
fn is_public(addr: IpAddr) -> bool {
    match addr.to_canonical() {
        IpAddr::V4(a) => {
            let o = a.octets();
            !(a.is_private()
                || a.is_loopback()
                || a.is_link_local()
                || a.is_multicast()
                || a.is_broadcast()
                || a.is_unspecified()
                || o[0] == 0
                || o[0] >= 240
                || (o[0] == 100 && (o[1] & 0xc0) == 64))
        }
        IpAddr::V6(a) => {
            let s = a.segments();
            !(a.is_loopback()
                || a.is_unspecified()
                || a.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80)
        }
    }
}

impl Compiled {
    /// What one end of a flow is. The mirrored ENI is known from its session (its addresses, ids
    /// and security groups from the config, completed by the inventory's entry for its ENI id or,
    /// without one, for the address); a peer from the
    /// inventory, else from `vpc_cidrs` (an ENI in the VPC, of unknown ids), else, when public,
    /// as the internet gateway.
    fn end<'a>(&'a self, session: &'a Session, addr: IpAddr) -> End<'a> {
        const IN_VPC: u8 =
            kind::NETWORK_INTERFACE | kind::SUBNET | kind::VPC | kind::SECURITY_GROUP;
        let mut end = End::default();
        if session.addresses.contains(&addr) {
            // A learned session has no ENI id: its address may still be in the inventory.
            let inv = session
                .eni
                .as_deref()
                .and_then(|e| self.inventory.by_eni(e))
                .or_else(|| self.inventory.by_addr(addr));
            let pick =
                |own: Option<&'a String>, inv: Option<&'a String>| own.or(inv).map(String::as_str);
            // A mirror source is an instance's network interface, in a subnet of a VPC.
            end.kinds = IN_VPC | kind::INSTANCE;
            end.ids = [
                pick(session.eni.as_ref(), inv.and_then(|i| i.eni.as_ref())),
                pick(
                    session.aws.instance_id.as_ref(),
                    inv.and_then(|i| i.instance.as_ref()),
                ),
                pick(
                    session.aws.subnet_id.as_ref(),
                    inv.and_then(|i| i.subnet.as_ref()),
                ),
                pick(
                    session.aws.vpc_id.as_ref(),
                    inv.and_then(|i| i.vpc.as_ref()),
                ),
            ];
            end.groups = &session.aws.security_groups;
            end.more_groups = inv.map_or(&[], |i| i.groups.as_slice());
        } else if let Some(i) = self.inventory.by_addr(addr) {
            end.kinds = IN_VPC
                | if i.instance.is_some() {
                    kind::INSTANCE
                } else {
                    0
                };
            end.ids = [
                i.eni.as_deref(),
                i.instance.as_deref(),
                i.subnet.as_deref(),
                i.vpc.as_deref(),
            ];
            end.groups = &i.groups;
        } else if self.vpc.contains(addr) {
            end.kinds = IN_VPC;
        } else if is_public(addr) {
            end.kinds = kind::INTERNET_GATEWAY;
        }
        end
    }

    fn observe<'a>(&'a self, session: &'a Session, key: FlowKey) -> Observed<'a> {
        let (client_end, server_end) = if self.needs_ends {
            (self.end(session, key.src), self.end(session, key.dst))
        } else {
            (End::default(), End::default())
        };
        Observed {
            protocol: key.protocol,
            client: (key.src, key.src_port),
            server: (key.dst, key.dst_port),
            client_end,
            server_end,
        }
    }

    /// The conditions flow `key` of `session` meets; `None` when the scopes are judged path by
    /// path. A flow's verdict depends on nothing else, so the bits are also what verdicts are
    /// remembered by.
    fn bits(&self, session: &Session, key: FlowKey) -> Option<Bits> {
        let c = self.conditions.as_ref()?;
        let (client, server) = c.needs_ends();
        let client = client.then(|| self.end(session, key.src));
        let server = server.then(|| self.end(session, key.dst));
        Some(c.bits(
            key.protocol,
            (key.src, key.src_port),
            (key.dst, key.dst_port),
            (client.as_ref(), server.as_ref()),
        ))
    }

    /// The scopes a flow is a finding of, with the first MatchPath it matched; the count of the
    /// ones beyond [`MAX_HITS`]. `bits` are the flow's ([`Compiled::bits`]); without them it is
    /// judged path by path.
    fn judge(
        &self,
        session: &Session,
        key: FlowKey,
        bits: Option<Bits>,
        hits: &mut ArrayVec<Hit, MAX_HITS>,
    ) -> u64 {
        match bits {
            Some(bits) => self.judge_bits(bits, hits),
            None => self.judge_paths(session, key, hits),
        }
    }

    /// [`Compiled::judge`] for a flow that meets `bits`.
    fn judge_bits(&self, bits: Bits, hits: &mut ArrayVec<Hit, MAX_HITS>) -> u64 {
        let Some(c) = &self.conditions else {
            return 0;
        };
        let mut over = 0;
        for s in 0..self.scopes.len() {
            if let Some(p) = c.judge(s, bits) {
                over += push_hit(hits, s, p);
            }
        }
        over
    }

    /// [`Compiled::judge`], walking every path's sets: for scopes with more conditions than
    /// [`Bits`] holds, and the reference the bits are tested against.
    fn judge_paths(
        &self,
        session: &Session,
        key: FlowKey,
        hits: &mut ArrayVec<Hit, MAX_HITS>,
    ) -> u64 {
        let obs = self.observe(session, key);
        let mut over = 0;
        for (s, scope) in self.scopes.iter().enumerate() {
            if let Some(p) = scope.matcher.judge(&obs) {
                over += push_hit(hits, s, p);
            }
        }
        over
    }
}

/// Adds scope `scope`'s hit by path `path`; 1 if there was no room for it.
fn push_hit(hits: &mut ArrayVec<Hit, MAX_HITS>, scope: usize, path: usize) -> u64 {
    let hit = Hit {
        scope: scope as u16,
        path: path as u16,
        slot: NO_SLOT,
    };
    u64::from(hits.try_push(hit).is_err())
}

/// Verdicts remembered per shard, by the bits of the flows they were given for; forgotten all at
/// once when there are this many (a shard sees few distinct bits: the memo is a bound, not a
/// cache that is expected to fill).
const MAX_REMEMBERED: usize = 1 << 14;

const NO_SLOT: u32 = u32::MAX;

/// A flow is a finding of one scope, by one of its paths; `slot` is its aggregate this interval.
#[derive(Debug, Clone, Copy)]
struct Hit {
    scope: u16,
    path: u16,
    slot: u32,
}

/// A finding flow's state. A packet touches only this (its aggregates are another cache line
/// each, and a busy flow would pay for them on every packet): what it carried is added to the
/// aggregates when the flow ends and when the interval closes ([`Verdict::fold`]).
struct Verdict {
    hits: ArrayVec<Hit, MAX_HITS>,
    /// The interval its slots belong to.
    epoch: u32,
    /// Packets and bytes (both ways) at its latest packet.
    seen: (u64, u64),
    /// Packets and bytes (both ways) already added to aggregates.
    counted: (u64, u64),
    /// Its latest packet's time.
    last: Timestamp,
}

impl Verdict {
    /// Adds what the flow carried since the last fold to its aggregates of this interval.
    fn fold(&mut self, epoch: u32, findings: &mut [Finding]) {
        if self.epoch != epoch {
            // Slots of a closed interval: that interval's close folded everything up to it, and
            // no packet came since (one would have attached the flow to this interval).
            return;
        }
        let delta = (
            self.seen.0.saturating_sub(self.counted.0),
            self.seen.1.saturating_sub(self.counted.1),
        );
        self.counted = self.seen;
        for hit in &self.hits {
            if let Some(f) = findings.get_mut(hit.slot as usize) {
                f.packets += delta.0;
                f.bytes += delta.1;
                f.last = f.last.max(self.last);
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FindingKey {
    scope: u16,
    session: u32,
    client: IpAddr,
    server: IpAddr,
    server_port: u16,
    protocol: u8,
}

/// Flows of one scope between one client and one server port in one interval.
#[derive(Debug)]
struct Finding {
    key: FindingKey,
    path: u16,
    session: Arc<Session>,
    /// The first flow's id, client port and ICMP type and code (for its Community ID): the
    /// envelope's.
    flow_id: u64,
    client_port: u16,
    icmp: Option<(u8, u8)>,
    first: Timestamp,
    last: Timestamp,
    flows: u64,
    packets: u64,
    bytes: u64,
}

/// The interval's aggregates, in the order they were found, at most `max` of them; handed to the
/// board at the interval's end, and their buffers taken back once written.
struct FindingTable {
    max: usize,
    set: Findings,
    /// The records' order at the interval's end: (first packet, position), sorted; reused. Sorting
    /// these rather than the aggregates moves 16 bytes per swap, not 112.
    order: Vec<(u64, u32)>,
}

impl FindingTable {
    fn new(max: usize) -> FindingTable {
        let reserve = max.min(4096);
        FindingTable {
            max,
            set: Findings {
                findings: Vec::with_capacity(reserve),
                index: HashTable::with_capacity(reserve),
            },
            order: Vec::new(),
        }
    }

    /// The aggregate for `hit` of `flow`, made if new, with the flow counted in it; `None` when
    /// the table is full.
    fn attach(&mut self, hit: &Hit, flow: &Flow<'_>, ts: Timestamp) -> Option<u32> {
        let k = flow.key();
        let key = FindingKey::of(hit, flow.session(), k);
        let i = self.find_or_make(key, || Finding {
            key,
            path: hit.path,
            session: flow.session().clone(),
            flow_id: flow.id(),
            client_port: k.src_port,
            icmp: flow.icmp(),
            first: ts,
            last: ts,
            flows: 0,
            packets: 0,
            bytes: 0,
        })?;
        if let Some(f) = self.set.findings.get_mut(i as usize) {
            f.offer(ts, flow.id(), hit.path, k.src_port, flow.icmp());
            f.flows += 1;
        }
        Some(i)
    }

    /// The aggregate of `key`, made by `make` if new; `None` when the table is full.
    fn find_or_make(&mut self, key: FindingKey, make: impl FnOnce() -> Finding) -> Option<u32> {
        let hash = key.hash();
        if let Some(i) = self.set.find(&key, hash) {
            return Some(i);
        }
        if self.set.findings.len() >= self.max {
            return None;
        }
        Some(self.set.push(hash, make()))
    }

    /// The interval's aggregates, taken for the board; the table is left empty.
    fn take(&mut self) -> Findings {
        self.order.clear();
        std::mem::take(&mut self.set)
    }

    /// Takes back the buffers of aggregates written out, when the table has none of its own
    /// (it gave them to the board): so that an interval allocates nothing once they have grown.
    fn recycle(&mut self, mut done: Findings) {
        if self.set.findings.is_empty() && done.findings.capacity() > self.set.findings.capacity() {
            done.findings.clear();
            done.index.clear();
            self.set = done;
        }
    }
}

impl Finding {
    /// Makes the flow that started at `first` (id `flow_id`, matched by `path`) the envelope if
    /// it comes before the one the aggregate has: the earliest, and of two at the same time the
    /// lower id, so that the envelope does not depend on which shard saw which flow first.
    fn offer(
        &mut self,
        first: Timestamp,
        flow_id: u64,
        path: u16,
        client_port: u16,
        icmp: Option<(u8, u8)>,
    ) {
        if (first, flow_id) < (self.first, self.flow_id) {
            (
                self.first,
                self.flow_id,
                self.path,
                self.client_port,
                self.icmp,
            ) = (first, flow_id, path, client_port, icmp);
        }
    }
}

/// One interval's aggregates as one shard (or, merged, every shard) found them.
#[derive(Debug, Default)]
struct Findings {
    findings: Vec<Finding>,
    /// Positions in `findings`, hashed by [`FindingKey::hash`] and compared through it: an entry is
    /// 4 bytes, not a second copy of the key (a 100 k-finding interval's index was 6 MiB of fresh
    /// pages to fault in).
    index: HashTable<u32>,
}

impl Findings {
    /// The position of `key`'s aggregate (`hash` is its [`FindingKey::hash`]), if it has one.
    fn find(&self, key: &FindingKey, hash: u64) -> Option<u32> {
        let findings = &self.findings;
        self.index
            .find(hash, |&i| {
                findings.get(i as usize).is_some_and(|f| f.key == *key)
            })
            .copied()
    }

    /// Adds `f`, whose key has no aggregate yet; its position.
    fn push(&mut self, hash: u64, f: Finding) -> u32 {
        let i = self.findings.len() as u32;
        self.findings.push(f);
        let findings = &self.findings;
        self.index.insert_unique(hash, i, |i| {
            findings.get(*i as usize).map_or(0, |f| f.key.hash())
        });
        i
    }
}

impl Merge for Findings {
    fn merge(&mut self, other: Findings) {
        if self.findings.is_empty() {
            *self = other;
            return;
        }
        for f in other.findings {
            let hash = f.key.hash();
            let found = self.find(&f.key, hash);
            match found.and_then(|i| self.findings.get_mut(i as usize)) {
                Some(mine) => {
                    mine.offer(f.first, f.flow_id, f.path, f.client_port, f.icmp);
                    mine.last = mine.last.max(f.last);
                    mine.flows += f.flows;
                    mine.packets += f.packets;
                    mine.bytes += f.bytes;
                }
                None => {
                    self.push(hash, f);
                }
            }
        }
    }
}

impl FindingKey {
    /// The flow index's hash ([`key_hash`]), with the scope in the client port's place: keys of one
    /// client and server that differ only in scope or port must not share a probe sequence, which
    /// `FxHasher` over the derived `Hash` did not ensure.
    fn hash(&self) -> u64 {
        key_hash(
            self.session,
            &FlowKey {
                src: self.client,
                dst: self.server,
                src_port: self.scope,
                dst_port: self.server_port,
                protocol: self.protocol,
            },
        )
    }

    /// A finding's key, for a flow whose client sends `k`.
    fn of(hit: &Hit, session: &Session, k: FlowKey) -> FindingKey {
        FindingKey {
            scope: hit.scope,
            session: session.id,
            client: k.src,
            server: k.dst,
            server_port: k.dst_port,
            protocol: k.protocol,
        }
    }
}

struct AccessScope {
    compiled: Arc<Compiled>,
    /// Whether the flow table's interval counters count for it (`use_flow_intervals`).
    riding: bool,
    /// Riding: each distinct verdict (scopes and paths), by its id; a finding flow's tag is its
    /// id + 1.
    verdict_ids: FxHashMap<ArrayVec<(u16, u16), MAX_HITS>, u32>,
    interned: Vec<ArrayVec<Hit, MAX_HITS>>,
    /// Each flow's verdict (its interned id, `None` for no finding, and the scopes beyond
    /// [`MAX_HITS`]) by the conditions it meets: most flows meet bits seen before, and their
    /// verdict is one lookup.
    remembered: FxHashMap<Bits, (Option<u32>, u64)>,
    /// Riding: the table closed an interval whose aggregates are not written yet. They are
    /// written in the module's own turn of the tick, not inside the table's hand-over (which
    /// happens in the first rider's turn): there an ordered replay's merge would hold all of them
    /// until the modules between that rider and this one passed the tick.
    closed: Option<Timestamp>,
    shard: usize,
    shards: usize,
    board: Arc<IntervalBoard<Findings>>,
    /// What the board released to this shard to write: every shard's aggregates of an interval.
    released: Vec<(u64, Findings)>,
    /// The latest interval end this shard told the board it has closed.
    through: u64,
    /// Flows per (scope, session id) in the records being written, with the first such record's
    /// place in `order`; reused.
    tally: FxHashMap<(u16, u32), (u64, u64, u32)>,
    /// Counting itself: each finding flow's verdict.
    verdicts: PerFlow<Verdict>,
    table: FindingTable,
    interval_ns: u64,
    interval_end: Option<Timestamp>,
    /// Which interval aggregate slots belong to; never 0 (a new verdict's "none yet").
    epoch: u32,
}

impl AccessScope {
    /// The interned verdict of a flow (`None`: no finding) and the count of its scopes beyond
    /// [`MAX_HITS`].
    fn verdict(&mut self, session: &Session, key: FlowKey) -> (Option<u32>, u64) {
        let bits = self.compiled.bits(session, key);
        if let Some(v) = bits.and_then(|b| self.remembered.get(&b)) {
            return *v;
        }
        let mut hits = ArrayVec::new();
        let over = self.compiled.judge(session, key, bits, &mut hits);
        let id = (!hits.is_empty()).then(|| self.intern(hits));
        if let Some(b) = bits {
            if self.remembered.len() >= MAX_REMEMBERED {
                self.remembered.clear();
            }
            self.remembered.insert(b, (id, over));
        }
        (id, over)
    }

    /// The id of verdict `hits`, interned on first sight.
    fn intern(&mut self, hits: ArrayVec<Hit, MAX_HITS>) -> u32 {
        let key = hits.iter().map(|h| (h.scope, h.path)).collect();
        let next = self.interned.len() as u32;
        *self.verdict_ids.entry(key).or_insert_with(|| {
            self.interned.push(hits);
            next
        })
    }

    /// Closes the current interval if `now` is past it.
    fn advance(&mut self, now: Timestamp, out: &mut Emitter<'_>) {
        match self.interval_end {
            Some(end) if now < end => self.pass(now, out),
            Some(_) => {
                self.close(self.floor(now), out);
                self.interval_end = Some(now.next_boundary(self.interval_ns));
            }
            None => {
                self.interval_end = Some(now.next_boundary(self.interval_ns));
                self.pass(now, out);
            }
        }
    }

    /// The latest interval end at or before `now`: every interval ending there or earlier is
    /// closed on this shard once `now` is its time.
    fn floor(&self, now: Timestamp) -> u64 {
        now.next_boundary(self.interval_ns)
            .nanos()
            .saturating_sub(self.interval_ns)
    }

    /// Tells the board that this shard, at `now`, has closed every interval ending by then, when
    /// that is news: a shard with no finding in an interval must not hold back the others'.
    fn pass(&mut self, now: Timestamp, out: &mut Emitter<'_>) {
        let through = self.floor(now);
        if through > self.through {
            self.publish(0, None, through, out);
        }
    }

    /// Closes the interval: its aggregates go to the board under `end`, with this shard's word
    /// that every interval ending by then is closed here, and what the board releases is
    /// written. `end` is the latest interval end at the close's time ([`floor`](Self::floor)),
    /// not one read off the aggregates' packets: every shard closes an interval at the same
    /// tick, while its packets' times need not fall in it (a replay of several captures can go
    /// back in time, and then the table's interval runs on until the end of the input).
    fn close(&mut self, end: u64, out: &mut Emitter<'_>) {
        let epoch = self.epoch;
        let findings = &mut self.table.set.findings;
        self.verdicts
            .for_each_mut(|v| v.fold(epoch, findings.as_mut_slice()));
        self.epoch = self.epoch.wrapping_add(1).max(1);
        let data = self.table.take();
        if data.findings.is_empty() {
            self.table.recycle(data);
            self.publish(end, None, end, out);
        } else {
            self.publish(end, Some(data), end, out);
        }
    }

    /// Hands `data` (the aggregates of the interval ending at `end`) to the board and writes
    /// every interval the board releases: all shards' aggregates of it, merged, so that a finding
    /// gives one record whichever shards its connections were steered to. The shard whose word
    /// completes an interval writes it; one shard alone writes each interval as it closes.
    fn publish(&mut self, end: u64, data: Option<Findings>, through: u64, out: &mut Emitter<'_>) {
        self.through = self.through.max(through);
        self.board.publish(
            self.shard,
            self.shards,
            end,
            data,
            through,
            &mut self.released,
        );
        for (_, mut data) in std::mem::take(&mut self.released) {
            self.write(&mut data, out);
            self.table.recycle(data);
        }
    }

    /// Writes one interval's records, in the order of their first packets.
    fn write(&mut self, data: &mut Findings, out: &mut Emitter<'_>) {
        // Keyed by the aggregate's first packet, a time no shard decides, so that a replay's merge
        // streams the interval's records instead of holding and sorting them by their bytes (which
        // held ~90 MiB for the ENI-like capture's ~100 k findings). Aggregates with the same first
        // packet time (rare) are put in order by the merge, by their bytes.
        let order = &mut self.table.order;
        order.clear();
        order.extend(
            data.findings
                .iter()
                .enumerate()
                .map(|(i, f)| (f.first.nanos(), i as u32)),
        );
        order.sort_unstable();
        // Findings (flows) per scope and session for Prometheus: summed here, counted once per
        // scope and session at the end, not once per record.
        let tally = &mut self.tally;
        tally.clear();
        // A flow that is a finding of several scopes gives records with the same envelope, next
        // to each other (same first packet): its Community ID (a SHA-1) is computed once.
        let mut last_id: Option<(Envelope, CommunityId)> = None;
        for &(first, i) in order.iter() {
            let Some(f) = data.findings.get(i as usize) else {
                continue;
            };
            out.order(u128::from(first));
            let Some(scope) = self.compiled.scopes.get(usize::from(f.key.scope)) else {
                out.error();
                continue;
            };
            let key = FlowKey {
                src: f.key.client,
                dst: f.key.server,
                src_port: f.client_port,
                dst_port: f.key.server_port,
                protocol: f.key.protocol,
            };
            let id = match &last_id {
                Some((e, id)) if *e == (key, f.icmp) => id,
                _ => {
                    &last_id
                        .insert(((key, f.icmp), flow_community_id(key, f.icmp)))
                        .1
                }
            };
            emit(scope, f, key, id, out);
            tally
                .entry((f.key.scope, f.session.id))
                .or_insert((0, first, i))
                .0 += f.flows;
        }
        // In the order the records came, as when each record counted itself.
        let mut firsts: Vec<((u64, u32), u16, u64)> = tally
            .iter()
            .map(|(&(scope, _), &(flows, first, i))| ((first, i), scope, flows))
            .collect();
        firsts.sort_unstable();
        for ((_, i), scope, flows) in firsts {
            let (Some(scope), Some(f)) = (
                self.compiled.scopes.get(usize::from(scope)),
                data.findings.get(i as usize),
            ) else {
                continue;
            };
            let scope_label = scope.name.as_deref().unwrap_or(&scope.file);
            out.count_labelled(
                "accessscope_findings",
                &[("scope", scope_label), ("session", &f.session.name)],
                flows,
            );
        }
        order.clear();
    }
}

/// A record's envelope 5-tuple, and its ICMP type and code: what its Community ID is made of.
type Envelope = (FlowKey, Option<(u8, u8)>);

/// Writes finding `f`'s record; `key` is its envelope's 5-tuple (the first flow's), `id` that
/// flow's Community ID.
fn emit(scope: &CompiledScope, f: &Finding, key: FlowKey, id: &CommunityId, out: &mut Emitter<'_>) {
    out.keyed(&f.session.name).emit_line(|line| {
        let (mut o, spans) = eve::begin_spans(
            line,
            f.first,
            "accessscope",
            f.flow_id,
            key,
            id.as_str(),
            &f.session,
        );
        // Every key here is a literal: written without the escape check ([`JsonObject::known`]).
        o.known("accessscope", |out| {
            let mut a = eve::JsonObject::begin(out);
            a.known("scope", |out| out.push_str(&scope.scope_json));
            let path = scope.path_json.get(usize::from(f.path));
            a.known("path", |out| match path {
                Some(json) => out.push_str(json),
                None => {
                    let mut p = eve::JsonObject::begin(out);
                    p.u64("index", u64::from(f.path))
                        .field("statement", |out| out.push_str("null"));
                    p.end();
                }
            });
            // The envelope's client, server and time are the aggregate's (its first flow is the
            // envelope's): copied from the envelope, not rendered twice.
            a.known("client", |out| eve::push_again(out, spans.src_ip.clone()))
                .known("server", |out| eve::push_again(out, spans.dest_ip.clone()))
                .known("server_port", |out| {
                    eve::push_u64(out, u64::from(f.key.server_port))
                })
                .known("first_seen", |out| {
                    eve::push_again(out, spans.timestamp.clone())
                })
                .known("last_seen", |out| {
                    eve::quoted(out, |out| eve::write_timestamp(out, f.last))
                })
                .known("flows", |out| eve::push_u64(out, f.flows))
                .known("packets", |out| eve::push_u64(out, f.packets))
                .known("bytes", |out| eve::push_u64(out, f.bytes));
            a.end();
        });
        o.end();
        Ok(())
    });
}

impl Module for AccessScope {
    fn wants_flows(&self) -> bool {
        true
    }

    fn wants_packets(&self) -> bool {
        false
    }

    fn flow_intervals(&self) -> Option<IntervalSpec> {
        Some(IntervalSpec {
            interval_secs: self.interval_ns / NANOS,
        })
    }

    fn use_flow_intervals(&mut self) {
        self.riding = true;
    }

    fn on_flow_start(&mut self, flow: &mut Flow<'_>, _pkt: &Packet<'_>, out: &mut Emitter<'_>) {
        let (id, over) = self.verdict(flow.session(), flow.key());
        if over > 0 {
            out.dropped(over);
        }
        if self.riding {
            flow.stop_packets();
            if let Some(id) = id {
                flow.set_tag(id + 1);
            }
            return;
        }
        let Some(hits) = id.and_then(|id| self.interned.get(id as usize)) else {
            // No finding: nothing of this flow is counted, so its packets need not come here.
            flow.stop_packets();
            return;
        };
        let hits = hits.clone();
        // Counted from the first packet on_flow_packet adds (it comes next, for this packet too).
        let v = self.verdicts.get_or_insert_with(flow, || Verdict {
            hits: ArrayVec::new(),
            epoch: 0,
            seen: (0, 0),
            counted: (0, 0),
            last: Timestamp::default(),
        });
        v.hits = hits;
        v.epoch = 0;
        v.seen = (0, 0);
        v.counted = (0, 0);
    }

    fn on_flow_packet(
        &mut self,
        flow: &mut Flow<'_>,
        pkt: &Packet<'_>,
        _dir: Dir,
        out: &mut Emitter<'_>,
    ) {
        // An interval ends on the first packet past it as well as on a tick, so that no packet
        // of the next interval is counted in this one's records.
        if self.interval_end.is_none_or(|end| pkt.ts >= end) {
            self.advance(pkt.ts, out);
        }
        let epoch = self.epoch;
        let Some(v) = self.verdicts.get(flow) else {
            return;
        };
        let (a, b) = (flow.stats(Dir::ToServer), flow.stats(Dir::ToClient));
        v.seen = (a.packets + b.packets, a.bytes + b.bytes);
        v.last = pkt.ts;
        if v.epoch != epoch {
            // The flow's first packet in this interval: what it carried before was folded into
            // the last interval's aggregates when that closed.
            v.epoch = epoch;
            for hit in v.hits.iter_mut() {
                hit.slot = match self.table.attach(hit, flow, pkt.ts) {
                    Some(i) => i,
                    None => {
                        out.dropped(1);
                        NO_SLOT
                    }
                };
            }
        }
    }

    fn on_flow_end(&mut self, flow: &mut Flow<'_>, _reason: EndReason, _out: &mut Emitter<'_>) {
        if self.riding {
            // The flow's tag rides with its counters to the interval's end.
            return;
        }
        if let Some(mut v) = self.verdicts.take(flow) {
            v.fold(self.epoch, &mut self.table.set.findings);
        }
    }

    fn on_flow_interval(&mut self, d: &DirInterval<'_>, out: &mut Emitter<'_>) {
        if let Some(at) = self.closed.take() {
            // A packet closed the interval before any tick (live), and this is the next one's.
            self.close(self.floor(at), out);
        }
        let Some(hits) = (d.tag() as usize)
            .checked_sub(1)
            .and_then(|id| self.interned.get(id))
        else {
            return;
        };
        let k = d.client_key();
        let c = d.counts();
        for hit in hits {
            let key = FindingKey::of(hit, d.session(), k);
            let at = self.table.find_or_make(key, || Finding {
                key,
                path: hit.path,
                session: d.session().clone(),
                flow_id: d.flow_id(),
                client_port: k.src_port,
                icmp: d.icmp(),
                first: c.first,
                last: c.last,
                flows: 0,
                packets: 0,
                bytes: 0,
            });
            let Some(f) = at.and_then(|i| self.table.set.findings.get_mut(i as usize)) else {
                if d.counts_flow() {
                    out.dropped(1);
                }
                continue;
            };
            // The envelope is the earliest flow's, as when findings attach packet by packet.
            f.offer(c.first, d.flow_id(), hit.path, k.src_port, d.icmp());
            f.last = f.last.max(c.last);
            f.flows += u64::from(d.counts_flow());
            f.packets += u64::from(c.packets);
            f.bytes += c.bytes;
        }
    }

    fn on_flow_interval_end(&mut self, now: Timestamp, _out: &mut Emitter<'_>) {
        self.closed = Some(now);
    }

    fn on_tick(&mut self, now: Timestamp, out: &mut Emitter<'_>) {
        if !self.riding {
            self.advance(now, out);
        } else if self.closed.take().is_some() {
            // The table closed every interval that ended by `now` in this tick, before this turn.
            self.close(self.floor(now), out);
        } else {
            self.pass(now, out);
        }
    }

    fn finish(&mut self, out: &mut Emitter<'_>) {
        self.closed = None;
        self.close(u64::MAX, out);
        self.interval_end = None;
    }
}

#[cfg(test)]
mod tests;
