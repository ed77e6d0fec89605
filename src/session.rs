//! Mirror sessions: the shared registry and each worker's private view of it.
//!
//! A session is (outer source IP, VNI): AWS sets the outer source to the source ENI's primary IP and the
//! VNI to the session's VirtualNetworkId, and an NLB preserves the source for UDP (docs/aws-facts.md §1). The
//! registry is a `DashMap` touched only when a worker meets a key it has not cached; the hot path reads a
//! per-worker cache and one rarely-written generation counter, so busy sessions cause no cache-line
//! traffic between cores.

use std::collections::hash_map::Entry;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use dashmap::DashMap;
use ipnet::IpNet;
use rustc_hash::{FxHashMap, FxHashSet};

use crate::base::{AwsMetadata, DropReason, Session, SessionKey, Timestamp};
use crate::config::{SessionsConfig, StaticSession};

/// A configured session.
fn from_config(s: &StaticSession, id: u32) -> Session {
    let key = SessionKey {
        source: s.source,
        vni: s.vni,
    };
    let mut session = Session::new(key, id, false);
    session.name = s
        .name
        .clone()
        .or_else(|| s.eni.clone())
        .unwrap_or_else(|| key.to_string());
    session.eni = s.eni.clone();
    session.truncate = s.truncate;
    session.aws = AwsMetadata {
        account_id: s.account_id.clone(),
        vpc_id: s.vpc_id.clone(),
        subnet_id: s.subnet_id.clone(),
        instance_id: s.instance_id.clone(),
        region: s.region.clone(),
        az_id: s.az_id.clone(),
        security_groups: s.security_groups.clone(),
    };
    session
        .addresses
        .extend(s.addresses.iter().filter(|a| **a != s.source));
    session.labels = s.labels.clone();
    session
}

/// Source networks allowed to send.
#[derive(Debug, Clone, Default)]
pub struct Allowlist {
    nets: Vec<IpNet>,
}

impl Allowlist {
    /// An allowlist of these networks.
    pub fn new(nets: Vec<IpNet>) -> Self {
        Allowlist { nets }
    }

    /// Whether `addr` is inside one of the networks. IPv4-mapped IPv6 sources (from a dual-stack
    /// socket) are checked as IPv4.
    pub fn allows(&self, addr: IpAddr) -> bool {
        let addr = addr.to_canonical();
        self.nets.iter().any(|n| n.contains(&addr))
    }
}

struct Settings {
    allow: Arc<Allowlist>,
    learn: bool,
    max_learned: usize,
    idle_timeout_secs: u64,
}

/// The process-wide session registry.
pub struct SessionTable {
    map: DashMap<SessionKey, Arc<Session>>,
    settings: RwLock<Settings>,
    /// Bumped whenever a cached session or the allowlist may have become stale.
    generation: AtomicU64,
    learned: AtomicUsize,
    next_id: AtomicU64,
}

impl std::fmt::Debug for SessionTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionTable")
            .field("sessions", &self.map.len())
            .finish()
    }
}

impl SessionTable {
    /// A table holding the configured static sessions.
    pub fn new(config: &SessionsConfig) -> Arc<SessionTable> {
        let table = Arc::new(SessionTable {
            map: DashMap::new(),
            settings: RwLock::new(Settings {
                allow: Arc::new(Allowlist::default()),
                learn: false,
                max_learned: 0,
                idle_timeout_secs: 0,
            }),
            generation: AtomicU64::new(0),
            learned: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
        });
        table.apply(config);
        table
    }

    /// Applies a (re)loaded `[sessions]` config: static sessions are replaced, learned ones kept, and
    /// every worker drops its cache before its next batch.
    pub fn apply(&self, config: &SessionsConfig) {
        {
            let mut s = self.settings.write().unwrap_or_else(|e| e.into_inner());
            s.allow = Arc::new(Allowlist::new(config.allow.clone()));
            s.learn = config.learn;
            s.max_learned = config.max_learned;
            s.idle_timeout_secs = config.idle_timeout_secs;
        }
        let mut previous: FxHashMap<SessionKey, Arc<Session>> = FxHashMap::default();
        self.map.retain(|key, s| {
            if !s.learned {
                previous.insert(*key, s.clone());
            }
            s.learned
        });
        for s in &config.static_sessions {
            let key = SessionKey {
                source: s.source,
                vni: s.vni,
            };
            let old = match self.map.remove(&key) {
                Some((_, learned)) => {
                    self.learned.fetch_sub(1, Ordering::Relaxed);
                    Some(learned)
                }
                None => previous.remove(&key),
            };
            // A session that was already known (static before the reload, or learned) keeps its id
            // and history: the id feeds the steering hash, so its flows stay on the shards, and
            // with the module instances, that hold their state.
            let id = old.as_ref().map_or_else(|| self.alloc_id(), |o| o.id);
            let session = from_config(s, id);
            if let Some(old) = old {
                session.carry_history_from(&old);
            }
            self.map.insert(key, Arc::new(session));
        }
        self.generation.fetch_add(1, Ordering::Release);
    }

    fn alloc_id(&self) -> u32 {
        self.next_id.fetch_add(1, Ordering::Relaxed) as u32
    }

    /// A snapshot of every session, for the admin endpoint and summaries.
    pub fn sessions(&self) -> Vec<Arc<Session>> {
        let mut v: Vec<_> = self.map.iter().map(|e| e.value().clone()).collect();
        v.sort_by_key(|s| s.key);
        v
    }

    /// Number of learned sessions.
    pub fn learned_count(&self) -> usize {
        self.learned.load(Ordering::Relaxed)
    }

    /// Forgets learned sessions idle since before `now_secs - idle_timeout`; returns how many.
    pub fn expire_idle(&self, now_secs: u64) -> usize {
        let timeout = self
            .settings
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .idle_timeout_secs;
        let mut removed = 0;
        self.map.retain(|_, s| {
            let keep = !s.learned || s.last_seen().saturating_add(timeout) >= now_secs;
            if !keep {
                removed += 1;
            }
            keep
        });
        if removed > 0 {
            self.learned.fetch_sub(removed, Ordering::Relaxed);
            self.generation.fetch_add(1, Ordering::Release);
        }
        removed
    }

    fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Looks a key up in the registry, learning it if allowed. Called on a worker's cache miss only.
    fn lookup_or_learn(
        &self,
        key: SessionKey,
        allow: &Allowlist,
    ) -> Result<Arc<Session>, DropReason> {
        if let Some(s) = self.map.get(&key) {
            return Ok(s.clone());
        }
        if !allow.allows(key.source) {
            return Err(DropReason::SourceRefused);
        }
        let (learn, max) = {
            let s = self.settings.read().unwrap_or_else(|e| e.into_inner());
            (s.learn, s.max_learned)
        };
        if !learn {
            return Err(DropReason::SessionUnknown);
        }
        // Reserve a slot first so that concurrent learners cannot overshoot the cap.
        if self.learned.fetch_add(1, Ordering::AcqRel) >= max {
            self.learned.fetch_sub(1, Ordering::AcqRel);
            return Err(DropReason::SessionTableFull);
        }
        match self.map.entry(key) {
            dashmap::Entry::Occupied(e) => {
                // Another worker learned it first.
                self.learned.fetch_sub(1, Ordering::AcqRel);
                Ok(e.get().clone())
            }
            dashmap::Entry::Vacant(v) => {
                let session = Arc::new(Session::new(key, self.alloc_id(), true));
                v.insert(session.clone());
                Ok(session)
            }
        }
    }
}

/// Resolves session keys for one worker, without touching shared state on a hit.
pub struct SessionResolver {
    table: Arc<SessionTable>,
    generation: u64,
    allow: Arc<Allowlist>,
    cache: FxHashMap<SessionKey, (Arc<Session>, u64)>,
    refused: FxHashSet<SessionKey>,
}

/// Refused keys remembered per worker, so a flood from one refused source costs no shared lookups;
/// past this the set starts over rather than grow without bound.
const MAX_REFUSED_CACHED: usize = 4096;

impl SessionResolver {
    /// A resolver over `table`.
    pub fn new(table: Arc<SessionTable>) -> Self {
        let allow = table
            .settings
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .allow
            .clone();
        SessionResolver {
            generation: table.generation(),
            table,
            allow,
            cache: FxHashMap::default(),
            refused: FxHashSet::default(),
        }
    }

    /// Drops cached entries if the registry changed (reload, expiry). Call once per batch.
    pub fn refresh(&mut self) {
        let generation = self.table.generation();
        if generation != self.generation {
            self.generation = generation;
            self.cache.clear();
            self.refused.clear();
            self.allow = self
                .table
                .settings
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .allow
                .clone();
        }
    }

    /// The session for `key` at packet time `ts`, or why the datagram must be dropped.
    #[inline]
    pub fn resolve(&mut self, key: SessionKey, ts: Timestamp) -> Result<&Arc<Session>, DropReason> {
        let secs = ts.secs();
        // One hash lookup on a hit (the entry API; the key is Copy). On a miss, `entry` may grow the
        // map once even when nothing is inserted, which is bounded by the map's capacity.
        let (session, touched) = match self.cache.entry(key) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(v) => {
                if self.refused.contains(&key) {
                    return Err(DropReason::SourceRefused);
                }
                match self.table.lookup_or_learn(key, &self.allow) {
                    Ok(session) => v.insert((session, 0)),
                    Err(reason) => {
                        if reason == DropReason::SourceRefused {
                            if self.refused.len() >= MAX_REFUSED_CACHED {
                                self.refused.clear();
                            }
                            self.refused.insert(key);
                        }
                        return Err(reason);
                    }
                }
            }
        };
        // Shared last-seen is written at most once a second per worker and session.
        if *touched != secs {
            *touched = secs;
            session.touch(secs);
        }
        Ok(session)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn key(s: &str, vni: u32) -> SessionKey {
        SessionKey {
            source: s.parse().unwrap(),
            vni,
        }
    }

    fn config(max_learned: usize) -> SessionsConfig {
        SessionsConfig {
            max_learned,
            static_sessions: vec![StaticSession {
                source: "203.0.113.7".parse().unwrap(),
                vni: 7,
                eni: Some("eni-0abc".into()),
                name: None,
                truncate: Some(128),
                account_id: None,
                vpc_id: None,
                subnet_id: None,
                instance_id: None,
                region: None,
                az_id: None,
                security_groups: vec![],
                addresses: vec![],
                labels: BTreeMap::from([("env".into(), "prod".into())]),
            }],
            ..SessionsConfig::default()
        }
    }

    #[test]
    fn static_sessions_bypass_the_allowlist_and_learning_is_capped() {
        let table = SessionTable::new(&config(1));
        let mut r = SessionResolver::new(table.clone());
        let ts = Timestamp::from_nanos(5_000_000_000);
        let s = r.resolve(key("203.0.113.7", 7), ts).unwrap();
        assert_eq!(s.name, "eni-0abc");
        assert_eq!(s.truncate, Some(128));
        assert_eq!(
            r.resolve(key("203.0.113.7", 8), ts).unwrap_err(),
            DropReason::SourceRefused
        );
        assert!(r.resolve(key("10.0.0.1", 1), ts).unwrap().learned);
        assert_eq!(
            r.resolve(key("10.0.0.1", 2), ts).unwrap_err(),
            DropReason::SessionTableFull
        );
        assert_eq!(table.learned_count(), 1);
        assert_eq!(table.sessions().len(), 2);
    }

    #[test]
    fn idle_learned_sessions_expire_and_workers_forget_them() {
        let table = SessionTable::new(&config(10));
        let mut r = SessionResolver::new(table.clone());
        let first = r
            .resolve(key("10.0.0.1", 1), Timestamp::from_nanos(100_000_000_000))
            .unwrap()
            .id;
        assert_eq!(table.expire_idle(100 + 600), 0);
        assert_eq!(table.expire_idle(100 + 601), 1);
        assert_eq!(table.learned_count(), 0);
        r.refresh();
        let again = r
            .resolve(key("10.0.0.1", 1), Timestamp::from_nanos(800_000_000_000))
            .unwrap()
            .id;
        assert_ne!(first, again, "a re-learned session is a new session");
    }

    #[test]
    fn reapplying_keeps_ids_and_history_of_known_sessions() {
        let table = SessionTable::new(&config(10));
        let mut r = SessionResolver::new(table.clone());
        let ts = Timestamp::from_nanos(42_000_000_000);
        let static_id = r.resolve(key("203.0.113.7", 7), ts).unwrap().id;
        let learned_id = r.resolve(key("10.0.0.1", 1), ts).unwrap().id;
        let mut reloaded = config(10);
        reloaded.static_sessions[0].name = Some("renamed".into());
        let mut promoted = reloaded.static_sessions[0].clone();
        promoted.source = "10.0.0.1".parse().unwrap();
        promoted.vni = 1;
        promoted.name = Some("promoted".into());
        reloaded.static_sessions.push(promoted);
        table.apply(&reloaded);
        r.refresh();
        let s = r.resolve(key("203.0.113.7", 7), ts).unwrap();
        assert_eq!(
            (s.id, s.name.as_str(), s.first_seen()),
            (static_id, "renamed", 42)
        );
        let p = r.resolve(key("10.0.0.1", 1), ts).unwrap();
        assert_eq!((p.id, p.learned), (learned_id, false));
        assert_eq!(table.learned_count(), 0);
    }

    #[test]
    fn ipv4_mapped_sources_are_checked_as_ipv4() {
        let allow = Allowlist::new(crate::config::default_allowlist());
        assert!(allow.allows("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!allow.allows("::ffff:8.8.8.8".parse().unwrap()));
        assert!(allow.allows("fd00::1".parse().unwrap()));
    }
}
