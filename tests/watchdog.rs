//! A stuck shard makes the node unhealthy and starves the systemd watchdog; when it recovers, both come
//! back. Runs the daemon in-process with a module that blocks on purpose, so this file holds exactly
//! one test (it sets NOTIFY_SOCKET for the whole process and signals itself).

mod common;

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Deserialize;
use vxtap::modules::{BuildError, Emitter, Module, ModuleConfig, ModuleContext};
use vxtap::{Config, Packet, Registry};

static RELEASE: AtomicBool = AtomicBool::new(false);

/// `kind = "stuck"`: blocks its shard on the first packet until the test releases it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StuckConfig {}

struct Stuck;

impl ModuleConfig for StuckConfig {
    fn build(&self, _ctx: &ModuleContext) -> Result<Box<dyn Module>, BuildError> {
        Ok(Box::new(Stuck))
    }
}

impl Module for Stuck {
    fn on_packet(&mut self, _pkt: &Packet<'_>, _out: &mut Emitter<'_>) {
        while !RELEASE.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn healthz(addr: SocketAddr) -> Option<String> {
    common::daemon::http_get(addr, "/healthz").map(|body| body.trim().to_owned())
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Datagrams received within `window`.
fn notifications(sock: &UnixDatagram, window: Duration) -> Vec<String> {
    let deadline = Instant::now() + window;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        sock.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        if let Ok(n) = sock.recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    got
}

#[test]
fn a_stuck_shard_turns_the_node_unhealthy_and_starves_the_watchdog() {
    let tmp = common::temp_dir("vxtap-watchdog-");
    let path = tmp.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    // The only test in this binary, so no other thread reads the environment meanwhile.
    std::env::set_var("NOTIFY_SOCKET", &path);
    std::env::set_var("WATCHDOG_USEC", "200000");
    std::env::remove_var("WATCHDOG_PID");

    let (udp, health, admin) = (free_port(), free_port(), free_port());
    let config = Config::parse(
        &format!(
            "[ingest]\nvxlan = [\"127.0.0.1:{udp}\"]\nworkers = 1\nreceive_buffer_bytes = 0\n\
             [pipeline]\nshards = 1\ntick_ms = 100\n\
             [health]\nlisten = \"127.0.0.1:{health}\"\nstale_after_seconds = 1\n\
             when_unhealthy = \"respond\"\n\
             [admin]\nlisten = \"127.0.0.1:{admin}\"\n\
             [[module]]\nkind = \"stuck\"\n"
        ),
        "watchdog.toml",
    )
    .unwrap();
    let mut registry = Registry::with_builtins();
    registry.register::<StuckConfig>("stuck");
    let daemon = std::thread::spawn(move || vxtap::control::daemon::run(config, registry));
    let health: SocketAddr = format!("127.0.0.1:{health}").parse().unwrap();

    let start = notifications(&sock, Duration::from_millis(1500));
    assert!(start.iter().any(|m| m.starts_with("READY=1")), "{start:?}");
    assert!(start.iter().any(|m| m == "WATCHDOG=1"), "{start:?}");
    assert_eq!(healthz(health).as_deref(), Some("ok"));

    // One packet, and the only shard blocks in the module.
    let mut d = vec![0x08, 0, 0, 0, 0, 0, 5, 0];
    d.extend_from_slice(&[2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x08, 0x06]);
    d.extend_from_slice(&[0u8; 28]); // an ARP body: any frame reaches modules
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .send_to(&d, ("127.0.0.1", udp))
        .unwrap();
    wait_for("503 stalled", Duration::from_secs(5), || {
        healthz(health).as_deref() == Some("stalled")
    });
    let starved = notifications(&sock, Duration::from_millis(300));
    let starved_more = notifications(&sock, Duration::from_millis(1200));
    assert!(
        !starved_more.iter().any(|m| m == "WATCHDOG=1"),
        "the watchdog must starve while a shard is stuck: {starved:?} then {starved_more:?}"
    );

    RELEASE.store(true, Ordering::Relaxed);
    wait_for("healthy again", Duration::from_secs(5), || {
        healthz(health).as_deref() == Some("ok")
    });
    let resumed = notifications(&sock, Duration::from_millis(1000));
    assert!(resumed.iter().any(|m| m == "WATCHDOG=1"), "{resumed:?}");

    // SAFETY: kill(2) on this very process; the daemon's handler takes SIGINT.
    unsafe { libc::kill(libc::getpid(), libc::SIGINT) };
    let report = daemon.join().unwrap().expect("daemon ran");
    assert_eq!((report.counts.received, report.counts.dispatched), (1, 1));
}
