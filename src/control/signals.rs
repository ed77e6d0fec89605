//! The signals the daemon obeys: SIGTERM drains, SIGINT stops at once (still flushing), SIGHUP reloads.

use tokio::signal::unix::{signal, Signal, SignalKind};

/// A signal the daemon acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Received {
    Terminate,
    Interrupt,
    Hangup,
}

/// The installed handlers.
#[derive(Debug)]
pub(crate) struct Signals {
    term: Signal,
    int: Signal,
    hup: Signal,
}

impl Signals {
    pub(crate) fn install() -> std::io::Result<Signals> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    pub(crate) async fn next(&mut self) -> Received {
        tokio::select! {
            _ = self.term.recv() => Received::Terminate,
            _ = self.int.recv() => Received::Interrupt,
            _ = self.hup.recv() => Received::Hangup,
        }
    }
}
