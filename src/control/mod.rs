//! The control plane: everything that is not the packet path. It runs on a small tokio runtime on the
//! main thread, apart from the receive workers and shards, and only ever reads their counters.

pub mod admin;
pub mod daemon;
pub mod health;
mod http;
pub mod logging;
mod metrics;
mod reload;
mod signals;
pub mod systemd;
