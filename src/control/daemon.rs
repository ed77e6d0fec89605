//! `vxtap run`: start the pipeline and the listeners, wait for a signal, stop without losing packets.

use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;

use crate::config::Config;
use crate::ingest::interface::{InterfaceError, InterfaceIngest};
use crate::ingest::udp::{IngestError, UdpIngest};
use crate::modules::Registry;
use crate::pipeline::{Pipeline, PipelineError, PipelineReport, Timestamp};

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
}

/// How often idle learned sessions are swept.
const SWEEP_INTERVAL: Duration = Duration::from_secs(10);

/// Runs until SIGINT or SIGTERM, then stops ingest (draining the sockets), flushes every module and
/// returns the final report.
pub fn run(config: Config, registry: Registry) -> Result<PipelineReport, DaemonError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(DaemonError::Runtime)?;
    let pipeline = Pipeline::builder(config)
        .registry(registry)
        .live(true)
        .build()?;
    let listeners = &pipeline.config().ingest;
    // A config may name only interfaces to capture from; then no UDP listener is wanted.
    let ingest = if listeners.vxlan.is_empty() && listeners.geneve.is_empty() {
        None
    } else {
        Some(UdpIngest::start(&pipeline, listeners)?)
    };
    let capture = InterfaceIngest::start(&pipeline, &pipeline.config().ingest.interfaces)?;
    tracing::info!(
        message = "vxtap is running.",
        shards = pipeline.shard_counters().len(),
        modules = ?pipeline.modules().iter().map(|m| m.kind.as_str()).collect::<Vec<_>>(),
    );
    let sessions = pipeline.sessions().clone();
    runtime.block_on(async move {
        let sweeper = tokio::spawn(sweep_sessions(sessions));
        wait_for_stop().await;
        sweeper.abort();
    });
    tracing::info!(message = "Stopping: draining sockets and flushing modules.");
    if let Some(ingest) = ingest {
        ingest.stop();
    }
    capture.stop();
    let report = pipeline.finish();
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

async fn wait_for_stop() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!(message = "Cannot install signal handlers; stopping.");
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!(message = "SIGTERM received."),
        _ = int.recv() => tracing::info!(message = "SIGINT received."),
    }
}
