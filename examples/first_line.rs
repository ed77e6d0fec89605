//! A flow-aware module in your own binary: `first_line` logs the first line each TCP client sends
//! (an HTTP request line, an SMTP `EHLO`, an SSH banner...), one JSON record per connection, with
//! the flow's id, Community ID and mirror session.
//!
//! It shows the flow API end to end: `wants_flows`, asking for the client's byte stream at flow
//! start, in-order bytes through `on_stream` (gaps included), per-flow state in a `PerFlow` with no
//! hash map of the module's own and no allocation per packet, stopping the stream once the line is
//! complete (its buffers are released at once), and emitting at flow end what is still pending.
//!
//! ```text
//! cargo run --example first_line -- replay pcaps/aws-mirror.pcap      # offline
//! cargo run --example first_line                                      # live, embedded default config
//! ```

use std::fmt::Write as _;
use std::path::PathBuf;

use serde::Deserialize;
use vxtap::flow::{Chunk, Dir, EndReason, Flow, PerFlow};
use vxtap::modules::{BuildError, Emitter, Module, ModuleConfig, ModuleContext, Registry};
use vxtap::sinks::{OutputConfig, SeriesName, Sink};
use vxtap::{Config, Packet};

/// The longest line kept; longer ones are cut and flagged.
const MAX_LINE: usize = 200;

/// `[[module]] kind = "first_line"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FirstLineConfig {
    /// Only connections to these server ports; empty means all.
    #[serde(default)]
    ports: Vec<u16>,
    /// Where records go (standard output by default).
    #[serde(default)]
    output: OutputConfig,
}

impl ModuleConfig for FirstLineConfig {
    fn validate(&self) -> Result<(), String> {
        self.output.validate()
    }

    fn build(&self, _ctx: &ModuleContext) -> Result<Box<dyn Module>, BuildError> {
        Ok(Box::new(FirstLine {
            ports: self.ports.clone(),
            lines: PerFlow::new(),
        }))
    }

    fn sink(&self, ctx: &ModuleContext) -> Result<Box<dyn Sink>, BuildError> {
        let name = SeriesName {
            stem: format!("first_line-shard{}", ctx.shard),
            ext: "json".into(),
            aws_prefix: None,
        };
        Ok(self.output.record_sink(name, Vec::new())?)
    }
}

/// What a connection's client has sent so far: a fixed buffer, so a flow's state is one
/// allocation-free slot, reused from flow to flow.
struct Line {
    bytes: [u8; MAX_LINE],
    len: usize,
    /// Why the line is not whole, if it is not.
    incomplete: Option<&'static str>,
}

struct FirstLine {
    ports: Vec<u16>,
    lines: PerFlow<Line>,
}

impl FirstLine {
    fn emit(flow: &Flow<'_>, line: &Line, out: &mut Emitter<'_>) {
        let text = String::from_utf8_lossy(&line.bytes[..line.len]);
        let (client, server) = (flow.client(), flow.server());
        out.emit_line(|s| {
            write!(
                s,
                "{{\"flow_id\":{},\"community_id\":\"{}\",\"session\":{},\"src_ip\":\"{}\",\
                 \"src_port\":{},\"dest_ip\":\"{}\",\"dest_port\":{},\"line\":{}",
                flow.id(),
                flow.community_id(),
                serde_json::Value::from(flow.session().name.as_str()),
                client.0,
                client.1,
                server.0,
                server.1,
                serde_json::Value::from(text.as_ref()),
            )?;
            if let Some(why) = line.incomplete {
                write!(s, ",\"incomplete\":\"{why}\"")?;
            }
            s.write_char('}')
        });
    }
}

impl Module for FirstLine {
    fn wants_flows(&self) -> bool {
        true
    }

    fn on_flow_start(&mut self, flow: &mut Flow<'_>, _pkt: &Packet<'_>, _out: &mut Emitter<'_>) {
        let port = flow.server().1;
        if flow.key().protocol == 6 && (self.ports.is_empty() || self.ports.contains(&port)) {
            // Asked at the first packet, so the stream starts at the client's first byte.
            flow.want_stream(Dir::ToServer);
        }
    }

    fn on_stream(
        &mut self,
        flow: &mut Flow<'_>,
        dir: Dir,
        chunk: &Chunk<'_>,
        out: &mut Emitter<'_>,
    ) {
        let line = self.lines.get_or_insert_with(flow, || Line {
            bytes: [0; MAX_LINE],
            len: 0,
            incomplete: None,
        });
        let done = match *chunk {
            // A line read across a hole would be made up: say what was missing instead.
            Chunk::Gap { why, .. } => {
                line.incomplete = Some(why.as_str());
                true
            }
            Chunk::Data { bytes, .. } => {
                let end = bytes.iter().position(|&b| b == b'\n');
                let take = end.unwrap_or(bytes.len()).min(MAX_LINE - line.len);
                line.bytes[line.len..line.len + take].copy_from_slice(&bytes[..take]);
                line.len += take;
                if line.len == MAX_LINE && end.is_none_or(|e| e > take) {
                    line.incomplete = Some("too_long");
                }
                end.is_some() || line.len == MAX_LINE
            }
        };
        if done {
            if line.bytes[..line.len].ends_with(b"\r") {
                line.len -= 1;
            }
            if let Some(line) = self.lines.take(flow) {
                Self::emit(flow, &line, out);
            }
            // Nothing more is needed from this direction: its buffers go back to the pool now.
            flow.stop_stream(dir);
        }
    }

    fn on_flow_end(&mut self, flow: &mut Flow<'_>, _reason: EndReason, out: &mut Emitter<'_>) {
        // A client that sent something but never a whole line.
        if let Some(mut line) = self.lines.take(flow) {
            if line.len > 0 {
                line.incomplete.get_or_insert("no_newline");
                Self::emit(flow, &line, out);
            }
        }
    }
}

fn main() -> anyhow::Result<()> {
    vxtap::control::logging::init(Default::default(), "warn");
    let mut registry = Registry::with_builtins();
    registry.register::<FirstLineConfig>("first_line");
    let args: Vec<String> = std::env::args().skip(1).collect();
    let text = "[ingest]\nvxlan = [\"0.0.0.0:4789\", \"[::]:4789\"]\n\n[[module]]\nkind = \"first_line\"\n";
    let config = Config::parse(text, "<first_line example>")?;
    match args.first().map(String::as_str) {
        Some("replay") => {
            let files: Vec<PathBuf> = args[1..].iter().map(PathBuf::from).collect();
            let report = vxtap::ingest::replay::replay(config, registry, &files)?;
            eprintln!("{report}");
        }
        Some(other) => anyhow::bail!("unknown argument {other:?}; use `replay FILE...` or nothing"),
        None => {
            vxtap::control::daemon::run(config, registry)?;
        }
    }
    Ok(())
}
