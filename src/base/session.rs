//! The mirror session as every layer sees it: its wire key, its names and labels, and the few
//! counters the registry keeps for it. The registry itself (allowlist, learning, expiry, the workers'
//! caches) lives in `session`; modules only ever hold a `&Session`, which gives them nothing to change.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// What names a mirror session on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionKey {
    /// The outer source address.
    pub source: IpAddr,
    /// The VXLAN network identifier.
    pub vni: u32,
}

impl std::fmt::Display for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.source, self.vni)
    }
}

/// A mirror session as modules see it.
#[derive(Debug)]
pub struct Session {
    /// The wire key.
    pub key: SessionKey,
    /// A process-unique number, stable for the session's life; cheap to hash and compare.
    pub id: u32,
    /// The name for logs, metrics and file names.
    pub name: String,
    /// The source ENI's id, when configured.
    pub eni: Option<String>,
    /// Snap length for this session, overriding the global one.
    pub truncate: Option<u32>,
    /// AWS metadata for flow records; empty for learned sessions.
    pub aws: AwsMetadata,
    /// The ENI's own addresses (the outer source included), to tell ingress from egress.
    pub addresses: Vec<IpAddr>,
    /// Free-form labels.
    pub labels: BTreeMap<String, String>,
    /// Learned from traffic rather than configured.
    pub learned: bool,
    first_seen: AtomicU64,
    last_seen: AtomicU64,
    dropped: AtomicU64,
    /// The session as records show it, rendered by the module layer the first time a record needs
    /// it ([`Session::rendered`]): a session is shared (and so no longer changed) before any record
    /// is written about it.
    rendered: OnceLock<String>,
}

/// The AWS identifiers a static session may carry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AwsMetadata {
    /// Account id.
    pub account_id: Option<String>,
    /// VPC id.
    pub vpc_id: Option<String>,
    /// Subnet id.
    pub subnet_id: Option<String>,
    /// Instance id.
    pub instance_id: Option<String>,
    /// Region.
    pub region: Option<String>,
    /// Availability Zone id.
    pub az_id: Option<String>,
    /// The ENI's security group ids, as configured: nothing on the wire says them.
    pub security_groups: Vec<String>,
}

impl Session {
    pub(crate) fn new(key: SessionKey, id: u32, learned: bool) -> Session {
        Session {
            key,
            id,
            name: key.to_string(),
            eni: None,
            truncate: None,
            aws: AwsMetadata::default(),
            addresses: vec![key.source],
            labels: BTreeMap::new(),
            learned,
            first_seen: AtomicU64::new(0),
            last_seen: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            rendered: OnceLock::new(),
        }
    }

    /// A session for frames that arrive without encapsulation (replay of a plain capture, interface
    /// capture); `name` says where they came from.
    pub fn plain(name: &str, id: u32) -> Session {
        let key = SessionKey {
            source: IpAddr::from([0, 0, 0, 0]),
            vni: 0,
        };
        Session {
            name: name.to_owned(),
            ..Session::new(key, id, false)
        }
    }

    /// Time of the first datagram (packet time, Unix seconds), 0 if none yet.
    pub fn first_seen(&self) -> u64 {
        self.first_seen.load(Ordering::Relaxed)
    }

    /// Time of the latest datagram, to within a second; 0 if none yet.
    pub fn last_seen(&self) -> u64 {
        self.last_seen.load(Ordering::Relaxed)
    }

    /// Packets of this session dropped after it was identified (shard queues full or stopped).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// The session as records show it: `render`'s text, made the first time it is asked for and
    /// kept. One renderer in the crate calls this (records' `vxtap` object), so the first call's
    /// text is the only one there is.
    pub(crate) fn rendered(&self, render: impl FnOnce(&Session) -> String) -> &str {
        self.rendered.get_or_init(|| render(self))
    }

    /// Counted on the drop path only, where a shared atomic costs nothing that matters.
    pub(crate) fn count_dropped(&self, n: u64) {
        self.dropped.fetch_add(n, Ordering::Relaxed);
    }

    /// Keeps the history of the session this one replaces (a config reload rebuilds static
    /// sessions), so first-seen times and drop counts survive the reload.
    pub(crate) fn carry_history_from(&self, old: &Session) {
        self.first_seen.store(old.first_seen(), Ordering::Relaxed);
        self.last_seen.store(old.last_seen(), Ordering::Relaxed);
        self.dropped.store(old.dropped(), Ordering::Relaxed);
    }

    pub(crate) fn touch(&self, secs: u64) {
        if self.first_seen.load(Ordering::Relaxed) == 0 {
            let _ = self
                .first_seen
                .compare_exchange(0, secs, Ordering::Relaxed, Ordering::Relaxed);
        }
        self.last_seen.fetch_max(secs, Ordering::Relaxed);
    }
}
