//! `vxtap run`: start the pipeline, the listeners and the control plane; drain on SIGTERM, reload on
//! SIGHUP, and stop without losing packets.
//!
//! Lifecycle: bind everything, then `READY=1`. On SIGTERM the node turns unhealthy at once (the health
//! port closes or answers 503, `STOPPING=1` goes to systemd) but keeps receiving and processing for
//! `[health] drain_seconds`, so that the NLB can stop sending first; then ingest stops after draining
//! its sockets, every module flushes, and `run` returns. A second SIGTERM, or SIGINT, ends the wait
//! early; the flush still happens. SIGINT as the first signal (Ctrl-C) stops without waiting.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::time::Instant;

use super::admin::{self, AdminState, ReloadStats};
use super::health::{self, HealthState, Liveness};
use super::http;
use super::reload::Reload;
use super::signals::{Received, Signals};
use super::systemd::Notifier;
use crate::base::{Feed, Timestamp};
use crate::config::Config;
use crate::ingest::interface::{InterfaceError, InterfaceIngest};
use crate::ingest::udp::{IngestError, LivePipeline, UdpIngest, UdpListeners};
use crate::modules::Registry;
use crate::pipeline::{DispatchMode, Pipeline, PipelineError, PipelineReport};

/// Why the daemon could not run.
#[derive(Debug, Error)]
pub enum DaemonError {
    /// The pipeline could not be built.
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    /// The listeners could not start.
    #[error(transparent)]
    Ingest(#[from] IngestError),
    /// Interface capture could not start.
    #[error(transparent)]
    Interface(#[from] InterfaceError),
    /// The control-plane runtime could not start.
    #[error("cannot start the control-plane runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// The health or admin endpoint could not listen.
    #[error("cannot listen for the {what} endpoint on {addr}: {source}")]
    Listen {
        /// `health` or `admin`.
        what: &'static str,
        /// The configured address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// Signal handlers could not be installed.
    #[error("cannot install signal handlers: {0}")]
    Signals(#[source] std::io::Error),
    /// The shutdown task failed.
    #[error("shutdown failed: {0}")]
    Shutdown(String),
}

/// How [`run_with`] behaves beyond what the config says.
#[derive(Debug, Clone, Default)]
pub struct DaemonOptions {
    /// The file the config came from; SIGHUP re-reads it. Without one, SIGHUP is logged and ignored.
    pub config_path: Option<PathBuf>,
}

/// How often idle learned sessions are swept.
const SWEEP_INTERVAL: Duration = Duration::from_secs(10);
/// How often health is re-evaluated for the health port (a drain is applied at once regardless).
const HEALTH_INTERVAL: Duration = Duration::from_millis(250);
/// How long start-up waits for every worker's first heartbeat before it reports READY anyway.
const STARTUP_GRACE: Duration = Duration::from_secs(2);
/// How often systemd's STATUS line is refreshed.
const STATUS_INTERVAL: Duration = Duration::from_secs(5);

/// Runs with default options until SIGTERM (after the drain) or SIGINT, and returns the final report.
pub fn run(config: Config, registry: Registry) -> Result<PipelineReport, DaemonError> {
    run_with(config, registry, DaemonOptions::default())
}

/// Runs until stopped by a signal; see the module documentation for the lifecycle.
pub fn run_with(
    config: Config,
    registry: Registry,
    options: DaemonOptions,
) -> Result<PipelineReport, DaemonError> {
    let shards = Pipeline::builder(config.clone())
        .registry(registry.clone())
        .feed(Feed::Live)
        .build()?;
    // A config may name only interfaces to capture from; then no UDP listener is wanted.
    if config.ingest.vxlan.is_empty() && config.ingest.geneve.is_empty() {
        let pipeline = shards.start_handoff()?;
        let capture = InterfaceIngest::start(&pipeline, &config.ingest.interfaces)?;
        return serve(pipeline, None, capture, config, registry, options);
    }
    let (pipeline, ingest) = UdpListeners::bind(&config.ingest)?.start(shards)?;
    match pipeline {
        LivePipeline::Handoff(pipeline) => {
            let capture = InterfaceIngest::start(&pipeline, &config.ingest.interfaces)?;
            serve(pipeline, Some(ingest), capture, config, registry, options)
        }
        LivePipeline::RunToCompletion(pipeline) => serve(
            pipeline,
            Some(ingest),
            InterfaceIngest::none(),
            config,
            registry,
            options,
        ),
    }
}

/// The control plane around running shards and ingest, whichever way the shards run.
fn serve<D: DispatchMode>(
    pipeline: Pipeline<D>,
    ingest: Option<UdpIngest>,
    capture: InterfaceIngest,
    config: Config,
    registry: Registry,
    options: DaemonOptions,
) -> Result<PipelineReport, DaemonError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(DaemonError::Runtime)?;
    let liveness = Arc::new(Liveness::new(
        pipeline.accounting().clone(),
        pipeline.shard_counters().to_vec(),
        Duration::from_secs(config.health.stale_after_seconds),
        Duration::from_millis(config.pipeline.tick_ms),
    ));
    let admin = Arc::new(AdminState {
        accounting: pipeline.accounting().clone(),
        shards: pipeline.shard_counters().to_vec(),
        sessions: pipeline.sessions().clone(),
        module_kinds: pipeline.modules().iter().map(|m| m.kind.clone()).collect(),
        liveness: liveness.clone(),
        reloads: Arc::new(ReloadStats::default()),
        started_secs: Timestamp::now().secs(),
        max_learned_series: AtomicUsize::new(config.admin.max_learned_session_series),
    });
    let notifier = Arc::new(Notifier::from_env());
    let mut running = config;

    runtime.block_on(async {
        let mut signals = Signals::install().map_err(DaemonError::Signals)?;
        let health_state = Arc::new(HealthState::new(liveness.clone()));
        let listen = |what, addr| {
            http::bind(addr).map_err(|source| DaemonError::Listen { what, addr, source })
        };
        let health_listener = listen("health", running.health.listen)?;
        let admin_listener = listen("admin", running.admin.listen)?;
        let health_addr = health_listener
            .local_addr()
            .unwrap_or(running.health.listen);
        let admin_addr = admin_listener.local_addr().unwrap_or(running.admin.listen);
        tracing::info!(message = "Health endpoint listening.", addr = %health_addr, when_unhealthy = ?running.health.when_unhealthy);
        tracing::info!(message = "Admin endpoint listening.", addr = %admin_addr);
        // Workers beat within one receive timeout (100 ms) of starting; wait for that so the node is
        // healthy from the moment it reports READY, instead of flapping its health port at start.
        let started = Instant::now();
        while liveness.threads_alive().is_err() && started.elapsed() < STARTUP_GRACE {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        health_state.refresh();
        tokio::spawn(health::serve(
            health_listener,
            health_addr,
            running.health.when_unhealthy,
            health_state.clone(),
        ));
        tokio::spawn(http::serve(
            admin_listener,
            admin::handler(admin.clone()),
            http::Reuse::KeepAlive,
        ));
        tokio::spawn(sweep_sessions(pipeline.sessions().clone()));
        tokio::spawn(report_status(
            health_state.clone(),
            notifier.clone(),
            admin.clone(),
        ));
        tracing::info!(
            message = "vxtap is running.",
            shards = pipeline.shard_counters().len(),
            modules = ?admin.module_kinds,
        );
        notifier.notify(&format!("READY=1\nSTATUS={}", status_line(&admin, 0.0)));

        let mut drain_until: Option<Instant> = None;
        loop {
            let deadline = async {
                match drain_until {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                signal = signals.next() => match signal {
                    Received::Hangup => match &options.config_path {
                        Some(path) => Reload {
                            path,
                            registry: &registry,
                            pipeline: &pipeline,
                            liveness: &liveness,
                            admin: &admin,
                            stats: &admin.reloads,
                        }
                        .run(&mut running),
                        None => tracing::warn!(message = "SIGHUP ignored: running on the embedded default, there is no file to reload."),
                    },
                    Received::Terminate if drain_until.is_none() => {
                        let secs = running.health.drain_seconds;
                        liveness.start_draining();
                        health_state.refresh();
                        notifier.notify(&format!("STOPPING=1\nSTATUS=Draining for {secs} s"));
                        tracing::info!(
                            message = "SIGTERM received: unhealthy now, still receiving until the drain ends.",
                            drain_seconds = secs,
                        );
                        drain_until = Some(Instant::now() + Duration::from_secs(secs));
                    }
                    other => {
                        liveness.start_draining();
                        health_state.refresh();
                        notifier.notify("STOPPING=1\nSTATUS=Stopping");
                        tracing::info!(
                            message = if drain_until.is_some() { "Signal received: cutting the drain short." } else { "SIGINT received: stopping without a drain." },
                            signal = ?other,
                        );
                        break;
                    }
                },
                _ = deadline => {
                    tracing::info!(message = "Drain time over.");
                    break;
                }
            }
        }
        Ok::<(), DaemonError>(())
    })?;

    tracing::info!(message = "Stopping: draining sockets and flushing modules.");
    notifier.notify("STATUS=Flushing modules");
    // The runtime keeps serving /metrics (and the watchdog) while the sockets drain and modules flush.
    let report = runtime
        .block_on(async {
            tokio::task::spawn_blocking(move || {
                if let Some(ingest) = ingest {
                    ingest.stop();
                }
                capture.stop();
                pipeline.finish()
            })
            .await
        })
        .map_err(|e| DaemonError::Shutdown(e.to_string()))?;
    let c = &report.counts;
    tracing::info!(
        message = "Stopped.",
        received = c.received,
        dispatched = c.dispatched,
        dropped = c.dropped_total(),
        drops = ?c.drops_by_reason(),
        sessions = report.sessions.len(),
    );
    Ok(report)
}

async fn sweep_sessions(sessions: Arc<crate::session::SessionTable>) {
    let mut every = tokio::time::interval(SWEEP_INTERVAL);
    loop {
        every.tick().await;
        let expired = sessions.expire_idle(Timestamp::now().secs());
        if expired > 0 {
            tracing::info!(message = "Expired idle learned sessions.", expired);
        }
    }
}

fn status_line(admin: &AdminState, pps: f64) -> String {
    let c = admin.accounting.snapshot();
    format!(
        "{}: {:.0} datagrams/s, {} sessions, {} received, {} dropped",
        if admin.liveness.draining() {
            "Draining"
        } else {
            "Running"
        },
        pps,
        admin.sessions.sessions().len(),
        c.received,
        c.dropped_total(),
    )
}

/// Keeps the health port, systemd's STATUS line and the watchdog up to date. The watchdog is fed only
/// while every receive worker and shard is alive, so a stuck thread lets systemd restart the service.
async fn report_status(health: Arc<HealthState>, notifier: Arc<Notifier>, admin: Arc<AdminState>) {
    let mut every = tokio::time::interval(HEALTH_INTERVAL);
    let watchdog_every = notifier.watchdog().map(|t| t / 2);
    let mut last_ping = Instant::now();
    let mut starving = false;
    let mut last_status = (Instant::now(), admin.accounting.snapshot().received);
    loop {
        every.tick().await;
        health.refresh();
        if !notifier.enabled() {
            continue;
        }
        let now = Instant::now();
        if let Some(period) = watchdog_every {
            // Once stopping, the receive threads end on purpose; the stop is bounded by TimeoutStopSec.
            let alive = match health.liveness.threads_alive() {
                _ if health.liveness.draining() => Ok(()),
                other => other,
            };
            match alive {
                Ok(()) if now - last_ping >= period => {
                    notifier.notify("WATCHDOG=1");
                    last_ping = now;
                    starving = false;
                }
                Ok(()) => {}
                Err(reason) if !starving => {
                    starving = true;
                    tracing::error!(
                        message = "A worker is not alive; no longer feeding the systemd watchdog.",
                        reason
                    );
                }
                Err(_) => {}
            }
        }
        if now - last_status.0 >= STATUS_INTERVAL {
            let received = admin.accounting.snapshot().received;
            let secs = (now - last_status.0).as_secs_f64();
            let pps = received.saturating_sub(last_status.1) as f64 / secs;
            notifier.notify(&format!("STATUS={}", status_line(&admin, pps)));
            last_status = (now, received);
        }
    }
}
