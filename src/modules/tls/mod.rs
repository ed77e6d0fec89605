//! TLS inspection (`[[module]] kind = "tls"`): one EVE-shaped record per TLS handshake, with the
//! server name, versions, ciphers, ALPN, the client's JA4 and, for TLS ≤ 1.2, the server's
//! certificate (docs/modules/tls.md).
//!
//! Suricata's split, as for every application-layer module here: [`parser`] reads TLS records and
//! handshake messages from borrowed bytes and keeps no state; [`ja4`] turns a parsed ClientHello into
//! its JA4 fingerprint; [`cert`] reads the X.509 certificates a TLS ≤ 1.2 server sends in clear;
//! [`state`] follows one connection's two reassembled directions to the end of the handshake;
//! [`record`] writes the record.
//!
//! TLS is found by content on every TCP port, so the module asks for both streams of every TCP flow
//! at its start (free until bytes come) and stops them as soon as the client's first bytes are not
//! TLS, or once the handshake is read: reassembly then costs nothing more for that flow, and the
//! flow's state is given back at once (its place, and the handshake buffers, to pools the next
//! connections take from).

pub mod cert;
pub mod ja4;
pub mod parser;
pub mod record;
pub mod state;

use serde::Deserialize;

use self::state::{Conn, Memory, Tally, Verdict};
use crate::base::Packet;
use crate::flow::{Chunk, Dir, EndReason, Flow, PerFlow};
use crate::modules::{BuildError, Emitter, Module, ModuleConfig, ModuleContext};
use crate::sinks::{OutputConfig, SeriesName, Sink};

/// Default for [`TlsConfig::memory_bytes`].
const DEFAULT_MEMORY_BYTES: usize = 64 << 20;

fn default_memory_bytes() -> usize {
    DEFAULT_MEMORY_BYTES
}

/// `[[module]] kind = "tls"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Handshake buffer memory one shard's instance may hold at once, across its connections
    /// (each direction holds at most 32 KiB, and only between its first TLS byte and the end of
    /// its handshake). A handshake that finds the budget spent is recorded flagged
    /// `client_buffer_full` / `server_buffer_full` and counted as a drop.
    #[serde(default = "default_memory_bytes")]
    pub memory_bytes: usize,
    /// Where records go (standard output by default).
    #[serde(default)]
    pub output: OutputConfig,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            memory_bytes: DEFAULT_MEMORY_BYTES,
            output: OutputConfig::default(),
        }
    }
}

impl ModuleConfig for TlsConfig {
    fn validate(&self) -> Result<(), String> {
        if self.memory_bytes < 2 * state::BUFFER_BYTES {
            return Err(format!(
                "memory_bytes: {} is less than one connection's buffers ({} bytes)",
                self.memory_bytes,
                2 * state::BUFFER_BYTES
            ));
        }
        self.output.validate()
    }

    fn build(&self, _ctx: &ModuleContext) -> Result<Box<dyn Module>, BuildError> {
        Ok(Box::new(Tls {
            conns: PerFlow::new(),
            memory: Memory::new(self.memory_bytes),
        }))
    }

    fn sink(&self, ctx: &ModuleContext) -> Result<Box<dyn Sink>, BuildError> {
        let name = SeriesName {
            stem: format!("tls-shard{}", ctx.shard),
            ext: "json".into(),
            aws_prefix: None,
        };
        Ok(self.output.record_sink(name, Vec::new())?)
    }
}

/// One shard's TLS module.
struct Tls {
    conns: PerFlow<Conn>,
    memory: Memory,
}

impl Tls {
    fn emit(flow: &Flow<'_>, conn: &Conn, out: &mut Emitter<'_>) {
        let Some(hs) = conn.handshake() else {
            return;
        };
        let ts = flow.last_seen();
        out.keyed(&flow.session().name).emit_line(|s| {
            record::write(s, ts, flow, hs);
            Ok(())
        });
    }
}

fn count(tally: Tally, out: &mut Emitter<'_>) {
    if tally.malformed > 0 {
        out.malformed(tally.malformed);
    }
    if tally.gaps > 0 {
        out.gaps(tally.gaps);
    }
    if tally.dropped > 0 {
        out.dropped(tally.dropped);
    }
}

impl Module for Tls {
    fn wants_flows(&self) -> bool {
        true
    }

    fn wants_packets(&self) -> bool {
        false
    }

    /// Streams only: the bytes come through `on_stream`.
    fn wants_flow_packets(&self) -> bool {
        false
    }

    fn on_flow_start(&mut self, flow: &mut Flow<'_>, _pkt: &Packet<'_>, _out: &mut Emitter<'_>) {
        if flow.key().protocol == 6 {
            // Both from the first byte: the client's to probe and read the ClientHello, the
            // server's for the ServerHello and certificate.
            flow.want_stream(Dir::ToServer);
            flow.want_stream(Dir::ToClient);
        }
    }

    fn on_stream(
        &mut self,
        flow: &mut Flow<'_>,
        dir: Dir,
        chunk: &Chunk<'_>,
        out: &mut Emitter<'_>,
    ) {
        let conn = self.conns.get_or_insert_with(flow, Conn::new);
        let mut tally = Tally::default();
        let verdict = conn.on_chunk(dir, chunk, &mut self.memory, &mut tally);
        count(tally, out);
        match verdict {
            Verdict::Pending => return,
            Verdict::NotTls => {}
            Verdict::Complete => {
                Self::emit(flow, conn, out);
                conn.finish(&mut self.memory);
            }
        }
        // Decided: both streams stop, so no chunk of this flow comes here again, and the state
        // goes back now rather than at the flow's end. The module then holds state only for
        // connections in their handshake, not for every live TCP flow (most of which are idle
        // long after their handshake, and many never TLS).
        flow.stop_stream(Dir::ToServer);
        flow.stop_stream(Dir::ToClient);
        self.conns.take(flow);
    }

    fn on_flow_end(&mut self, flow: &mut Flow<'_>, _reason: EndReason, out: &mut Emitter<'_>) {
        if let Some(mut conn) = self.conns.take(flow) {
            if conn.end(&mut self.memory) {
                Self::emit(flow, &conn, out);
            }
            // The summary, written or not, back to the pool.
            conn.finish(&mut self.memory);
        }
    }
}
