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
    /// and key of the first problem if not.
    CheckConfig {
        /// The TOML configuration file.
        file: PathBuf,
    },
    /// Print the embedded default configuration.
    DefaultConfig,
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
            vxtap::control::daemon::run_with(config, Registry::with_builtins(), options)?;
            Ok(())
        }
        Command::CheckConfig { file } => {
            let config = Config::from_file(&file)?;
            let modules = Registry::with_builtins().resolve(&config)?;
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
    }
}

fn load(path: Option<&std::path::Path>) -> anyhow::Result<Config> {
    match path {
        Some(p) => Config::from_file(p).with_context(|| "invalid configuration".to_string()),
        None => Ok(Config::embedded_default()),
    }
}
