//! SIGHUP: re-read the config file and apply what can change while packets flow.
//!
//! Applied live: `[sessions]` (static sessions, allowlist, learning; workers drop their session caches
//! before their next batch), `[truncation]`, `[health] drain_seconds` and `stale_after_seconds`,
//! `[admin] max_learned_session_series`, and the settings inside `[[module]]` tables as long as the
//! list of kinds stays the same (each shard flushes its old instances and builds new ones between two
//! batches). Everything else is bound to sockets or threads: a change there is logged by name and
//! waits for a restart; the running values stay.
//! An invalid file changes nothing.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::admin::{AdminState, ReloadStats};
use super::health::Liveness;
use crate::config::{AdminConfig, Config, HealthConfig};
use crate::modules::Registry;
use crate::pipeline::{DispatchMode, Pipeline};

/// What a reload did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Applied {
    /// Sections applied live that changed.
    pub(crate) changed: Vec<&'static str>,
    /// Settings that changed in the file but need a restart.
    pub(crate) restart: Vec<&'static str>,
}

/// Compares `new` with the running config and folds the live-changeable parts into `running`.
pub(crate) fn merge(running: &mut Config, new: &Config) -> Applied {
    let mut changed = Vec::new();
    let mut restart = Vec::new();
    if running.sessions != new.sessions {
        running.sessions = new.sessions.clone();
        changed.push("sessions");
    }
    if running.truncation != new.truncation {
        running.truncation = new.truncation.clone();
        changed.push("truncation");
    }
    // [health] and [admin]: the fields that apply live are taken one by one; then the rest of each
    // table is compared whole, so a field added later is either listed here as live or flagged for
    // a restart, never silently ignored.
    live_field(
        &mut changed,
        "health.drain_seconds",
        &mut running.health.drain_seconds,
        new.health.drain_seconds,
    );
    live_field(
        &mut changed,
        "health.stale_after_seconds",
        &mut running.health.stale_after_seconds,
        new.health.stale_after_seconds,
    );
    live_field(
        &mut changed,
        "admin.max_learned_session_series",
        &mut running.admin.max_learned_session_series,
        new.admin.max_learned_session_series,
    );
    if running.ingest != new.ingest {
        restart.push("ingest");
    }
    if running.pipeline != new.pipeline {
        restart.push("pipeline");
    }
    if running.flow != new.flow {
        restart.push("flow");
    }
    let health_rest = HealthConfig {
        drain_seconds: running.health.drain_seconds,
        stale_after_seconds: running.health.stale_after_seconds,
        ..new.health.clone()
    };
    if running.health != health_rest {
        restart.push("health");
    }
    let admin_rest = AdminConfig {
        max_learned_session_series: running.admin.max_learned_session_series,
        ..new.admin.clone()
    };
    if running.admin != admin_rest {
        restart.push("admin");
    }
    let modules = |c: &Config| {
        c.modules
            .iter()
            .map(|m| (m.kind.clone(), m.table.clone()))
            .collect::<Vec<_>>()
    };
    if modules(running) != modules(new) {
        let kinds = |c: &Config| c.modules.iter().map(|m| m.kind.clone()).collect::<Vec<_>>();
        if kinds(running) == kinds(new) {
            running.modules = new.modules.clone();
            changed.push("module");
        } else {
            restart.push("module");
        }
    }
    Applied { changed, restart }
}

/// Takes a setting that applies live, noting its name when it changed.
fn live_field<T: PartialEq + Copy>(
    changed: &mut Vec<&'static str>,
    name: &'static str,
    running: &mut T,
    new: T,
) {
    if *running != new {
        *running = new;
        changed.push(name);
    }
}

/// Everything a reload touches.
pub(crate) struct Reload<'a, D: DispatchMode> {
    pub(crate) path: &'a Path,
    pub(crate) registry: &'a Registry,
    pub(crate) pipeline: &'a Pipeline<D>,
    pub(crate) liveness: &'a Liveness,
    pub(crate) admin: &'a AdminState,
    pub(crate) stats: &'a ReloadStats,
}

impl<D: DispatchMode> Reload<'_, D> {
    /// Re-reads the file and applies it to `running`.
    pub(crate) fn run(&self, running: &mut Config) {
        let new = match Config::from_file(self.path) {
            Ok(c) => c,
            Err(e) => return self.refused(&e),
        };
        // Module tables are checked by their kinds now, so a bad one is refused here rather than
        // surprising the next restart.
        let specs = match self.registry.resolve(&new) {
            Ok(specs) => specs,
            Err(e) => return self.refused(&e),
        };
        let applied = merge(running, &new);
        if applied.changed.contains(&"module") {
            // merge() only takes module changes that keep the kinds and their order.
            if let Err(e) = self.pipeline.reconfigure_modules(&specs) {
                tracing::warn!(message = "Module settings not applied.", error = %e);
            }
        }
        self.pipeline.sessions().apply(&running.sessions);
        self.pipeline.set_snaplen(running.truncation.snaplen);
        self.liveness
            .set_stale_after(Duration::from_secs(running.health.stale_after_seconds));
        self.admin
            .max_learned_series
            .store(running.admin.max_learned_session_series, Ordering::Relaxed);
        self.stats.succeeded.fetch_add(1, Ordering::Relaxed);
        self.stats.last_failed.store(false, Ordering::Relaxed);
        tracing::info!(
            message = "Configuration reloaded.",
            file = %self.path.display(),
            changed = ?applied.changed,
            static_sessions = running.sessions.static_sessions.len(),
        );
        if !applied.restart.is_empty() {
            self.stats.restart_pending.store(true, Ordering::Relaxed);
            tracing::warn!(
                message = "Some changed settings take effect only after a restart; their running values are kept.",
                needs_restart = ?applied.restart,
            );
        }
    }

    fn refused(&self, error: &dyn std::fmt::Display) {
        self.stats.failed.fetch_add(1, Ordering::Relaxed);
        self.stats.last_failed.store(true, Ordering::Relaxed);
        tracing::error!(
            message = "Configuration reload refused; the running configuration stays in place.",
            %error,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_sections_merge_and_the_rest_waits_for_restart() {
        let mut running = Config::parse("[ingest]\nworkers = 1\n", "a").unwrap();
        let new = Config::parse(
            "[ingest]\nworkers = 2\n[truncation]\nsnaplen = 96\n[health]\ndrain_seconds = 5\n\
             [[module]]\nkind = \"stats\"\n",
            "b",
        )
        .unwrap();
        let applied = merge(&mut running, &new);
        assert_eq!(applied.changed, ["truncation", "health.drain_seconds"]);
        assert_eq!(applied.restart, ["ingest", "module"]);
        assert_eq!(running.truncation.snaplen, 96);
        let held = Config::parse("[health]\ndrain_seconds = 5\n", "e").unwrap();
        let moved = Config::parse(
            "[health]\nlisten = \"127.0.0.1:1\"\ndrain_seconds = 6\n",
            "f",
        )
        .unwrap();
        let applied = merge(&mut held.clone(), &moved);
        assert_eq!(applied.changed, ["health.drain_seconds"]);
        assert_eq!(
            applied.restart,
            ["health"],
            "a field not applied live waits for a restart"
        );
        assert_eq!(running.ingest.workers, 1, "running listeners are kept");
        let same = running.clone();
        assert_eq!(merge(&mut running, &same).changed.len(), 0);

        let mut running = Config::parse("[[module]]\nkind = \"stats\"\n", "c").unwrap();
        let retuned =
            Config::parse("[[module]]\nkind = \"stats\"\ninterval_secs = 3\n", "d").unwrap();
        let applied = merge(&mut running, &retuned);
        assert_eq!(
            (applied.changed, applied.restart.len()),
            (vec!["module"], 0)
        );
        assert_eq!(
            running.modules[0].table.get("interval_secs"),
            Some(&toml::Value::Integer(3))
        );
    }
}
