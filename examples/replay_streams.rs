//! `vxtap replay` with one more module, `null_streams`, that asks for both directions of every TCP
//! flow and discards the bytes: what the flow layer and reassembly cost on their own, for
//! `bench/run.sh` (issue 12's benchmark) to hold against the same replay without it.
//!
//! ```text
//! replay_streams CONFIG FILE...     # CONFIG's modules, then null_streams
//! ```

use std::path::PathBuf;

use serde::Deserialize;
use vxtap::flow::{Chunk, Dir, EndReason, Flow};
use vxtap::modules::{BuildError, Emitter, Module, ModuleConfig, ModuleContext, Registry};
use vxtap::{Config, Packet};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NullStreamsConfig {}

impl ModuleConfig for NullStreamsConfig {
    fn build(&self, _ctx: &ModuleContext) -> Result<Box<dyn Module>, BuildError> {
        Ok(Box::new(NullStreams { bytes: 0, gaps: 0 }))
    }
}

/// Counts what it is given, so the work cannot be optimised away; reports nothing.
struct NullStreams {
    bytes: u64,
    gaps: u64,
}

impl Module for NullStreams {
    fn wants_flows(&self) -> bool {
        true
    }

    fn on_flow_start(&mut self, flow: &mut Flow<'_>, _pkt: &Packet<'_>, _out: &mut Emitter<'_>) {
        flow.want_stream(Dir::ToServer);
        flow.want_stream(Dir::ToClient);
    }

    fn on_stream(
        &mut self,
        _flow: &mut Flow<'_>,
        _dir: Dir,
        chunk: &Chunk<'_>,
        out: &mut Emitter<'_>,
    ) {
        match chunk {
            Chunk::Data { bytes, .. } => self.bytes += bytes.len() as u64,
            Chunk::Gap { .. } => {
                self.gaps += 1;
                out.gaps(1);
            }
        }
    }

    fn on_flow_end(&mut self, _flow: &mut Flow<'_>, _reason: EndReason, _out: &mut Emitter<'_>) {}

    fn finish(&mut self, _out: &mut Emitter<'_>) {
        eprintln!("null_streams: {} bytes, {} gaps", self.bytes, self.gaps);
    }
}

fn main() -> anyhow::Result<()> {
    vxtap::control::logging::init(Default::default(), "warn");
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [config, files @ ..] = &args[..] else {
        anyhow::bail!("usage: replay_streams CONFIG FILE...");
    };
    let text = std::fs::read_to_string(config)? + "\n[[module]]\nkind = \"null_streams\"\n";
    let config = Config::parse(&text, config)?;
    let mut registry = Registry::with_builtins();
    registry.register::<NullStreamsConfig>("null_streams");
    let files: Vec<PathBuf> = files.iter().map(PathBuf::from).collect();
    let report = vxtap::ingest::replay::replay(config, registry, &files)?;
    eprintln!("{report}");
    Ok(())
}
