//! vxtap receives AWS VPC Traffic Mirroring (VXLAN on UDP 4789, or GENEVE from a Gateway Load
//! Balancer), ties each packet to its mirror session, and dispatches the inner frames to inspection
//! modules, with both directions of every flow reaching the same module instance.
//!
//! The library is the whole product; the `vxtap` binary is a thin front end. To add a module kind of
//! your own, implement [`modules::ModuleConfig`] and [`modules::Module`], register it in a
//! [`modules::Registry`], and run the pipeline from your own `main` (see `examples/custom_module.rs`):
//!
//! ```no_run
//! use vxtap::{config::Config, modules::Registry};
//! let mut registry = Registry::with_builtins();
//! // registry.register::<MyModuleConfig>("my_module");
//! let report = vxtap::control::daemon::run(Config::embedded_default(), registry)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![warn(missing_docs, unreachable_pub)]

pub mod base;
pub mod config;
pub mod control;
pub mod flow;
pub mod ingest;
pub mod modules;
pub mod pipeline;
pub mod send;
pub mod session;
pub mod sinks;
pub mod wire;

pub use base::{Packet, Session, Timestamp};
pub use config::Config;
pub use modules::{Emitter, Module, ModuleConfig, ModuleContext, Registry};
pub use pipeline::Pipeline;
