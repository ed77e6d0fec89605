//! Liveness and the load balancer's health endpoint.
//!
//! The node is healthy while it is not draining and every receive worker and shard has shown a sign of
//! life recently: workers beat after every receive call, which returns at least every 100 ms even
//! without traffic, so a stale heartbeat means a stuck thread, not a quiet network.
//!
//! An NLB checks a UDP target group over TCP, HTTP or HTTPS on a port of our choosing (docs/aws-facts.md §2).
//! `GET /healthz` answers `200 ok` or `503 <reason>`. For TCP checks the port must refuse connections
//! while unhealthy, and AWS asks exactly that of a UDP service's check port; so in the default `close`
//! mode the listening socket is closed while unhealthy and opened again when health returns. A closed
//! port fails HTTP checks as well, so that mode suits both check protocols; `respond` keeps listening
//! and answers 503, for operators who want to read the reason on this port too (the admin endpoint's
//! `/healthz` always gives it).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper::{Method, StatusCode};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use super::http::{self, Handler, Reply};
use crate::base::Timestamp;
use crate::config::UnhealthyMode;
use crate::pipeline::{Accounting, ShardCounters};

/// Why the node is not healthy: one word, safe to show anyone.
pub type Unhealthy = &'static str;

/// What the health endpoint and the watchdog look at.
#[derive(Debug)]
pub struct Liveness {
    accounting: Arc<Accounting>,
    shards: Vec<Arc<ShardCounters>>,
    stale_after_ns: AtomicU64,
    /// Shards sleep up to one tick between heartbeats while idle, so they get that much more slack.
    shard_slack_ns: u64,
    draining: AtomicBool,
}

impl Liveness {
    /// Watches `accounting`'s workers and `shards`.
    pub fn new(
        accounting: Arc<Accounting>,
        shards: Vec<Arc<ShardCounters>>,
        stale_after: Duration,
        tick: Duration,
    ) -> Liveness {
        Liveness {
            accounting,
            shards,
            stale_after_ns: AtomicU64::new(stale_after.as_nanos() as u64),
            shard_slack_ns: tick.as_nanos() as u64,
            draining: AtomicBool::new(false),
        }
    }

    /// Changes the staleness threshold (config reload).
    pub fn set_stale_after(&self, stale_after: Duration) {
        self.stale_after_ns
            .store(stale_after.as_nanos() as u64, Ordering::Relaxed);
    }

    /// Marks the node as draining; it stays unhealthy from then on.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// Whether a drain has started.
    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// `Ok` while every receive worker and shard is alive, regardless of draining: what the systemd
    /// watchdog is fed on.
    pub fn threads_alive(&self) -> Result<(), Unhealthy> {
        let now = Timestamp::now().nanos();
        let stale = self.stale_after_ns.load(Ordering::Relaxed);
        let workers = self.accounting.workers();
        if workers.is_empty() {
            return Err("starting");
        }
        for w in &workers {
            match w.heartbeat() {
                0 => return Err("starting"),
                beat if now.saturating_sub(beat) > stale => return Err("stalled"),
                _ => {}
            }
        }
        for s in &self.shards {
            let beat = s.heartbeat.load(Ordering::Relaxed);
            if beat == 0 {
                return Err("starting");
            }
            if now.saturating_sub(beat) > stale + self.shard_slack_ns {
                return Err("stalled");
            }
        }
        Ok(())
    }

    /// `Ok` when the load balancer should send traffic here.
    pub fn check(&self) -> Result<(), Unhealthy> {
        if self.draining() {
            return Err("draining");
        }
        self.threads_alive()
    }
}

/// The answer to `GET /healthz`.
pub(crate) fn healthz(liveness: &Liveness) -> Reply {
    match liveness.check() {
        Ok(()) => Reply::text(StatusCode::OK, "ok\n"),
        Err(reason) => Reply::text(StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n")),
    }
}

/// Health as last published to the health port, refreshed by the control loop and at once when a drain
/// starts.
#[derive(Debug)]
pub(crate) struct HealthState {
    pub(crate) liveness: Arc<Liveness>,
    tx: watch::Sender<Result<(), Unhealthy>>,
}

impl HealthState {
    pub(crate) fn new(liveness: Arc<Liveness>) -> HealthState {
        let (tx, _) = watch::channel(Err("starting"));
        HealthState { liveness, tx }
    }

    /// Re-evaluates health and wakes the health server if it changed.
    pub(crate) fn refresh(&self) {
        let now = self.liveness.check();
        self.tx.send_if_modified(|old| {
            if *old == now {
                return false;
            }
            match now {
                Ok(()) => tracing::info!(message = "Healthy."),
                Err(reason) => tracing::warn!(message = "Unhealthy.", reason),
            }
            *old = now;
            true
        });
    }

    fn subscribe(&self) -> watch::Receiver<Result<(), Unhealthy>> {
        self.tx.subscribe()
    }
}

/// Serves the health port. `listener` is already bound (at `addr`, its actual address); in `close`
/// mode it is dropped while unhealthy and bound again at the same address when health returns.
pub(crate) async fn serve(
    listener: TcpListener,
    addr: SocketAddr,
    mode: UnhealthyMode,
    state: Arc<HealthState>,
) {
    let liveness = state.liveness.clone();
    let handler: Handler = Arc::new(move |method: &Method, path: &str| match (method, path) {
        (&Method::GET | &Method::HEAD, "/healthz" | "/") => healthz(&liveness),
        _ => Reply::not_found(),
    });
    let limit = Arc::new(Semaphore::new(64));
    let mut changes = state.subscribe();
    let mut listener = Some(listener);
    loop {
        let healthy = changes.borrow_and_update().is_ok();
        if mode == UnhealthyMode::Close {
            if !healthy && listener.take().is_some() {
                tracing::info!(message = "Health port closed while unhealthy.", addr = %addr);
            }
            if healthy && listener.is_none() {
                match http::bind(addr) {
                    Ok(l) => {
                        tracing::info!(message = "Health port open.", addr = %addr);
                        listener = Some(l);
                    }
                    Err(error) => {
                        tracing::warn!(message = "Failed to reopen the health port; retrying.", %error, addr = %addr);
                    }
                }
            }
        }
        match &listener {
            Some(l) => {
                tokio::select! {
                    _ = http::accept_one(l, &handler, &limit, http::Reuse::Close) => {}
                    changed = changes.changed() => if changed.is_err() { return },
                }
            }
            None => {
                tokio::select! {
                    changed = changes.changed() => if changed.is_err() { return },
                    // A failed re-bind is retried even when health does not change again.
                    _ = tokio::time::sleep(Duration::from_secs(1)), if healthy => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_silent_worker_or_shard_makes_the_node_unhealthy() {
        let accounting = Arc::new(Accounting::default());
        let shard = Arc::new(ShardCounters::default());
        let l = Liveness::new(
            accounting.clone(),
            vec![shard.clone()],
            Duration::from_secs(5),
            Duration::from_secs(1),
        );
        assert_eq!(l.check(), Err("starting"), "no worker yet");
        let worker = accounting.register();
        let now = Timestamp::now().nanos();
        worker.beat(now);
        assert_eq!(l.check(), Err("starting"), "shard has not beaten yet");
        shard.heartbeat.store(now, Ordering::Relaxed);
        assert_eq!(l.check(), Ok(()));
        worker.beat(now - 6_000_000_000);
        assert_eq!(l.check(), Err("stalled"));
        worker.beat(now);
        shard
            .heartbeat
            .store(now - 5_500_000_000, Ordering::Relaxed);
        assert_eq!(l.check(), Ok(()), "an idle shard gets one tick of slack");
        shard
            .heartbeat
            .store(now - 7_000_000_000, Ordering::Relaxed);
        assert_eq!(l.threads_alive(), Err("stalled"));
        shard.heartbeat.store(now, Ordering::Relaxed);
        l.start_draining();
        assert_eq!(l.check(), Err("draining"));
        assert_eq!(
            l.threads_alive(),
            Ok(()),
            "the watchdog is fed while draining"
        );
    }
}
