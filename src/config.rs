//! The TOML configuration: its schema, its defaults, and validation with errors that name the file, the
//! line and the key.
//!
//! Every table rejects unknown keys: a misspelt key that silently keeps a default is how a production
//! appliance ends up listening on the wrong port. Module tables are checked by their own module's config
//! type (the module registry resolves them once the pipeline is built), so `check-config` catches
//! their mistakes too. Config sits at the bottom of the layers: it names no other module.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ipnet::IpNet;
use serde::Deserialize;
use thiserror::Error;

/// The configuration a `vxtap run` without `--config` uses (`src/default.toml`): VXLAN on every
/// address, the private-range allowlist, stats and flow records on stdout.
pub const DEFAULT_CONFIG: &str = include_str!("default.toml");

/// A configuration error, with where it was found.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: cannot read: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML, or a key or value is wrong.
    #[error("{origin}:{line}:{column}: {key}{message}")]
    Invalid {
        /// The file name, or `<embedded default>`.
        origin: String,
        /// 1-based line of the offending key or value.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The dotted key path followed by ": ", or empty when the error is not about one key.
        key: String,
        /// What is wrong.
        message: String,
    },
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where mirrored traffic comes in.
    #[serde(default)]
    pub ingest: IngestConfig,
    /// Shards and their queues.
    #[serde(default)]
    pub pipeline: PipelineConfig,
    /// The session table and the source allowlist.
    #[serde(default)]
    pub sessions: SessionsConfig,
    /// Truncation of inner packets before modules see them.
    #[serde(default)]
    pub truncation: TruncationConfig,
    /// The load balancer's health endpoint and the drain on shutdown.
    #[serde(default)]
    pub health: HealthConfig,
    /// The operators' endpoint: metrics, sessions, modules.
    #[serde(default)]
    pub admin: AdminConfig,
    /// The flow layer: connection tracking and TCP reassembly for the modules that ask for flows.
    #[serde(default)]
    pub flow: FlowConfig,
    /// Inspection modules, in the order they see each packet.
    #[serde(default, rename = "module")]
    pub modules: Vec<ModuleTable>,
    /// The text this was parsed from and where it came from, to place errors found later (module
    /// tables are checked by their kinds when the pipeline is built).
    #[serde(skip)]
    pub(crate) source: Arc<ConfigSource>,
}

#[derive(Debug, Default)]
pub(crate) struct ConfigSource {
    pub(crate) origin: String,
    pub(crate) text: String,
}

/// `[ingest]`: listeners and receive tuning.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Addresses to receive VXLAN on; AWS always sends to port 4789.
    pub vxlan: Vec<SocketAddr>,
    /// Addresses to receive GENEVE on, for a Gateway Load Balancer endpoint as mirror target (port 6081).
    /// Empty by default.
    pub geneve: Vec<SocketAddr>,
    /// Receive threads per listen address, each with its own SO_REUSEPORT socket; 0 = one per core.
    pub workers: usize,
    /// SO_RCVBUF in bytes per socket. The kernel caps it at net.core.rmem_max.
    pub receive_buffer_bytes: usize,
    /// Datagrams per recvmmsg call.
    pub batch_size: usize,
    /// Network interfaces to capture from (AF_PACKET), for appliances that see mirrored or SPAN
    /// traffic on a NIC. Empty by default.
    #[serde(rename = "interface")]
    pub interfaces: Vec<InterfaceConfig>,
}

/// `[[ingest.interface]]`: capture every frame on one network interface. Frames carrying VXLAN (UDP
/// 4789) or GENEVE (UDP 6081) are decapsulated as if a listener had received them; every other frame
/// goes to modules as a plain frame in a session named after the interface.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct InterfaceConfig {
    /// The interface name, e.g. `eth1`.
    pub name: String,
    /// The name of the session for plain (unencapsulated) frames; defaults to the interface name.
    pub session: Option<String>,
    /// Put the interface in promiscuous mode, to see traffic not addressed to this host (a SPAN port).
    #[serde(default = "yes")]
    pub promiscuous: bool,
}

fn yes() -> bool {
    true
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            vxlan: vec![
                SocketAddr::from(([0, 0, 0, 0], 4789)),
                SocketAddr::from(([0u16; 8], 4789)),
            ],
            geneve: Vec::new(),
            workers: 0,
            receive_buffer_bytes: 32 << 20,
            batch_size: 64,
            interfaces: Vec::new(),
        }
    }
}

/// `[pipeline]`: how packets reach module instances.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// Module shards (each a thread with its own module instances); 0 = one per core.
    pub shards: usize,
    /// Batches that may wait for each shard from each worker before packets are dropped as
    /// `shard_queue_full`.
    pub queue_batches: usize,
    /// How often modules get a tick, in milliseconds of packet time (or wall time when idle).
    pub tick_ms: u64,
    /// How received packets reach module instances: on the receiving thread itself, steered by the
    /// kernel (`inline`), or handed to shard threads (`handoff`). See [`Dispatch`].
    pub dispatch: Dispatch,
}

/// See [`PipelineConfig::dispatch`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dispatch {
    /// `inline` when `shards` is left at 0 and it can be had (see `Inline`), `handoff` otherwise.
    #[default]
    Auto,
    /// Run-to-completion: each receive worker owns one shard and runs the modules on its own
    /// batches, while a classic BPF program attached to every SO_REUSEPORT group makes the kernel
    /// deliver both directions of a flow to the same socket. Needs Linux >= 4.5, VXLAN listeners only
    /// (no GENEVE, no interface capture) and as many workers per address as shards; when any of that
    /// is missing vxtap says why and hands off instead.
    Inline,
    /// Receive workers steer every packet themselves and hand it to shard threads in batches.
    Handoff,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            shards: 0,
            queue_batches: 64,
            tick_ms: 1000,
            dispatch: Dispatch::Auto,
        }
    }
}

/// `[sessions]`: which sources may send, and what their sessions are called.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionsConfig {
    /// Outer source networks that may send. Anyone can send UDP to 4789, so the default is private
    /// ranges and loopback only.
    pub allow: Vec<IpNet>,
    /// Learn sessions from allowed sources that are not configured below.
    pub learn: bool,
    /// At most this many learned sessions; datagrams for more are dropped as `session_table_full`.
    pub max_learned: usize,
    /// Learned sessions are forgotten after this many seconds without a datagram.
    pub idle_timeout_secs: u64,
    /// Sessions known in advance, with their ENI and labels.
    #[serde(rename = "static")]
    pub static_sessions: Vec<StaticSession>,
    /// Which outer sources a replay of capture files accepts: `any` (the default: replaying a file
    /// is a deliberate act, and reference captures often carry public addresses), or `allowlist`
    /// (`allow` applies as it does on live sockets). Live sockets always apply `allow`.
    pub replay_sources: ReplaySources,
}

/// See [`SessionsConfig::replay_sources`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplaySources {
    /// Every outer source is accepted (learned sessions are still capped by `max_learned`).
    #[default]
    Any,
    /// Only sources in `allow` (and static sessions).
    Allowlist,
}

impl SessionsConfig {
    /// The settings a replay applies: every source is accepted unless `replay_sources =
    /// "allowlist"`.
    pub fn for_replay(&self) -> SessionsConfig {
        let mut s = self.clone();
        if self.replay_sources == ReplaySources::Any {
            s.allow = ["0.0.0.0/0", "::/0"]
                .iter()
                .map(|n| n.parse().expect("the any-address networks are valid CIDRs"))
                .collect();
        }
        s
    }
}

/// The default source allowlist: RFC 1918, CGNAT (RFC 6598), ULA (RFC 4193) and loopback.
pub fn default_allowlist() -> Vec<IpNet> {
    [
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "fc00::/7",
        "::1/128",
    ]
    .iter()
    .map(|s| {
        s.parse()
            .expect("the built-in allowlist entries are valid CIDRs")
    })
    .collect()
}

impl Default for SessionsConfig {
    fn default() -> Self {
        SessionsConfig {
            allow: default_allowlist(),
            learn: true,
            max_learned: 1024,
            idle_timeout_secs: 600,
            static_sessions: Vec::new(),
            replay_sources: ReplaySources::Any,
        }
    }
}

/// `[[sessions.static]]`: one mirror session, keyed by the outer source address and VNI.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StaticSession {
    /// The outer source address: the source ENI's primary IP.
    pub source: IpAddr,
    /// The session's VXLAN network identifier (GWLB delivery keeps the mirror's own VNI).
    pub vni: u32,
    /// The source ENI's id, e.g. `eni-0123456789abcdef0`.
    pub eni: Option<String>,
    /// A name for logs and metrics; defaults to the ENI id, else `source/vni`.
    pub name: Option<String>,
    /// Snap length for this session's inner frames, overriding `[truncation] snaplen`.
    pub truncate: Option<u32>,
    /// AWS account id, for flow records.
    pub account_id: Option<String>,
    /// VPC id, for flow records.
    pub vpc_id: Option<String>,
    /// Subnet id, for flow records.
    pub subnet_id: Option<String>,
    /// Instance id, for flow records.
    pub instance_id: Option<String>,
    /// Region, for flow records.
    pub region: Option<String>,
    /// Availability Zone id, for flow records.
    pub az_id: Option<String>,
    /// The ENI's security group ids (`sg-…`). Nothing on the wire names them, so a module that
    /// holds traffic against security groups (accessscope's `ResourceStatement`) learns them here.
    #[serde(default)]
    pub security_groups: Vec<String>,
    /// The ENI's own addresses, so that records can say whether traffic was ingress or egress; the
    /// outer source address is always taken as one of them.
    #[serde(default)]
    pub addresses: Vec<IpAddr>,
    /// Free-form labels, copied to records and metrics.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// `[health]`: what the NLB health check sees, and how long a stopping node keeps receiving.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    /// Where `GET /healthz` (and a plain TCP check) is served. Point the target group's health check
    /// port here: a UDP target group cannot be checked on 4789 itself.
    pub listen: SocketAddr,
    /// Seconds a stopping node (SIGTERM) keeps receiving and processing while reporting unhealthy, so the
    /// NLB stops sending before ingest ends. See docs/operations.md for pairing it with the
    /// deregistration delay.
    pub drain_seconds: u64,
    /// A receive worker or shard with no sign of life for this long makes the node unhealthy.
    pub stale_after_seconds: u64,
    /// What the health port does while the node is unhealthy: `close` stops listening, so both TCP and
    /// HTTP checks fail; `respond` keeps listening and answers 503 with the reason.
    pub when_unhealthy: UnhealthyMode,
}

/// See [`HealthConfig::when_unhealthy`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnhealthyMode {
    /// Close the listening socket: connection attempts are refused.
    Close,
    /// Keep listening and answer `503` with a one-word reason.
    Respond,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            drain_seconds: 30,
            stale_after_seconds: 5,
            when_unhealthy: UnhealthyMode::Close,
        }
    }
}

/// `[admin]`: metrics and state for operators. It shows session names, ENIs and labels, so it listens
/// on loopback by default.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Where `/metrics`, `/sessions`, `/modules` and `/healthz` are served.
    pub listen: SocketAddr,
    /// Learned sessions that get their own metric series (the busiest ones); configured sessions
    /// always do. Keeps the series count bounded when many sources appear.
    pub max_learned_session_series: usize,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 9090)),
            max_learned_session_series: 64,
        }
    }
}

/// `[flow]`: the per-shard flow table that flow-aware modules share (see docs/configuration.md). A
/// shard keeps one only when at least one of its modules asks for flows; every number here is per
/// shard. Timeouts are in seconds of packet time, in line with Suricata's shipped configuration
/// and Zeek's defaults.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FlowConfig {
    /// Flows a shard tracks at once. When full, the flow nearest its idle timeout is ended (reason
    /// `evicted`, counted) to make room.
    pub max_flows: usize,
    /// A TCP connection whose handshake has not completed (SYN or SYN-ACK only).
    pub tcp_new_timeout_secs: u64,
    /// An established TCP connection, and one closing with a FIN one way.
    pub tcp_established_timeout_secs: u64,
    /// After FIN both ways or a RST: long enough for retransmissions and the last ACK.
    pub tcp_closed_timeout_secs: u64,
    /// UDP.
    pub udp_timeout_secs: u64,
    /// ICMP and ICMPv6.
    pub icmp_timeout_secs: u64,
    /// Any other IP protocol.
    pub other_timeout_secs: u64,
    /// Memory for out-of-order TCP segments, all flows of a shard together.
    pub reassembly_memcap_bytes: usize,
    /// Out-of-order bytes one direction of one connection may hold before it gives up on a hole.
    pub stream_buffer_bytes: u32,
}

impl Default for FlowConfig {
    fn default() -> Self {
        FlowConfig {
            max_flows: 262_144,
            tcp_new_timeout_secs: 60,
            // Suricata's shipped suricata.yaml (Zeek: 300 s). An idle connection that resumes
            // later is picked up mid-stream, its orientation guessed; holding every idle one for
            // an hour held most of the table for nothing.
            tcp_established_timeout_secs: 600,
            tcp_closed_timeout_secs: 30,
            udp_timeout_secs: 60,
            icmp_timeout_secs: 30,
            other_timeout_secs: 60,
            reassembly_memcap_bytes: 64 << 20,
            stream_buffer_bytes: 64 << 10,
        }
    }
}

/// `[truncation]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TruncationConfig {
    /// Bytes of each inner frame to keep (0 = all). The original length is still given to modules.
    pub snaplen: u32,
}

/// One `[[module]]` table: its `kind` and the rest, which the module's own config type checks.
#[derive(Debug, Clone)]
pub struct ModuleTable {
    /// The registered module kind.
    pub kind: String,
    /// The remaining keys.
    pub table: toml::Table,
    /// Byte span of the table in the file, for error messages.
    pub span: std::ops::Range<usize>,
}

impl<'de> Deserialize<'de> for ModuleTable {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let spanned = toml::Spanned::<toml::Table>::deserialize(d)?;
        let span = spanned.span();
        let mut table = spanned.into_inner();
        let kind = match table.remove("kind") {
            Some(toml::Value::String(kind)) => kind,
            Some(_) => return Err(D::Error::custom("`kind` must be a string")),
            None => return Err(D::Error::custom("missing `kind` (e.g. kind = \"stats\")")),
        };
        Ok(ModuleTable { kind, table, span })
    }
}

impl Config {
    /// Parses a configuration; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let de = toml::Deserializer::parse(text).map_err(|e| invalid(text, origin, "", &e))?;
        let mut config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            invalid(text, origin, if key == "." { "" } else { &key }, e.inner())
        })?;
        config.validate(text, origin)?;
        config.source = Arc::new(ConfigSource {
            origin: origin.to_owned(),
            text: text.to_owned(),
        });
        Ok(config)
    }

    /// Reads and parses a file.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(&text, &path.display().to_string())
    }

    /// The embedded default.
    pub fn embedded_default() -> Config {
        Config::parse(DEFAULT_CONFIG, "<embedded default>")
            .expect("the embedded default config is valid (tested)")
    }

    fn validate(&self, text: &str, origin: &str) -> Result<(), ConfigError> {
        let fail = |key: &str, message: String| {
            let line = find_key_line(text, key.rsplit('.').next().unwrap_or(key));
            Err(ConfigError::Invalid {
                origin: origin.into(),
                line,
                column: 1,
                key: format!("{key}: "),
                message,
            })
        };
        if self.ingest.vxlan.is_empty()
            && self.ingest.geneve.is_empty()
            && self.ingest.interfaces.is_empty()
        {
            return fail(
                "ingest.vxlan",
                "no listen address: give at least one VXLAN or GENEVE address or an interface"
                    .into(),
            );
        }
        if self.ingest.batch_size == 0 || self.ingest.batch_size > 1024 {
            return fail(
                "ingest.batch_size",
                format!("{} is out of range 1..=1024", self.ingest.batch_size),
            );
        }
        if self.pipeline.queue_batches == 0 {
            return fail("pipeline.queue_batches", "must be at least 1".into());
        }
        if self.health.stale_after_seconds == 0 {
            return fail("health.stale_after_seconds", "must be at least 1".into());
        }
        if self.health.drain_seconds > 3600 {
            return fail(
                "health.drain_seconds",
                format!(
                    "{} is out of range 0..=3600 (the NLB's longest deregistration delay)",
                    self.health.drain_seconds
                ),
            );
        }
        if self.flow.max_flows == 0 || self.flow.max_flows > 1 << 26 {
            return fail(
                "flow.max_flows",
                format!("{} is out of range 1..=67108864", self.flow.max_flows),
            );
        }
        let f = &self.flow;
        for (key, secs) in [
            ("flow.tcp_new_timeout_secs", f.tcp_new_timeout_secs),
            (
                "flow.tcp_established_timeout_secs",
                f.tcp_established_timeout_secs,
            ),
            ("flow.tcp_closed_timeout_secs", f.tcp_closed_timeout_secs),
            ("flow.udp_timeout_secs", f.udp_timeout_secs),
            ("flow.icmp_timeout_secs", f.icmp_timeout_secs),
            ("flow.other_timeout_secs", f.other_timeout_secs),
        ] {
            if secs == 0 || secs > 86_400 {
                return fail(key, format!("{secs} is out of range 1..=86400"));
            }
        }
        if self.pipeline.tick_ms == 0 {
            return fail("pipeline.tick_ms", "must be at least 1".into());
        }
        let mut seen = std::collections::HashSet::new();
        for s in &self.sessions.static_sessions {
            if s.vni > 0x00ff_ffff {
                return fail(
                    "sessions.static.vni",
                    format!("{} does not fit in 24 bits", s.vni),
                );
            }
            if !seen.insert((s.source, s.vni)) {
                return fail(
                    "sessions.static.source",
                    format!("session {}/{} is configured twice", s.source, s.vni),
                );
            }
        }
        Ok(())
    }
}

/// Best-effort line of the first `key =` in the file, for errors found after parsing.
fn find_key_line(text: &str, key: &str) -> usize {
    text.lines()
        .position(|l| {
            l.trim_start()
                .strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        })
        .map_or(1, |i| i + 1)
}

fn invalid(text: &str, origin: &str, key: &str, e: &toml::de::Error) -> ConfigError {
    let (line, column) = e.span().map_or((1, 1), |span| line_col(text, span.start));
    ConfigError::Invalid {
        origin: origin.into(),
        line,
        column,
        key: if key.is_empty() {
            String::new()
        } else {
            format!("{key}: ")
        },
        message: e.message().trim().to_string(),
    }
}

/// 1-based line and column of a byte offset.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rfind('\n')
        .map_or(before.len(), |nl| before.len() - nl - 1)
        + 1;
    (line, column)
}

/// Builds the error for a module table whose own config type refused it.
pub(crate) fn module_error(
    source: &ConfigSource,
    table: &ModuleTable,
    key: &str,
    message: String,
) -> ConfigError {
    let (line, column) = line_col(&source.text, table.span.start);
    ConfigError::Invalid {
        origin: source.origin.clone(),
        line,
        column,
        key: if key.is_empty() {
            format!("module {:?}: ", table.kind)
        } else {
            format!("module {:?}: {key}: ", table.kind)
        },
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_parses() {
        let c = Config::embedded_default();
        assert_eq!(c.ingest.vxlan.len(), 2);
        assert!(c.ingest.geneve.is_empty());
        assert_eq!(c.sessions.allow, default_allowlist());
        assert_eq!(
            c.modules
                .iter()
                .map(|m| m.kind.as_str())
                .collect::<Vec<_>>(),
            ["stats", "flowlog"]
        );
    }

    #[test]
    fn unknown_key_names_line_and_key() {
        let text = "[ingest]\nworkers = 2\nreceive_bufer = 5\n";
        let err = Config::parse(text, "a.toml").unwrap_err().to_string();
        assert!(
            err.starts_with("a.toml:3:1: ingest.receive_bufer: unknown field `receive_bufer`"),
            "{err}"
        );
    }

    #[test]
    fn wrong_type_names_line_and_key() {
        let text = "[sessions]\nmax_learned = \"many\"\n";
        let err = Config::parse(text, "b.toml").unwrap_err().to_string();
        assert!(
            err.starts_with("b.toml:2:15: sessions.max_learned: "),
            "{err}"
        );
    }

    #[test]
    fn static_session_vni_range() {
        let text = "[[sessions.static]]\nsource = \"10.0.0.1\"\nvni = 16777216\n";
        let err = Config::parse(text, "c.toml").unwrap_err().to_string();
        assert!(
            err.contains("c.toml:3:1: sessions.static.vni: 16777216 does not fit"),
            "{err}"
        );
    }

    #[test]
    fn dispatch_values() {
        assert_eq!(Config::embedded_default().pipeline.dispatch, Dispatch::Auto);
        for (text, want) in [("inline", Dispatch::Inline), ("handoff", Dispatch::Handoff)] {
            let c = Config::parse(&format!("[pipeline]\ndispatch = \"{text}\"\n"), "e.toml");
            assert_eq!(c.unwrap().pipeline.dispatch, want);
        }
        let err = Config::parse("[pipeline]\ndispatch = \"threads\"\n", "e.toml")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("e.toml:2:12: pipeline.dispatch: "), "{err}");
    }

    #[test]
    fn module_without_kind() {
        let err = Config::parse("[[module]]\ninterval_secs = 3\n", "d.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing `kind`"), "{err}");
    }
}
