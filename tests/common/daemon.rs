//! A `vxtap run` process for tests that talk to it from outside, as an operator's tools would: its
//! JSON log read line by line on a thread, the addresses it bound (port 0 in the test's config) taken
//! from that log, its admin endpoint asked over real HTTP, and the process killed when the test ends
//! however it ends.

use std::io::{BufRead, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

/// A running `vxtap --log-format json run`, killed on drop.
pub struct Daemon {
    child: Child,
    /// The admin endpoint (`/metrics`, `/status`) the process logged.
    pub admin: SocketAddr,
    /// The first VXLAN listener it logged, when the test asked for one.
    pub vxlan: Option<SocketAddr>,
    /// Log lines not yet read.
    pub log: Receiver<String>,
}

impl Daemon {
    /// Starts vxtap on `config` with `env` added (and no systemd socket inherited from the test's
    /// environment), and waits at most `limit` until it has logged its admin address and, with
    /// `want_vxlan`, a VXLAN listener's.
    pub fn start(config: &Path, env: &[(&str, &str)], want_vxlan: bool, limit: Duration) -> Daemon {
        let mut command = Command::new(env!("CARGO_BIN_EXE_vxtap"));
        command
            .args(["--log-format", "json", "run", "--config"])
            .arg(config)
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("the vxtap binary starts");
        let stderr = child.stderr.take().expect("stderr is piped");
        let (tx, log) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // Built before the wait so that a failed wait still kills the process.
        let mut daemon = Daemon {
            child,
            admin: SocketAddr::from(([0, 0, 0, 0], 0)),
            vxlan: None,
            log,
        };
        let (mut admin, mut vxlan) = (None, None);
        let deadline = Instant::now() + limit;
        while admin.is_none() || (want_vxlan && vxlan.is_none()) {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = daemon
                .log
                .recv_timeout(left)
                .expect("vxtap logs the addresses it listens on");
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            let addr = v["addr"]
                .as_str()
                .and_then(|a| a.parse::<SocketAddr>().ok());
            if line.contains("Admin endpoint listening.") {
                admin = addr;
            } else if line.contains("\"Listening.\"") && line.contains("Vxlan") && vxlan.is_none() {
                vxlan = addr;
            }
        }
        daemon.admin = admin.expect("an admin address");
        daemon.vxlan = vxlan;
        daemon
    }

    /// The VXLAN listener's address; panics if the test did not ask for it at start.
    pub fn vxlan(&self) -> SocketAddr {
        self.vxlan.expect("started with want_vxlan")
    }

    /// The body of `GET path` on the admin endpoint, or `None` if it could not be had.
    pub fn get(&self, path: &str) -> Option<String> {
        http_get(self.admin, path)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The body of a plain HTTP/1.1 `GET`, bounded in time, or `None` on any failure.
pub fn http_get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    s.read_to_string(&mut response).ok()?;
    response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())
}

/// The value of the first sample of `name` whose labels contain `label`, in a Prometheus text body.
pub fn metric(body: &str, name: &str, label: &str) -> Option<u64> {
    let prefix = format!("{name}{{");
    body.lines()
        .filter(|l| l.starts_with(&prefix) && l.contains(label))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

/// Polls `done` every 50 ms until it holds; fails the test after `limit`.
pub fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
