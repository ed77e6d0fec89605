//! The admin endpoint (loopback by default): `/metrics`, `/sessions`, `/modules`, `/healthz`.
//!
//! It shows session names, ENIs and labels, which are not for everyone who can reach the health port.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use hyper::{Method, StatusCode};
use rustc_hash::FxHashMap;
use serde::Serialize;

use super::health::{healthz, Liveness};
use super::http::{Handler, Reply};
use super::metrics;
use crate::base::SessionKey;
use crate::pipeline::{Accounting, SessionTally, ShardCounters};
use crate::session::SessionTable;

/// Outcomes of config reloads, for metrics.
#[derive(Debug, Default)]
pub struct ReloadStats {
    /// Reloads applied.
    pub succeeded: AtomicU64,
    /// Reloads refused (unreadable or invalid file).
    pub failed: AtomicU64,
    /// Whether the last reload was refused.
    pub last_failed: AtomicBool,
    /// Whether an applied reload changed settings that need a restart.
    pub restart_pending: AtomicBool,
}

/// What the admin endpoint reads.
#[derive(Debug)]
pub(crate) struct AdminState {
    pub(crate) accounting: Arc<Accounting>,
    pub(crate) shards: Vec<Arc<ShardCounters>>,
    pub(crate) sessions: Arc<SessionTable>,
    /// Module kinds in config order.
    pub(crate) module_kinds: Vec<String>,
    pub(crate) liveness: Arc<Liveness>,
    pub(crate) reloads: Arc<ReloadStats>,
    pub(crate) started_secs: u64,
    pub(crate) max_learned_series: AtomicUsize,
}

/// One session as `/sessions` shows it.
#[derive(Debug, Serialize)]
pub(crate) struct SessionView {
    pub(crate) key: String,
    pub(crate) source: IpAddr,
    pub(crate) vni: u32,
    pub(crate) eni: Option<String>,
    pub(crate) name: String,
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) learned: bool,
    pub(crate) packets: u64,
    pub(crate) bytes: u64,
    pub(crate) dropped: u64,
    /// Unix seconds of the first and latest datagram (packet time); null before the first.
    pub(crate) first_seen: Option<u64>,
    pub(crate) last_seen: Option<u64>,
}

/// One module instance as `/modules` shows it, or a module summed over shards.
#[derive(Debug, Serialize)]
pub(crate) struct ModuleView {
    pub(crate) kind: String,
    pub(crate) index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) shard: Option<usize>,
    pub(crate) packets: u64,
    pub(crate) events: u64,
    pub(crate) drops: u64,
    pub(crate) errors: u64,
    pub(crate) malformed: u64,
    pub(crate) gaps: u64,
}

impl AdminState {
    pub(crate) fn max_learned_series(&self) -> usize {
        self.max_learned_series.load(Ordering::Relaxed)
    }

    /// Every session with its packet and byte counts summed over shards.
    pub(crate) fn session_views(&self) -> Vec<SessionView> {
        let mut tallies: FxHashMap<SessionKey, SessionTally> = FxHashMap::default();
        for shard in &self.shards {
            let published = shard.sessions.lock().unwrap_or_else(|e| e.into_inner());
            for (key, t) in published.iter() {
                let sum = tallies.entry(*key).or_default();
                sum.packets += t.packets;
                sum.bytes += t.bytes;
            }
        }
        self.sessions
            .sessions()
            .iter()
            .map(|s| {
                let t = tallies.get(&s.key).copied().unwrap_or_default();
                let seen = |v: u64| (v != 0).then_some(v);
                SessionView {
                    key: s.key.to_string(),
                    source: s.key.source,
                    vni: s.key.vni,
                    eni: s.eni.clone(),
                    name: s.name.clone(),
                    labels: s.labels.clone(),
                    learned: s.learned,
                    packets: t.packets,
                    bytes: t.bytes,
                    dropped: s.dropped(),
                    first_seen: seen(s.first_seen()),
                    last_seen: seen(s.last_seen()),
                }
            })
            .collect()
    }

    /// Every module instance (one per module per shard).
    pub(crate) fn module_instances(&self) -> Vec<ModuleView> {
        let mut out = Vec::new();
        for (shard, counters) in self.shards.iter().enumerate() {
            for (index, c) in counters.modules.iter().enumerate() {
                out.push(ModuleView {
                    kind: self.module_kinds.get(index).cloned().unwrap_or_default(),
                    index,
                    shard: Some(shard),
                    packets: c.packets.load(Ordering::Relaxed),
                    events: c.events.load(Ordering::Relaxed),
                    drops: c.drops.load(Ordering::Relaxed),
                    errors: c.errors.load(Ordering::Relaxed),
                    malformed: c.malformed.load(Ordering::Relaxed),
                    gaps: c.gaps.load(Ordering::Relaxed),
                });
            }
        }
        out
    }

    /// Each configured module summed over shards.
    pub(crate) fn module_totals(&self) -> Vec<ModuleView> {
        let mut totals: Vec<ModuleView> = self
            .module_kinds
            .iter()
            .enumerate()
            .map(|(index, kind)| ModuleView {
                kind: kind.clone(),
                index,
                shard: None,
                packets: 0,
                events: 0,
                drops: 0,
                errors: 0,
                malformed: 0,
                gaps: 0,
            })
            .collect();
        for m in self.module_instances() {
            if let Some(t) = totals.get_mut(m.index) {
                t.packets += m.packets;
                t.events += m.events;
                t.drops += m.drops;
                t.errors += m.errors;
                t.malformed += m.malformed;
                t.gaps += m.gaps;
            }
        }
        totals
    }
}

/// The admin routes.
pub(crate) fn handler(state: Arc<AdminState>) -> Handler {
    Arc::new(move |method: &Method, path: &str| {
        if method != Method::GET && method != Method::HEAD {
            return Reply::text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        }
        match path {
            "/metrics" => Reply {
                status: StatusCode::OK,
                content_type: "text/plain; version=0.0.4; charset=utf-8",
                body: metrics::render(&state).into(),
            },
            "/sessions" => Reply::json(&state.session_views()),
            "/modules" => Reply::json(&state.module_instances()),
            "/healthz" => healthz(&state.liveness),
            "/" => Reply::text(
                StatusCode::OK,
                "vxtap admin: /metrics /sessions /modules /healthz\n",
            ),
            _ => Reply::not_found(),
        }
    })
}
