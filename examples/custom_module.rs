//! Your own inspection module in your own binary, on vxtap's pipeline.
//!
//! `syn_counter` counts connection attempts (TCP SYN without ACK) per session and destination port, and
//! prints them when vxtap stops. Run it on the embedded default listeners (plus this module):
//!
//! ```text
//! cargo run --example custom_module
//! cargo run --example custom_module -- my-config.toml   # a config with [[module]] kind = "syn_counter"
//! ```

use std::collections::BTreeMap;

use serde::Deserialize;
use vxtap::modules::{
    BuildError, Emitter, Module, ModuleConfig, ModuleContext, PerSession, Registry,
};
use vxtap::sinks::{Sink, StdoutSink};
use vxtap::wire::inner::Transport;
use vxtap::{Config, Packet};

/// `[[module]] kind = "syn_counter"`: the module's own keys, checked like vxtap's (unknown keys refused).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SynCounterConfig {
    /// Ports to report; empty means all.
    #[serde(default)]
    ports: Vec<u16>,
}

impl ModuleConfig for SynCounterConfig {
    fn build(&self, _ctx: &ModuleContext) -> Result<Box<dyn Module>, BuildError> {
        Ok(Box::new(SynCounter {
            ports: self.ports.clone(),
            sessions: PerSession::new(),
        }))
    }

    fn sink(&self, _ctx: &ModuleContext) -> Result<Box<dyn Sink>, BuildError> {
        Ok(Box::<StdoutSink>::default())
    }
}

/// One instance per shard; vxtap steers both directions of a connection to the same instance, so
/// per-connection state needs no locks. Counts live per session in a `PerSession` (found by the
/// session's id, no hashing) and per port in a map that allocates only when a port is first seen: a
/// module must not allocate per packet, and a session's name is copied once, not per SYN.
struct SynCounter {
    ports: Vec<u16>,
    sessions: PerSession<(String, BTreeMap<u16, u64>)>,
}

impl Module for SynCounter {
    fn on_packet(&mut self, pkt: &Packet<'_>, _out: &mut Emitter<'_>) {
        const SYN: u8 = 0x02;
        const ACK: u8 = 0x10;
        if let Transport::Tcp { dst, flags, .. } = *pkt.transport() {
            if flags & (SYN | ACK) == SYN && (self.ports.is_empty() || self.ports.contains(&dst)) {
                let (_, ports) = self.sessions.get_or_insert_with(pkt.session.id, || {
                    (pkt.session.name.clone(), BTreeMap::new())
                });
                *ports.entry(dst).or_default() += 1;
            }
        }
    }

    fn finish(&mut self, out: &mut Emitter<'_>) {
        let mut lines: Vec<_> = self
            .sessions
            .iter()
            .flat_map(|(_, (session, ports))| ports.iter().map(move |(p, n)| (session, *p, *n)))
            .collect();
        lines.sort();
        for (session, port, syns) in lines {
            out.line(format_args!(
                "syn_counter session={session} port={port} syns={syns}"
            ));
        }
    }
}

fn main() -> anyhow::Result<()> {
    vxtap::control::logging::init(Default::default(), "info");
    let mut registry = Registry::with_builtins();
    registry.register::<SynCounterConfig>("syn_counter");
    let config = match std::env::args_os().nth(1) {
        Some(path) => Config::from_file(path.as_ref())?,
        None => {
            let text = format!(
                "{}\n[[module]]\nkind = \"syn_counter\"\n",
                vxtap::config::DEFAULT_CONFIG
            );
            Config::parse(&text, "<example default>")?
        }
    };
    vxtap::control::daemon::run(config, registry)?;
    Ok(())
}
