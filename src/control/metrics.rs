//! `/metrics` in the Prometheus text exposition format (version 0.0.4).
//!
//! Everything is read at scrape time from counters that their single writers keep: per-worker datagram
//! accounting, per-shard packet and per-session tallies, per-instance module counters. Label sets are
//! bounded: drop reasons and modules are fixed by the build and the config, and per-session series exist
//! for configured sessions plus at most `[admin] max_learned_session_series` learned ones.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use super::admin::{AdminState, SessionView};
use crate::base::DropReason;
use crate::flow::{EndReason, FlowCounters};

/// Writes metric families; keeps HELP and TYPE next to their samples as the format requires.
struct Exposition {
    out: String,
}

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"");
                escape_label(&mut self.out, v);
                self.out.push('"');
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }

    fn single(&mut self, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }
}

/// Label values may hold anything a config author wrote; the format escapes `\`, `"` and newlines.
fn escape_label(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Renders every metric.
pub(crate) fn render(state: &AdminState) -> String {
    let mut m = Exposition {
        out: String::with_capacity(8192),
    };
    m.family(
        "vxtap_build_info",
        "gauge",
        "Always 1; the version label says which vxtap is running.",
    );
    m.sample(
        "vxtap_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1,
    );
    m.single(
        "vxtap_start_time_seconds",
        "gauge",
        "Unix time the daemon started.",
        state.started_secs,
    );
    let health = state.liveness.check();
    m.single(
        "vxtap_healthy",
        "gauge",
        "1 while /healthz answers 200.",
        u8::from(health.is_ok()),
    );
    m.single(
        "vxtap_draining",
        "gauge",
        "1 once a drain (SIGTERM) has started.",
        u8::from(state.liveness.draining()),
    );

    let workers = state.accounting.workers();
    m.single(
        "vxtap_receive_workers",
        "gauge",
        "Receive worker threads (one per socket).",
        workers.len(),
    );
    let c = state.accounting.snapshot();
    m.single(
        "vxtap_datagrams_received_total",
        "counter",
        "Datagrams received on the listeners (every one ends dispatched or dropped).",
        c.received,
    );
    m.single(
        "vxtap_received_bytes_total",
        "counter",
        "UDP payload bytes received.",
        c.received_bytes,
    );
    m.single(
        "vxtap_datagrams_dispatched_total",
        "counter",
        "Datagrams handed to a shard's modules.",
        c.dispatched,
    );
    m.family(
        "vxtap_datagrams_dropped_total",
        "counter",
        "Datagrams dropped, by reason.",
    );
    for r in DropReason::ALL {
        m.sample(
            "vxtap_datagrams_dropped_total",
            &[("reason", r.name())],
            c.dropped(*r),
        );
    }

    m.family(
        "vxtap_shard_packets_total",
        "counter",
        "Packets processed by each shard.",
    );
    for (i, s) in state.shards.iter().enumerate() {
        m.sample(
            "vxtap_shard_packets_total",
            &[("shard", &i.to_string())],
            s.packets.load(Ordering::Relaxed),
        );
    }

    flow_metrics(&mut m, state);

    let modules = state.module_totals();
    for (name, help, pick) in [
        (
            "vxtap_module_packets_total",
            "Packets given to each configured module (summed over shards).",
            0usize,
        ),
        (
            "vxtap_module_events_total",
            "Records each module emitted.",
            1,
        ),
        (
            "vxtap_module_dropped_total",
            "Records each module dropped itself (table caps and the like).",
            2,
        ),
        (
            "vxtap_module_errors_total",
            "Sink errors and module failures.",
            3,
        ),
        (
            "vxtap_module_malformed_total",
            "Malformed messages each module met (DNS, TLS, HTTP, ...).",
            4,
        ),
        (
            "vxtap_module_stream_gaps_total",
            "Stream gaps each module met.",
            5,
        ),
    ] {
        m.family(name, "counter", help);
        for t in &modules {
            let v = [t.packets, t.events, t.drops, t.errors, t.malformed, t.gaps][pick];
            m.sample(
                name,
                &[("module", &t.kind), ("index", &t.index.to_string())],
                v,
            );
        }
    }

    module_labelled_metrics(&mut m, state);
    let spools = crate::sinks::spools();
    if !spools.is_empty() {
        m.family(
            "vxtap_s3_spool_bytes",
            "gauge",
            "Bytes of closed files an S3 output's spool holds, waiting for their upload.",
        );
        for s in spools {
            m.sample(
                "vxtap_s3_spool_bytes",
                &[("dir", &s.dir.display().to_string())],
                s.bytes,
            );
        }
    }

    let sessions = state.session_views();
    let learned = sessions.iter().filter(|s| s.learned).count();
    m.family("vxtap_sessions", "gauge", "Known mirror sessions.");
    m.sample(
        "vxtap_sessions",
        &[("kind", "static")],
        sessions.len() - learned,
    );
    m.sample("vxtap_sessions", &[("kind", "learned")], learned);
    let listed = listed_sessions(&sessions, state.max_learned_series());
    for (name, help, pick) in [
        (
            "vxtap_session_packets_total",
            "Packets processed per session (configured sessions and the busiest learned ones).",
            0usize,
        ),
        (
            "vxtap_session_bytes_total",
            "Inner frame bytes (as on the wire, before truncation) per session.",
            1,
        ),
        (
            "vxtap_session_dropped_total",
            "Packets of the session dropped after it was identified (shard queue full).",
            2,
        ),
    ] {
        m.family(name, "counter", help);
        for s in &listed {
            let v = [s.packets, s.bytes, s.dropped][pick];
            let vni = s.vni.to_string();
            let source = s.source.to_string();
            let mut labels = vec![
                ("session", s.name.as_str()),
                ("source", source.as_str()),
                ("vni", vni.as_str()),
            ];
            if let Some(eni) = &s.eni {
                labels.push(("eni", eni.as_str()));
            }
            m.sample(name, &labels, v);
        }
    }

    m.family(
        "vxtap_session_info",
        "gauge",
        "Always 1 per listed session; carries its configured labels as label_<key> for joins.",
    );
    for s in &listed {
        let names: Vec<String> = s
            .labels
            .keys()
            .map(|k| format!("label_{}", label_name(k)))
            .collect();
        let mut labels = vec![("session", s.name.as_str())];
        let mut seen = std::collections::BTreeSet::new();
        for (name, value) in names.iter().zip(s.labels.values()) {
            // Two keys that differ only in characters Prometheus refuses would clash: keep the first.
            if seen.insert(name.as_str()) {
                labels.push((name.as_str(), value.as_str()));
            }
        }
        m.sample("vxtap_session_info", &labels, 1);
    }

    let r = &state.reloads;
    m.family(
        "vxtap_config_reloads_total",
        "counter",
        "Configuration reloads (SIGHUP), by result.",
    );
    m.sample(
        "vxtap_config_reloads_total",
        &[("result", "success")],
        r.succeeded.load(Ordering::Relaxed),
    );
    m.sample(
        "vxtap_config_reloads_total",
        &[("result", "failure")],
        r.failed.load(Ordering::Relaxed),
    );
    m.single(
        "vxtap_config_last_reload_successful",
        "gauge",
        "0 when the last reload was refused (the previous configuration is still running).",
        u8::from(!r.last_failed.load(Ordering::Relaxed)),
    );
    m.single(
        "vxtap_config_restart_pending",
        "gauge",
        "1 when a reloaded file changed settings that only take effect after a restart.",
        u8::from(r.restart_pending.load(Ordering::Relaxed)),
    );
    m.out
}

/// A Prometheus label name from a config label key: `[a-zA-Z0-9_]`, anything else becomes `_`.
fn label_name(key: &str) -> String {
    key.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// Configured sessions, then the busiest learned ones up to the cap.
fn listed_sessions(sessions: &[SessionView], max_learned: usize) -> Vec<&SessionView> {
    let mut learned: Vec<&SessionView> = sessions.iter().filter(|s| s.learned).collect();
    learned.sort_by(|a, b| b.packets.cmp(&a.packets).then(a.key.cmp(&b.key)));
    learned.truncate(max_learned);
    let mut out: Vec<&SessionView> = sessions.iter().filter(|s| !s.learned).collect();
    out.extend(learned);
    out
}

/// The modules' own labelled counters (`Emitter::count_labelled`), summed over shards: one family
/// per counter name, each sample labelled with the module's kind and index and the module's labels.
fn module_labelled_metrics(m: &mut Exposition, state: &AdminState) {
    use std::collections::BTreeMap;
    /// A module's position and its label pairs.
    type Series = (usize, Vec<(&'static str, String)>);
    // name -> (series -> value), in a stable order.
    let mut families: BTreeMap<&'static str, BTreeMap<Series, u64>> = BTreeMap::new();
    let mut refused = vec![0u64; state.module_kinds.len()];
    for shard in &state.shards {
        for (index, c) in shard.modules.iter().enumerate() {
            if let Some(r) = refused.get_mut(index) {
                *r += c.labelled.refused.load(Ordering::Relaxed);
            }
            for s in c.labelled.snapshot() {
                *families
                    .entry(s.name)
                    .or_default()
                    .entry((index, s.labels))
                    .or_default() += s.value;
            }
        }
    }
    for (name, samples) in &families {
        if !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            continue;
        }
        let family = format!("vxtap_module_{name}_total");
        m.family(
            &family,
            "counter",
            "A module's own counter, by the labels it gives.",
        );
        for ((index, labels), value) in samples {
            let kind = state.module_kinds.get(*index).cloned().unwrap_or_default();
            let index = index.to_string();
            let mut all: Vec<(&str, &str)> = vec![("module", &kind), ("index", &index)];
            all.extend(
                labels
                    .iter()
                    .filter(|(k, _)| !matches!(*k, "module" | "index"))
                    .map(|(k, v)| (*k, v.as_str())),
            );
            m.sample(&family, &all, value);
        }
    }
    if refused.iter().any(|r| *r > 0) {
        m.family(
            "vxtap_module_labelled_refused_total",
            "counter",
            "Counts a module's labelled counters had no room for (past 1,024 series per instance).",
        );
        for (index, r) in refused.iter().enumerate() {
            let kind = state.module_kinds.get(index).cloned().unwrap_or_default();
            m.sample(
                "vxtap_module_labelled_refused_total",
                &[("module", &kind), ("index", &index.to_string())],
                r,
            );
        }
    }
}

/// The flow layer's series, summed over the shards that keep a flow table (none when no module
/// wants flows: the series are then absent, not zero, so a dashboard tells "off" from "idle").
fn flow_metrics(m: &mut Exposition, state: &AdminState) {
    let tables: Vec<_> = state
        .shards
        .iter()
        .filter_map(|s| s.flows.clone())
        .collect();
    if tables.is_empty() {
        return;
    }
    let sum = |pick: &dyn Fn(&FlowCounters) -> &std::sync::atomic::AtomicU64| -> u64 {
        tables.iter().map(|t| pick(t).load(Ordering::Relaxed)).sum()
    };
    m.single(
        "vxtap_flows_active",
        "gauge",
        "Flows in the shards' flow tables.",
        sum(&|t| &t.active),
    );
    m.single(
        "vxtap_flows_started_total",
        "counter",
        "Flows started.",
        sum(&|t| &t.started),
    );
    m.family(
        "vxtap_flows_ended_total",
        "counter",
        "Flows ended, by reason (evicted: the table was full).",
    );
    for r in EndReason::ALL {
        m.sample(
            "vxtap_flows_ended_total",
            &[("reason", r.name())],
            sum(&|t| &t.ended[r as usize]),
        );
    }
    m.single(
        "vxtap_reassembly_bytes",
        "gauge",
        "Out-of-order TCP bytes held for reassembly.",
        sum(&|t| &t.reassembly_bytes),
    );
    m.single(
        "vxtap_stream_bytes_total",
        "counter",
        "Reassembled TCP bytes delivered to modules in order.",
        sum(&|t| &t.stream_bytes),
    );
    m.single(
        "vxtap_stream_gaps_total",
        "counter",
        "Holes in reassembled TCP streams (lost by the mirror, cut by truncation, over a buffer limit).",
        sum(&|t| &t.gaps),
    );
    m.single(
        "vxtap_flows_untracked_packets_total",
        "counter",
        "Packets of new flows a full flow table could not take (0 unless eviction fails).",
        sum(&|t| &t.untracked),
    );
    m.single(
        "vxtap_stream_gap_bytes_total",
        "counter",
        "Bytes those holes covered.",
        sum(&|t| &t.gap_bytes),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(key: &str, learned: bool, packets: u64) -> SessionView {
        SessionView {
            key: key.into(),
            source: "10.0.0.1".parse().unwrap(),
            vni: 1,
            eni: None,
            name: key.into(),
            labels: Default::default(),
            learned,
            packets,
            bytes: 0,
            dropped: 0,
            first_seen: None,
            last_seen: None,
        }
    }

    #[test]
    fn configured_sessions_always_get_series_and_learned_ones_are_capped() {
        let all = [
            view("s1", false, 0),
            view("l1", true, 5),
            view("l2", true, 50),
            view("l3", true, 7),
            view("s2", false, 1),
        ];
        let keys = |max| {
            listed_sessions(&all, max)
                .iter()
                .map(|s| s.key.as_str())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            keys(2),
            ["s1", "s2", "l2", "l3"],
            "the busiest learned ones"
        );
        assert_eq!(keys(0), ["s1", "s2"]);
    }

    #[test]
    fn modules_labelled_counters_are_summed_over_shards() {
        use crate::modules::ModuleCounters;
        use crate::pipeline::{Accounting, ShardCounters};
        use std::sync::Arc;
        let shard = |n: u64| {
            let m = ModuleCounters::default();
            m.labelled.add(
                "connectivity_flows",
                &[("session", "web"), ("kind", "refused")],
                n,
            );
            m.labelled.add(
                "connectivity_flows",
                &[("session", "db"), ("kind", "unanswered")],
                1,
            );
            Arc::new(ShardCounters {
                modules: vec![Arc::new(m)],
                ..ShardCounters::default()
            })
        };
        let shards = vec![shard(2), shard(3)];
        let accounting = Arc::new(Accounting::default());
        let state = AdminState {
            liveness: Arc::new(crate::control::health::Liveness::new(
                accounting.clone(),
                shards.clone(),
                std::time::Duration::from_secs(5),
                std::time::Duration::from_secs(1),
            )),
            accounting,
            shards,
            sessions: crate::session::SessionTable::new(&Default::default()),
            module_kinds: vec!["connectivity".into()],
            reloads: Default::default(),
            started_secs: 0,
            max_learned_series: std::sync::atomic::AtomicUsize::new(8),
        };
        let text = render(&state);
        assert!(
            text.contains("# TYPE vxtap_module_connectivity_flows_total counter"),
            "{text}"
        );
        assert!(text.contains(
            "vxtap_module_connectivity_flows_total{module=\"connectivity\",index=\"0\",session=\"web\",kind=\"refused\"} 5"
        ), "{text}");
        assert!(text.contains(
            "vxtap_module_connectivity_flows_total{module=\"connectivity\",index=\"0\",session=\"db\",kind=\"unanswered\"} 2"
        ), "{text}");
    }

    #[test]
    fn label_values_are_escaped() {
        let mut m = Exposition { out: String::new() };
        m.sample("x_total", &[("a", "q\"b\\n\nl")], 1);
        assert_eq!(m.out, "x_total{a=\"q\\\"b\\\\n\\nl\"} 1\n");
    }
}
