//! The `vxtap` command line: a thin front end over the library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use vxtap::config::Config;
use vxtap::control::logging::{self, LogFormat};
use vxtap::modules::Registry;

/// Receive AWS VPC Traffic Mirroring (VXLAN/GENEVE) and feed the mirrored packets to inspection modules.
#[derive(Debug, Parser)]
#[command(name = "vxtap", version, about, long_about = None, propagate_version = true)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true, env = "VXTAP_LOG_FORMAT")]
    log_format: LogFormat,
    /// Log level (error, warn, info, debug, trace); RUST_LOG overrides it.
    #[arg(long, default_value = "info", global = true, env = "VXTAP_LOG_LEVEL")]
    log_level: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Listen for mirrored traffic and run the configured modules until SIGINT or SIGTERM.
    ///
    /// SIGTERM drains: the health endpoint turns unhealthy at once while packets are still received for
    /// [health] drain_seconds; then modules flush and vxtap exits 0. SIGINT (or a second SIGTERM) stops
    /// without waiting. SIGHUP reloads the config file.
    ///
    /// Without --config, the embedded default is used: VXLAN on 0.0.0.0:4789 and [::]:4789, one worker
    /// per core, private-range sources only, per-session statistics logged every 10 seconds, and VPC
    /// Flow Logs records on standard output.
    Run {
        /// The TOML configuration file (see docs/configuration.md).
        #[arg(short, long, env = "VXTAP_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Check a configuration file, modules included, and exit: 0 if it is valid, 1 with the file, line
    /// and key of the first problem if not. A valid file's notices (what a module will treat
    /// otherwise than its author may expect) are printed first, one line each.
    CheckConfig {
        /// The TOML configuration file.
        file: PathBuf,
    },
    /// Print the embedded default configuration.
    DefaultConfig,
    /// Run capture files (pcap or pcapng) through the configured modules on packet time, then flush
    /// them and print a summary on stderr.
    ///
    /// UDP datagrams to 4789 (VXLAN) and 6081 (GENEVE) are decapsulated as a live run would; other
    /// frames form one session per file, named after it. Module records go to stdout as configured.
    Replay {
        /// Capture files, replayed in order; `-` reads one from standard input.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// The TOML configuration file (sessions, modules); listener settings are ignored.
        #[arg(short, long, env = "VXTAP_CONFIG")]
        config: Option<PathBuf>,
        /// Module shards; by default the config's `[pipeline] shards` (0 there, the default, is one
        /// per core). Records are merged in the order of the input, so the output is the same
        /// whatever the number of shards.
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
        shards: Option<u16>,
    },
    /// Send capture files to a receiver as AWS Traffic Mirroring would: plain frames wrapped in VXLAN,
    /// VXLAN datagrams as captured, GENEVE from a GWLB unwrapped to the mirror's VXLAN.
    ///
    /// Paced as captured by default. Counts and rate are printed on stderr at the end, and a progress
    /// line every second on long sends.
    Send {
        /// Capture files (pcap or pcapng), sent in order.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Where to send: HOST:PORT of a vxtap (or any VXLAN receiver), e.g. 127.0.0.1:4789.
        #[arg(long, value_name = "HOST:PORT")]
        to: String,
        /// VNI for plain frames (AWS: the session's VirtualNetworkId).
        #[arg(long, default_value_t = 1)]
        vni: u32,
        /// Send everything from this one UDP source port. Without it, each flow leaves from one of
        /// --source-ports sockets chosen by a symmetric hash of its 5-tuple, as AWS does.
        #[arg(long, conflicts_with = "source_ports")]
        source_port: Option<u16>,
        /// How many source ports (sockets) flows are spread over.
        #[arg(long, default_value_t = 64)]
        source_ports: usize,
        /// Pace: the captured timing divided by this factor (2 = twice as fast).
        #[arg(long, default_value_t = 1.0, conflicts_with_all = ["pps", "top_speed"])]
        speed: f64,
        /// Pace: a fixed number of datagrams per second.
        #[arg(long, conflicts_with = "top_speed")]
        pps: Option<u64>,
        /// Pace: as fast as the kernel takes them.
        #[arg(long)]
        top_speed: bool,
        /// Send the files this many times.
        #[arg(long = "loop", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
        loops: u32,
        /// Datagrams per sendmmsg call.
        #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=1024))]
        batch: u16,
    },
}

/// How long `run` and `replay` wait at exit for S3 outputs to send the files they closed last, and
/// for Kafka outputs to deliver what the last flush handed over.
const OUTPUTS_AT_EXIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Waits for S3 and Kafka outputs at once, each bounded by [`OUTPUTS_AT_EXIT`], so that a stop with
/// both waits one bound and not their sum (a systemd stop timeout or an ASG lifecycle hook has
/// to cover it). Returns one line per Kafka output, `kafka TOPIC: N delivered, M dropped (...)`,
/// for the replay's summary and the exit log.
fn finish_outputs() -> Vec<String> {
    let kafka = std::thread::scope(|scope| {
        scope.spawn(|| {
            if !vxtap::sinks::finish_uploads(OUTPUTS_AT_EXIT) {
                tracing::warn!(
                    message = "Not every closed file reached S3 before exit; the rest stays in the spool for the next start."
                );
            }
        });
        vxtap::sinks::finish_kafka(OUTPUTS_AT_EXIT)
    });
    kafka
        .into_iter()
        .map(|k| {
            let c = k.counts;
            format!(
                "kafka {}: {} delivered, {} dropped ({} buffer full, {} rejected, {} undelivered at exit), {} failed attempts",
                k.topic,
                c.delivered,
                c.dropped(),
                c.dropped_full,
                c.rejected,
                c.undelivered,
                c.errors
            )
        })
        .collect()
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.log_format, &cli.log_level);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vxtap: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Run { config } => {
            let options = vxtap::control::daemon::DaemonOptions {
                config_path: config.clone(),
            };
            let config = load(config.as_deref())?;
            let result =
                vxtap::control::daemon::run_with(config, Registry::with_builtins(), options);
            // Files the drain closed; what does not go up in time stays spooled for the next start.
            for line in finish_outputs() {
                tracing::info!(message = "Kafka output finished.", summary = %line);
            }
            result?;
            Ok(())
        }
        Command::CheckConfig { file } => {
            let config = Config::from_file(&file)?;
            let modules = Registry::with_builtins().resolve(&config)?;
            for m in &modules {
                for notice in m.factory.notices() {
                    println!("notice: module {} ({}): {notice}", m.index, m.kind);
                }
            }
            println!(
                "{}: ok ({} listener(s), {} static session(s), {} module(s))",
                file.display(),
                config.ingest.vxlan.len() + config.ingest.geneve.len(),
                config.sessions.static_sessions.len(),
                modules.len()
            );
            Ok(())
        }
        Command::DefaultConfig => {
            print!("{}", vxtap::config::DEFAULT_CONFIG);
            Ok(())
        }
        Command::Replay {
            files,
            config,
            shards,
        } => {
            let mut config = load(config.as_deref())?;
            if let Some(shards) = shards {
                config.pipeline.shards = usize::from(shards);
            }
            let report = vxtap::ingest::replay::replay(config, Registry::with_builtins(), &files)?;
            let kafka = finish_outputs();
            eprint!("{report}");
            for line in kafka {
                eprintln!("{line}");
            }
            anyhow::ensure!(
                report.complete(),
                "not every capture could be read to its end"
            );
            Ok(())
        }
        Command::Send {
            files,
            to,
            vni,
            source_port,
            source_ports,
            speed,
            pps,
            top_speed,
            loops,
            batch,
        } => {
            use vxtap::send::{self, SendOptions, SourcePorts, Timing};
            let options = SendOptions {
                to: send::resolve(&to)?,
                vni,
                source_ports: source_port
                    .map_or(SourcePorts::Pool(source_ports), SourcePorts::Fixed),
                timing: match (top_speed, pps) {
                    (true, _) => Timing::TopSpeed,
                    (false, Some(n)) => Timing::Rate(n),
                    (false, None) => Timing::Speed(speed),
                },
                loops,
                batch: usize::from(batch),
            };
            let report = send::send(&files, &options, |r| {
                eprintln!(
                    "sending: {} datagrams, {:.0}/s",
                    r.datagrams,
                    r.datagrams as f64 / r.elapsed.as_secs_f64().max(1e-9)
                )
            })?;
            eprintln!("{report}");
            Ok(())
        }
    }
}

fn load(path: Option<&std::path::Path>) -> anyhow::Result<Config> {
    match path {
        Some(p) => Config::from_file(p).with_context(|| "invalid configuration".to_string()),
        None => Ok(Config::embedded_default()),
    }
}
