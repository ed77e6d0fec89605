//! The control plane against a running `vxtap run`: real HTTP on loopback, real signals, a real
//! NOTIFY_SOCKET, promtool reading /metrics.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A scratch directory removed on drop.
fn temp_dir(tag: &str) -> tempfile::TempDir {
    common::temp_dir(&format!("vxtap-control-{tag}-"))
}

/// Every test config listens on loopback with kernel-chosen ports, so tests run in parallel.
const BASE: &str = r#"
[ingest]
vxlan = ["127.0.0.1:0"]
workers = 2
receive_buffer_bytes = 0

[pipeline]
shards = 2
tick_ms = 200

[admin]
listen = "127.0.0.1:0"

[[module]]
kind = "stats"
interval_secs = 1
"#;

/// BASE with run-to-completion dispatch: each receive worker runs its own shard's modules, steered by
/// the kernel.
fn inline_base() -> String {
    BASE.replace("shards = 2\n", "shards = 2\ndispatch = \"inline\"\n")
}

/// A running vxtap with its log lines (JSON) and the addresses it bound.
struct Daemon {
    child: Child,
    logs: Arc<Mutex<Vec<Value>>>,
    lines: Receiver<Value>,
    udp: SocketAddr,
    health: SocketAddr,
    admin: SocketAddr,
    config: PathBuf,
    stdout: PathBuf,
    /// Removed after [`Daemon`]'s drop has killed and reaped the child.
    _dir: tempfile::TempDir,
}

impl Daemon {
    fn start(tag: &str, health: &str, extra: &str, env: &[(&str, &str)]) -> Daemon {
        Daemon::start_from(BASE, tag, health, extra, env)
    }

    fn start_from(
        base: &str,
        tag: &str,
        health: &str,
        extra: &str,
        env: &[(&str, &str)],
    ) -> Daemon {
        let dir = temp_dir(tag);
        let config = dir.path().join("vxtap.toml");
        std::fs::write(&config, format!("{base}\n[health]\n{health}\n{extra}")).unwrap();
        let stdout = dir.path().join("stdout");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_vxtap"));
        cmd.args([
            "--log-format",
            "json",
            "--log-level",
            "info",
            "run",
            "--config",
        ])
        .arg(&config)
        .env_remove("RUST_LOG")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .env_remove("WATCHDOG_PID")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout).unwrap())
        .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("vxtap starts");
        let stderr = child.stderr.take().unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, lines) = mpsc::channel();
        let all = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let v: Value =
                    serde_json::from_str(&line).unwrap_or_else(|_| Value::String(line.clone()));
                all.lock().unwrap().push(v.clone());
                let _ = tx.send(v);
            }
        });
        let mut d = Daemon {
            child,
            logs,
            lines,
            udp: "0.0.0.0:0".parse().unwrap(),
            health: "0.0.0.0:0".parse().unwrap(),
            admin: "0.0.0.0:0".parse().unwrap(),
            config,
            stdout,
            _dir: dir,
        };
        let addr = |v: &Value| v["addr"].as_str().unwrap().parse::<SocketAddr>().unwrap();
        loop {
            let v = d.next_line(Duration::from_secs(20));
            match v["message"].as_str() {
                Some("Listening.") => d.udp = addr(&v),
                Some("Health endpoint listening.") => d.health = addr(&v),
                Some("Admin endpoint listening.") => d.admin = addr(&v),
                Some("vxtap is running.") => break,
                _ => {}
            }
        }
        d
    }

    fn next_line(&self, timeout: Duration) -> Value {
        match self.lines.recv_timeout(timeout) {
            Ok(v) => v,
            Err(_) => panic!(
                "no log line within {timeout:?}; so far: {:#?}",
                self.logs.lock().unwrap()
            ),
        }
    }

    /// Waits for a log line with this message and returns it.
    fn wait_log(&self, message: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let v = self.next_line(left.max(Duration::from_millis(1)));
            if v["message"] == message {
                return v;
            }
        }
    }

    fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill(2) on our own child's pid.
        assert_eq!(
            unsafe { libc::kill(self.child.id() as libc::pid_t, sig) },
            0
        );
    }

    fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "vxtap did not exit within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn metric(&self, name: &str) -> u64 {
        let (status, body) = get(self.admin, "/metrics").expect("admin endpoint answers");
        assert_eq!(status, 200);
        body.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no sample {name} in:\n{body}"))
    }

    fn sessions(&self) -> Vec<Value> {
        let (status, body) = get(self.admin, "/sessions").unwrap();
        assert_eq!(status, 200);
        serde_json::from_str::<Value>(&body)
            .unwrap()
            .as_array()
            .unwrap()
            .clone()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One real HTTP/1.1 request; `Err` when the connection is refused or cut.
fn get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    s.read_to_string(&mut response)?;
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not HTTP: {response:?}")))?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// Polls `f` until it returns `Some`, or panics with `what`.
fn eventually<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// A VXLAN datagram carrying Ethernet/IPv4/UDP, with a per-flow source port.
fn vxlan(vni: u32, flow: u16) -> Vec<u8> {
    let mut d = vec![0x08, 0, 0, 0];
    d.extend_from_slice(&(vni << 8).to_be_bytes());
    d.extend_from_slice(&[2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x08, 0x00]);
    let payload = [0x55u8; 32];
    let udp_len = 8 + payload.len() as u16;
    let total = 20 + udp_len;
    d.extend_from_slice(&[
        0x45,
        0,
        (total >> 8) as u8,
        total as u8,
        0,
        0,
        0,
        0,
        64,
        17,
        0,
        0,
    ]);
    d.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
    d.extend_from_slice(&flow.to_be_bytes());
    d.extend_from_slice(&53u16.to_be_bytes());
    d.extend_from_slice(&udp_len.to_be_bytes());
    d.extend_from_slice(&[0, 0]);
    d.extend_from_slice(&payload);
    d
}

fn send(to: SocketAddr, vni: u32, n: u16) {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..n {
        s.send_to(&vxlan(vni, 1000 + i), to).unwrap();
        if i % 64 == 63 {
            // Stay far below the receive buffer: this test is about accounting, not load.
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

const SECS: fn(u64) -> Duration = Duration::from_secs;

#[test]
fn sigterm_turns_unhealthy_keeps_counting_during_the_drain_and_exits_zero() {
    sigterm_drain(BASE, false);
}

#[test]
fn inline_dispatch_drains_and_flushes_on_sigterm() {
    sigterm_drain(&inline_base(), true);
}

/// Whether the daemon logged that it runs modules on the receive workers.
fn runs_inline(d: &Daemon) -> bool {
    d.logs.lock().unwrap().iter().any(|v| {
        v["message"]
            == "Running modules on the receive workers (run-to-completion), steered by the kernel."
    })
}

fn sigterm_drain(base: &str, inline: bool) {
    let mut d = Daemon::start_from(
        base,
        "drain",
        "listen = \"127.0.0.1:0\"\ndrain_seconds = 5\nwhen_unhealthy = \"respond\"",
        "",
        &[],
    );
    assert_eq!(runs_inline(&d), inline);
    eventually("healthy", SECS(10), || {
        (get(d.health, "/healthz").ok()? == (200, "ok\n".to_string())).then_some(())
    });
    send(d.udp, 7, 100);
    eventually("100 received", SECS(10), || {
        (d.metric("vxtap_datagrams_received_total") == 100).then_some(())
    });

    let term = Instant::now();
    d.signal(libc::SIGTERM);
    let (status, body) = eventually("503 after SIGTERM", SECS(5), || {
        get(d.health, "/healthz").ok().filter(|(s, _)| *s == 503)
    });
    assert_eq!((status, body.as_str()), (503, "draining\n"));
    assert!(
        term.elapsed() < SECS(2),
        "health must flip at once, took {:?}",
        term.elapsed()
    );
    assert_eq!(d.metric("vxtap_draining"), 1);
    assert_eq!(d.metric("vxtap_healthy"), 0);

    // Sent while draining: still received, dispatched and seen by the module.
    send(d.udp, 7, 50);
    eventually("150 received while draining", SECS(4), || {
        (d.metric("vxtap_datagrams_received_total") == 150).then_some(())
    });
    assert_eq!(d.metric("vxtap_datagrams_dispatched_total"), 150);

    let status = d.wait_exit(SECS(20));
    assert!(status.success(), "exit status {status:?}");
    assert!(
        term.elapsed() >= SECS(5),
        "the drain lasted only {:?}",
        term.elapsed()
    );
    let logs = d.logs.lock().unwrap();
    let stopped = logs.iter().find(|v| v["message"] == "Stopped.").unwrap();
    assert_eq!(stopped["received"], 150);
    assert_eq!(stopped["dispatched"], 150);
    let summary = logs
        .iter()
        .find(|v| v["message"] == "Final traffic summary.")
        .unwrap();
    assert_eq!(
        summary["packets"], 150,
        "the stats module flushed everything"
    );
}

#[test]
fn close_mode_refuses_tcp_while_draining_and_sigint_cuts_the_drain_short() {
    let mut d = Daemon::start(
        "close",
        "listen = \"127.0.0.1:0\"\ndrain_seconds = 60",
        "",
        &[],
    );
    eventually("healthy", SECS(10), || {
        (get(d.health, "/healthz").ok()?.0 == 200).then_some(())
    });
    // A plain TCP health check: the handshake completes.
    TcpStream::connect_timeout(&d.health, SECS(2)).expect("TCP check passes while healthy");
    send(d.udp, 9, 40);

    let term = Instant::now();
    d.signal(libc::SIGTERM);
    eventually("refused TCP connection", SECS(5), || {
        let e = TcpStream::connect_timeout(&d.health, SECS(2)).err()?;
        (e.kind() == std::io::ErrorKind::ConnectionRefused).then_some(())
    });
    // Operators still read the reason on the admin endpoint.
    assert_eq!(
        get(d.admin, "/healthz").unwrap(),
        (503, "draining\n".to_string())
    );

    d.signal(libc::SIGINT);
    let status = d.wait_exit(SECS(20));
    assert!(status.success(), "exit status {status:?}");
    assert!(
        term.elapsed() < SECS(30),
        "SIGINT must cut the 60 s drain short"
    );
    let logs = d.logs.lock().unwrap();
    let stopped = logs.iter().find(|v| v["message"] == "Stopped.").unwrap();
    assert_eq!(stopped["received"], 40);
    assert_eq!(stopped["dispatched"], 40);
}

#[test]
fn a_second_sigterm_cuts_the_drain_short_but_modules_still_flush() {
    let mut d = Daemon::start(
        "twice",
        "listen = \"127.0.0.1:0\"\ndrain_seconds = 60\nwhen_unhealthy = \"respond\"",
        "",
        &[],
    );
    send(d.udp, 3, 25);
    eventually("25 received", SECS(10), || {
        (d.metric("vxtap_datagrams_received_total") == 25).then_some(())
    });
    let term = Instant::now();
    d.signal(libc::SIGTERM);
    d.wait_log(
        "SIGTERM received: unhealthy now, still receiving until the drain ends.",
        SECS(5),
    );
    d.signal(libc::SIGTERM);
    let status = d.wait_exit(SECS(20));
    assert!(status.success(), "exit status {status:?}");
    assert!(term.elapsed() < SECS(30));
    let logs = d.logs.lock().unwrap();
    assert!(logs
        .iter()
        .any(|v| v["message"] == "Signal received: cutting the drain short."));
    let summary = logs
        .iter()
        .find(|v| v["message"] == "Final traffic summary.")
        .unwrap();
    assert_eq!(summary["packets"], 25);
}

fn recv_notify(sock: &UnixDatagram, want: &str, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "no {want:?} within {timeout:?}; got {seen:?}"
        );
        sock.set_read_timeout(Some(left)).unwrap();
        if let Ok(n) = sock.recv(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            if msg.lines().any(|l| l.starts_with(want)) {
                return msg;
            }
            seen.push(msg);
        }
    }
}

#[test]
fn notify_socket_gets_ready_status_watchdog_and_stopping() {
    let dir = temp_dir("notify");
    let path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    let d = Daemon::start(
        "notify",
        "listen = \"127.0.0.1:0\"\ndrain_seconds = 30",
        "",
        &[
            ("NOTIFY_SOCKET", path.to_str().unwrap()),
            ("WATCHDOG_USEC", "600000"),
        ],
    );
    let ready = recv_notify(&sock, "READY=1", SECS(5));
    assert!(
        ready.lines().any(|l| l.starts_with("STATUS=Running: ")),
        "{ready:?}"
    );
    recv_notify(&sock, "WATCHDOG=1", SECS(5));
    recv_notify(&sock, "WATCHDOG=1", SECS(5));
    d.signal(libc::SIGTERM);
    let stopping = recv_notify(&sock, "STOPPING=1", SECS(5));
    assert!(
        stopping.contains("STATUS=Draining for 30 s"),
        "{stopping:?}"
    );
}

#[test]
fn notify_socket_accepts_an_abstract_name() {
    use std::os::linux::net::SocketAddrExt;
    let name = format!("vxtap-test-notify-{}", std::process::id());
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let sock = UnixDatagram::bind_addr(&addr).unwrap();
    let at = format!("@{name}");
    let _d = Daemon::start(
        "abstract",
        "listen = \"127.0.0.1:0\"",
        "",
        &[("NOTIFY_SOCKET", at.as_str())],
    );
    recv_notify(&sock, "READY=1", SECS(5));
}

#[test]
fn sighup_applies_a_good_file_and_keeps_running_on_a_bad_one() {
    sighup_reload(BASE, false);
}

#[test]
fn inline_dispatch_applies_a_reload_on_every_worker() {
    sighup_reload(&inline_base(), true);
}

fn sighup_reload(base: &str, inline: bool) {
    let d = Daemon::start_from(
        base,
        "reload",
        "listen = \"127.0.0.1:0\"",
        "[sessions]\nlearn = false\n[[sessions.static]]\nsource = \"127.0.0.1\"\nvni = 7\nname = \"alpha\"\n",
        &[],
    );
    assert_eq!(runs_inline(&d), inline);
    send(d.udp, 9, 10);
    eventually("session_unknown drops", SECS(10), || {
        (d.metric("vxtap_datagrams_dropped_total{reason=\"session_unknown\"}") == 10).then_some(())
    });

    // Good file: a second static session, new module settings, and a listener change that needs
    // a restart.
    let good = std::fs::read_to_string(&d.config)
        .unwrap()
        .replace("workers = 2", "workers = 3")
        .replace("interval_secs = 1\n", "interval_secs = 1\noutput = \"stdout\"\n")
        + "[[sessions.static]]\nsource = \"127.0.0.1\"\nvni = 9\nname = \"beta\"\neni = \"eni-0beta\"\nlabels = { team = \"blue\" }\n";
    std::fs::write(&d.config, good).unwrap();
    d.signal(libc::SIGHUP);
    let reloaded = d.wait_log("Configuration reloaded.", SECS(5));
    let changed = reloaded["changed"].as_str().unwrap();
    assert!(
        changed.contains("sessions") && changed.contains("module"),
        "{reloaded}"
    );
    let restart = d.wait_log(
        "Some changed settings take effect only after a restart; their running values are kept.",
        SECS(5),
    );
    assert!(restart["needs_restart"]
        .as_str()
        .unwrap()
        .contains("ingest"));
    // Each shard swaps its module instances between two batches.
    d.wait_log("New module settings applied.", SECS(5));
    d.wait_log("New module settings applied.", SECS(5));
    assert_eq!(
        d.metric("vxtap_config_reloads_total{result=\"success\"}"),
        1
    );
    assert_eq!(d.metric("vxtap_config_restart_pending"), 1);

    send(d.udp, 9, 20);
    let beta = eventually("beta counted", SECS(10), || {
        d.sessions()
            .into_iter()
            .find(|s| s["name"] == "beta" && s["packets"] == 20)
    });
    assert_eq!(beta["eni"], "eni-0beta");
    assert_eq!(beta["labels"]["team"], "blue");
    assert_eq!(beta["key"], "127.0.0.1/9");
    assert!(beta["first_seen"].as_u64().unwrap() > 1_600_000_000);
    assert_eq!(beta["dropped"], 0);
    // The stats module now writes records: its new settings took effect without a restart.
    eventually("stats records on stdout", SECS(10), || {
        let out = std::fs::read_to_string(&d.stdout).ok()?;
        out.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .any(|r| r["session"] == "beta" && r["packets"].as_u64() > Some(0))
            .then_some(())
    });

    // Bad file: refused with the line and key, counted, and the running config stays.
    let bad = std::fs::read_to_string(&d.config)
        .unwrap()
        .replace("[sessions]\n", "[sessions]\nlaern = true\n");
    std::fs::write(&d.config, bad).unwrap();
    d.signal(libc::SIGHUP);
    let refused = d.wait_log(
        "Configuration reload refused; the running configuration stays in place.",
        SECS(5),
    );
    let error = refused["error"].as_str().unwrap();
    assert!(error.contains("sessions.laern"), "{error}");
    assert!(error.contains("vxtap.toml:"), "{error}");
    assert_eq!(
        d.metric("vxtap_config_reloads_total{result=\"failure\"}"),
        1
    );
    assert_eq!(d.metric("vxtap_config_last_reload_successful"), 0);
    send(d.udp, 9, 5);
    eventually("beta still counted", SECS(10), || {
        d.sessions()
            .into_iter()
            .find(|s| s["name"] == "beta" && s["packets"] == 25)
    });
    assert_eq!(get(d.health, "/healthz").unwrap().0, 200);
}

#[test]
fn metrics_pass_promtool_and_add_up() {
    let d = Daemon::start(
        "metrics",
        "listen = \"127.0.0.1:0\"",
        "[[sessions.static]]\nsource = \"127.0.0.1\"\nvni = 5\nname = 'quote\" and \\ backslash'\neni = \"eni-05\"\nlabels = { team = \"blue\", \"cost-centre\" = \"42\" }\n",
        &[],
    );
    send(d.udp, 5, 30);
    send(d.udp, 6, 12); // learned
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.send_to(b"\x00\x00", d.udp).unwrap(); // too short
    eventually("all received", SECS(10), || {
        (d.metric("vxtap_datagrams_received_total") == 43).then_some(())
    });
    eventually("sessions published", SECS(10), || {
        (d.metric(
            "vxtap_session_packets_total{session=\"127.0.0.1/6\",source=\"127.0.0.1\",vni=\"6\"}",
        ) == 12)
            .then_some(())
    });
    let (_, body) = get(d.admin, "/metrics").unwrap();
    assert!(body.contains(
        "vxtap_session_packets_total{session=\"quote\\\" and \\\\ backslash\",source=\"127.0.0.1\",vni=\"5\",eni=\"eni-05\"} 30"
    ), "{body}");
    assert!(body.contains(
        "vxtap_session_info{session=\"quote\\\" and \\\\ backslash\",label_cost_centre=\"42\",label_team=\"blue\"} 1"
    ), "{body}");
    assert_eq!(d.metric("vxtap_datagrams_dispatched_total"), 42);
    assert_eq!(
        d.metric("vxtap_datagrams_dropped_total{reason=\"too_short\"}"),
        1
    );
    assert_eq!(
        d.metric("vxtap_module_packets_total{module=\"stats\",index=\"0\"}"),
        42
    );
    assert_eq!(d.metric("vxtap_sessions{kind=\"learned\"}"), 1);

    let (status, modules) = get(d.admin, "/modules").unwrap();
    assert_eq!(status, 200);
    let modules: Value = serde_json::from_str(&modules).unwrap();
    let per_shard: Vec<u64> = modules
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["packets"].as_u64().unwrap())
        .collect();
    assert_eq!(per_shard.len(), 2, "one stats instance per shard");
    assert_eq!(per_shard.iter().sum::<u64>(), 42);
    assert_eq!(get(d.admin, "/nope").unwrap().0, 404);
    assert_eq!(get(d.health, "/healthz").unwrap().0, 200);
    assert_eq!(
        get(d.health, "/metrics").unwrap().0,
        404,
        "nothing but health on the health port"
    );

    match Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(mut p) => {
            p.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
            let out = p.wait_with_output().unwrap();
            assert!(
                out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
                "promtool check metrics: {}{}\n{body}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("promtool is required in CI (Debian package `prometheus`): {e}")
        }
        Err(e) => eprintln!(
            "SKIPPED promtool check: promtool not runnable ({e}); apt-get install prometheus"
        ),
    }
}
